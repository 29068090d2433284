#include "support/bpf_load_watch.h"

#include <bpf/bpf.h>
#include <linux/perf_event.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace splicer::test {
namespace {

// One metadata page and 8 data pages per CPU: a load record is 32 bytes, a daemon start
// makes a few dozen (libbpf's feature probes load small programs too).
constexpr std::size_t kDataPages = 8;

std::size_t mapped_page_size() {
    return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

std::size_t mapping_bytes() {
    return (1 + kDataPages) * mapped_page_size();
}

// PERF_RECORD_BPF_EVENT as laid out with sample_id_all and PERF_SAMPLE_TID
// (include/uapi/linux/perf_event.h).
struct BpfEventRecord {
    perf_event_header header;
    std::uint16_t type;
    std::uint16_t flags;
    std::uint32_t id;
    std::uint8_t tag[8];
    std::uint32_t pid;
    std::uint32_t tid;
};

}  // namespace

BpfLoadWatch::BpfLoadWatch() {
    perf_event_attr attr{};
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_DUMMY;
    attr.bpf_event = 1;
    attr.sample_id_all = 1;
    attr.sample_type = PERF_SAMPLE_TID;
    // Children started after this inherit the event; their records land in this buffer.
    // The kernel refuses to mmap an inherited event that follows a task on every CPU at
    // once (cpu -1), hence one per CPU.
    attr.inherit = 1;
    const long cpus = ::sysconf(_SC_NPROCESSORS_CONF);
    for (long cpu = 0; cpu < cpus; ++cpu) {
        const long fd = ::syscall(SYS_perf_event_open, &attr, 0, static_cast<int>(cpu), -1,
                                  PERF_FLAG_FD_CLOEXEC);
        if (fd < 0) {
            if (errno == ENODEV || errno == EINVAL) {
                continue;  // an offline CPU
            }
            throw std::runtime_error(std::string("perf_event_open: ") + std::strerror(errno));
        }
        Buffer buffer{UniqueFd(static_cast<int>(fd)), nullptr};
        // Writable: the kernel then never overwrites records this side has not consumed.
        void* map = ::mmap(nullptr, mapping_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED,
                           buffer.event.get(), 0);
        if (map == MAP_FAILED) {
            throw std::runtime_error(std::string("mmap perf buffer: ") + std::strerror(errno));
        }
        buffer.map = map;
        buffers_.push_back(std::move(buffer));
    }
    if (buffers_.empty()) {
        throw std::runtime_error("perf_event_open: no CPU to watch");
    }
}

BpfLoadWatch::~BpfLoadWatch() {
    for (Buffer& buffer : buffers_) {
        ::munmap(buffer.map, mapping_bytes());
    }
}

std::vector<BpfProgramLoad> BpfLoadWatch::loads() const {
    std::vector<BpfProgramLoad> found;
    const std::size_t data_bytes = kDataPages * mapped_page_size();
    for (const Buffer& buffer : buffers_) {
        auto* meta = static_cast<perf_event_mmap_page*>(buffer.map);
        const std::uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
        if (head > data_bytes) {
            throw std::runtime_error("perf buffer full: BPF load records lost");
        }
        const auto* data = static_cast<const std::uint8_t*>(buffer.map) + mapped_page_size();
        std::uint64_t at = 0;
        while (at + sizeof(perf_event_header) <= head) {
            perf_event_header header{};
            std::memcpy(&header, data + at, sizeof(header));
            if (header.size == 0) {
                break;
            }
            if (header.type == PERF_RECORD_BPF_EVENT && header.size >= sizeof(BpfEventRecord)) {
                BpfEventRecord record{};
                std::memcpy(&record, data + at, sizeof(record));
                if (record.type == PERF_BPF_EVENT_PROG_LOAD) {
                    BpfProgramLoad load;
                    load.pid = static_cast<pid_t>(record.pid);
                    load.id = record.id;
                    std::memcpy(load.tag.data(), record.tag, load.tag.size());
                    found.push_back(load);
                }
            }
            at += header.size;
        }
    }
    return found;
}

bool live_program_identity(std::uint32_t id, BpfProgramIdentity& identity) {
    const UniqueFd program(bpf_prog_get_fd_by_id(id));
    if (!program) {
        return false;
    }
    bpf_prog_info info{};
    std::uint32_t length = sizeof(info);
    if (bpf_obj_get_info_by_fd(program.get(), &info, &length) != 0) {
        return false;
    }
    identity.name = info.name;
    std::memcpy(identity.tag.data(), info.tag, identity.tag.size());
    return true;
}

}  // namespace splicer::test
