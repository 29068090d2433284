#pragma once
// Streams of pseudo-random bytes for data-plane tests: a sender and a reader that hash what
// they move (SHA-256), bounded in bytes and time, with progress counters another thread can
// sample, and a reader whose rate can be changed while it runs.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>

namespace splicer::test {

class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    void update(const void* data, std::size_t size);
    std::string hex_digest();  // finishes the hash

private:
    struct Context;
    std::unique_ptr<Context> context_;
};

struct SendOptions {
    std::uint64_t max_bytes = std::numeric_limits<std::uint64_t>::max();
    std::chrono::milliseconds max_time{10'000};
    std::uint64_t seed = 1;
    bool shutdown_after = false;                     // shutdown(SHUT_WR) once done
    bool close_after = false;                        // close the fd once done (takes precedence)
    std::atomic<std::uint64_t>* progress = nullptr;  // bytes sent so far
    const std::atomic<bool>* stop = nullptr;         // stop early when set
    // false: for throughput only; one chunk of the pattern is sent again and again, unhashed,
    // so the sender's CPU goes to the kernel and not to making and hashing bytes.
    bool hash = true;
};

struct SendReport {
    std::uint64_t bytes = 0;
    std::string sha256;
    double seconds = 0;
    std::string error;  // empty unless a send failed
};

// Sends as fast as the socket takes bytes (non-blocking, poll for POLLOUT) until max_bytes or
// max_time. With close_after the fd is closed here (the caller must not close it again).
SendReport send_stream(int fd, const SendOptions& options);

struct ReadOptions {
    std::uint64_t max_bytes = std::numeric_limits<std::uint64_t>::max();
    std::chrono::milliseconds max_time{10'000};
    // Bytes per second, 0 for as fast as possible; may change while reading.
    const std::atomic<std::uint64_t>* rate = nullptr;
    std::size_t chunk = 256 * 1024;
    std::atomic<std::uint64_t>* progress = nullptr;
    bool hash = true;  // false: count bytes only (throughput runs)
    // With hash false: the sender's seed, to compare every byte (memcmp, cheap) against the
    // one chunk an unhashed send_stream() repeats. 0: no check.
    std::uint64_t expect_repeating_seed = 0;
};

struct ReadReport {
    std::uint64_t bytes = 0;
    std::string sha256;
    bool eof = false;
    double seconds = 0;  // from start to the last byte (or EOF)
    std::string error;
    // expect_repeating_seed: offset of the first byte that differs, or max() if none.
    std::uint64_t first_mismatch = std::numeric_limits<std::uint64_t>::max();
};

// Reads until EOF, max_bytes or max_time.
ReadReport read_stream(int fd, const ReadOptions& options);

// SHA-256 of the first `bytes` bytes of the stream send_stream() makes from `seed`.
std::string stream_sha256(std::uint64_t seed, std::uint64_t bytes);

// MemAvailable from /proc/meminfo, in bytes.
std::uint64_t mem_available_bytes();

}  // namespace splicer::test
