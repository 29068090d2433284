#pragma once
// The BIO between a tls::Session's SSL and the io_uring handler: two queues of ciphertext,
// one each way, that hold memory only while bytes wait in them. OpenSSL's BIO pair, used
// before, allocates both of its ring buffers (16 KiB each) when the pair is made and keeps
// them for the connection's life: 32 KiB per idle terminated connection, the largest part of
// what one cost (README, TLS termination). Here an idle connection's
// queues are empty and hold no buffer, as the HTTP exchange's HttpBuffer does.
//
//   handler --ingest--> incoming --BIO read--> SSL --BIO write--> outgoing --send--> socket
//
// Each queue's capacity bounds it: a full queue makes the SSL's write retry (want_output),
// an empty one its read (want_input), so neither grows with a peer that sends or reads
// slowly.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>

#include "tls/openssl_handles.h"

namespace splicer::tls {

// One direction's ciphertext: [start, end) of a buffer of `capacity` bytes, allocated with
// the first byte put and released with the last one consumed.
class CipherQueue {
public:
    // `capacity` is at most kMaxCapacity (a TLS record is 16 KiB and some; the session's
    // queues are 16 KiB each).
    static constexpr std::size_t kMaxCapacity = std::numeric_limits<std::uint32_t>::max();
    explicit CipherQueue(std::size_t capacity)
        : capacity_(static_cast<std::uint32_t>(std::min(capacity, kMaxCapacity))) {}

    // Appends what fits; returns how many bytes were taken (0 when full).
    std::size_t put(std::span<const std::byte> bytes);
    [[nodiscard]] std::span<const std::byte> pending() const {
        return {data_.get() + start_, end_ - start_};
    }
    // Drops the first `bytes` (at most what is pending).
    void consume(std::size_t bytes);
    // Room to receive into directly (a recv's buffer), after what is pending; then filled()
    // says how much arrived (0 allowed: an empty queue gives its buffer back).
    std::span<std::byte> room();
    void filled(std::size_t bytes);
    [[nodiscard]] std::size_t size() const { return end_ - start_; }
    [[nodiscard]] bool empty() const { return start_ == end_; }
    // The writer's last bytes are in: incoming, the peer's FIN was read (Session::ingest_end);
    // outgoing, our close_notify is queued (Session::close_notify). Only recorded.
    void end() { ended_ = true; }
    [[nodiscard]] bool ended() const { return ended_; }
    // Whether a buffer is held now (for the tests: an empty queue holds none).
    [[nodiscard]] bool holds_buffer() const { return data_ != nullptr; }

private:
    // Offsets in 32 bits: every terminated connection keeps both queues (empty) while idle,
    // 24 bytes each this way rather than 32, `ended_` in what was padding.
    std::unique_ptr<std::byte[]> data_;
    std::uint32_t capacity_;
    std::uint32_t start_ = 0;
    std::uint32_t end_ = 0;
    bool ended_ = false;
};

// Movable (a tls::Session holds its channel by value, in the same allocation as whatever
// holds the session): whoever moves it points the BIO at its new place (rebind_channel_bio).
struct CipherChannel {
    explicit CipherChannel(std::size_t capacity) : incoming(capacity), outgoing(capacity) {}
    CipherQueue incoming;  // from the peer, read by the SSL; ended: EOF after what it holds
    CipherQueue outgoing;  // written by the SSL, sent to the peer
};

// A BIO over `channel`, which must outlive it (the BIO only points at it). nullptr when
// OpenSSL cannot allocate it (its error queued).
BioPtr new_channel_bio(CipherChannel& channel);
// Points `bio`, made by new_channel_bio, at `channel`: the channel it was made over moved
// there.
void rebind_channel_bio(BIO* bio, CipherChannel& channel);

}  // namespace splicer::tls
