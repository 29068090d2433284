#pragma once
// Small blocking-socket helpers for tests on loopback (port 0, so tests never collide).

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "splicer/unique_fd.h"

namespace splicer::test {

// A listening TCP socket on 127.0.0.1 (or ::1) with a kernel-chosen port.
struct Listener {
    UniqueFd fd;
    std::uint16_t port = 0;
};
Listener listen_loopback(bool ipv6 = false);

UniqueFd connect_loopback(std::uint16_t port, bool ipv6 = false);
UniqueFd accept_one(const Listener& listener);

// A connected pair over real TCP: {client end, server end}.
std::pair<UniqueFd, UniqueFd> tcp_pair();

void write_all(int fd, const void* data, std::size_t size);
void write_all(int fd, const std::string& data);
// Reads exactly `size` bytes, or fewer if EOF or `timeout_ms` passes first.
std::string read_exactly(int fd, std::size_t size, int timeout_ms = 5000);

}  // namespace splicer::test
