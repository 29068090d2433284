#include "upgrade/fd_passing.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace splicer::upgrade {

Result<void> send_record(int socket, std::string_view bytes, std::span<const int> fds) {
    if (fds.size() > kMaxFdsPerRecord) {
        return Error{"more than " + std::to_string(kMaxFdsPerRecord) + " fds in one record"};
    }
    iovec part{.iov_base = const_cast<char*>(bytes.data()), .iov_len = bytes.size()};
    msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
        message.msg_control = control.data();
        message.msg_controllen = control.size();
        cmsghdr* header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
    }
    while (true) {
        const ssize_t sent = ::sendmsg(socket, &message, MSG_NOSIGNAL);
        if (sent >= 0) {
            return {};
        }
        if (errno != EINTR) {
            return errno_error("sendmsg");
        }
    }
}

Result<Record> receive_record(int socket, std::size_t max_bytes, std::size_t max_fds) {
    if (max_fds > kMaxFdsPerRecord) {
        max_fds = kMaxFdsPerRecord;
    }
    Record record;
    // One byte more than allowed: a record that fills it is too long (MSG_TRUNC says so too).
    record.bytes.resize(max_bytes + 1);
    iovec part{.iov_base = record.bytes.data(), .iov_len = record.bytes.size()};
    // Room for the kernel's maximum, so that extra fds arrive (and are closed here) rather
    // than being dropped with MSG_CTRUNC unseen.
    std::vector<char> control(CMSG_SPACE(sizeof(int) * kMaxFdsPerRecord));
    msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    ssize_t got = -1;
    do {
        got = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    if (got < 0 && errno == ECONNRESET) {
        // The peer closed with our record unread in its queue (a unix seqpacket socket says
        // so): it is gone all the same.
        return Error{"closed"};
    }
    if (got < 0) {
        return errno_error(errno == EAGAIN || errno == EWOULDBLOCK ? "timed out waiting"
                                                                   : "recvmsg");
    }
    // Own every fd that arrived before looking at anything else.
    for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
         header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS ||
            header->cmsg_len < CMSG_LEN(0)) {
            continue;
        }
        const std::size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd = -1;
            std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
            record.fds.emplace_back(fd);
        }
    }
    if (got == 0 && record.fds.empty()) {
        return Error{"closed"};
    }
    if ((message.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
        static_cast<std::size_t>(got) > max_bytes) {
        return Error{"a record above " + std::to_string(max_bytes) + " bytes or cut short"};
    }
    if (record.fds.size() > max_fds) {
        return Error{"a record with " + std::to_string(record.fds.size()) + " fds (at most " +
                     std::to_string(max_fds) + ")"};
    }
    record.bytes.resize(static_cast<std::size_t>(got));
    return record;
}

}  // namespace splicer::upgrade
