#include "support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

namespace splicer::test {

TempDir::TempDir(const std::string& label) {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" + label + "-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
        throw std::runtime_error("mkdtemp " + pattern + ": " + std::strerror(errno));
    }
    path_ = pattern;
}

TempDir::~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

std::filesystem::path TempDir::write_file(const std::string& name,
                                          const std::string& content) const {
    const std::filesystem::path file = path_ / name;
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << content;
    out.close();
    if (!out) {
        throw std::runtime_error("writing " + file.string());
    }
    return file;
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

namespace {

int status_to_code(int status) {
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return -1;
}

}  // namespace

ChildProcess::ChildProcess(const SpawnOptions& options) {
    if (options.argv.empty()) {
        throw std::invalid_argument("ChildProcess: empty argv");
    }
    // Everything the child needs is prepared before fork: after it, only async-signal-safe
    // calls (the test process has threads).
    std::vector<char*> argv;
    argv.reserve(options.argv.size() + 1);
    for (const std::string& arg : options.argv) {
        argv.push_back(const_cast<char*>(arg.c_str()));
    }
    argv.push_back(nullptr);
    const int dev_null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (dev_null < 0) {
        throw std::runtime_error(std::string("open /dev/null: ") + std::strerror(errno));
    }
    const int in = options.stdin_fd >= 0 ? options.stdin_fd : dev_null;
    const int out = options.stdout_fd >= 0 ? options.stdout_fd : dev_null;
    const int err = options.stderr_fd >= 0 ? options.stderr_fd : dev_null;
    const pid_t parent = ::getpid();
    const std::vector<int>& pass_fds = options.pass_fds;
    std::vector<int> pass_copies(pass_fds.size(), -1);

    const pid_t pid = ::fork();
    if (pid < 0) {
        const int saved = errno;
        ::close(dev_null);
        throw std::runtime_error(std::string("fork: ") + std::strerror(saved));
    }
    if (pid == 0) {
        if (options.kill_with_parent) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) {
                ::_exit(127);
            }
        }
        // dup2 onto 0/1/2 clears close-on-exec on the copies. A source fd that is already
        // 0/1/2 is duplicated first so a later dup2 cannot clobber it.
        const int in_copy = ::fcntl(in, F_DUPFD_CLOEXEC, 3);
        const int out_copy = ::fcntl(out, F_DUPFD_CLOEXEC, 3);
        const int err_copy = ::fcntl(err, F_DUPFD_CLOEXEC, 3);
        if (in_copy < 0 || out_copy < 0 || err_copy < 0 || ::dup2(in_copy, 0) < 0 ||
            ::dup2(out_copy, 1) < 0 || ::dup2(err_copy, 2) < 0) {
            ::_exit(127);
        }
        // Passed fds: copied above their targets first, so no dup2 clobbers a source.
        const int passed = static_cast<int>(pass_fds.size());
        for (int i = 0; i < passed; ++i) {
            pass_copies[static_cast<std::size_t>(i)] =
                ::fcntl(pass_fds[static_cast<std::size_t>(i)], F_DUPFD_CLOEXEC, 3 + passed);
            if (pass_copies[static_cast<std::size_t>(i)] < 0) {
                ::_exit(127);
            }
        }
        for (int i = 0; i < passed; ++i) {
            if (::dup2(pass_copies[static_cast<std::size_t>(i)], 3 + i) < 0) {
                ::_exit(127);
            }
        }
        // No test socket, pipe or BPF fd leaks into the child (its fd count starts clean).
        ::syscall(SYS_close_range, static_cast<unsigned>(3 + passed), ~0U, 0U);
        // Default signal handling and mask for the new program.
        sigset_t none;
        ::sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGPIPE, SIG_DFL);
        ::execvp(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(dev_null);
    pid_ = pid;
}

ChildProcess::~ChildProcess() {
    if (pid_ > 0 && !exit_status_) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
    }
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      exit_status_(std::exchange(other.exit_status_, {})),
      wait_status_(std::exchange(other.wait_status_, {})) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
    if (this != &other) {
        ChildProcess dropped(std::move(*this));
        pid_ = std::exchange(other.pid_, -1);
        exit_status_ = std::exchange(other.exit_status_, {});
        wait_status_ = std::exchange(other.wait_status_, {});
    }
    return *this;
}

bool ChildProcess::running() {
    if (pid_ <= 0 || exit_status_) {
        return false;
    }
    int status = 0;
    const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
    if (reaped == pid_) {
        wait_status_ = status;
        exit_status_ = status_to_code(status);
        return false;
    }
    return true;
}

std::string ChildProcess::describe_end() {
    if (pid_ <= 0) {
        return "never started";
    }
    if (running()) {
        return "running";
    }
    if (!wait_status_) {
        return "ended, status unknown";
    }
    const int status = *wait_status_;
    if (WIFEXITED(status)) {
        return "exited with status " + std::to_string(WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status)) {
        const int signal_number = WTERMSIG(status);
        return "killed by signal " + std::to_string(signal_number) + " (" +
               ::strsignal(signal_number) + ")" + (WCOREDUMP(status) ? ", core dumped" : "");
    }
    return "ended with wait status " + std::to_string(status);
}

std::optional<int> ChildProcess::wait_for_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (running()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return exit_status_;
}

void ChildProcess::signal(int signal_number) const {
    if (pid_ > 0 && !exit_status_) {
        ::kill(pid_, signal_number);
    }
}

int ChildProcess::terminate(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) {
        return -1;
    }
    signal(SIGTERM);
    if (auto status = wait_for_exit(timeout)) {
        return *status;
    }
    signal(SIGKILL);
    return wait_for_exit(std::chrono::milliseconds(5000)).value_or(-1);
}

}  // namespace splicer::test
