#include "support/idle_holder.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <string_view>

namespace splicer::test {

namespace {

using Clock = std::chrono::steady_clock;

// The value of "name=VALUE" within a line such as "echoed=5 failed=0"; nullopt when absent
// or not a number.
std::optional<std::size_t> field(std::string_view line, std::string_view name) {
    const std::string key = std::string(name) + "=";
    const std::size_t at = line.find(key);
    if (at == std::string_view::npos) {
        return std::nullopt;
    }
    std::size_t value = 0;
    std::size_t digits = 0;
    for (std::size_t i = at + key.size(); i < line.size() && line[i] >= '0' && line[i] <= '9';
         ++i, ++digits) {
        value = value * 10 + static_cast<std::size_t>(line[i] - '0');
    }
    if (digits == 0 || digits > 12) {
        return std::nullopt;
    }
    return value;
}

}  // namespace

IdleHolder::IdleHolder(const std::string& binary, std::uint16_t port, std::size_t count,
                       std::chrono::seconds open_within) {
    int pipe_fds[2] = {-1, -1};
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    }
    output_ = UniqueFd(pipe_fds[0]);
    UniqueFd write_end(pipe_fds[1]);
    process_ = ChildProcess(
        SpawnOptions{.argv = {binary, "127.0.0.1", std::to_string(port), std::to_string(count),
                              std::to_string(open_within.count())},
                     .stdout_fd = write_end.get()});
}

std::optional<std::string> IdleHolder::next_line(const std::string& prefix,
                                                 std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        for (std::size_t end = pending_.find('\n'); end != std::string::npos;
             end = pending_.find('\n')) {
            std::string line = pending_.substr(0, end);
            pending_.erase(0, end + 1);
            if (line.rfind(prefix, 0) == 0) {
                return line;
            }
        }
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            return std::nullopt;
        }
        pollfd waiting{.fd = output_.get(), .events = POLLIN, .revents = 0};
        const int ready = ::poll(&waiting, 1, static_cast<int>(std::min<long>(left.count(), 200)));
        if (ready < 0 && errno != EINTR) {
            return std::nullopt;
        }
        if (ready <= 0) {
            continue;
        }
        char buffer[4096];
        const ssize_t got = ::read(output_.get(), buffer, sizeof(buffer));
        if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
            return std::nullopt;  // it exited
        }
        if (got > 0) {
            pending_.append(buffer, static_cast<std::size_t>(got));
            if (pending_.size() > 64 * 1024) {
                return std::nullopt;  // not the tool's output: one short line per request
            }
        }
    }
}

std::optional<std::size_t> IdleHolder::wait_established(std::chrono::milliseconds timeout) {
    const auto line = next_line("established=", timeout);
    return line ? field(*line, "established") : std::nullopt;
}

std::optional<HolderEcho> IdleHolder::echo_all(std::chrono::milliseconds timeout) {
    process_.signal(SIGUSR1);
    const auto line = next_line("echoed=", timeout);
    if (!line) {
        return std::nullopt;
    }
    const auto echoed = field(*line, "echoed");
    const auto failed = field(*line, "failed");
    if (!echoed || !failed) {
        return std::nullopt;
    }
    return HolderEcho{.echoed = *echoed, .failed = *failed};
}

int IdleHolder::stop() {
    return process_.terminate();
}

}  // namespace splicer::test
