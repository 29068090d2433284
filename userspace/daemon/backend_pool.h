#pragma once
// The event loop's idle HTTP backend connections (port 80 and terminated TLS), kept for the
// next request to the same backend, as nginx's upstream `keepalive N` and HAProxy's
// `http-reuse safe` keep theirs. One pool per event loop (a loop's exchanges run on its
// thread only).
//
// - Keyed by backend: its address, and for an https:// backend the TLS client context and
//   the name (SNI) the session was made for; the session stays with its connection.
// - Sized by the load, as HAProxy's idle pool (pool-purge-delay) is: a connection handed back
//   is kept, however many are idle, and every kTrimPeriod expire() calls (5 s, HAProxy's
//   default pool-purge-delay) half of those that sat untouched for the whole period past
//   the backend's floor (the section's keepalive_connections) are closed, so an idle list
//   shrinks to the floor within half a minute of the load going (1,000 to 32 in 25 s). Bounded in all (kMaxIdle: a flood of distinct backends cannot hold
//   more fds than that; the oldest of the longest list goes). A fixed bound per backend was
//   wrong under load: with 1,000 clients' requests in flight and 32 kept, every other
//   request closed one backend connection and opened another (wrk -c1000: 9,567 closed for
//   18,207 requests, each a connect, an accept at the backend and a TIME_WAIT here, up to
//   28,000 of them, as many as the local ports), though the backend held as many busy at
//   once anyway: keeping those the load used holds no more than it just had open.
// - Each idle connection is watched: a poll for input through io_uring (Owner::pool, the tag
//   naming the entry). An idle HTTP/1.1 connection has nothing to say, so readable means the
//   backend closed it (FIN, RST, a TLS close_notify) or broke the protocol: it is closed at
//   once, before a request could be sent on it.
// - The watch is armed by expire() (below), not by put(): under load an idle connection is
//   taken again within microseconds (most often by the same client's next request), and a
//   poll armed at put() and removed at take() was two SQEs and two CQEs per proxied request,
//   for nothing. take() can check a connection first (one non-blocking peek, a syscall),
//   for a request that must not be sent twice: it then never goes on a connection whose FIN
//   (or anything else) has already come. Watched or not: a watch armed by expire() is only
//   queued until the loop's next submit, and its answer to a FIN that came before can reach
//   the loop after the request that takes the connection (measured: a POST 300 ms after the
//   backend's FIN got 502 "backend closed" when expire() armed the watch just before it).
//   Without the check an idempotent request without a body goes at once; if the backend had
//   closed the connection, the exchange sends it again on a new one (http_request.cpp,
//   retry_on_new_connection).
// - An entry idle for longer than its keepalive_timeout is closed by expire(), which the
//   loop calls about once a second.
// Taking an entry cancels its poll, if armed; the cancelled poll's completion names a
// generation no longer in use and is dropped, like a stale connection completion.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "net/address.h"
#include "splicer/unique_fd.h"
#include "tls/session.h"
#include "uring/ring.h"

namespace splicer::daemon {

// What identifies one backend's interchangeable connections. Compared and hashed as it is
// (no text form made per request: a take and a put per proxied request look it up).
struct BackendKey {
    net::SocketAddress address;
    // The https:// route's client context; plain: nullptr. Its address only tells contexts
    // apart: a reload's new one (new CA file, verify setting) never takes a session verified
    // under the old one.
    const void* tls_context = nullptr;
    std::string tls_name;  // the session's SNI and verified name

    bool operator==(const BackendKey& other) const;
};

struct BackendKeyHash {
    std::size_t operator()(const BackendKey& key) const;
};

// A connection at rest: the socket and, for an https:// backend, its established session.
struct IdleBackend {
    UniqueFd socket;
    std::optional<tls::Session> session;
    std::shared_ptr<const void> context_owner;  // keeps the session's context alive
};

// The pool's io_uring operations (uring::Owner::pool).
enum class PoolOp : std::uint8_t {
    watch,   // poll for input on an idle connection
    cancel,  // the removal of a watch; nothing to act on
};

class BackendPool {
public:
    // At most this many idle connections per loop, whatever the config says.
    static constexpr std::size_t kMaxIdle = 1024;
    // expire() calls (about seconds) between trims of the connections the load left unused:
    // long enough that a slow round of requests (a loaded machine, a sanitizer build) does
    // not count as unused what it is about to take again.
    static constexpr std::uint32_t kTrimPeriod = 5;

    struct Counts {
        // closed while idle (backend went away, timeout, unused past the floor, full)
        std::uint64_t idle_closed = 0;
    };

    explicit BackendPool(uring::Ring& ring) : ring_(ring) {}
    BackendPool(const BackendPool&) = delete;
    BackendPool& operator=(const BackendPool&) = delete;
    ~BackendPool();

    // The most recently returned idle connection to `key`'s backend, or nothing. With
    // `check_first`, it is first checked to have nothing to read (no FIN, no stray bytes);
    // one that fails the check is closed and the next tried.
    std::optional<IdleBackend> take(const BackendKey& key, bool check_first);
    // Keeps `backend` idle for up to `timeout`; `per_backend` is the fewest of `key`'s idle
    // connections expire() keeps when they go unused (0: the connection is closed at once,
    // no reuse).
    void put(const BackendKey& key, IdleBackend backend, std::size_t per_backend,
             std::chrono::steady_clock::duration timeout);
    // A completion tagged Owner::pool.
    void on_completion(PoolOp op, std::uint32_t slot, std::uint16_t generation, int result);
    // Closes what has been idle past its timeout and, every kTrimPeriod calls, half of each
    // backend's connections past its floor that went untouched for that period (the loop
    // calls it about once a second), and arms the watch of every other idle connection that
    // has none yet.
    void expire(std::chrono::steady_clock::time_point now);
    // Closes every idle connection (a stop).
    void clear();

    [[nodiscard]] std::size_t idle() const { return idle_; }
    [[nodiscard]] const Counts& counts() const { return counts_; }

private:
    struct Entry {
        bool in_use = false;
        bool watched = false;  // its poll is armed (by expire())
        std::uint16_t generation = 0;
        BackendKey key;
        IdleBackend backend;
        std::chrono::steady_clock::time_point expires{};
    };

    // One backend's idle connections.
    struct IdleList {
        std::vector<std::uint32_t> slots;  // oldest first (taken from the back)
        // The fewest the list held since the last trim: its first `least` slots were not
        // taken in that time, so the load did not need them.
        std::size_t least = 0;
        std::size_t floor = 0;  // keepalive_connections, as the last put() gave it
    };

    // Closes half (rounded up) of the connections of `list` that went unused since the last
    // trim, the oldest first, keeping at least its floor.
    void trim_unused(IdleList& list);
    void watch(std::uint32_t slot);
    // Ends entry `slot`: cancels its watch, closes its socket (unless it was taken) and frees
    // the slot.
    void release(std::uint32_t slot, bool close_socket);
    void unlist(const BackendKey& key, std::uint32_t slot);

    uring::Ring& ring_;
    std::vector<Entry> entries_;
    std::vector<std::uint32_t> free_;
    // Per backend key: its idle entries.
    std::unordered_map<BackendKey, IdleList, BackendKeyHash> lists_;
    std::size_t idle_ = 0;
    std::uint32_t expires_since_trim_ = 0;
    Counts counts_;
};

}  // namespace splicer::daemon
