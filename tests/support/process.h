#pragma once
// Child processes and temporary directories owned by a test: every child is killed and reaped,
// every directory removed, when its owner goes out of scope.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace splicer::test {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
public:
    explicit TempDir(const std::string& label = "splicer-test");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    [[nodiscard]] const std::filesystem::path& path() const { return path_; }
    // Writes `content` to path()/name and returns the full path.
    std::filesystem::path write_file(const std::string& name, const std::string& content) const;

private:
    std::filesystem::path path_;
};

// The whole file as bytes ("" when it cannot be read).
std::string read_file(const std::filesystem::path& path);

struct SpawnOptions {
    std::vector<std::string> argv;  // argv[0] is the program (a path, or a name found on PATH)
    int stdin_fd = -1;              // -1: /dev/null
    int stdout_fd = -1;             // -1: /dev/null
    int stderr_fd = -1;             // -1: /dev/null
    // Become the child's fds 3, 4, ... in this order (as systemd passes sockets to a
    // socket-activated service); every other fd above 2 is closed in the child.
    std::vector<int> pass_fds;
    // The child gets SIGKILL if the spawning thread dies, so a crashed test leaves no daemon.
    bool kill_with_parent = true;
};

// A spawned process (fork + exec; every other inherited fd is closed in the child).
class ChildProcess {
public:
    ChildProcess() = default;
    explicit ChildProcess(const SpawnOptions& options);
    ~ChildProcess();  // SIGKILL and reap if still running
    ChildProcess(ChildProcess&& other) noexcept;
    ChildProcess& operator=(ChildProcess&& other) noexcept;
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    [[nodiscard]] pid_t pid() const { return pid_; }
    // True while not yet reaped (a zombie counts as exited: it is reaped here).
    bool running();
    // Waits up to `timeout` for the exit; the status as a shell shows it (code, or 128+signal).
    std::optional<int> wait_for_exit(std::chrono::milliseconds timeout);
    void signal(int signal_number) const;
    // SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit status.
    int terminate(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
    [[nodiscard]] std::optional<int> exit_status() const { return exit_status_; }
    // How it ended, for failure messages: "running", "exited with status 1", "killed by
    // signal 6 (Aborted)" (a core dump said too). exit_status() cannot tell an exit(134)
    // from SIGABRT; this can.
    [[nodiscard]] std::string describe_end();

private:
    pid_t pid_ = -1;
    std::optional<int> exit_status_;
    std::optional<int> wait_status_;  // as waitpid() gave it
};

}  // namespace splicer::test
