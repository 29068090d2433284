// Why an upgrade's old process takes what waits in its listeners' queues once its accepts
// ended (EventLoop::accept_left_after_handover): io_uring polls accept exclusively, so a
// connection wakes one waiting accept, the oldest; when that accept is cancelled before its
// ring's thread ran the task work the wake-up queued (IORING_SETUP_COOP_TASKRUN: the work
// runs at that thread's next kernel entry or exit), it completes -ECANCELED and the client
// stays queued while another ring's accept on the same socket sleeps on. Real io_uring and
// loopback TCP on this kernel (no privileges needed); and net::accept_waiting, which takes
// such a client without ever waiting.

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <thread>
#include <vector>

#include "daemon/worker_cpus.h"
#include "net/sockets.h"
#include "support/net_address.h"
#include "support/sockets.h"
#include "uring/ring.h"

namespace {

using splicer::UniqueFd;
using splicer::uring::Completion;
using splicer::uring::Ring;

constexpr std::uint64_t kAccept = 1;
constexpr std::uint64_t kCancel = 2;

// Pins this thread to `cpu` while in scope; its former CPUs after (Catch runs the next test
// case on this thread).
class PinnedWhileInScope {
public:
    explicit PinnedWhileInScope(int cpu) {
        CPU_ZERO(&before_);
        saved_ = ::pthread_getaffinity_np(::pthread_self(), sizeof before_, &before_) == 0;
        REQUIRE(saved_);
        REQUIRE(splicer::daemon::pin_this_thread(cpu).has_value());
    }
    PinnedWhileInScope(const PinnedWhileInScope&) = delete;
    PinnedWhileInScope& operator=(const PinnedWhileInScope&) = delete;
    ~PinnedWhileInScope() { ::pthread_setaffinity_np(::pthread_self(), sizeof before_, &before_); }

private:
    cpu_set_t before_{};
    bool saved_ = false;
};

// SCHED_FIFO for this thread while in scope, where allowed (root): no busy task on its CPU
// preempts it between the wake-up and the cancel. Back to the policy it had after.
class RealTimeWhileInScope {
public:
    RealTimeWhileInScope() {
        ::pthread_getschedparam(::pthread_self(), &policy_, &param_);
        const sched_param fifo{.sched_priority = 1};
        raised_ = ::pthread_setschedparam(::pthread_self(), SCHED_FIFO, &fifo) == 0;
    }
    RealTimeWhileInScope(const RealTimeWhileInScope&) = delete;
    RealTimeWhileInScope& operator=(const RealTimeWhileInScope&) = delete;
    ~RealTimeWhileInScope() {
        if (raised_) {
            ::pthread_setschedparam(::pthread_self(), policy_, &param_);
        }
    }

private:
    int policy_ = SCHED_OTHER;
    sched_param param_{};
    bool raised_ = false;
};

void arm_accept(Ring& ring, int listener) {
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_accept(sqe, listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    sqe->user_data = kAccept;
    REQUIRE(ring.submit_and_wait(0) >= 0);  // armed: nothing to accept yet
}

// The results of `ring`'s completions with `user_data` seen within about `wait_ms`.
std::vector<int> results_of(Ring& ring, std::uint64_t user_data, int wait_ms) {
    std::vector<int> results;
    REQUIRE(ring.submit_and_wait(wait_ms) >= 0);
    ring.drain([&](const Completion& cqe) {
        if (cqe.user_data == user_data) {
            results.push_back(cqe.res);
        }
    });
    return results;
}

bool readable(int fd) {
    pollfd watched{.fd = fd, .events = POLLIN, .revents = 0};
    return ::poll(&watched, 1, 0) == 1 && (watched.revents & POLLIN) != 0;
}

}  // namespace

TEST_CASE(
    "a cancelled io_uring accept that a connection woke keeps the client from another "
    "ring's accept, and accept_waiting takes it",
    "[uring][net]") {
    const std::vector<int> cpus = splicer::daemon::allowed_cpus();
    // The client must connect from another CPU while this thread stays in userspace: on one
    // CPU the connect would preempt it, and its way back runs the task work first.
    REQUIRE(cpus.size() >= 2);
    const PinnedWhileInScope pinned(cpus[0]);
    // An interrupt or a preemption between the wake-up and the cancel runs the task work
    // (the accept then takes the client): such a round shows nothing and is tried again. As
    // root (SCHED_FIFO) the first round shows it, even with a busy loop on each CPU; without
    // SCHED_FIFO, 1 round in ~10 with those busy loops.
    bool lost_wakeup = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (int round = 0; round < 500 && !lost_wakeup && std::chrono::steady_clock::now() < deadline;
         ++round) {
        CAPTURE(round);
        auto listener = splicer::net::listen_on(splicer::test::loopback_v4(0), 16);
        REQUIRE(listener.has_value());
        const std::uint16_t port =
            ntohs(splicer::net::local_address(listener->get()).storage.v4.sin_port);
        Ring first;   // the old process's ring: its accept was armed first, so it is woken
        Ring second;  // the new process's
        REQUIRE(Ring::init(first, 8).has_value());
        REQUIRE(Ring::init(second, 8).has_value());
        arm_accept(first, listener->get());
        arm_accept(second, listener->get());

        // The client's thread is running on the other CPU before this one starts waiting,
        // so that the wait (in which no interrupt may come) is as short as the connect.
        std::atomic<bool> started{false};
        std::atomic<bool> go{false};
        std::atomic<bool> connected{false};
        std::atomic<bool> connector_pinned{false};
        UniqueFd client;
        // No Catch assertion on this thread (Catch 2 takes them on the test's thread only).
        std::thread connector([&] {
            connector_pinned = splicer::daemon::pin_this_thread(cpus[1]).has_value();
            const RealTimeWhileInScope raised;
            started.store(true, std::memory_order_release);
            while (!go.load(std::memory_order_acquire)) {
            }
            try {
                client = splicer::test::connect_to(port);
            } catch (const std::exception&) {
                // `client` stays empty: checked once joined
            }
            connected.store(true, std::memory_order_release);
        });
        while (!started.load(std::memory_order_acquire)) {
            std::this_thread::yield();
        }
        std::vector<int> accepted;
        std::vector<int> cancelled;
        {
            const RealTimeWhileInScope raised;  // until the cancel went in
            go.store(true, std::memory_order_release);
            while (!connected.load(std::memory_order_acquire)) {
                // No system call: the woken accept's task work waits for this thread's next.
            }
            io_uring_sqe* cancel = first.sqe();
            io_uring_prep_cancel_fd(cancel, listener->get(), IORING_ASYNC_CANCEL_ALL);
            cancel->user_data = kCancel;
            for (int wait = 0; wait < 20 && (accepted.empty() || cancelled.empty()); ++wait) {
                REQUIRE(first.submit_and_wait(100) >= 0);
                first.drain([&](const Completion& cqe) {
                    (cqe.user_data == kAccept ? accepted : cancelled).push_back(cqe.res);
                });
            }
        }
        connector.join();
        REQUIRE(connector_pinned);
        REQUIRE(client);
        REQUIRE(accepted.size() == 1);
        REQUIRE(cancelled.size() == 1);
        if (accepted.front() >= 0) {
            UniqueFd taken(accepted.front());  // the task work ran first: nothing lost
            continue;
        }
        lost_wakeup = true;
        CHECK(accepted.front() == -ECANCELED);
        CHECK(cancelled.front() == 1);
        // The client is queued, and the second ring's accept was not woken for it.
        CHECK(readable(listener->get()));
        CHECK(results_of(second, kAccept, 300).empty());
        // accept_waiting takes it: the client's own socket, its address as the peer.
        std::optional<splicer::net::AcceptedClient> waiting =
            splicer::net::accept_waiting(listener->get());
        REQUIRE(waiting.has_value());
        CHECK(splicer::test::peer_address(waiting->socket.get()) ==
              splicer::test::local_address(client.get()));
        CHECK(splicer::net::to_string(waiting->peer) == splicer::test::local_address(client.get()));
        CHECK_FALSE(splicer::net::accept_waiting(listener->get()).has_value());
    }
    REQUIRE(lost_wakeup);
}

TEST_CASE("accept_waiting never waits: none from an empty queue, none from a blocking listener",
          "[net]") {
    auto listener = splicer::net::listen_on(splicer::test::loopback_v4(0), 16);
    REQUIRE(listener.has_value());
    CHECK_FALSE(splicer::net::accept_waiting(listener->get()).has_value());
    const std::uint16_t port =
        ntohs(splicer::net::local_address(listener->get()).storage.v4.sin_port);
    UniqueFd client = splicer::test::connect_to(port);
    // A blocking listener (systemd's default) is left alone even with a client queued: an
    // accept there could wait for the next one if another process took this one first.
    splicer::test::set_nonblocking(listener->get(), false);
    CHECK_FALSE(splicer::net::accept_waiting(listener->get()).has_value());
    REQUIRE(splicer::net::set_nonblocking(listener->get()).has_value());
    CHECK(splicer::net::accept_waiting(listener->get()).has_value());
}
