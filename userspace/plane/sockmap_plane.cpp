#include "plane/sockmap_plane.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bpf/pins.h"
#include "log/interval_gate.h"
#include "net/sockets.h"
#include "plane/copy_plane.h"
#include "plane/flow_handoff.h"
#include "plane/send_buffer.h"
#include "plane/sink_watch.h"
#include "plane/sockmap_steps.h"
#include "plane/source_error.h"
#include "splicer/flow_accounting.h"
#include "splicer/log.h"
#include "splicer/splice_program.h"

namespace splicer::plane {
namespace {

using Op = PlaneOp;

// Send buffer of a sink whose reader keeps up (plane/send_buffer.h, plane/drain_watch.h).
// Redirecting stops once the peer's send buffer has no room (flow control), so this sets the
// throughput: scripts/bench, one stream each way, 9.2/9.4 Gb/s with 4 MiB, 10.6/10.1 with
// 8 MiB (splice 8.3-8.4 in the same runs), and 0.19 s of daemon CPU per GB instead of 0.45.
// Given to every socket, it let each peer that stops reading hold 16 MiB of kernel memory
// (a 64 KiB/s reader 22-24 MiB in flight): sockets now start with TCP autotuning's buffer
// and a sink gets this one only once its reader has proven fast.
constexpr int kSendBufferBytes = 8 * 1024 * 1024;
// Redirected bytes that may wait for the peer before the verdict passes instead. Above the
// send buffer's room, so the room check binds first and this only guards a peer whose send
// path is stalled: at 4 MiB it tripped ~100 times per bench bulk run (the psock worker runs
// late under load), each trip sending the rest of a transfer through the userspace copy.
constexpr std::uint64_t kFlowLimitBytes = 16 * 1024 * 1024;
// Userspace copy of bytes the verdict passed up (flow control): one buffer per direction,
// this large once the sink's reader has proven fast (DrainWatch::raised)...
constexpr std::size_t kCopyBufferBytes = 256 * 1024;
// ... and this large before: bytes are passed up because the sink is full, so for a reader
// that stops, every byte read here is held by the daemon on top of the socket buffers
// (scripts/bench neverread: 256 KiB of RSS per client with the large buffer from the start).
constexpr std::size_t kFirstCopyBufferBytes = 16 * 1024;
// Buffers one connection copies before the loop turns to the others (2 MiB).
constexpr int kCopyRoundsPerTurn = 8;
// How long an io-wq worker may sleep in a source watch's recv (bound_worker_peek).
constexpr long kWorkerPeekBoundSeconds = 1;

std::string reset_reason(std::size_t socket) {
    return socket == kClientToBackend ? "client_reset" : "backend_reset";
}

// Why a failed call on `socket` ends the pair: ETIMEDOUT is the kernel's TCP_USER_TIMEOUT
// (set in start(): bytes waited stall_timeout for a peer that took none), else a reset.
std::string failure_reason(int error, std::size_t socket) {
    return error == ETIMEDOUT ? std::string(kEndStalled) : reset_reason(socket);
}

class SockmapPlane final : public DataPlane {
public:
    // `counts_kernel`: this plane reports the program's kernel counters (urgent bytes,
    // redirected and passed bytes). They are the program's, shared by every worker's plane,
    // so exactly one plane of the daemon reports them, or the sum would count them N times.
    SockmapPlane(std::shared_ptr<bpf::SpliceProgram> program, int send_buffer_cap,
                 bool counts_kernel)
        : program_(std::move(program)),
          fallback_(make_copy_plane()),
          send_buffer_cap_(send_buffer_cap),
          counts_kernel_(counts_kernel) {}

    [[nodiscard]] std::string_view name() const override { return "sockmap"; }
    [[nodiscard]] std::uint64_t fallbacks() const override { return fallbacks_; }
    [[nodiscard]] std::uint64_t source_wakeups() const override { return source_wakeups_; }
    [[nodiscard]] std::uint64_t empty_wakeups() const override { return empty_wakeups_; }
    [[nodiscard]] std::uint64_t eof_checks() const override { return eof_checks_; }
    // Urgent bytes the verdict dropped, those left out of copies here, and the fallback's.
    [[nodiscard]] std::uint64_t urgent_bytes_dropped() const override {
        std::uint64_t dropped = urgent_removed_ + fallback_->urgent_bytes_dropped();
        if (!counts_kernel_) {
            return dropped;
        }
        if (auto counters = program_->read_counters()) {
            for (const std::uint64_t bytes : counters->urgent_bytes) {
                dropped += bytes;
            }
        }
        return dropped;
    }
    // The kernel's count of what the verdict moved: redirected bytes and passed ones (which
    // the daemon copies, in order, behind them); live, for every pair in the sockhash. Pairs
    // the sockhash refused are the fallback's, counted as copy.
    void count_bytes(DaemonCounters& counters) const override {
        if (!counts_kernel_) {
            fallback_->count_bytes(counters);
            return;
        }
        if (auto kernel = program_->read_counters()) {
            for (std::size_t direction = 0; direction < 2; ++direction) {
                counters.bytes[static_cast<std::size_t>(PlaneLabel::sockmap)][direction] +=
                    kernel->redirected_bytes[direction] + kernel->passed_bytes[direction];
            }
        }
        fallback_->count_bytes(counters);
    }

