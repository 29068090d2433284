#include "upgrade/launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>

#include "security/inherited_fds.h"
#include "splicer/log.h"
#include "upgrade/fd_passing.h"

namespace splicer::upgrade {
namespace {

constexpr char kLaunchRequest = 'U';

// In the grandchild: the handover fd at a number of its own, the variable naming it, exec.
[[noreturn]] void exec_new(const std::string& binary, const std::vector<std::string>& argv,
                           int handover) {
    // Not close-on-exec: this one fd crosses the exec.
    const int fd = ::fcntl(handover, F_DUPFD, 3);
    if (fd < 0) {
        ::_exit(126);
    }
    const std::string number = std::to_string(fd);
    ::setenv(kUpgradeFdVariable, number.c_str(), 1);
    std::vector<char*> args;
    for (const std::string& arg : argv) {
        args.push_back(const_cast<char*>(arg.c_str()));
    }
    args.push_back(nullptr);
    // The signals the launcher ignored and blocked are the new daemon's to set up.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (const int signal_number : {SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGPIPE}) {
        ::signal(signal_number, SIG_DFL);
    }
    ::execv(binary.c_str(), args.data());
    ::_exit(127);  // the old process sees the handover socket close: upgrade_failed
}

// One request: start the binary with the passed fd. A grandchild, so that the launcher has
// only a short-lived child to reap and the new daemon is reparented at once.
void launch_one(const std::string& binary, const std::vector<std::string>& argv,
                const UniqueFd& handover) {
    const pid_t child = ::fork();
    if (child < 0) {
        log::warning("upgrade_launch_failed", {{"error", errno_text(errno)}});
        return;
    }
    if (child == 0) {
        ::setsid();  // the new daemon outlives this session's leader, the old worker
        if (::fork() == 0) {
            exec_new(binary, argv, handover.get());
        }
        ::_exit(0);
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
}

[[noreturn]] void run_launcher(int socket, const std::string& binary,
                               const std::vector<std::string>& argv) {
    if (socket <= 2) {
        socket = ::fcntl(socket, F_DUPFD_CLOEXEC, 3);
        if (socket < 0) {
            ::_exit(1);
        }
    }
    security::close_all_fds_but(socket);
    for (const int signal_number : {SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGPIPE}) {
        ::signal(signal_number, SIG_IGN);
    }
    ::prctl(PR_SET_NAME, "splicer-launch", 0, 0, 0);
    // Ends with the worker even when it is SIGKILLed (its socket end closes then too).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    while (true) {
        // The worker's bytes are hostile: one byte and at most one fd, or nothing is done.
        auto request = receive_record(socket, 1, 1);
        if (!request) {
            // The worker exited (its end closed) or the socket failed: done. A malformed
            // request (its fds already closed by receive_record) is ignored, as the helper
            // ignores one.
            pollfd poll_fd{.fd = socket, .events = POLLIN, .revents = 0};
            const bool hung_up =
                ::poll(&poll_fd, 1, 0) == 1 && (poll_fd.revents & (POLLHUP | POLLERR)) != 0;
            if (hung_up || request.error().message == "closed" ||
                request.error().message.rfind("recvmsg", 0) == 0) {
                ::_exit(0);
            }
            continue;
        }
        if (request->bytes.size() != 1 || request->bytes[0] != kLaunchRequest ||
            request->fds.size() != 1) {
            continue;
        }
        launch_one(binary, argv, request->fds.front());
    }
}

}  // namespace

Result<std::unique_ptr<Launcher>> Launcher::start(std::string binary,
                                                  std::vector<std::string> argv) {
    int ends[2] = {-1, -1};
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0) {
        return errno_error("upgrade launcher socketpair");
    }
    UniqueFd worker_end(ends[0]);
    UniqueFd launcher_end(ends[1]);
    const pid_t pid = ::fork();
    if (pid < 0) {
        return errno_error("forking the upgrade launcher");
    }
    if (pid == 0) {
        worker_end.reset();
        run_launcher(launcher_end.release(), binary, argv);
    }
    return std::unique_ptr<Launcher>(new Launcher(pid, std::move(worker_end), std::move(binary)));
}

Launcher::~Launcher() {
    socket_.reset();
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
}

Result<void> Launcher::launch(int handover) {
    const char request = kLaunchRequest;
    const int fds[1] = {handover};
    return send_record(socket_.get(), std::string_view(&request, 1), fds);
}

Result<std::string> upgrade_binary_path() {
#ifdef SPLICER_TEST_HOOKS
    if (const char* test_binary = std::getenv("SPLICER_TEST_UPGRADE_BINARY");
        test_binary != nullptr && *test_binary != '\0') {
        return std::string(test_binary);
    }
#endif
    std::error_code error;
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
    if (error) {
        return Error{"reading /proc/self/exe: " + error.message()};
    }
    return self.string();
}

}  // namespace splicer::upgrade
