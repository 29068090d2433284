#include "privsep/helper.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <string>

#include "privsep/channel.h"
#include "security/inherited_fds.h"
#include "security/privilege_drop.h"
#include "splicer/log.h"

namespace splicer::privsep {
namespace {

// A worker that stops reading (compromised, or stuck) must not keep the helper in send().
constexpr long kSendTimeoutSeconds = 10;

// How long the helper's last line ("privsep_worker_gone") may wait for room on stderr.
constexpr unsigned kLastLineSeconds = 1;

// recv() gives 0 both at the end and for an empty record, which a worker can send.
bool peer_closed(int socket) {
    pollfd poll_fd{.fd = socket, .events = POLLIN, .revents = 0};
    return ::poll(&poll_fd, 1, 0) == 1 && (poll_fd.revents & POLLHUP) != 0;
}

void answer(int socket, const std::filesystem::path& config_path) {
    const std::string message = encode(read_config_files(config_path));
    if (auto sent = send_message(socket, message); !sent) {
        log::warning("privsep_send_failed", {{"error", sent.error().message}});
    }
}

}  // namespace

std::vector<std::filesystem::path> files_named_by(const config::Config& config) {
    std::vector<std::filesystem::path> paths;
    if (!config.https) {
        return paths;
    }
    for (const config::CertificateConfig& entry : config.https->certificates) {
        for (const std::string* path : {&entry.certificate, &entry.key, &entry.ocsp_response}) {
            if (!path->empty()) {
                paths.emplace_back(*path);
            }
        }
    }
    for (const config::HttpRoute& route : config.https->routes) {
        if (route.ca_file && !route.ca_file->empty()) {
            paths.emplace_back(*route.ca_file);
        }
    }
    return paths;
}

FileBundle read_config_files(const std::filesystem::path& config_path) {
    const FileRead config_read = read_file_now(config_path);
    std::vector<std::filesystem::path> paths{config_path};
    if (config_read.error == 0) {
        // The file as root reads it: a broken one names nothing (the worker reports it).
        const config::LoadResult loaded =
            config::load_string(config_read.bytes, config_path.native());
        if (loaded.ok()) {
            for (std::filesystem::path& named : files_named_by(*loaded.config)) {
                paths.push_back(std::move(named));
            }
        }
    }
    FileBundle bundle = read_bundle(paths);
    // The config as parsed above, not a second read that could see another version.
    bundle.files.front().read = config_read;
    return bundle;
}

void run_helper(int socket, const std::filesystem::path& config_path) {
    if (socket <= 2) {
        // Started with stdio closed, so socketpair() took a low number: move it above.
        socket = ::fcntl(socket, F_DUPFD_CLOEXEC, 3);
        if (socket < 0) {
            ::_exit(1);
        }
    }
    security::close_all_fds_but(socket);
    for (const int signal_number : {SIGTERM, SIGINT, SIGHUP, SIGPIPE}) {
        ::signal(signal_number, SIG_IGN);
    }
    // (Not root, as in a unit test run by a user, there is nothing to narrow.)
    if (auto narrowed = ::geteuid() == 0 ? security::keep_only_file_reading() : Result<void>();
        !narrowed) {
        // Fail closed: the worker sees the exit and stops (privsep_helper_exited).
        log::error("privsep_helper_failed", {{"error", narrowed.error().message}});
        ::_exit(1);
    }
    // Named apart from the worker in ps and /proc/PID/comm.
    ::prctl(PR_SET_NAME, "splicer-priv", 0, 0, 0);
    (void)set_timeouts(socket, kSendTimeoutSeconds, 0);
    while (true) {
        char request[16];
        const ssize_t got = ::recv(socket, request, sizeof request, MSG_TRUNC);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0 || peer_closed(socket)) {
            // The worker exited, crashed or was killed: its end closed with it. The shared
            // stderr may be a pipe nobody reads (the worker's own writer drops lines then;
            // this process writes them directly, blocking), and a stopping worker waits for
            // this exit: SIGALRM's default action ends the process if the line cannot go out.
            ::signal(SIGALRM, SIG_DFL);
            sigset_t alarm_only;
            sigemptyset(&alarm_only);
            sigaddset(&alarm_only, SIGALRM);
            ::sigprocmask(SIG_UNBLOCK, &alarm_only, nullptr);
            ::alarm(kLastLineSeconds);
            log::info("privsep_worker_gone",
                      {{"reason", got == 0 ? "socket closed" : errno_text(errno)}});
            ::_exit(0);
        }
        if (got != 1 || request[0] != kRequestFiles) {
            log::warning("privsep_bad_request", {{"bytes", std::to_string(got)}});
            continue;
        }
        answer(socket, config_path);
    }
}

}  // namespace splicer::privsep
