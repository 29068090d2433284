#pragma once
// Who starts the new binary at `splicer upgrade` (README "Upgrading without dropping
// connections"). The new process must start as root, as any start does: it loads the BPF
// program, opens and re-pins the pin dir, forks its own privileged helper and raises the fd
// limit. The worker has dropped to the run user with no capability and no_new_privs, and the
// privileged helper (privsep/helper.h) keeps only file reading: neither can. So a third
// process is forked at start, while root and single-threaded: the launcher. It keeps root,
// holds no listener, map or ring, reads no network input, and answers one request from the
// worker: a one-byte record carrying one fd (the new process's end of the handover socket).
// It then starts `binary` (fixed at start, never named by the worker) with the argv fixed at
// start and SPLICER_UPGRADE_FD naming that fd, in a grandchild, so the new daemon is nobody's
// child here and survives the old worker (systemd follows it by MAINPID=, service/notify.h).
// The worker is the exposed process: the most it can make the launcher do is start the
// installed binary, which treats the handover's bytes as untrusted (upgrade/adoption.h).
// Like the helper, it exits when the worker's end of its socket closes.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::upgrade {

// The environment variable that tells a starting daemon to adopt (upgrade/adoption.h).
inline constexpr const char* kUpgradeFdVariable = "SPLICER_UPGRADE_FD";

class Launcher {
public:
    // Forks the launcher; only returns in the worker. `argv` is the new process's argv
    // (argv[0] included). Call while single-threaded (a fork copies only the calling thread).
    static Result<std::unique_ptr<Launcher>> start(std::string binary,
                                                   std::vector<std::string> argv);
    // Closes the socket (the launcher exits on it) and reaps it.
    ~Launcher();
    Launcher(const Launcher&) = delete;
    Launcher& operator=(const Launcher&) = delete;

    // Asks for the binary to be started with `handover` (its copy is passed, ours stays
    // ours). Returns once the request is sent: the new process's answer comes on the
    // handover socket (or its closing, when the start failed).
    Result<void> launch(int handover);
    [[nodiscard]] const std::string& binary() const { return binary_; }
    [[nodiscard]] pid_t pid() const { return pid_; }

private:
    Launcher(pid_t pid, UniqueFd socket, std::string binary)
        : pid_(pid), socket_(std::move(socket)), binary_(std::move(binary)) {}

    pid_t pid_;
    UniqueFd socket_;
    std::string binary_;
};

// The binary `splicer upgrade` starts: this executable's path as it was at start
// (/proc/self/exe read then), so that the binary installed at that path now is started, not
// the deleted inode a package upgrade left running. In debug builds (SPLICER_TEST_HOOKS) the
// environment variable SPLICER_TEST_UPGRADE_BINARY, read at start, replaces it: tests point
// it at a binary that fails.
Result<std::string> upgrade_binary_path();

}  // namespace splicer::upgrade