    void start(Flow& connection, PlaneContext& context) override {
        const int sockets[2] = {connection.client.get(), connection.backend.get()};
        for (std::size_t i = 0; i < 2; ++i) {
            if (connection.plane->baselines_known) {
#ifdef SPLICER_TEST_HOOKS
                if (check_baselines_) {
                    check_known_baseline(connection, i, sockets[i]);
                }
#endif
            } else {
                auto baseline = take_baseline(sockets[i]);
                if (!baseline) {
                    fall_back(connection, context, baseline.error());
                    return;
                }
                connection.plane->baselines[i] = *baseline;
            }
            auto cookie = bpf::socket_cookie(sockets[i]);
            if (!cookie) {
                fall_back(connection, context, cookie.error());
                return;
            }
            connection.plane->cookies[i] = *cookie;
        }
        bpf::PairStage failed_at{};
        if (auto paired = program_->pair({sockets[0], connection.plane->cookies[0]},
                                         {sockets[1], connection.plane->cookies[1]}, &failed_at);
            !paired) {
            if (failed_at == bpf::PairStage::backend_insert) {
                // The client was in the sockhash meanwhile: bytes it received then went
                // through the verdict (its peeked first bytes too) and were purged when it
                // left, so a fallback could relay a stream missing its start (pair()).
                context.abort_connection(connection, "pair_refused");
                return;
            }
            // Nothing entered the sockhash, every byte is still queued: e.g. a client that
            // half-closed right after its ClientHello (the kernel refuses sockets that are
            // not established) goes to the copy plane.
            fall_back(connection, context, paired.error());
            return;
        }
        // Bytes queued before insertion (the peeked ClientHello, anything pipelined behind
        // it, a server's banner) run through the verdict only once woken (kernel fact 1).
        for (const int fd : sockets) {
            if (auto kicked = kick(fd); !kicked) {
                log::warning("kick_failed", {{"conn", std::to_string(connection.id)},
                                             {"error", kicked.error().message}});
            }
        }
        for (std::uint8_t direction = 0; direction < 2; ++direction) {
            arm_source_watch(connection, direction, context);
        }
        set_stall_backstop(sockets, context.stall_timeout());
        bound_worker_peek(sockets);
        brake_backend(connection);
    }

    void on_completion(Flow& connection, const PlaneTag& tag, int result, std::uint32_t flags,
                       PlaneContext& context) override {
        if (connection.plane->plane_fallback) {
            fallback_->on_completion(connection, tag, result, flags, context);
            return;
        }
        if (tag.op == Op::plane_timer) {
            connection.plane->plane_timer_armed = false;
        }
        if (tag.op == Op::plane_poll) {
            connection.plane->directions[tag.arg].poll_armed = false;
        }
        if (tag.op == Op::plane_watch) {
            connection.plane->watch_armed = false;
        }
        if (context.closing(connection)) {
            return;
        }
        if (connection.quiescing) {
            // Nothing to record: no copy round is under way (can_export), and what a source
            // watch saw is seen again by the adopting loop's own watches.
            settle_flags(connection, tag);
            return;
        }
        switch (tag.op) {
            case Op::plane_poll: on_source_event(connection, tag.arg, result, context); break;
            case Op::plane_send: on_copy_sent(connection, tag.arg, result, context); break;
            case Op::plane_timer: recheck(connection, context); break;
            case Op::plane_watch: {
                const std::array<bool, 2> held{holds_bytes(connection.plane->directions[0]),
                                               holds_bytes(connection.plane->directions[1])};
                if (on_watch(connection, context, held)) {
                    look_for_missed_wakeups(connection, context);
                }
                // A copy round waiting for its sink has no poll on its source (on_source_event
                // leaves it unarmed while copying): a reset there went unseen until
                // stall_timeout (plane/source_error.h).
                if (!context.closing(connection)) {
                    watch_held_sources(connection, held, context);
                }
                break;
            }
            case Op::plane_hangup:
                on_source_error(connection, tag.arg, result, context);
                break;
            default: break;
        }
    }

    void on_teardown(Flow& connection) override {
        // An exported pair's sockets are in the sockhash still, with their links: the
        // adopting loop serves them and unpairs them at its teardown.
        if (connection.plane->plane_fallback || connection.exported) {
            return;
        }
        // (A pair that ended in a reset was aborted already: abort_connection sent the RSTs.)
        // Sockets first: once closed they leave the sockhash and no verdict can still be
        // running on a link when its entries go. Nothing is in flight on them (teardown
        // comes once every operation completed), so these closes are the sockets' last.
        connection.client.reset();
        connection.backend.reset();
        // The links read after the close are final; the copied counts are the plane's own
        // (every one it reported with set_copied, or took from the link at adopt).
        const auto redirected =
            program_->unpair_closed(connection.plane->cookies[0], connection.plane->cookies[1]);
        for (std::size_t direction = 0; direction < 2; ++direction) {
            connection.plane->directions[direction].bytes =
                redirected[direction] + connection.plane->directions[direction].copied;
        }
    }

    // handoff (userspace/handoff/README.md): a pair moves between copy rounds, its sockets
    // staying in the sockhash (their fds are passed, never closed, so the kernel keeps their
    // entries and links; the verdict goes on redirecting meanwhile). The state that moves is
    // the flow accounting: each socket's baseline and the passed bytes copied so far.
    [[nodiscard]] std::optional<handoff::PlaneKind> handoff_kind() const override {
        return handoff::PlaneKind::sockmap;
    }

    // Not while a copy of passed bytes is under way (its buffer, the redirects it waits on)
    // nor while an EOF waits for the sink to absorb what came before it (the recheck timer's
    // progress rule), nor a pair the copy plane serves for it: those stay with the old loop,
    // which drains them. Each lasts milliseconds at most while the sink reads.
    [[nodiscard]] bool can_export(const Flow& connection) const override {
        if (connection.plane->plane_fallback) {
            return false;
        }
        for (const Direction& flow : connection.plane->directions) {
            if (flow.copying || flow.sending || flow.taken > 0 || flow.filled > flow.sent ||
                flow.source_eof != flow.sink_shut) {
                return false;
            }
        }
        return true;
    }

