#include "metrics/metrics_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "metrics/exposition.h"
#include "splicer/log.h"

namespace splicer::metrics {
namespace {

std::string response(std::string_view status, std::string_view content_type, std::string_view body,
                     bool send_body, std::string_view extra = {}) {
    std::string out = "HTTP/1.1 ";
    out += status;
    out += "\r\nContent-Type: ";
    out += content_type;
    out += "\r\nContent-Length: " + std::to_string(body.size());
    out += "\r\nConnection: close\r\n";
    out += extra;
    out += "\r\n";
    if (send_body) {
        out += body;
    }
    return out;
}

std::string plain(std::string_view status, std::string_view extra = {}) {
    return response(status, "text/plain; charset=utf-8", std::string(status) + "\n", true, extra);
}

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::create(UniqueFd listener,
                                                             std::string version) {
    UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop) {
        return errno_error("metrics: eventfd");
    }
    return std::unique_ptr<MetricsServer>(
        new MetricsServer(std::move(listener), std::move(stop), std::move(version)));
}

MetricsServer::MetricsServer(UniqueFd listener, UniqueFd stop, std::string version)
    : listener_(std::move(listener)),
      stop_(std::move(stop)),
      version_(std::move(version)),
      snapshot_(std::make_unique<DaemonCounters>()) {}

MetricsServer::~MetricsServer() {
    stop();
}

void MetricsServer::stop() {
    if (thread_.joinable()) {
        const std::uint64_t one = 1;
        // An eventfd write of 1 cannot block or fail short here (counter far from its max).
        [[maybe_unused]] const ssize_t written = ::write(stop_.get(), &one, sizeof(one));
        thread_.join();
    }
}

void MetricsServer::start() {
    thread_ = std::thread([this] { serve(); });
}

void MetricsServer::publish(const DaemonCounters& counters) {
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (lock.owns_lock()) {
        *snapshot_ = counters;
    }
}

std::string MetricsServer::answer(std::string_view head, const DaemonCounters& counters,
                                  std::string_view version) {
    const std::size_t line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    const std::size_t first_space = line.find(' ');
    const std::size_t second_space =
        first_space == std::string_view::npos ? first_space : line.find(' ', first_space + 1);
    if (second_space == std::string_view::npos ||
        !line.substr(second_space + 1).starts_with("HTTP/1.")) {
        return plain("400 Bad Request");
    }
    const std::string_view method = line.substr(0, first_space);
    std::string_view target = line.substr(first_space + 1, second_space - first_space - 1);
    target = target.substr(0, target.find('?'));  // Prometheus may add query parameters
    if (method != "GET" && method != "HEAD") {
        return plain("405 Method Not Allowed", "Allow: GET, HEAD\r\n");
    }
    if (target != "/metrics") {
        return plain("404 Not Found");
    }
    return response("200 OK", "text/plain; version=0.0.4; charset=utf-8",
                    prometheus_text(families(counters, version)), method == "GET");
}

bool MetricsServer::wait(int fd, short events,
                         std::chrono::steady_clock::time_point deadline) const {
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return false;
        }
        pollfd fds[2] = {{.fd = fd, .events = events, .revents = 0},
                         {.fd = stop_.get(), .events = POLLIN, .revents = 0}};
        const int ready = ::poll(fds, 2, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready <= 0 || (fds[1].revents & POLLIN) != 0) {
            return false;
        }
        return (fds[0].revents & (events | POLLHUP | POLLERR)) != 0;
    }
}

void MetricsServer::serve() {
    for (;;) {
        pollfd fds[2] = {{.fd = listener_.get(), .events = POLLIN, .revents = 0},
                         {.fd = stop_.get(), .events = POLLIN, .revents = 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            log::error("metrics_stopped", {{"error", errno_text(errno)}});
            return;
        }
        if ((fds[1].revents & POLLIN) != 0) {
            return;
        }
        UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!client) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                // The connection stays queued: wait a little instead of spinning on it.
                wait(-1, 0, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
            }
            continue;
        }
        serve_one(std::move(client));
    }
}

void MetricsServer::serve_one(UniqueFd client) {
    const auto deadline = std::chrono::steady_clock::now() + kScrapeDeadline;
    std::string head;
    char buffer[1024];
    std::string reply;
    while (reply.empty()) {
        if (!wait(client.get(), POLLIN, deadline)) {
            return;  // silent past the deadline, or stopping: dropped unanswered
        }
        const ssize_t got = ::recv(client.get(), buffer, sizeof(buffer), 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (got <= 0) {
            return;
        }
        head.append(buffer, static_cast<std::size_t>(got));
        if (head.find("\r\n\r\n") != std::string::npos) {
            std::unique_ptr<DaemonCounters> copy;
            {
                const std::lock_guard lock(mutex_);
                copy = std::make_unique<DaemonCounters>(*snapshot_);
            }
            reply = answer(head, *copy, version_);
        } else if (head.size() > kMaxRequestHead) {
            reply = plain("431 Request Header Fields Too Large");
        }
    }
    std::size_t sent = 0;
    while (sent < reply.size()) {
        const ssize_t wrote =
            ::send(client.get(), reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL);
        if (wrote > 0) {
            sent += static_cast<std::size_t>(wrote);
        } else if (wrote < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait(client.get(), POLLOUT, deadline)) {
                return;  // a scraper that does not read: dropped at the deadline
            }
        } else {
            return;
        }
    }
}

}  // namespace splicer::metrics
