#pragma once
// Established connections at `splicer upgrade` (README "Upgrading"), once the new process
// said ready and the old one stopped accepting: each old worker exports what its data plane
// serves (EventLoop::export_connections, userspace/handoff/README.md) and the batch goes
// over the handover socket (upgrade/batch_transfer.h); the new process's receiver thread
// checks each batch and gives it to one of its workers in turn (EventLoop::
// adopt_connections). The old process keeps its copies of the fds until the new one answered
// "taken": a batch refused, or one that cannot be sent or is not answered within
// upgrade::kAnswerTimeout (the new process died or hangs), is adopted back by the loop that
// exported it, so a failing new process costs no connection. Sockmap pairs move like the
// others: the new process loaded its program onto the old one's pinned maps
// (bpf/reused_maps.h), so they are pairs of its sockhash too, and never leave it; a new
// process that could not reuse them refuses their batch, and the old one keeps them. What a
// loop cannot export yet
// (probing, connecting, a sockmap pair mid copy round) it exports again every
// kExportInterval, at most kExportRounds times, and once more when its accepts had not all
// ended at the last export (the clients it then takes from its queues may move too:
// EventLoop::accept_left_after_handover); what it never can (HTTP, TLS-terminated,
// closing) it drains itself, as before.
//
// Both sides run a thread of their own: the sends and receives block (bounded by the
// socket's timeouts) and a loop must never block.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "daemon/event_loop.h"
#include "handoff/batch.h"
#include "splicer/unique_fd.h"

namespace splicer::daemon {

// Between two exports of one loop's connections that could not move yet (the first export
// right after ready may find pairs mid copy round, or clients accepted just before the
// accepts were cancelled still probing).
inline constexpr std::chrono::milliseconds kExportInterval{100};
// Rounds per loop, the first included: about 5 s, then the rest drains in the old process.
inline constexpr std::size_t kExportRounds = 50;

// Whether a loop exports again after its round number `rounds` (1 for the first) gave
// `outcome`: while batches are being taken (`sending`) and the loop is not stopping, when
// something was left that may move later or its accepts had not all ended, within
// kExportRounds.
bool export_again(const handoff::ExportOutcome& outcome, bool sending, bool stopping,
                  std::size_t rounds);

// The old process's side. Made on any thread once the new process is ready, with every
// loop of `loops` already held open (EventLoop::hold_open, taken on the loop before it could
// end): each hold is released once that loop's last batch was answered and any batch not
// taken was given back to it.
class ConnectionSender {
public:
    ConnectionSender(UniqueFd socket, std::vector<EventLoop*> loops);
    // Joins the thread: bounded, since the loops answer (held open) and every wait has a
    // deadline. Call after the loops ended or while they still run.
    ~ConnectionSender();
    ConnectionSender(const ConnectionSender&) = delete;
    ConnectionSender& operator=(const ConnectionSender&) = delete;

    // Connections the new process took so far (for the logs and tests).
    [[nodiscard]] std::size_t handed() const;

private:
    struct Exported {
        std::size_t loop = 0;
        handoff::ExportOutcome outcome;
        bool stopping = false;  // the loop began to stop, or exports nothing: no further round
    };
    // What the loops' callbacks reach: outlives the sender should a loop answer late.
    struct Queue {
        std::mutex mutex;
        std::condition_variable arrived;
        std::deque<Exported> exported;
        std::size_t handed = 0;
    };

    void export_from(std::size_t loop);
    void run();
    // Sends one batch and reads its answer: true once the new process holds it.
    Result<bool> send_and_confirm(const handoff::Batch& batch);
    // On the exporting loop: the batch's connections served there again.
    void adopt_back(std::size_t loop, handoff::Batch batch);

    UniqueFd socket_;
    std::vector<EventLoop*> loops_;
    std::shared_ptr<Queue> queue_;
    std::thread thread_;
};

// The new process's side: a thread that receives batches on `socket` until the end record
// (or an error: logged; the old process keeps what it did not hand over), each checked
// (handoff::decode, handoff::check_fds) and adopted by the next of `loops` in turn (posted:
// adopted once the loops run). A batch holding a record of another kind than `accepted`
// (the planes' DataPlane::upgrade_kind) is refused whole: the old process keeps it, rather
// than this one resetting connections its plane cannot serve.
class BatchReceiver {
public:
    BatchReceiver(UniqueFd socket, std::vector<EventLoop*> loops,
                  std::optional<handoff::PlaneKind> accepted);
    // Wakes a receive still waiting (shutdown) and joins the thread. Before the loops go.
    ~BatchReceiver();
    BatchReceiver(const BatchReceiver&) = delete;
    BatchReceiver& operator=(const BatchReceiver&) = delete;

private:
    void run();
    // Every record of a batch is of the kind this process adopts.
    [[nodiscard]] Result<void> check_kinds(
        const std::vector<handoff::ConnectionRecord>& records) const;

    UniqueFd socket_;
    std::vector<EventLoop*> loops_;
    std::optional<handoff::PlaneKind> accepted_;
    std::thread thread_;
};

}  // namespace splicer::daemon
