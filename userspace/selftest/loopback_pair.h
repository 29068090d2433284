#pragma once
// Two TCP connections over 127.0.0.1 for the sockmap self-test, laid out as the daemon holds
// them: client -> front (accepted, as a client's connection) and back -> server (connected,
// as a backend connection). front and back are the pair the verdict splices; client and
// server stand for the two far ends. All four are non-blocking once made.

#include <cstddef>
#include <cstdint>

#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::selftest {

struct LoopbackBuffers {
    // 0: the kernel's defaults. Otherwise SO_RCVBUF of the server socket and SO_SNDBUF of
    // back, set before the connection is made: a small sink fills, and flow control passes.
    int server_receive_bytes = 0;
    int back_send_bytes = 0;
};

struct LoopbackPair {
    UniqueFd client;
    UniqueFd front;
    UniqueFd back;
    UniqueFd server;
};

// Both connections established (accept done), or why not.
Result<LoopbackPair> make_loopback_pair(const LoopbackBuffers& buffers = {});

// Bytes queued to read on a socket (FIONREAD).
Result<std::size_t> readable_bytes(int fd);

// A byte pattern with no period a shifted, duplicated or dropped run could match: the
// self-test compares what arrived against it.
void fill_pattern(std::byte* out, std::size_t size, std::uint32_t seed);

}  // namespace splicer::selftest
