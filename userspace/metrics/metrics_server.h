#pragma once
// The Prometheus endpoint (`metrics: { host; port; }`): GET /metrics on a listener of its
// own, served by a thread of its own from a snapshot the event loop hands over once a second.
//
// Why a thread and a snapshot: the loop never waits for a scraper and a scraper never reads
// the loop's structures. publish() only try-locks: while the server copies the snapshot (a
// 20 KiB memcpy) the loop skips that second's hand-over instead of waiting. Each scrape is
// bounded: one request head of at most 4 KiB, one small response with Connection: close,
// and kScrapeDeadline for the whole exchange, after which the scraper is dropped. Scrapes are
// served one at a time: a scraper that stalls delays the next scrape by at most that
// deadline, and never a connection of the data path.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "splicer/daemon_counters.h"
#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::metrics {

inline constexpr std::chrono::milliseconds kScrapeDeadline{2000};
inline constexpr std::size_t kMaxRequestHead = 4096;

class MetricsServer {
public:
    // Takes a listening, non-blocking socket (bound at start-up, while root). Nothing is
    // served until start().
    static Result<std::unique_ptr<MetricsServer>> create(UniqueFd listener, std::string version);
    ~MetricsServer();  // stops the thread (a scrape in progress is cut) and joins it
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    // The listening socket, for `splicer upgrade` to offer the new process (it stays ours).
    [[nodiscard]] int listener_fd() const { return listener_.get(); }
    // Starts the serving thread (after the privilege drop: capabilities are per thread).
    void start();
    // Stops the serving thread (a scrape in progress is cut) and joins it; the listener
    // stays open (after `splicer upgrade` the new process accepts from it). publish() may
    // still be called.
    void stop();
    // On the loop: the counters scrapes will see. Never waits: skipped while a scrape copies.
    void publish(const DaemonCounters& counters);

    // The response to one request head (exposed for the unit tests): a full HTTP/1.1 answer.
    [[nodiscard]] static std::string answer(std::string_view head, const DaemonCounters& counters,
                                            std::string_view version);

private:
    MetricsServer(UniqueFd listener, UniqueFd stop, std::string version);
    void serve();
    void serve_one(UniqueFd client);
    // Waits for `events` on `fd` until `deadline`; false on timeout, stop or error.
    bool wait(int fd, short events, std::chrono::steady_clock::time_point deadline) const;

    UniqueFd listener_;
    UniqueFd stop_;  // eventfd: written by the destructor
    std::string version_;
    std::mutex mutex_;
    std::unique_ptr<DaemonCounters> snapshot_;  // guarded by mutex_
    std::thread thread_;
};

}  // namespace splicer::metrics
