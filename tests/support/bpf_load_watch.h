#pragma once
// Watches the BPF programs the kernel loads for this thread and every process it starts
// afterwards (a daemon spawned by the test): perf's PERF_RECORD_BPF_EVENT side-band records
// (Linux 5.1+), one per program load or unload, each with the loader's pid. Unlike a scan of
// the live program IDs, it sees programs that were loaded and unloaded again (the start-up
// self-test's), and no other process's loads (other tests running at the same time).

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "splicer/unique_fd.h"

namespace splicer::test {

struct BpfProgramLoad {
    pid_t pid = 0;                      // the loading process (its thread group id)
    std::uint32_t id = 0;               // the program ID
    std::array<std::uint8_t, 8> tag{};  // BPF_TAG_SIZE: a hash of the program's instructions
};

class BpfLoadWatch {
public:
    // Starts watching (one dummy perf event per online CPU, inherited by children): create it
    // on the thread that will spawn the processes to watch, before spawning them.
    BpfLoadWatch();
    BpfLoadWatch(const BpfLoadWatch&) = delete;
    BpfLoadWatch& operator=(const BpfLoadWatch&) = delete;
    ~BpfLoadWatch();

    // Every program load recorded so far, in no particular order across CPUs.
    [[nodiscard]] std::vector<BpfProgramLoad> loads() const;

private:
    struct Buffer {
        UniqueFd event;
        void* map = nullptr;
    };
    std::vector<Buffer> buffers_;
};

// The name and tag of a live program (BPF_OBJ_GET_INFO_BY_FD), or false when it is gone.
struct BpfProgramIdentity {
    std::string name;
    std::array<std::uint8_t, 8> tag{};
};
bool live_program_identity(std::uint32_t id, BpfProgramIdentity& identity);

}  // namespace splicer::test
