#include "daemon/connection_handover.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "handoff/fd_check.h"
#include "handoff/wire.h"
#include "splicer/config.h"
#include "splicer/log.h"
#include "upgrade/batch_transfer.h"
#include "upgrade/handover.h"

namespace splicer::daemon {
namespace {

using Clock = std::chrono::steady_clock;

// However the loops and the new process behave, the sender ends within this: every round's
// export is answered within a ring round trip, every batch within kAnswerTimeout.
constexpr auto kSendingDeadline = std::chrono::seconds(120);

std::string count_text(std::size_t count) { return std::to_string(count); }

#ifdef SPLICER_TEST_HOOKS
// Debug builds: SPLICER_TEST_UPGRADE_DIE makes a new process of an upgrade die after ready,
// "before_batches" before it reads any, "in_batch" with a batch read and not answered: the
// old process must then keep every connection (tests/privileged/test_upgrade.cpp).
void die_if_asked(std::string_view when) {
    if (const char* asked = std::getenv("SPLICER_TEST_UPGRADE_DIE");
        asked != nullptr && when == asked) {
        // Written at once, not through the log writer's queue: _exit does not wait for it.
        const std::string line =
            "level=notice event=test_upgrade_die when=" + std::string(when) + "\n";
        [[maybe_unused]] const ssize_t written = ::write(STDERR_FILENO, line.data(), line.size());
        ::_exit(70);
    }
}
#else
void die_if_asked(std::string_view /*when*/) {}
#endif

std::string_view kind_name(handoff::PlaneKind kind) {
    switch (kind) {
        case handoff::PlaneKind::copy: return "copy";
        case handoff::PlaneKind::splice: return "splice";
        case handoff::PlaneKind::sockmap: return "sockmap";
    }
    return "unknown";
}

}  // namespace

Result<void> BatchReceiver::check_kinds(const std::vector<handoff::ConnectionRecord>& records) const {
    for (const handoff::ConnectionRecord& record : records) {
        if (!accepted_ || record.plane != *accepted_) {
            return Error{"a " + std::string(kind_name(record.plane)) +
                         " connection, which this process's plane cannot adopt" +
                         (record.plane == handoff::PlaneKind::sockmap
                              ? " (the old sockmap maps were not reused)"
                              : "")};
        }
    }
    return {};
}

ConnectionSender::ConnectionSender(UniqueFd socket, std::vector<EventLoop*> loops)
    : socket_(std::move(socket)), loops_(std::move(loops)), queue_(std::make_shared<Queue>()) {
    thread_ = std::thread([this] { run(); });
}

ConnectionSender::~ConnectionSender() {
    if (thread_.joinable()) {
        thread_.join();
    }
}

bool export_again(const handoff::ExportOutcome& outcome, bool sending, bool stopping,
                  std::size_t rounds) {
    return sending && !stopping && (outcome.left > 0 || outcome.accepts_pending) &&
           rounds < kExportRounds;
}

std::size_t ConnectionSender::handed() const {
    const std::lock_guard lock(queue_->mutex);
    return queue_->handed;
}

void ConnectionSender::export_from(std::size_t index) {
    EventLoop* loop = loops_[index];
    loop->post([loop, index, queue = queue_] {
        if (loop->stop_requested()) {
            // A stop closes what it holds: nothing to export, and no round after this one.
            const std::lock_guard lock(queue->mutex);
            queue->exported.push_back({.loop = index,
                                       .outcome = {.batch = {},
                                                   .left = static_cast<std::size_t>(
                                                       loop->counters().active),
                                                   .failed = 0},
                                       .stopping = true});
            queue->arrived.notify_one();
            return;
        }
        loop->export_connections([index, queue](handoff::ExportOutcome outcome) {
            const std::lock_guard lock(queue->mutex);
            queue->exported.push_back(
                {.loop = index, .outcome = std::move(outcome), .stopping = false});
            queue->arrived.notify_one();
        });
    });
}

Result<bool> ConnectionSender::send_and_confirm(const handoff::Batch& batch) {
    const std::vector<std::byte> bytes =
        handoff::encode(batch.records, static_cast<std::uint32_t>(batch.fds.size()));
    std::vector<int> fds;
    fds.reserve(batch.fds.size());
    for (const UniqueFd& fd : batch.fds) {
        fds.push_back(fd.get());
    }
    if (auto sent = upgrade::send_batch(socket_.get(), bytes, fds); !sent) {
        return sent.error();
    }
    return upgrade::receive_batch_answer(socket_.get());
}

void ConnectionSender::adopt_back(std::size_t index, handoff::Batch batch) {
    EventLoop* loop = loops_[index];
    auto shared = std::make_shared<handoff::Batch>(std::move(batch));
    loop->post([loop, shared] {
        const handoff::AdoptOutcome back = loop->adopt_connections(std::move(*shared));
        if (back.refused > 0) {
            log::error("connections_lost", {{"worker", std::to_string(loop->worker().index)},
                                            {"connections", count_text(back.refused)},
                                            {"reason", back.first_refusal}});
        }
    });
}

void ConnectionSender::run() {
    struct LoopRound {
        std::size_t rounds = 0;
        bool finished = false;
        std::optional<Clock::time_point> next;  // the next export's time, once scheduled
    };
    std::vector<LoopRound> rounds(loops_.size());
    for (std::size_t i = 0; i < loops_.size(); ++i) {
        export_from(i);
    }
    // Once the new process failed to take a batch, nothing more is sent: every later batch
    // goes straight back to its loop.
    bool sending = true;
    std::size_t finished = 0;
    const auto deadline = Clock::now() + kSendingDeadline;
    while (finished < loops_.size()) {
        std::optional<Exported> item;
        {
            std::unique_lock lock(queue_->mutex);
            auto wake = deadline;
            for (const LoopRound& round : rounds) {
                if (round.next && *round.next < wake) {
                    wake = *round.next;
                }
            }
            queue_->arrived.wait_until(lock, wake, [&] { return !queue_->exported.empty(); });
            if (!queue_->exported.empty()) {
                item = std::move(queue_->exported.front());
                queue_->exported.pop_front();
            }
        }
        const auto now = Clock::now();
        if (!item) {
            if (now >= deadline) {
                // A loop that never answered (it failed): its hold does not matter any more.
                log::error("connections_handover_timeout",
                           {{"loops_waiting", count_text(loops_.size() - finished)}});
                break;
            }
            for (std::size_t i = 0; i < rounds.size(); ++i) {
                if (rounds[i].next && *rounds[i].next <= now) {
                    rounds[i].next.reset();
                    export_from(i);
                }
            }
            continue;
        }
        LoopRound& round = rounds[item->loop];
        ++round.rounds;
        handoff::ExportOutcome& outcome = item->outcome;
        const std::size_t count = outcome.batch.records.size();
        const std::string worker = std::to_string(loops_[item->loop]->worker().index);
        bool taken = count == 0;
        const bool sent = count > 0 && sending;
        if (sent) {
            auto answer = send_and_confirm(outcome.batch);
            taken = answer && *answer;
            if (!taken) {
                sending = false;
                log::error("connections_kept",
                           {{"worker", worker},
                            {"connections", count_text(count)},
                            {"reason", answer ? std::string("the new process refused them")
                                              : answer.error().message}});
            }
        }
        if (taken && count > 0) {
            // Our copies close with the batch: the new process holds the sockets.
            log::info("connections_handed_over", {{"worker", worker},
                                                  {"connections", count_text(count)},
                                                  {"kept", count_text(outcome.left)},
                                                  {"failed", count_text(outcome.failed)},
                                                  {"round", count_text(round.rounds)}});
            const std::lock_guard lock(queue_->mutex);
            queue_->handed += count;
        }
        if (!taken && count > 0) {
            if (!sent) {
                log::error("connections_kept", {{"worker", worker},
                                                {"connections", count_text(count)},
                                                {"reason", "an earlier batch was not taken"}});
            }
            adopt_back(item->loop, std::move(outcome.batch));
        }
        if (export_again(outcome, sending, item->stopping, round.rounds)) {
            round.next = Clock::now() + kExportInterval;
            continue;
        }
        round.finished = true;
        ++finished;
        if (outcome.left > 0) {
            log::info("connections_left", {{"worker", worker}, {"connections", count_text(outcome.left)}});
        }
        // Posted after any adopt_back: the loop adopts before it may end.
        loops_[item->loop]->post(
            [loop = loops_[item->loop]] { loop->release_hold(); });
    }
    if (finished < loops_.size()) {
        // Only after the deadline: release every hold still taken, so the loops can end.
        for (std::size_t i = 0; i < rounds.size(); ++i) {
            if (!rounds[i].finished) {
                loops_[i]->post([loop = loops_[i]] { loop->release_hold(); });
            }
        }
    }
    if (sending) {
        // The new process may be gone meanwhile: then there is nobody to tell.
        (void)upgrade::send_batches_end(socket_.get());
    }
    socket_.reset();
    log::info("connections_handover_done", {{"handed", count_text(handed())}});
}

BatchReceiver::BatchReceiver(UniqueFd socket, std::vector<EventLoop*> loops,
                             std::optional<handoff::PlaneKind> accepted)
    : socket_(std::move(socket)), loops_(std::move(loops)), accepted_(accepted) {
    thread_ = std::thread([this] { run(); });
}

BatchReceiver::~BatchReceiver() {
    if (socket_) {
        ::shutdown(socket_.get(), SHUT_RDWR);
    }
    if (thread_.joinable()) {
        thread_.join();
    }
}

void BatchReceiver::run() {
    die_if_asked("before_batches");
    std::size_t next = 0;
    std::size_t batches = 0;
    std::size_t connections = 0;
    // Bounded: each old worker sends at most kExportRounds batches, then the end record.
    const std::size_t most = config::kMaxWorkers * kExportRounds;
    for (std::size_t round = 0; round <= most; ++round) {
        auto received = upgrade::receive_batch(socket_.get());
        if (!received) {
            log::warning("connections_not_received", {{"error", received.error().message},
                                                      {"batches", count_text(batches)}});
            return;  // the old process keeps what it has not handed over
        }
        if (!received->has_value()) {
            log::info("connections_received", {{"batches", count_text(batches)},
                                               {"connections", count_text(connections)}});
            return;
        }
        const auto arrived = Clock::now();
        die_if_asked("in_batch");
        upgrade::ReceivedBatch& batch = **received;
        auto records = handoff::decode(batch.bytes, static_cast<std::uint32_t>(batch.fds.size()));
        Result<void> checked =
            records ? handoff::check_fds(*records, batch.fds) : Result<void>(records.error());
        if (checked) {
            checked = check_kinds(*records);
        }
        if (checked && Clock::now() - arrived > upgrade::kAnswerWithin) {
            // The old process may give up on us any moment and serve them again itself.
            checked = Error{"checking the batch took too long"};
        }
        if (!checked) {
            log::error("connections_refused", {{"error", checked.error().message}});
            // Ours close here; the old process, told, adopts its own copies back.
            (void)upgrade::send_batch_answer(socket_.get(), false);
            return;
        }
        if (auto answered = upgrade::send_batch_answer(socket_.get(), true); !answered) {
            // The old process will not know we hold them and adopts its copies back: two
            // owners of one socket must not both serve it. Ours close here.
            log::error("connections_refused", {{"error", answered.error().message}});
            return;
        }
        ++batches;
        connections += records->size();
        EventLoop* loop = loops_[next++ % loops_.size()];
        auto shared = std::make_shared<handoff::Batch>(
            handoff::Batch{std::move(records).value(), std::move(batch.fds)});
        loop->post([loop, shared] { loop->adopt_connections(std::move(*shared)); });
    }
    log::error("connections_not_received", {{"error", "more batches than an old process sends"},
                                            {"batches", count_text(batches)}});
}

}  // namespace splicer::daemon
