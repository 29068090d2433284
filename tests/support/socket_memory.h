#pragma once
// Kernel memory held by TCP sockets, per socket, as `ss -m` reports it (sock_diag's
// SK_MEMINFO): what a forwarder's sockets keep queued for a peer that does not read.
// /proc/net/sockstat's TCP `mem` is machine-wide (every network namespace and every other
// test counts), so tests sum the sockets they own instead.

#include <cstdint>
#include <string>

namespace splicer::test {

struct SocketMemory {
    int sockets = 0;
    std::uint64_t receive_queued = 0;  // skmem r: receive queue (truesize)
    std::uint64_t send_queued = 0;     // skmem w: write and retransmit queues (truesize)
    std::uint64_t reserved = 0;        // skmem f: forward allocation, charged to tcp_mem too
    std::uint64_t largest_send_buffer = 0;  // skmem tb: the largest sk_sndbuf among them

    [[nodiscard]] std::uint64_t total() const { return receive_queued + send_queued + reserved; }
};

// Sums the skmem of the established TCP sockets (this network namespace) that match an ss
// filter expression such as "( sport = :4430 or dport = :5222 )". Throws when ss fails.
SocketMemory socket_memory(const std::string& ss_filter);

}  // namespace splicer::test
