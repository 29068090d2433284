#include "support/raw_client.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "support/streams.h"

namespace splicer::test {

std::string xmpp_stream_header(const std::string& to) {
    return "<?xml version='1.0'?><stream:stream to='" + to +
           "' version='1.0' xml:lang='en' xmlns='jabber:client' "
           "xmlns:stream='http://etherx.jabber.org/streams'>";
}

UniqueFd connect_and_send(std::uint16_t port, const std::string& first, const std::string& then,
                          bool ipv6) {
    UniqueFd fd = connect_to(port, ipv6);
    // One buffer, so the kernel gets both parts in the same send().
    write_all(fd.get(), first + then);
    return fd;
}

UniqueFd send_client_hello(std::uint16_t port, const HelloOptions& hello,
                           const std::string& pipelined, bool ipv6, std::string* sent_hello) {
    const std::string bytes = make_client_hello(hello);
    if (sent_hello != nullptr) {
        *sent_hello = bytes;
    }
    return connect_and_send(port, bytes, pipelined, ipv6);
}

bool log_line_is_client(const LogLine& line, std::uint16_t client_port) {
    const std::string_view client = line.get("client");
    const std::string suffix = ":" + std::to_string(client_port);
    return client.size() > suffix.size() && client.substr(client.size() - suffix.size()) == suffix;
}

std::string wait_for_close(int fd, std::chrono::milliseconds timeout, std::uint64_t* received) {
    const auto deadline = Clock::now() + timeout;
    char buffer[65536];
    while (Clock::now() < deadline) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd waiting{fd, POLLIN, 0};
        const int ready =
            ::poll(&waiting, 1, static_cast<int>(std::max<std::int64_t>(1, left.count())));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready <= 0) {
            break;
        }
        const ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n == 0) {
            return "eof";
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            return errno == ECONNRESET ? "reset" : std::string("error: ") + std::strerror(errno);
        }
        if (received != nullptr) {
            *received += static_cast<std::uint64_t>(n);
        }
    }
    return "open";
}

}  // namespace splicer::test