    void export_flow(Flow& connection, handoff::ConnectionRecord& record,
                     std::vector<UniqueFd>& fds) override {
        record.plane = handoff::PlaneKind::sockmap;
        export_flow_common(connection, record, fds);
        for (std::size_t d = 0; d < 2; ++d) {
            const Direction& flow = connection.plane->directions[d];
            handoff::DirectionRecord& out = record.directions[d];
            out.buffered.clear();  // between copy rounds: nothing (can_export)
            out.baseline_consumed = connection.plane->baselines[d].consumed;
            out.baseline_written = connection.plane->baselines[d].written;
            out.copied = flow.copied;
            out.urgent_removed = flow.urgent_removed;
        }
    }

    // From another process only onto the maps it pinned (bpf/reused_maps.h).
    [[nodiscard]] std::optional<handoff::PlaneKind> upgrade_kind() const override {
        return program_->reuses_maps() ? handoff_kind() : std::nullopt;
    }
    void took_over() override { program_->took_over(); }
    void upgrade_failed() override { program_->attach_own_verdict(); }

    // The sockets must be a pair of this program's sockhash (their links name each other):
    // a record for sockets that are not is ended, never relayed through a copy. `copied`
    // is taken from the kernel's link, which the verdict acts on, not from the record.
    void adopt(Flow& connection, PlaneContext& context) override {
        const int sockets[2] = {connection.client.get(), connection.backend.get()};
        for (std::size_t i = 0; i < 2; ++i) {
            auto cookie = bpf::socket_cookie(sockets[i]);
            if (!cookie) {
                connection.plane->cookies = {};
                context.abort_connection(connection, "adopt_not_paired");
                return;
            }
            connection.plane->cookies[i] = *cookie;
        }
        for (std::size_t i = 0; i < 2; ++i) {
            auto link = program_->link_state(connection.plane->cookies[i]);
            if (!link || link->peer_cookie != connection.plane->cookies[1 - i] || link->abort) {
                // Not this pair's links: leave the maps alone (unpairing would touch
                // another pair's entries), end the sockets.
                connection.plane->cookies = {};
                context.abort_connection(connection, "adopt_not_paired");
                return;
            }
            Direction& flow = connection.plane->directions[i];
            flow.copied = link->copied;
            flow.urgent_removed = std::min(flow.urgent_removed, flow.copied);
        }
        if (connection.plane->directions[0].sink_shut &&
            connection.plane->directions[1].sink_shut) {
            context.close_connection(connection, "done");
            return;
        }
        for (std::uint8_t direction = 0; direction < 2; ++direction) {
            if (!connection.plane->directions[direction].source_eof) {
                // Passed bytes still owed, an EOF, an error: the watch reports each at once.
                arm_source_watch(connection, direction, context);
            }
        }
    }

private:
    // The daemon owes the sink of this direction bytes: a copy of passed ones, or an EOF
    // waiting for the redirected ones to be absorbed.
    static bool holds_bytes(const Direction& flow) {
        return (flow.copying && flow.filled > 0) || (flow.source_eof && !flow.sink_shut);
    }

    // The watch sees only pairs the daemon woke up for (a flow-control pass, an EOF).
    // Redirected bytes that fit in a sink's send buffer wake nobody: for those the kernel
    // itself ends a socket whose queued bytes nobody takes (TCP_USER_TIMEOUT, which also
    // bounds zero-window probing since Linux 5.x), a little after the watch would have, and
    // the daemon then ends the pair with end=stalled (failure_reason). The peer of that
    // socket gets no RST from it (the kernel drops it silently); the other peer does.
    static void set_stall_backstop(const int (&sockets)[2], std::chrono::seconds stall_timeout) {
        if (stall_timeout.count() == 0) {
            return;
        }
        const auto backstop = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  stall_timeout) +
                              2 * watch_interval(stall_timeout);
        const auto milliseconds = static_cast<unsigned>(backstop.count());
        for (const int fd : sockets) {
            ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &milliseconds, sizeof(milliseconds));
        }
    }

