#include "support/tls_relay_loop.h"

#include <sys/socket.h>

#include <stdexcept>
#include <string_view>
#include <utility>

#include "uring/tag.h"

namespace splicer::test {

using daemon::State;
using uring::Owner;
using uring::Tag;

TlsRelayLoop::TlsRelayLoop(UniqueFd client, UniqueFd backend, daemon::TlsRelayStart start,
                           std::chrono::milliseconds limit)
    : limit_(limit) {
    connection_.slot = 0;
    connection_.generation = 1;
    connection_.id = 1;
    connection_.in_use = true;
    connection_.state = State::proxying;
    connection_.client = std::move(client);
    connection_.backend = std::move(backend);
    // The ring is made in the loop's thread, the one that submits to it.
    thread_ = std::thread([this, start = std::move(start)]() mutable { run(std::move(start)); });
}

TlsRelayLoop::~TlsRelayLoop() {
    if (thread_.joinable()) {
        thread_.join();
    }
}

TlsRelayOutcome TlsRelayLoop::wait() {
    if (thread_.joinable()) {
        thread_.join();
    }
    return outcome_;
}

void TlsRelayLoop::run(daemon::TlsRelayStart start) {
    if (auto made = uring::Ring::init(ring_, 64); !made) {
        outcome_.end = "ring: " + made.error().message;
        closed_ = true;
        return;
    }
    connection_.accepted_at = std::chrono::steady_clock::now();
    const auto deadline = connection_.accepted_at + limit_;
    // After the limit the loop closes the connection itself; the operations then end at once
    // (their sockets are shut down), so a little more is plenty.
    const auto last_chance = deadline + std::chrono::seconds(5);

    ++connection_.handler_epoch;
    auto relay = std::make_unique<daemon::TlsRelay>(connection_, *this, std::move(start));
    relay_ = relay.get();
    connection_.handler = std::move(relay);
    connection_.handler->start();

    while (std::chrono::steady_clock::now() < last_chance) {
        ring_.submit_and_wait(50);
        ring_.drain([this](const uring::Completion& completion) { dispatch(completion); });
        const std::size_t buffered = relay_->buffered_bytes();
        if (buffered > peak_buffered_.load()) {
            peak_buffered_ = buffered;
        }
        if (connection_.state == State::closing && connection_.outstanding == 0) {
            connection_.handler->teardown();
            outcome_.finished = true;
            break;
        }
        if (connection_.state != State::closing && std::chrono::steady_clock::now() > deadline) {
            close_connection(connection_, "test_limit");
        }
    }
    outcome_.bytes = {connection_.handler->bytes(daemon::kClientToBackend),
                      connection_.handler->bytes(daemon::kBackendToClient)};
    outcome_.peak_buffered = peak_buffered_.load();
    closed_ = true;
}

void TlsRelayLoop::dispatch(const uring::Completion& completion) {
    const Tag tag = Tag::decode(completion.user_data);
    if (tag.slot != connection_.slot || tag.generation != connection_.generation) {
        throw std::logic_error("a completion for another connection");
    }
    --connection_.outstanding;
    if (tag.owner == Owner::handler && tag.of_handler_epoch(connection_.handler_epoch)) {
        connection_.handler->on_completion(tag.handler_op(), tag.arg, completion.res,
                                           completion.flags);
    }
}

io_uring_sqe* TlsRelayLoop::sqe_for(daemon::Connection& connection, daemon::TlsRelayOp op,
                                    std::uint8_t arg) {
    io_uring_sqe* sqe = ring_.sqe();
    sqe->user_data =
        Tag::of_handler(op, arg, connection.handler_epoch, connection.generation, connection.slot)
            .encode();
    ++connection.outstanding;
    return sqe;
}

void TlsRelayLoop::close_connection(daemon::Connection& connection, std::string_view reason) {
    if (connection.state == State::closing) {
        return;
    }
    connection.state = State::closing;
    connection.end = std::string(reason);
    outcome_.end = connection.end;
    outcome_.duration = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - connection.accepted_at);
    for (const UniqueFd* fd : {&connection.client, &connection.backend}) {
        if (fd->valid()) {
            ::shutdown(fd->get(), SHUT_RDWR);
        }
    }
    connection.handler->on_closing(*this);
}

void TlsRelayLoop::remove_handler_timeout(daemon::Connection& connection, std::uint8_t op) {
    const Tag target =
        Tag::of_handler(op, 0, connection.handler_epoch, connection.generation, connection.slot);
    io_uring_sqe* sqe = ring_.sqe();
    io_uring_prep_timeout_remove(sqe, target.encode(), 0);
    sqe->user_data = Tag::of(Owner::connection, daemon::ConnectionOp::cancel, 0,
                             connection.generation, connection.slot)
                         .encode();
    ++connection.outstanding;
}

}  // namespace splicer::test
