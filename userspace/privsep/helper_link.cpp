#include "privsep/helper_link.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

#include "privsep/channel.h"
#include "privsep/helper.h"
#include "splicer/log.h"

namespace splicer::privsep {
namespace {

// Reading a few files takes milliseconds; a helper that does not answer within this fails
// the reload (the rules in force stay), it does not hang it.
constexpr long kAnswerTimeoutSeconds = 10;

// Threads of this process, from /proc/self/task.
std::size_t thread_count() {
    std::error_code error;
    std::size_t count = 0;
    for (std::filesystem::directory_iterator task("/proc/self/task", error), end;
         !error && task != end; task.increment(error)) {
        ++count;
    }
    return count;
}

std::string describe_status(int status) {
    if (WIFSIGNALED(status)) {
        return "killed by signal " + std::to_string(WTERMSIG(status));
    }
    return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

Result<std::unique_ptr<HelperLink>> HelperLink::start(const std::filesystem::path& config_path) {
    if (thread_count() != 1) {
        return Error{"privileged helper: the process already runs threads, fork would lose them"};
    }
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0) {
        return errno_error("privileged helper: socketpair");
    }
    UniqueFd worker_end(ends[0]);
    UniqueFd helper_end(ends[1]);
    const pid_t pid = ::fork();
    if (pid < 0) {
        return errno_error("privileged helper: fork");
    }
    if (pid == 0) {
        run_helper(helper_end.get(), config_path);
    }
    helper_end.reset();
    if (auto timeouts =
            set_timeouts(worker_end.get(), kAnswerTimeoutSeconds, kAnswerTimeoutSeconds);
        !timeouts) {
        return timeouts.error().with_context("privileged helper");
    }
    log::info("privsep_helper", {{"pid", std::to_string(pid)}, {"reads", config_path.native()}});
    return std::unique_ptr<HelperLink>(new HelperLink(pid, std::move(worker_end)));
}

HelperLink::~HelperLink() {
    stopping_ = true;
    socket_.reset();  // the helper's recv() returns 0: it logs and exits
    if (watcher_.joinable()) {
        watcher_.join();
        return;
    }
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
}

Result<void> HelperLink::watch() {
    try {
        watcher_ = std::thread([this] { wait_for_exit(); });
    } catch (const std::system_error& error) {
        return Error{std::string("privileged helper: no thread to watch it: ") + error.what()};
    }
    return {};
}

void HelperLink::wait_for_exit() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0) {
        if (errno != EINTR) {
            return;
        }
    }
    if (stopping_) {
        return;
    }
    // Without it no reload can read a file: stop rather than serve on with a daemon that
    // cannot be reconfigured. The loop closes every connection as at SIGTERM; run() then
    // returns an error (exit status 1) because of failed().
    failed_ = true;
    log::error("privsep_helper_exited",
               {{"status", describe_status(status)},
                {"signal", WIFSIGNALED(status) ? std::to_string(WTERMSIG(status)) : "0"},
                {"action", "stopping"}});
    ::kill(::getpid(), SIGTERM);
}

Result<FileBundle> HelperLink::fetch() {
    const std::lock_guard<std::mutex> lock(fetching_);
    // An answer that came after an earlier fetch gave up would be taken for this one.
    char stale[1];  // MSG_TRUNC drops the rest of each record
    while (::recv(socket_.get(), stale, sizeof stale, MSG_DONTWAIT | MSG_TRUNC) > 0) {
    }
    const char request = kRequestFiles;
    if (::send(socket_.get(), &request, 1, MSG_NOSIGNAL) != 1) {
        return errno_error("privileged helper: request");
    }
    auto message = receive_message(socket_.get(), kMaxBundleBytes);
    if (!message) {
        return message.error().with_context("privileged helper");
    }
    auto bundle = decode(std::as_bytes(std::span(message->data(), message->size())));
    if (!bundle) {
        return bundle.error().with_context("privileged helper");
    }
    return bundle;
}

}  // namespace splicer::privsep
