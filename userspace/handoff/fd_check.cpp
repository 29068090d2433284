#include "handoff/fd_check.h"

#include <fcntl.h>
// <linux/tcp.h>, not <netinet/tcp.h>: glibc's struct tcp_info stops before tcpi_segs_in.
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace splicer::handoff {
namespace {

Error refused(std::size_t record, const std::string& what) {
    return Error{"handoff record " + std::to_string(record) + ": " + what};
}

int fd_at(const std::vector<UniqueFd>& fds, std::uint32_t index) {
    return index < fds.size() ? fds[index].get() : -1;
}

// TCP states as tcpi_state reports them (include/net/tcp_states.h; kernel ABI).
constexpr std::uint8_t kTcpClose = 7;

// True: a TCP socket that was connected and is closed since (a peer's RST, or FINs both
// ways: the kernel then moves the socket to CLOSE, and getpeername says not connected).
// Between the old loop's export and this check nobody serves the pair, so that is a race
// of the peers, not a lie of the sender: the adopting plane reads what the socket still
// holds, then its EOF or its ECONNRESET, and ends the pair as the old loop would have (a
// reset with a RST on the other socket; a FIN after the other direction's last bytes).
// A socket that never was connected (a fresh one, a listening one, one still connecting)
// has received no segment on a connection: refused.
bool closed_since_connected(int fd) {
    tcp_info info{};
    socklen_t length = sizeof(info);
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0 ||
        length < offsetof(tcp_info, tcpi_segs_in) + sizeof(info.tcpi_segs_in)) {
        return false;  // cannot tell: refused, as any socket not connected
    }
    return info.tcpi_state == kTcpClose && info.tcpi_segs_in > 0;
}

bool listening(int fd) {
    int value = 0;
    socklen_t length = sizeof(value);
    return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) == 0 && value != 0;
}

// Empty: a connected TCP stream socket, or one closed since it was connected; else what it
// is not.
std::string not_tcp(int fd) {
    struct stat status {};
    if (fd < 0 || ::fstat(fd, &status) != 0 || !S_ISSOCK(status.st_mode)) {
        return "not a socket";
    }
    int value = 0;
    socklen_t length = sizeof(value);
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &length) != 0 || value != SOCK_STREAM) {
        return "not a stream socket";
    }
    length = sizeof(value);
    if (::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &value, &length) != 0 ||
        value != IPPROTO_TCP) {
        return "not a TCP socket";
    }
    if (listening(fd)) {
        return "a listening socket";
    }
    sockaddr_storage peer{};
    socklen_t peer_length = sizeof(peer);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0 &&
        !closed_since_connected(fd)) {
        return "not connected";
    }
    return {};
}

// Empty: the read and write ends of one pipe holding `in_pipe` bytes; else what is wrong.
std::string not_pipe(int read_end, int write_end, std::uint32_t in_pipe) {
    struct stat read_status {};
    struct stat write_status {};
    if (read_end < 0 || write_end < 0 || ::fstat(read_end, &read_status) != 0 ||
        ::fstat(write_end, &write_status) != 0 || !S_ISFIFO(read_status.st_mode) ||
        !S_ISFIFO(write_status.st_mode)) {
        return "not a pipe";
    }
    if (read_status.st_ino != write_status.st_ino || read_status.st_dev != write_status.st_dev) {
        return "read and write ends of different pipes";
    }
    const int read_mode = ::fcntl(read_end, F_GETFL);
    const int write_mode = ::fcntl(write_end, F_GETFL);
    if (read_mode < 0 || write_mode < 0 || (read_mode & O_ACCMODE) != O_RDONLY ||
        (write_mode & O_ACCMODE) != O_WRONLY) {
        return "pipe ends swapped or opened read-write";
    }
    int queued = 0;
    if (::ioctl(read_end, FIONREAD, &queued) != 0 || queued < 0 ||
        static_cast<std::uint32_t>(queued) != in_pipe) {
        return "pipe holds " + std::to_string(queued) + " bytes, the record says " +
               std::to_string(in_pipe);
    }
    return {};
}

}  // namespace

Result<void> check_fds(const std::vector<ConnectionRecord>& records,
                       const std::vector<UniqueFd>& fds) {
    for (std::size_t i = 0; i < records.size(); ++i) {
        const ConnectionRecord& record = records[i];
        if (auto wrong = not_tcp(fd_at(fds, record.client)); !wrong.empty()) {
            return refused(i, "client fd: " + wrong);
        }
        if (auto wrong = not_tcp(fd_at(fds, record.backend)); !wrong.empty()) {
            return refused(i, "backend fd: " + wrong);
        }
        for (std::size_t d = 0; d < 2; ++d) {
            const DirectionRecord& direction = record.directions[d];
            if (direction.pipe_read == kNoFd && direction.pipe_write == kNoFd) {
                continue;
            }
            if (auto wrong = not_pipe(fd_at(fds, direction.pipe_read),
                                      fd_at(fds, direction.pipe_write), direction.in_pipe);
                !wrong.empty()) {
                return refused(i, "direction " + std::to_string(d) + " pipe: " + wrong);
            }
        }
    }
    return {};
}

}  // namespace splicer::handoff
