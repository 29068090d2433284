#include "splicer/flow_accounting.h"

// <linux/tcp.h>, not <netinet/tcp.h>: glibc's struct tcp_info stops before tcpi_bytes_acked.
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

namespace splicer::plane {
namespace {

// TCP states as tcpi_state reports them (include/net/tcp_states.h; kernel ABI, unchanged since
// 2.6). <netinet/tcp.h> has them too, but cannot be included next to <linux/tcp.h>.
constexpr std::uint8_t kTcpTimeWait = 6;
constexpr std::uint8_t kTcpClose = 7;
constexpr std::uint8_t kTcpCloseWait = 8;
constexpr std::uint8_t kTcpLastAck = 9;
constexpr std::uint8_t kTcpClosing = 11;

Error syscall_error(const char* what) {
    return Error{std::string(what) + ": " + std::strerror(errno)};
}

Result<tcp_info> read_tcp_info(int fd) {
    tcp_info info{};
    socklen_t length = sizeof(info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) {
        return syscall_error("TCP_INFO");
    }
    // Kernels before 4.1 stop before tcpi_bytes_acked; a short answer would read zeros.
    if (length < offsetof(tcp_info, tcpi_bytes_received) + sizeof(info.tcpi_bytes_received)) {
        return Error{"TCP_INFO: kernel answer too short for tcpi_bytes_received"};
    }
    return info;
}

Result<std::uint64_t> queue_size(int fd, unsigned long request, const char* what) {
    int bytes = 0;
    if (ioctl(fd, request, &bytes) != 0) {
        return syscall_error(what);
    }
    return static_cast<std::uint64_t>(bytes < 0 ? 0 : bytes);
}

// Bytes written into the socket's send path over its lifetime: acknowledged plus still queued
// (write_seq - snd_una). Counts the SYN on a connect()ed socket and our FIN once sent.
Result<std::uint64_t> lifetime_written(int fd) {
    auto info = read_tcp_info(fd);
    if (!info) {
        return info.error();
    }
    auto unsent = queue_size(fd, SIOCOUTQ, "SIOCOUTQ");
    if (!unsent) {
        return unsent.error();
    }
    return info->tcpi_bytes_acked + *unsent;
}

// A FIN has arrived once the socket is in one of the states only a received FIN leads to.
// TCP_CLOSE is reached from FIN_WAIT2 (after our own shutdown) through TIME_WAIT, or from
// LAST_ACK: both after a FIN. A reset also ends in TCP_CLOSE; without its FIN the byte counts
// never match, so eof_may_propagate() stays false for it, as documented.
bool fin_received(const tcp_info& info) {
    switch (info.tcpi_state) {
        case kTcpCloseWait:
        case kTcpLastAck:
        case kTcpClosing:
        case kTcpTimeWait:
        case kTcpClose:
            return true;
        default:
            return false;
    }
}

// Payload taken from the socket so far. SIOCINQ leaves out a received FIN whether or not EOF
// was read, but tcpi_bytes_received counts it: take it out so the figure is payload only and
// every later check can subtract the FIN once, whenever it arrived.
std::uint64_t consumed_payload(const tcp_info& info, std::uint64_t queued) {
    const std::uint64_t fin = fin_received(info) ? 1 : 0;
    return info.tcpi_bytes_received - fin - queued;
}

}  // namespace

Result<SocketBaseline> take_baseline(int fd) {
    // TCP_INFO and the two queue sizes are three reads: bytes arriving (or ACKs) between them
    // would skew the difference. A client still sending while it is paired made `consumed`
    // negative (wrapped) once in ~100 pairs, and its EOF then never qualified. So read
    // TCP_INFO again after the queues, and use the reads only when nothing moved meanwhile.
    constexpr int kAttempts = 64;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
        auto before = read_tcp_info(fd);
        if (!before) {
            return before.error().with_context("flow baseline");
        }
        auto queued = queue_size(fd, SIOCINQ, "SIOCINQ");
        auto unsent = queue_size(fd, SIOCOUTQ, "SIOCOUTQ");
        if (!queued || !unsent) {
            return (queued ? unsent.error() : queued.error()).with_context("flow baseline");
        }
        auto after = read_tcp_info(fd);
        if (!after) {
            return after.error().with_context("flow baseline");
        }
        if (after->tcpi_bytes_received != before->tcpi_bytes_received ||
            after->tcpi_bytes_acked != before->tcpi_bytes_acked ||
            fin_received(*after) != fin_received(*before)) {
            continue;
        }
        return SocketBaseline{.consumed = consumed_payload(*after, *queued),
                              .written = after->tcpi_bytes_acked + *unsent};
    }
    return Error{"flow baseline: the socket's counters kept moving while read"};
}

Result<std::uint64_t> consumed_after_eof(int fd) {
    auto info = read_tcp_info(fd);
    if (!info) {
        return info.error().with_context("consumed after EOF");
    }
    auto queued = queue_size(fd, SIOCINQ, "SIOCINQ");
    if (!queued) {
        return queued.error().with_context("consumed after EOF");
    }
    return consumed_payload(*info, *queued);
}

Result<std::uint64_t> bytes_absorbed(int dst_fd, const SocketBaseline& dst) {
    auto written = lifetime_written(dst_fd);
    if (!written) {
        return written.error().with_context("bytes absorbed");
    }
    return *written - dst.written;
}

Result<std::uint64_t> bytes_arrived(int src_fd, const SocketBaseline& src) {
    auto info = read_tcp_info(src_fd);
    if (!info) {
        return info.error().with_context("bytes arrived");
    }
    // rcv_nxt moves past the FIN too, so tcpi_bytes_received counts it as one byte.
    const std::uint64_t fin = fin_received(*info) ? 1 : 0;
    return info->tcpi_bytes_received - fin - src.consumed;
}

Result<bool> redirects_absorbed(int dst_fd, const SocketBaseline& dst, std::uint64_t redirected,
                                std::uint64_t copied) {
    auto absorbed = bytes_absorbed(dst_fd, dst);
    if (!absorbed) {
        return absorbed.error();
    }
    return *absorbed >= redirected + copied;
}

Result<bool> eof_may_propagate(int src_fd, const SocketBaseline& src, int dst_fd,
                               const SocketBaseline& dst, std::uint64_t undelivered,
                               std::optional<std::uint64_t>* absorbed_out) {
    auto info = read_tcp_info(src_fd);
    if (!info) {
        return info.error().with_context("eof check");
    }
    if (!fin_received(*info)) {
        return false;
    }
    auto absorbed = bytes_absorbed(dst_fd, dst);
    if (!absorbed) {
        return absorbed.error().with_context("eof check");
    }
    if (absorbed_out != nullptr) {
        *absorbed_out = *absorbed;
    }
    // The FIN is one sequence number: bytes_received counts it, but it is not payload.
    return info->tcpi_bytes_received - 1 - src.consumed == *absorbed + undelivered;
}

Result<bool> connection_broken(int fd) {
    int error = 0;
    socklen_t length = sizeof(error);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
        return syscall_error("SO_ERROR");
    }
    if (error != 0) {
        return true;
    }
    auto info = read_tcp_info(fd);
    if (!info) {
        return info.error().with_context("broken check");
    }
    return info->tcpi_state == kTcpClose;
}

Result<void> kick(int fd) {
    const int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one)) != 0) {
        return syscall_error("kick: SO_RCVLOWAT");
    }
    return {};
}

}  // namespace splicer::plane