    // The source watch's recv goes to an io-wq worker once the kernel's retries run out
    // (arm_source_watch), and the worker's recv, blocking, sleeps until the source's next
    // wake-up. A source that falls silent just then would hold that kernel thread for as
    // long as it stays silent (an idle XMPP connection: minutes), one per such source.
    // SO_RCVTIMEO bounds the sleep: the worker's recv answers EAGAIN after it, and the poll
    // takes over (on_source_event). Only a blocking recv reads it: the ring's own attempts
    // and every other call the daemon makes on these sockets are non-blocking.
    static void bound_worker_peek(const int (&sockets)[2]) {
        const timeval bound{.tv_sec = kWorkerPeekBoundSeconds, .tv_usec = 0};
        for (const int fd : sockets) {
            ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound));
        }
    }

    // The verdict passed bytes because the sink of `direction` had no room: if its reader
    // keeps up, a larger send buffer lets more go by the kernel redirect (kernel fact 3).
    void sink_full(Flow& connection, std::uint8_t direction) {
        const int sink = connection.sink_fd(direction);
        auto look = look_at_sink(sink, true);
        if (look && connection.plane->directions[direction].drain.full(*look)) {
            grow_send_buffer(sink, kSendBufferBytes, send_buffer_cap_);
            release_brake(connection, direction);
        }
    }

    void fall_back(Flow& connection, PlaneContext& context, const Error& why) {
        ++fallbacks_;
        // Once a second at most, as the limit lines: a flood of half-closing clients (or a
        // kernel refusing every pair) must not become a line per connection.
        if (auto folded = fallback_log_.pass()) {
            log::notice("sockmap_fallback", {{"conn", std::to_string(connection.id)},
                                             {"plane", "copy"},
                                             {"error", why.message},
                                             {"fallbacks", std::to_string(*folded)}});
        }
        connection.plane->plane_fallback = true;
        fallback_->start(connection, context);
    }

    // Watches the source of `direction` for bytes the verdict passed up (flow control), its
    // EOF and its errors: a 1-byte MSG_PEEK recv in the ring. Every skb the verdict
    // redirects wakes the source's waiters too (sk_psock_verdict_data_ready calls the saved
    // sk_data_ready, key EPOLLIN, after the redirect), and a poll takes that key for its
    // answer without looking again (io_uring/poll.c): a poll's CQE, a peek finding nothing
    // and a timer per redirected flight, ~4 per spliced TLS connection. The ring's recv
    // retries on each wake-up inside the kernel and completes only once a byte is readable,
    // at EOF or on an error (docs/sockmap-wakeups.md). After ~128 wake-ups with nothing to
    // read (APOLL_MAX_RETRY) the kernel hands the recv to an io-wq worker, which answers
    // EAGAIN at the next one: that source (a long stream through the redirect) is watched by
    // the poll from then on, its wake-ups paced by the recheck timer as before
    // (on_source_event).
    static void arm_source_watch(Flow& connection, std::uint8_t direction,
                                 PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        if (flow.poll_armed) {
            return;
        }
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_poll, direction);
        if (flow.peek_retired) {
            io_uring_prep_poll_add(sqe, connection.source_fd(direction), POLLIN | POLLRDHUP);
        } else {
            io_uring_prep_recv(sqe, connection.source_fd(direction), &flow.peek_byte, 1,
                               MSG_PEEK);
        }
        flow.poll_armed = true;
    }

    // The recheck timer: for a copy or an EOF waiting for the sink to absorb redirected
    // bytes, and for a poll re-armed later (recheck_interval says how soon).
    static void arm_timer(Flow& connection, PlaneContext& context) {
        PlaneState& plane = *connection.plane;
        if (plane.plane_timer_armed) {
            return;
        }
        const bool idle = may_back_off(plane);
        const std::chrono::nanoseconds interval = recheck_interval(idle, plane.idle_rechecks);
        plane.idle_rechecks =
            idle ? std::min<std::uint8_t>(plane.idle_rechecks + 1, kIdleRecheckDoublings) : 0;
        plane.plane_timer = {
            .tv_sec = std::chrono::duration_cast<std::chrono::seconds>(interval).count(),
            .tv_nsec = (interval % std::chrono::seconds{1}).count()};
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_timer, 0);
        io_uring_prep_timeout(sqe, &connection.plane->plane_timer, 0, 0);
        connection.plane->plane_timer_armed = true;
    }

    // The timer may back off: no copy is under way and no deferred poll watches a source
    // whose sink is busy; only EOFs waiting for their sinks and polls of quiet directions
    // deferred after a wake-up with nothing to read wait on it. A copy could start after
    // the timer is armed; it then waits for the interval already set (16 ms at most), once.
    static bool may_back_off(const PlaneState& plane) {
        for (const Direction& flow : plane.directions) {
            if (flow.copying || (flow.poll_deferred && flow.sink_busy)) {
                return false;
            }
        }
        return true;
    }

    // The sink holds at least kBusySinkBytes not yet acknowledged (SIOCOUTQ): a bulk stream,
    // which the verdict may start passing at any moment, not a request or a reply in flight.
    static bool sink_holds_bulk(int sink) {
        return net::bytes_unacknowledged(sink) >= kBusySinkBytes;
    }

    // The source watch of `direction` completed: `result` is the ring's peek (1 byte
    // readable, 0 at EOF, -errno) or the poll's mask, which a peek here confirms.
    // Redirected bytes never make the source readable: what is queued there was passed up
    // by flow control.
    void on_source_event(Flow& connection, std::uint8_t direction, int result,
                         PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        const int source = connection.source_fd(direction);
        ++source_wakeups_;
        // Which watch completed: peek_retired changes only below, after this completion
        // is read, and no second watch is armed while one is (poll_armed).
        const bool from_ring = !flow.peek_retired;
        if (!from_ring && result < 0) {
            context.abort_connection(connection, "poll_error");
            return;
        }
        if (flow.source_eof) {
            return;
        }
        if (flow.copying) {
            return;  // the copy round reads whatever is queued
        }
        int peeked = result;
        if (!from_ring) {
            std::byte probe{};
            const ssize_t n = ::recv(source, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
            peeked = n >= 0 ? static_cast<int>(n) : -errno;
        }
        if (peeked > 0) {
#ifdef SPLICER_TEST_HOOKS
            // Test builds only: this wake-up is dropped, as a kernel that lost it would leave
            // the plane: nothing copies the passed bytes and no watch is armed for them.
            if (miss_wakeup_ != 0 && ++wakeups_ == miss_wakeup_) {
                return;
            }
            // Test builds only: answered as the kernel answers while the passed bytes still
            // wait on the psock's backlog queue (see early_eof_for_tests).
            if (early_eof_ && fin_arrived(source)) {
                early_eof_ = false;
                log::warning("test_early_eof",
                             {{"conn", std::to_string(connection.id)},
                              {"dir", direction == kClientToBackend ? "client_to_backend"
                                                                     : "backend_to_client"}});
                source_ended(connection, direction, context);
                return;
            }
#endif
            start_copy(connection, direction, context);
        } else if (peeked == 0) {
            source_ended(connection, direction, context);
        } else if (peeked == -EAGAIN || peeked == -EWOULDBLOCK || peeked == -EINTR) {
            // A wake-up with nothing to read. From the ring's peek: its retries ran out and
            // an io-wq worker's recv woke to nothing (arm_source_watch); the poll watches
            // this source from now on. From the poll: on 6.18 a stale copied_seq can keep
            // POLLIN set on a sockmap socket, so re-arming at once could spin. Either way,
            // look again shortly: soon if the sink holds a bulk stream's bytes (the verdict
            // passes once the sink is full, and a late look stalls that stream), later and
            // later if not (recheck_interval).
            ++empty_wakeups_;
            flow.peek_retired = true;
            flow.poll_deferred = true;
            flow.sink_busy = sink_holds_bulk(connection.sink_fd(direction));
            arm_timer(connection, context);
        } else if (peeked == -ECANCELED) {
            context.abort_connection(connection, "poll_error");
        } else {
            context.abort_connection(connection, failure_reason(-peeked, direction));
        }
    }

    // Passed bytes are readable on the source of `direction`: copy them.
    void start_copy(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        connection.plane->directions[direction].copying = true;
        // The source is not braked here: a full sink is every bulk stream's normal state
        // (its send buffer is what paces the redirect), and a brake put on now had TCP
        // autotuning start over from 1 MiB once released, which cost the client-to-backend
        // stream a tenth (scripts/bench 2026-12-04). The backend is braked from the start,
        // and the watch brakes any source whose sink's reader stopped (on_watch).
        sink_full(connection, direction);
        arm_watch(connection, context);
        copy_round(connection, direction, context);
    }

    // The watch's backstop for a missed wake-up (owed_step, plane/sockmap_steps.h): passed
    // bytes not yet copied keep the watch armed, even once the sink's reader has taken
    // everything queued toward it (before, the watch then went idle and nothing looked again).
    // When they waited a whole interval with no copy under way, a peek at the source tells
    // whether they are readable: if so, the poll that should have reported them did not, and
    // the copy starts here (event=wakeup_missed).
    void look_for_missed_wakeups(Flow& connection, PlaneContext& context) {
        bool owed_any = false;
        for (std::uint8_t direction = 0; direction < 2; ++direction) {
            Direction& flow = connection.plane->directions[direction];
            // After the source's EOF the EOF rule copies late passes itself (copy_late_pass).
            if (context.closing(connection) || flow.source_eof) {
                continue;
            }
            auto link = program_->link_state(connection.plane->cookies[direction], flow.copied);
            if (!link) {
                continue;  // the plane's own calls on the link report a lost one
            }
            const OwedObservation seen{
                .owed = link->passed > flow.copied,
                .copying = flow.copying,
                .idle_before = flow.owed_idle && flow.owed_idle_copied == flow.copied};
            flow.owed_idle = seen.owed && !seen.copying;
            flow.owed_idle_copied = flow.copied;
            switch (owed_step(seen)) {
                case OwedStep::none: break;
                case OwedStep::watch: owed_any = true; break;
                case OwedStep::peek:
                    owed_any = true;
                    copy_missed_wakeup(connection, direction, link->passed - flow.copied, context);
                    break;
            }
        }
        if (owed_any && !context.closing(connection)) {
            arm_watch(connection, context);
        }
    }

    // Passed bytes waited a whole watch interval with no copy under way: readable ones are
    // copied now. None readable: the kernel deferred them behind the source's own redirected
    // bytes (DESIGN.md kernel fact 8), and its wake-up comes when they land.
    void copy_missed_wakeup(Flow& connection, std::uint8_t direction, std::uint64_t owed,
                            PlaneContext& context) {
        const int source = connection.source_fd(direction);
        std::byte probe{};
        if (::recv(source, &probe, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) {
            return;  // nothing readable yet; an EOF or an error reaches the watch too
        }
        if (auto folded = missed_wakeup_log_.pass()) {
            int readable = 0;
            ::ioctl(source, SIOCINQ, &readable);
            log::warning(
                "wakeup_missed",
                {{"conn", std::to_string(connection.id)},
                 {"dir", direction == kClientToBackend ? "client_to_backend" : "backend_to_client"},
                 {"owed", std::to_string(owed)},
                 {"readable", std::to_string(readable)},
                 {"poll_armed", connection.plane->directions[direction].poll_armed ? "yes" : "no"},
                 {"missed", std::to_string(*folded)}});
        }
        connection.plane->directions[direction].owed_idle = false;
        start_copy(connection, direction, context);
    }

    // Copies passed bytes: read them, wait until every byte redirected before them has been
    // absorbed by the sink, then write them (order kept), then tell the verdict. The decisions
    // are copy_step's (plane/sockmap_steps.h); this carries them out.
    void copy_round(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        const int sink = connection.sink_fd(direction);
        for (int round = 0;; ++round) {
            CopyObservation seen{.holding = flow.taken > 0, .rounds = round, .absorbed = {},
                                 .sink_broken = {}};
            for (bool send_now = false; !send_now;) {
                switch (copy_step(seen, kCopyRoundsPerTurn)) {
                    case CopyStep::take:
                        if (!read_passed(connection, direction, context)) {
                            return;
                        }
                        seen.holding = true;
                        break;
                    case CopyStep::yield:
                        // Let the loop serve other connections. The source's watch brings
                        // the copy back, unless the source's EOF was read already: the kernel
                        // can report it before the last passed bytes (they were deferred
                        // behind redirected ones, DESIGN.md kernel fact 8), and the EOF rule
                        // copies those (EofStep::copy_late_pass). A poll on an ended source
                        // is ignored (on_source_event), so a late copy of more than one turn
                        // stopped there for good, its EOF never sent: the recheck timer
                        // brings the EOF rule back instead.
                        flow.copying = false;
                        if (flow.source_eof) {
                            arm_timer(connection, context);
                        } else {
                            arm_source_watch(connection, direction, context);
                        }
                        return;
                    case CopyStep::check_absorbed: {
                        auto absorbed = redirects_absorbed(
                            sink, connection.plane->baselines[1 - direction],
                            flow.redirected_before_copy, flow.copied - flow.urgent_removed);
                        if (!absorbed) {
                            context.abort_connection(connection, reset_reason(1 - direction));
                            return;
                        }
                        seen.absorbed = *absorbed;
                        break;
                    }
                    case CopyStep::check_sink: seen.sink_broken = sink_broken(sink); break;
                    case CopyStep::wait: arm_timer(connection, context); return;
                    case CopyStep::abort:
                        context.abort_connection(connection, reset_reason(1 - direction));
                        return;
                    case CopyStep::send: send_now = true; break;
                }
            }
            // Written at once where the sink takes it: the verdict ends passing mode as soon as
            // the sink holds every passed byte, and a round through the ring for each send
            // left new arrivals time to be passed too, so passing mode hardly ever ended.
            // (Nothing to send when the buffer held only an urgent byte.)
            const ssize_t sent = flow.filled == flow.sent
                                     ? 0
                                     : ::send(sink, flow.buffer.get() + flow.sent,
                                              flow.filled - flow.sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                context.abort_connection(connection, failure_reason(errno, 1 - direction));
                return;
            }
            if (sent > 0) {
                flow.sent += static_cast<std::size_t>(sent);
            }
            if (flow.sent < flow.filled) {
                send_rest(connection, direction, context);  // the sink is full: wait in the ring
                return;
            }
            if (!finish_copy(connection, direction, context)) {
                return;
            }
        }
    }

    // Reads passed bytes into the direction's buffer. False when there is nothing to copy now
    // (EOF, nothing queued, an error); the reason is handled here.
    bool read_passed(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        // Called with the buffer empty (taken == 0): it can be swapped for one of another size.
        const std::size_t size = flow.drain.raised() ? kCopyBufferBytes : kFirstCopyBufferBytes;
        if (!flow.buffer || flow.buffer_size != size) {
            flow.buffer = std::make_unique_for_overwrite<std::byte[]>(size);
            flow.buffer_size = size;
        }
        const ssize_t n =
            ::recv(connection.source_fd(direction), flow.buffer.get(), size, MSG_DONTWAIT);
        const bool nothing_queued = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
        if (n == 0 || (nothing_queued && flow.source_eof)) {
            flow.copying = false;
            if (!flow.source_eof) {
                source_ended(connection, direction, context);
            } else {
                arm_timer(connection, context);  // the EOF check goes on
            }
            return false;
        }
        if (nothing_queued) {
            flow.copying = false;
            arm_source_watch(connection, direction, context);
            return false;
        }
        if (n < 0) {
            context.abort_connection(connection, failure_reason(errno, direction));
            return false;
        }
        flow.filled = static_cast<std::size_t>(n);
        flow.taken = flow.filled;
        flow.sent = 0;
        // Read after the recv: every skb redirected before the ones just read is counted.
        auto link = program_->link_state(connection.plane->cookies[direction], flow.copied);
        if (!link) {
            context.abort_connection(connection, "link_lost");
            return false;
        }
        // The verdict failed to trim an skb and passed it whole (these bytes may include it):
        // the stream cannot go on without a hole, so it ends here, nothing copied.
        if (link->abort) {
            context.abort_connection(connection, "verdict_edit_failed");
            return false;
        }
        leave_out_urgent_byte(flow, link->urgent_at);
        flow.redirected_before_copy = link->redirected;
        return true;
    }

    // TCP urgent data: the verdict passes an skb holding the urgent byte whole and says where
    // the byte is in the passed stream (bpf/splice.bpf.c); it is not delivered, as recv()
    // skips it for a reader connected directly. `urgent_at` counts from 1 (0: none).
    void leave_out_urgent_byte(Direction& flow, std::uint64_t urgent_at) {
        if (urgent_at == 0 || urgent_at - 1 < flow.copied ||
            urgent_at - 1 >= flow.copied + flow.taken) {
            return;
        }
        const auto index = static_cast<std::size_t>(urgent_at - 1 - flow.copied);
        std::memmove(flow.buffer.get() + index, flow.buffer.get() + index + 1,
                     flow.taken - index - 1);
        flow.filled = flow.taken - 1;
        ++urgent_removed_;
    }

    // The whole buffer is in the sink: tell the verdict. False when the pair was ended.
    bool finish_copy(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        flow.copied += flow.taken;
        flow.urgent_removed += flow.taken - flow.filled;
        flow.filled = 0;
        flow.taken = 0;
        if (auto told = program_->set_copied(connection.plane->cookies[direction], flow.copied,
                                            static_cast<std::uint32_t>(flow.urgent_removed));
            !told) {
            context.abort_connection(connection, "link_lost");
            return false;
        }
        return true;
    }

    static void send_rest(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        flow.sending = true;
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_send, direction);
        io_uring_prep_send(sqe, connection.sink_fd(direction), flow.buffer.get() + flow.sent,
                           flow.filled - flow.sent, MSG_NOSIGNAL);
    }

    void on_copy_sent(Flow& connection, std::uint8_t direction, int result, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        flow.sending = false;
        if (result <= 0) {
            context.abort_connection(connection, failure_reason(-result, 1 - direction));
            return;
        }
        flow.sent += static_cast<std::size_t>(result);
        if (flow.sent < flow.filled) {
            send_rest(connection, direction, context);
            return;
        }
        if (finish_copy(connection, direction, context)) {
            copy_round(connection, direction, context);
        }
    }

    void source_ended(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        flow.source_eof = true;
        flow.last_progress = std::chrono::steady_clock::now();
        arm_watch(connection, context);  // the sink may never take what is before the EOF
        // No more watches on the ended source: its peek would read 0, its poll report RDHUP,
        // at once and for good. A later reset still ends the pair, through the other
        // direction's send or watch.
        try_propagate_eof(connection, direction, context);
    }

    // Kernel fact 4: the FIN must not overtake redirected bytes still queued for the sink.
    // The decisions are eof_step's (plane/sockmap_steps.h); this carries them out.
    void try_propagate_eof(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        const int sink = connection.sink_fd(direction);
        auto link = program_->link_state(connection.plane->cookies[direction], flow.copied);
        if (!link) {
            context.abort_connection(connection, "link_lost");
            return;
        }
        const auto now = std::chrono::steady_clock::now();
        EofObservation seen{.may_propagate = {},
                            .progressed = {},
                            .sink_broken = {},
                            .stalled = now - flow.last_progress > kNoProgressLimit,
                            .copying = flow.copying,
                            .passed_uncopied = link->passed > flow.copied};
        // What the sink has absorbed, once read by the EOF check: its progress is judged on
        // the same figure (two calls fewer per recheck of an EOF waiting for its sink).
        std::optional<std::uint64_t> absorbed;
        for (;;) {
            switch (eof_step(seen)) {
                case EofStep::check_may: {
                    ++eof_checks_;
                    // Urgent bytes the source received that the sink is never to get.
                    const std::uint64_t undelivered = flow.urgent_removed + link->urgent_dropped;
                    auto may = eof_may_propagate(
                        connection.source_fd(direction), connection.plane->baselines[direction],
                        sink, connection.plane->baselines[1 - direction], undelivered,
                        &absorbed);
                    if (!may) {
                        context.abort_connection(connection, reset_reason(1 - direction));
                        return;
                    }
                    seen.may_propagate = *may;
                    break;
                }
                case EofStep::propagate:
                    // The sink has absorbed every byte before the source's FIN: the FIN
                    // follows them. The other direction's EOF, if it waits, starts afresh.
                    connection.plane->idle_rechecks = 0;
                    finish_direction(connection, direction, context);
                    return;
                case EofStep::check_progress: {
                    if (!absorbed) {
                        auto read =
                            bytes_absorbed(sink, connection.plane->baselines[1 - direction]);
                        if (read) {
                            absorbed = *read;
                        }
                    }
                    seen.progressed = absorbed && *absorbed != flow.last_absorbed;
                    if (*seen.progressed) {
                        flow.last_absorbed = *absorbed;
                        flow.last_progress = now;
                        connection.plane->idle_rechecks = 0;  // it moves: look again soon
                    }
                    break;
                }
                case EofStep::check_sink: seen.sink_broken = sink_broken(sink); break;
                case EofStep::abort_sink:
                    // No progress because none can come.
                    context.abort_connection(connection, reset_reason(1 - direction));
                    return;
                case EofStep::abort_stalled:
                    context.abort_connection(connection, "stalled");
                    return;
                case EofStep::copy_late_pass:
                    flow.copying = true;
                    copy_round(connection, direction, context);
                    return;
                case EofStep::wait: arm_timer(connection, context); return;
            }
        }
    }

    // While bytes wait to be absorbed by the sink: a sink that can take nothing more (reset,
    // or its psock transmit stopped by a hard error) ends the pair at once with a RST each way,
    // instead of after kNoProgressLimit: the bytes are lost, and the source must not read a
    // clean end. Reads SO_ERROR: ask only where a true answer ends the pair. An error asking
    // counts as broken.
    static bool sink_broken(int sink) {
        auto broken = connection_broken(sink);
        return !broken || *broken;
    }

    void recheck(Flow& connection, PlaneContext& context) {
        for (std::uint8_t direction = 0; direction < 2; ++direction) {
            if (context.closing(connection)) {
                return;
            }
            Direction& flow = connection.plane->directions[direction];
            if (flow.poll_deferred) {
                flow.poll_deferred = false;
                if (!flow.source_eof && !flow.copying) {
                    arm_source_watch(connection, direction, context);
                }
            }
            // Only a buffer still waiting for the sink to absorb earlier redirects: one whose
            // send is in flight must not be sent again (the timer serves both directions).
            if (flow.copying && flow.taken > 0 && !flow.sending) {
                copy_round(connection, direction, context);
            } else if (flow.source_eof && !flow.sink_shut) {
                try_propagate_eof(connection, direction, context);
            }
        }
    }

    // Shared by every worker's plane: one sockhash (keys are socket cookies, unique on the
    // host), one verdict, one set of kernel counters. Its methods are map system calls on
    // fds fixed at load, safe from any thread.
    std::shared_ptr<bpf::SpliceProgram> program_;
    std::unique_ptr<DataPlane> fallback_;
    std::uint64_t fallbacks_ = 0;
    std::uint64_t urgent_removed_ = 0;  // urgent bytes left out of copies (all connections)
    std::uint64_t source_wakeups_ = 0;  // source watch completions (on_source_event)
    std::uint64_t empty_wakeups_ = 0;   // ... that found nothing to read
    std::uint64_t eof_checks_ = 0;      // eof_may_propagate() calls (sockmap_eof_checks)
    log::IntervalGate fallback_log_{std::chrono::seconds(1)};
    // Wake-ups the watch found missed (copy_missed_wakeup): one line a second at most, with
    // the count since the previous line.
    log::IntervalGate missed_wakeup_log_{std::chrono::seconds(1)};
    int send_buffer_cap_;  // net.core.wmem_max after start-up
    bool counts_kernel_;

#ifdef SPLICER_TEST_HOOKS

public:
    // Test builds only: the `number`th poll wake-up (from 1) that finds passed bytes readable
    // is dropped (on_source_event), as if the kernel had never delivered it.
    void miss_wakeup_for_tests(std::uint64_t number) { miss_wakeup_ = number; }
    // Test builds only: the first poll wake-up (of the plane's sources) that finds passed
    // bytes readable once the source's FIN has arrived is taken for the EOF, as if the peek
    // had read 0. That is the kernel's answer while passes it deferred still wait on the
    // psock's backlog queue behind redirected bytes (DESIGN.md kernel fact 8): recv() on a
    // sockmap socket reads only the psock's ingress list and, that list empty with the FIN
    // in (SOCK_DONE), returns 0 (tcp_bpf_recvmsg_parser); the passes land after it.
    void early_eof_for_tests() { early_eof_ = true; }
    // Test builds only: the counted baselines are taken as in a release build, unchecked
    // (tests/privileged/test_sockmap_syscalls.cpp counts the calls a release build makes).
    void trust_baselines_for_tests() { check_baselines_ = false; }

private:
    static bool fin_arrived(int fd) { return net::tcp_state(fd) == TCP_CLOSE_WAIT; }

    // Test builds only: a baseline the daemon counted (untouched_pair_baselines) must be the
    // kernel's, or an EOF would never qualify (or qualify early) on this pair. Every
    // privileged test that splices through this plane checks it; a mismatch ends the daemon.
    static void check_known_baseline(const Flow& connection, std::size_t socket, int fd) {
        const SocketBaseline& known = connection.plane->baselines[socket];
        // A socket the peer reset before pairing (TCP_CLOSE) has no meaningful kernel baseline:
        // take_baseline() counts its state as a FIN received (flow_accounting.cpp), one more
        // than arrived. The pair ends at its first look anyway.
        const auto closed = [fd] {
            const auto state = net::tcp_state(fd);
            return !state || *state == TCP_CLOSE;
        };
        if (closed()) {
            return;
        }
        auto kernel = take_baseline(fd);
        if (kernel && kernel->consumed == known.consumed && kernel->written == known.written) {
            return;
        }
        // ... or reset while it was read.
        if (closed()) {
            return;
        }
        log::error("baseline_mismatch",
                   {{"conn", std::to_string(connection.id)},
                    {"socket", socket == 0 ? "client" : "backend"},
                    {"known", std::to_string(known.consumed) + "/" + std::to_string(known.written)},
                    {"kernel", kernel ? std::to_string(kernel->consumed) + "/" +
                                            std::to_string(kernel->written)
                                      : kernel.error().message}});
        std::abort();
    }

    bool early_eof_ = false;
    bool check_baselines_ = true;
    std::uint64_t miss_wakeup_ = 0;
    std::uint64_t wakeups_ = 0;
#endif
};

}  // namespace

