#pragma once
// A one-connection io_uring loop for tests of daemon::TlsRelay (userspace/daemon/tls_relay.h):
// a real ring, a real Connection record holding the two sockets, tags encoded and decoded as
// the daemon's EventLoop does (uring/tag.h, handler epochs included), close_connection that
// shuts both sockets down and removes the relay's timer as the daemon's does. It runs in a
// thread of its own until the connection is closed and every operation has completed, or a
// time limit passes (then it closes the connection itself, "test_limit").

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "daemon/connection.h"
#include "daemon/tls_relay.h"
#include "splicer/unique_fd.h"
#include "uring/ring.h"

namespace splicer::test {

struct TlsRelayOutcome {
    bool finished = false;  // the connection closed and every operation completed in time
    std::string end;        // the reason it was closed with
    std::array<std::uint64_t, 2> bytes{};  // TlsRelay::bytes(), per direction
    std::size_t peak_buffered = 0;         // the largest TlsRelay::buffered_bytes() seen
    std::chrono::milliseconds duration{};  // from start to the close
};

class TlsRelayLoop final : public daemon::TlsRelayContext, public daemon::HandlerContext {
public:
    // `client` and `backend` become the connection's sockets; the relay starts at once.
    TlsRelayLoop(UniqueFd client, UniqueFd backend, daemon::TlsRelayStart start,
                 std::chrono::milliseconds limit = std::chrono::seconds(30));
    ~TlsRelayLoop();  // waits for the loop's thread
    TlsRelayLoop(const TlsRelayLoop&) = delete;
    TlsRelayLoop& operator=(const TlsRelayLoop&) = delete;

    // Waits for the loop to end (at most its limit and a few seconds more).
    TlsRelayOutcome wait();
    // While it runs: has the connection been closed, and the largest buffered_bytes() so far.
    [[nodiscard]] bool closed() const { return closed_.load(); }
    [[nodiscard]] std::size_t peak_buffered() const { return peak_buffered_.load(); }
    // Plaintext counted through count_relayed(), per direction.
    [[nodiscard]] std::uint64_t counted(std::size_t direction) const {
        return counted_.at(direction).load();
    }

    // daemon::TlsRelayContext
    io_uring_sqe* sqe_for(daemon::Connection& connection, daemon::TlsRelayOp op,
                          std::uint8_t arg) override;
    void close_connection(daemon::Connection& connection, std::string_view reason) override;
    void count_relayed(std::size_t direction, std::uint64_t bytes) override {
        counted_.at(direction) += bytes;
    }
    // daemon::HandlerContext
    void remove_handler_timeout(daemon::Connection& connection, std::uint8_t op) override;

private:
    void run(daemon::TlsRelayStart start);
    void dispatch(const uring::Completion& completion);

    std::chrono::milliseconds limit_;
    daemon::Connection connection_;
    daemon::TlsRelay* relay_ = nullptr;  // connection_.handler
    // Declared after the connection: destroyed first, so no operation outlives its buffers.
    uring::Ring ring_;
    std::atomic<bool> closed_{false};
    std::atomic<std::size_t> peak_buffered_{0};
    std::array<std::atomic<std::uint64_t>, 2> counted_{};
    TlsRelayOutcome outcome_;
    std::thread thread_;
};

}  // namespace splicer::test
