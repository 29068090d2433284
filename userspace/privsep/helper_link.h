#pragma once
// The worker's side of privilege separation (privsep/helper.h): forks the privileged helper
// at start-up, while the process is still root and has one thread, asks it for the config
// files at each reload, and watches it.
//
// Which process is which: the worker stays the process systemd started (MAINPID), so
// signals, sd_notify (NotifyAccess=main), `splicer stats`, and every look at /proc/PID keep
// pointing at the process that serves; the helper is its child. The worker, unprivileged
// after the drop, can neither signal nor trace the root helper (a different uid and no
// capability); it can only wait for it and talk to it over their socketpair.
// Either ending ends the other: the worker's end of the socket closes when it exits however
// it exits, and the helper, which reads nothing else, logs that and exits (within a second
// even when nobody reads stderr: privsep/helper.cpp); the helper's exit
// is seen by the worker's waitpid thread, which logs it and stops the worker (SIGTERM to
// itself: connections are closed as at any stop), which then exits non-zero.

#include <sys/types.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "privsep/file_bundle.h"
#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::privsep {

class HelperLink {
public:
    // Forks the helper, which will read `config_path` and the files it names at each fetch().
    // Call while root and single-threaded (checked: a fork copies only the calling thread).
    // Only returns in the worker.
    static Result<std::unique_ptr<HelperLink>> start(const std::filesystem::path& config_path);
    // Closes the socket (the helper exits on it) and reaps the helper.
    ~HelperLink();
    HelperLink(const HelperLink&) = delete;
    HelperLink& operator=(const HelperLink&) = delete;

    // Starts the thread that waits for the helper's exit. After the privilege drop: a thread
    // made before it would keep the capabilities, which are per thread.
    Result<void> watch();
    // The files, read by the helper now. Blocking (bounded by socket timeouts): call it off
    // the event loop, as the reload's prepare step runs (daemon/reload_runner.h).
    Result<FileBundle> fetch();
    // The helper ended while the worker was serving.
    [[nodiscard]] bool failed() const { return failed_.load(); }
    [[nodiscard]] pid_t pid() const { return pid_; }

private:
    HelperLink(pid_t pid, UniqueFd socket) : pid_(pid), socket_(std::move(socket)) {}
    void wait_for_exit();

    pid_t pid_;
    UniqueFd socket_;
    std::mutex fetching_;  // one request and its answer at a time
    std::thread watcher_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> failed_{false};
};

}  // namespace splicer::privsep
