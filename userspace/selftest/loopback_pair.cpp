#include "selftest/loopback_pair.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>

namespace splicer::selftest {
namespace {

Result<UniqueFd> tcp_socket() {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        return errno_error("socket");
    }
    return fd;
}

Result<void> set_int(int fd, int level, int name, int value, const char* what) {
    if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
        return errno_error(what);
    }
    return {};
}

Result<UniqueFd> listener(int receive_bytes) {
    auto fd = tcp_socket();
    if (!fd) {
        return fd.error();
    }
    // Set on the listener, inherited by the accepted socket before its handshake ends, so
    // the window it advertises is already the small one.
    if (receive_bytes > 0) {
        if (auto set = set_int(fd->get(), SOL_SOCKET, SO_RCVBUF, receive_bytes, "SO_RCVBUF");
            !set) {
            return set.error();
        }
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd->get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
        return errno_error("bind 127.0.0.1:0");
    }
    if (::listen(fd->get(), 1) != 0) {
        return errno_error("listen");
    }
    return fd;
}

// Connects `fd` to `listening`, accepts, and returns the accepted socket. On loopback the
// handshake completes inside connect().
Result<UniqueFd> connect_and_accept(int fd, int listening) {
    sockaddr_in address{};
    socklen_t length = sizeof(address);
    if (::getsockname(listening, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        return errno_error("getsockname");
    }
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
        return errno_error("connect to 127.0.0.1");
    }
    UniqueFd accepted(::accept4(listening, nullptr, nullptr, SOCK_CLOEXEC));
    if (!accepted) {
        return errno_error("accept");
    }
    return accepted;
}

Result<void> make_non_blocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        return errno_error("O_NONBLOCK");
    }
    // As the daemon's sockets: small writes leave at once (a hello-sized write, a reply).
    return set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
}

}  // namespace

Result<LoopbackPair> make_loopback_pair(const LoopbackBuffers& buffers) {
    auto front_listener = listener(0);
    auto server_listener = listener(buffers.server_receive_bytes);
    auto client = tcp_socket();
    auto back = tcp_socket();
    for (const auto* made : {&front_listener, &server_listener, &client, &back}) {
        if (!*made) {
            return made->error();
        }
    }
    if (buffers.back_send_bytes > 0) {
        if (auto set =
                set_int(back->get(), SOL_SOCKET, SO_SNDBUF, buffers.back_send_bytes, "SO_SNDBUF");
            !set) {
            return set.error();
        }
    }
    auto front = connect_and_accept(client->get(), front_listener->get());
    if (!front) {
        return front.error().with_context("client connection");
    }
    auto server = connect_and_accept(back->get(), server_listener->get());
    if (!server) {
        return server.error().with_context("backend connection");
    }
    LoopbackPair pair{std::move(*client), std::move(*front), std::move(*back), std::move(*server)};
    for (const int fd : {pair.client.get(), pair.front.get(), pair.back.get(), pair.server.get()}) {
        if (auto made = make_non_blocking(fd); !made) {
            return made.error();
        }
    }
    return pair;
}

Result<std::size_t> readable_bytes(int fd) {
    int bytes = 0;
    if (::ioctl(fd, FIONREAD, &bytes) != 0) {
        return errno_error("FIONREAD");
    }
    return static_cast<std::size_t>(bytes < 0 ? 0 : bytes);
}

void fill_pattern(std::byte* out, std::size_t size, std::uint32_t seed) {
    // xorshift32: full period 2^32 - 1, so no window of bytes repeats within a test.
    std::uint32_t state = seed != 0 ? seed : 1;
    for (std::size_t i = 0; i < size; ++i) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out[i] = static_cast<std::byte>(state >> 24);
    }
}

}  // namespace splicer::selftest
