#pragma once
// Byte streams for integration tests: a seeded, deterministic pseudo-random generator, a
// streaming SHA-256, and poll-based movers that push and pull bytes on non-blocking sockets
// with a deadline, counting and hashing everything, so "byte-exact" becomes comparing two
// hashes and two counts; and bounded senders / rate-limited readers for flow-control tests.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "splicer/unique_fd.h"
#include "support/sockets.h"  // set_nonblocking, close_with_reset

namespace splicer::test {

using Clock = std::chrono::steady_clock;

// xorshift64* stream: the same seed always yields the same bytes, however the output is cut
// into chunks. Not cryptographic; fast enough (several GB/s) to feed 256 MiB transfers.
class ByteGenerator {
public:
    explicit ByteGenerator(std::uint64_t seed);
    void fill(std::span<std::byte> out);
    void fill(char* out, std::size_t size);
    std::string take(std::size_t size);

private:
    std::uint64_t next_word();
    std::uint64_t state_;
    std::uint64_t pending_ = 0;  // leftover bytes of the last word, low byte first
    unsigned pending_count_ = 0;
};

// Streaming SHA-256 through OpenSSL's EVP; hex() finishes and can be called once.
class Sha256Hasher {
public:
    Sha256Hasher();
    ~Sha256Hasher();
    Sha256Hasher(const Sha256Hasher&) = delete;
    Sha256Hasher& operator=(const Sha256Hasher&) = delete;
    Sha256Hasher(Sha256Hasher&& other) noexcept;
    Sha256Hasher& operator=(Sha256Hasher&& other) noexcept;

    void update(const void* data, std::size_t size);
    void update(std::string_view data) { update(data.data(), data.size()); }
    std::string hex();  // lowercase hex digest

private:
    struct State;
    std::unique_ptr<State> state_;
};

std::string sha256_hex(std::string_view data);
// SHA-256 of `prefix` followed by `count` bytes of ByteGenerator(seed).
std::string sha256_of_generated(std::string_view prefix, std::uint64_t seed, std::uint64_t count);

inline constexpr std::uint64_t kUntilEof = std::numeric_limits<std::uint64_t>::max();

// What one side of a connection sends: a literal prefix (a ClientHello, an XMPP header),
// then `generated` bytes from ByteGenerator(seed).
struct Outgoing {
    std::string prefix;
    std::uint64_t generated = 0;
    std::uint64_t seed = 1;
    [[nodiscard]] std::uint64_t total() const { return prefix.size() + generated; }
};

// Bytes [from, from + count) of what `outgoing` sends, cut short at its end.
std::string expected_bytes(const Outgoing& outgoing, std::uint64_t from, std::uint64_t count);

enum class AfterSend {
    nothing,         // leave the write side open
    shutdown_write,  // shutdown(SHUT_WR): the peer sees EOF, we can still read
};

struct TransferOptions {
    Outgoing send;
    // Bytes the caller already wrote on this socket itself (e.g. a ClientHello sent right after
    // connect so the probe sees it in time): counted and hashed first, not sent again.
    std::string sent_before;
    // Stop reading after this many bytes; kUntilEof: read until the peer's FIN.
    std::uint64_t expect = kUntilEof;
    AfterSend after_send = AfterSend::shutdown_write;
    std::chrono::milliseconds timeout{30000};
    std::size_t keep_received = 256;  // first bytes received kept verbatim
    // Live counters for samplers in other threads (optional; relaxed increments).
    std::atomic<std::uint64_t>* live_sent = nullptr;
    std::atomic<std::uint64_t>* live_received = nullptr;
    // What the peer is expected to send, compared byte by byte as it arrives (optional): a
    // failed transfer then says where the stream went wrong (a hole, a duplicate, a
    // truncation), not only that two hashes differ.
    const Outgoing* verify = nullptr;
};

struct TransferResult {
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    std::string sent_sha256;      // of everything sent
    std::string received_sha256;  // of everything received
    std::string received_head;    // first keep_received bytes
    bool eof = false;             // the peer's FIN was read
    bool reset = false;           // ECONNRESET / EPIPE seen
    bool timed_out = false;
    std::string error;  // any other socket error
    std::chrono::milliseconds elapsed{0};
    // With options.verify: offset of the first byte received that differs from it, or max()
    // if none (a stream that is only short has none: compare `received`).
    std::uint64_t first_mismatch = std::numeric_limits<std::uint64_t>::max();
    // Where the bytes received at first_mismatch appear in the expected stream, searched
    // within a window after and before it (max() if not found): later means a hole of
    // (found_at - first_mismatch) bytes, earlier a duplicate.
    std::uint64_t mismatch_found_at = std::numeric_limits<std::uint64_t>::max();

    // Sent everything, read what was expected (and the FIN when reading until EOF), no error.
    [[nodiscard]] bool complete(const TransferOptions& options) const;
};

// Sends options.send while concurrently reading, on one thread with poll(); makes `fd`
// non-blocking. Stops when both directions are done, on error, or at the timeout.
TransferResult transfer_both_ways(int fd, const TransferOptions& options);

// The same for many sockets at once (one thread, one poll set): results[i] belongs to fds[i].
std::vector<TransferResult> transfer_many(const std::vector<int>& fds,
                                          const std::vector<TransferOptions>& options,
                                          std::chrono::milliseconds timeout);

// Sends `prefix` then generated bytes as fast as the socket takes them for `duration`, then
// (after_send) shuts down the write side. Reads and discards nothing: the peer only reads.
struct SourceOptions {
    std::string prefix;
    std::uint64_t seed = 1;
    std::chrono::milliseconds duration{10000};
    AfterSend after_send = AfterSend::shutdown_write;
    std::atomic<std::uint64_t>* live_sent = nullptr;
};
struct SourceResult {
    std::uint64_t sent = 0;
    std::string sent_sha256;
    bool reset = false;
    std::string error;
};
SourceResult source_for(int fd, const SourceOptions& options);

// Reads at most `rate` bytes per second for `slow_for`, then as fast as possible until EOF
// (or `timeout` from the start). Hashes everything read.
struct SinkOptions {
    std::uint64_t rate_bytes_per_second = 64 * 1024;
    std::chrono::milliseconds slow_for{10000};
    std::chrono::milliseconds timeout{60000};
    std::size_t keep_received = 256;
    std::atomic<std::uint64_t>* live_received = nullptr;
};
struct SinkResult {
    std::uint64_t received = 0;
    std::uint64_t received_while_slow = 0;
    std::string received_sha256;
    std::string received_head;
    bool eof = false;
    bool reset = false;
    bool timed_out = false;
    std::string error;
};
SinkResult sink_slowly(int fd, const SinkOptions& options);

// --- Bounded movers with progress counters (flow-control tests) -----------------------------
// A sender and a reader bounded in bytes and time, with progress counters another thread can
// sample, a stop flag for the sender, and a reader whose rate can be changed while it runs.
// The bytes are ByteGenerator(seed)'s, so sha256_of_generated("", seed, n) is the hash of n.

struct SendOptions {
    std::uint64_t max_bytes = std::numeric_limits<std::uint64_t>::max();
    std::chrono::milliseconds max_time{10'000};
    std::uint64_t seed = 1;
    bool shutdown_after = false;                     // shutdown(SHUT_WR) once done
    bool close_after = false;                        // close the fd once done (takes precedence)
    std::atomic<std::uint64_t>* progress = nullptr;  // bytes sent so far
    const std::atomic<bool>* stop = nullptr;         // stop early when set
    // false: for throughput only; one chunk of the stream is sent again and again, unhashed,
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

}  // namespace splicer::test
