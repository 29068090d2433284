#pragma once
// What the benchmark helpers share: reading "HOST PORT" and counts from argv, connecting with
// a bound, and moving exact byte counts with a deadline. Failures end the program with a
// message (these are command-line tools: main is their only caller).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

#include "net/address.h"
#include "splicer/unique_fd.h"

namespace splicer::bench {

[[noreturn]] void die(const char* what);

net::SocketAddress endpoint_from_args(const char* host, const char* port);
std::uint64_t number_from_arg(const char* text, const char* name);
// SECONDS with an optional fraction down to milliseconds ("10", "0.3"): the quick bench
// (scripts/bench --quick) runs each workload for a fraction of a second.
std::chrono::milliseconds seconds_from_arg(const char* text, const char* name);

// Thousands of connections need thousands of fds: lift the soft limit to the hard one.
void raise_fd_limit();

// A blocking, connected TCP socket (TCP_NODELAY, from net::stream_socket_for), or an invalid
// fd after timeout_ms.
UniqueFd connect_within(const net::SocketAddress& address, int timeout_ms);

// false on error, EOF or when timeout_ms passes without progress.
bool send_all(int fd, std::span<const std::byte> bytes);
bool receive_exactly(int fd, std::span<std::byte> bytes, int timeout_ms);

}  // namespace splicer::bench
