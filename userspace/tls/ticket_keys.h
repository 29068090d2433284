#pragma once
// Session ticket keys held in memory only and rotated: a ticket is sealed with the current
// key; the key before it still opens tickets for one more interval (and the client gets a
// fresh ticket then); older tickets are unknown and the client does a full handshake.
// Nothing is written to disk, so a restart invalidates every ticket (what nginx does without
// ssl_session_ticket_key, and why Mozilla's guideline turns nginx's tickets off: nginx never
// rotates its in-memory key, which this class does).
//
// The clock is injected so tests can step it (tests/unit/test_tls_server.cpp).
//
// One ServerContext, and so one TicketKeys, serves the handshakes of every worker's loop at
// once (OpenSSL calls the ticket callback on the handshaking thread): a mutex guards the
// keys. It is held for a clock read and a 80-byte copy per ticket sealed or opened, so the
// workers barely meet on it; without it two workers could make the first key or rotate at
// the same moment and seal tickets with a key that was then overwritten.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>

namespace splicer::tls {

using Clock = std::function<std::chrono::steady_clock::time_point()>;

struct TicketKey {
    // Sent in clear in each ticket (RFC 5077's key_name), to find the key that sealed it.
    std::array<unsigned char, 16> name{};
    std::array<unsigned char, 32> cipher_key{};  // AES-256-CBC
    std::array<unsigned char, 32> mac_key{};     // HMAC-SHA256
};

class TicketKeys {
public:
    // `rotation` > 0. `clock` empty: std::chrono::steady_clock::now.
    TicketKeys(std::chrono::seconds rotation, Clock clock);

    // The key to seal a new ticket with (rotating first when an interval has passed);
    // nullopt when the random generator failed (then no ticket is issued).
    std::optional<TicketKey> sealing_key();

    struct Found {
        TicketKey key;
        bool current = false;  // false: the previous key, so the ticket should be renewed
    };
    // The key named `name`, if it is the current or the previous one.
    std::optional<Found> opening_key(const std::array<unsigned char, 16>& name);

    // How many keys have been made (tests read it to see a rotation happen).
    [[nodiscard]] std::uint64_t generation() const {
        const std::lock_guard lock(mutex_);
        return generation_;
    }

private:
    void rotate_if_due();
    bool make_current();

    mutable std::mutex mutex_;  // guards everything below but the two constants
    std::chrono::seconds rotation_;
    Clock clock_;
    std::chrono::steady_clock::time_point current_since_{};
    std::optional<TicketKey> current_;
    std::optional<TicketKey> previous_;
    std::uint64_t generation_ = 0;
};

}  // namespace splicer::tls
