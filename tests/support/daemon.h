#pragma once
// A splicer daemon started by a test: config written to a temp file, stderr captured line by
// line (logfmt, parsed) by a reader thread, a fresh pin dir per daemon, and RAII cleanup
// (SIGKILL + reap if the test did not stop it, temp files and leftover pins removed).

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "splicer/unique_fd.h"
#include "support/log_lines.h"
#include "support/process.h"

namespace splicer::test {

// A TCP port free on both 127.0.0.1 and ::1 right now (bound with port 0, read, closed).
// Never returns the same port twice within one test process.
std::uint16_t free_port();

// A pin dir path no other test uses: /sys/fs/bpf/splicer-test-<pid>-<n>. Not created: the
// daemon creates it (and mounts bpffs at /sys/fs/bpf when it is absent).
std::string unique_pin_dir();

// Owns a pin dir path: removes it (and anything pinned below it) on destruction if left over.
class PinDir {
public:
    PinDir() : path_(unique_pin_dir()) {}
    explicit PinDir(std::string path) : path_(std::move(path)) {}
    ~PinDir();
    PinDir(const PinDir&) = delete;
    PinDir& operator=(const PinDir&) = delete;

    [[nodiscard]] const std::string& path() const { return path_; }
    [[nodiscard]] bool exists() const;
    // Removes the directory tree; true when nothing is left.
    bool remove() const;

private:
    std::string path_;
};

struct DaemonOptions {
    std::string binary;       // path to the splicer executable (tests pass SPLICER_BINARY)
    std::string config_text;  // written to a temp file passed as --config
    std::string splice_mode;  // "sockmap" | "splice" | "copy" | "auto"; "" leaves it out
    std::string pin_dir;      // "" -> unique_pin_dir()
    std::vector<std::string> extra_args;
    // Put before the daemon's own argv, e.g. {"nsenter", "--net=/run/netns/NAME", "--"} to
    // run it in a test's network namespace (nsenter execs it: pid() stays the daemon's).
    std::vector<std::string> command_prefix;
    // Passed to the daemon as fds 3, 4, ... (SpawnOptions::pass_fds): with a command_prefix
    // that sets LISTEN_FDS and LISTEN_PID, systemd's socket activation.
    std::vector<int> pass_fds;
    // Size of the pipe the daemon's stderr goes into (F_SETPIPE_SZ, rounded up to a page).
    int stderr_pipe_bytes = 1 << 20;
    // Copy every daemon line to the test's stderr as it arrives (also: env SPLICER_TEST_ECHO=1).
    bool echo = false;
    // Event loops: `workers: N;` is appended to config_text unless the text sets workers
    // itself. One unless a test asks: every worker is an io_uring and a pinned thread more
    // at each of the suite's ~400 daemon starts, and most tests are about something else.
    // nullopt: the daemon's own default (one per CPU it may run on), kept by the tests of
    // workers, of the fd plan and of whole deployments (tests/README.md).
    std::optional<std::uint32_t> workers = 1;
};

using LogPredicate = std::function<bool(const LogLine&)>;

class DaemonProcess {
public:
    // Writes the config and spawns `binary run --config F [--splice-mode M] --pin-dir D ...`.
    explicit DaemonProcess(DaemonOptions options);
    ~DaemonProcess();
    DaemonProcess(const DaemonProcess&) = delete;
    DaemonProcess& operator=(const DaemonProcess&) = delete;

    [[nodiscard]] pid_t pid() const { return child_.pid(); }
    [[nodiscard]] const std::string& pin_dir() const { return pin_dir_.path(); }
    [[nodiscard]] const std::filesystem::path& config_path() const { return config_path_; }
    [[nodiscard]] const std::vector<std::string>& argv() const { return argv_; }

    // Replaces the config file's text (its mode and owner stay) with `text` plus the workers
    // line DaemonOptions::workers added at start, if `text` has none: what the next reload
    // reads, so that a reload changes only what the test changed.
    void rewrite_config(const std::string& text) const;

    // The first line at index >= `from` with this event (any event when empty) for which the
    // predicate holds (no predicate: any). Waits up to `timeout`; gives up early once the
    // daemon's stderr is closed (it exited).
    std::optional<LogLine> wait_for_log(
        std::string_view event, const LogPredicate& predicate = {},
        std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
        std::size_t from = 0) const;
    // Waits for `event=ready`; false if the daemon exited or did not get ready in time.
    bool wait_ready(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) const;

    [[nodiscard]] std::vector<LogLine> logs() const;
    [[nodiscard]] std::vector<LogLine> logs(std::string_view event,
                                            const LogPredicate& predicate = {}) const;
    [[nodiscard]] std::size_t log_count() const;
    // The last `last` raw lines joined with newlines, for failure messages.
    [[nodiscard]] std::string log_tail(std::size_t last = 60) const;

    // While paused the harness reads nothing from the daemon's stderr: its pipe fills as
    // behind a journal that stopped reading. Resuming reads everything written meanwhile.
    void pause_reading(bool paused);

    // Entries in /proc/PID/fd, -1 when unreadable (the daemon exited).
    [[nodiscard]] int open_fd_count() const;

    bool running();
    // Sends `signal_number` (SIGTERM; SIGINT works the same by contract), then waits up to
    // `timeout`: the exit status (code, or 128+signal), or nullopt when it did not exit (the
    // destructor then SIGKILLs it).
    std::optional<int> stop(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000),
                            int signal_number = SIGTERM);
    // The exit status once exited (after stop(), or when it died on its own).
    std::optional<int> exit_status();
    // "running", or how it ended ("exited with status 1", "killed by signal 6 (Aborted)"),
    // for failure messages (ChildProcess::describe_end).
    std::string describe_end();

private:
    void read_stderr(UniqueFd pipe);

    DaemonOptions options_;
    TempDir temp_dir_;
    std::filesystem::path config_path_;
    PinDir pin_dir_;
    std::vector<std::string> argv_;
    ChildProcess child_;
    bool stopped_cleanly_ = false;

    mutable std::mutex mutex_;
    mutable std::condition_variable changed_;
    std::vector<LogLine> lines_;
    bool stderr_closed_ = false;
    bool stop_reader_ = false;
    bool reading_paused_ = false;
    std::thread reader_;
};

}  // namespace splicer::test
