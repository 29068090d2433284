#pragma once
// Traffic through one spliced loopback pair, for a self-test step: the far ends (client and
// server) write their streams and read what arrives, the relay does the daemon's part, all
// non-blocking in one thread, until a condition holds or the step's deadline passes. The
// deadline is what turns a kernel that loses a wake-up or a byte into a failed step instead
// of a hung start.

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "selftest/loopback_pair.h"
#include "selftest/relay.h"

namespace splicer::selftest {

using Clock = std::chrono::steady_clock;

// One far end's stream toward the other end, and what arrived from it there.
struct Stream {
    std::vector<std::byte> to_send;
    std::size_t written = 0;
    bool shut_after = false;  // shutdown(SHUT_WR) once everything is written
    bool shut = false;
    std::vector<std::byte> received;
    bool eof_received = false;
};

class Exchange {
public:
    // Does not own the sockets or the relay; `relay` may be null (nothing paired yet).
    Exchange(const LoopbackPair& pair, Relay* relay) : pair_(pair), relay_(relay) {}

    void set_relay(Relay* relay) { relay_ = relay; }
    // client -> server, and server -> client.
    Stream upstream;
    Stream downstream;
    // While false, the server reads nothing (a sink that stopped reading).
    bool server_reads = true;

    // Runs rounds until `done()` holds (ok), or the deadline passes or something fails
    // (the error says which and what had arrived by then).
    Result<void> run_until(const std::function<bool()>& done, Clock::time_point deadline);

    // "upstream 1234 of 4096 bytes, downstream ..." for error details.
    [[nodiscard]] std::string progress() const;

private:
    Result<bool> round();

    const LoopbackPair& pair_;
    Relay* relay_;
};

// Whether `stream` arrived whole and exact; else what differs ("byte 517 differs", "1000 of
// 4096 bytes").
Result<void> check_arrived(const Stream& stream, const char* name);

// `size` pattern bytes (fill_pattern) seeded by `seed`.
std::vector<std::byte> pattern_bytes(std::size_t size, std::uint32_t seed);

}  // namespace splicer::selftest