bpf::LoadOptions sockmap_load_options(std::uint32_t max_connections) {
    // Two sockets per connection the loop may hold: a pair never falls back to the copy plane
    // for want of room in the maps.
    const std::uint64_t sockets = std::clamp<std::uint64_t>(
        2 * std::uint64_t{max_connections}, SPLICER_MIN_SOCKETS, SPLICER_SOCKETS_LIMIT);
    return {.flow_limit_bytes = kFlowLimitBytes,
            .max_sockets = static_cast<std::uint32_t>(sockets)};
}

Result<std::vector<std::unique_ptr<DataPlane>>> make_sockmap_planes(bpf::SpliceProgram program,
                                                                   bpf::PinDir& pins,
                                                                   std::uint32_t count) {
    const std::pair<int, const char*> maps[] = {{program.counters_map_fd(), "counters"},
                                                {program.sockets_map_fd(), "sockets"},
                                                {program.peers_map_fd(), "peers"},
                                                {program.copied_map_fd(), "copied"}};
    for (const auto& [fd, name] : maps) {
        if (auto pinned = pins.pin(fd, name); !pinned) {
            return pinned.error();
        }
    }
    // Still root here: the privilege drop comes after the plane is made.
    const int send_buffer_cap = raise_send_buffer_cap(kSendBufferBytes);
    const auto shared = std::make_shared<bpf::SpliceProgram>(std::move(program));
    std::vector<std::unique_ptr<DataPlane>> planes;
    for (std::uint32_t i = 0; i < std::max<std::uint32_t>(count, 1); ++i) {
        auto plane = std::make_unique<SockmapPlane>(shared, send_buffer_cap, i == 0);
#ifdef SPLICER_TEST_HOOKS
        // Test builds only: tests/privileged/test_missed_wakeup.cpp drops one wake-up of the
        // plane's source polls, to see the watch find the passed bytes it left.
        if (const char* number = std::getenv("SPLICER_TEST_MISS_WAKEUP")) {
            plane->miss_wakeup_for_tests(std::strtoull(number, nullptr, 10));
        }
        // tests/privileged/test_sockmap_late_pass.cpp: an EOF read before passed bytes landed.
        if (std::getenv("SPLICER_TEST_EARLY_EOF") != nullptr) {
            plane->early_eof_for_tests();
        }
        // tests/privileged/test_sockmap_syscalls.cpp: no cross-check of counted baselines.
        if (std::getenv("SPLICER_TEST_TRUST_BASELINES") != nullptr) {
            plane->trust_baselines_for_tests();
        }
#endif
        planes.push_back(std::move(plane));
    }
    return planes;
}

}  // namespace splicer::plane
