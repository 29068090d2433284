// TicketKeys is shared by every worker's loop (one ServerContext for the daemon): handshakes
// on two threads seal and open tickets at once, across key rotations.

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "tls/ticket_keys.h"

namespace {

using TimePoint = std::chrono::steady_clock::time_point;

}  // namespace

TEST_CASE("TLS ticket keys: two threads sealing and opening across rotations agree on the keys",
          "[tls]") {
    // The clock moves a second per 10 calls, from either thread: the keys rotate every 100
    // calls while both threads use them.
    constexpr std::chrono::seconds kRotation{10};
    std::atomic<std::int64_t> ticks{0};
    const splicer::tls::Clock clock = [&ticks] {
        return TimePoint{} + std::chrono::seconds(1000) +
               std::chrono::seconds(ticks.fetch_add(1) / 10);
    };
    splicer::tls::TicketKeys keys(kRotation, clock);
    constexpr int kRounds = 20000;
    std::atomic<int> unopened{0};
    std::atomic<int> mismatched{0};
    const auto work = [&] {
        for (int i = 0; i < kRounds; ++i) {
            const std::uint64_t generation_before = keys.generation();
            const auto sealing = keys.sealing_key();
            if (!sealing) {
                continue;  // the generator failed: no ticket (not expected here)
            }
            // Opened at once by the same thread: the key is the current one, or the previous
            // one if a rotation came in between; never unknown (unless this thread slept
            // through two rotations), never different.
            const auto found = keys.opening_key(sealing->name);
            const std::uint64_t rotations = keys.generation() - generation_before;
            if (!found) {
                unopened += rotations <= 1 ? 1 : 0;
            } else if (found->key.cipher_key != sealing->cipher_key ||
                       found->key.mac_key != sealing->mac_key) {
                ++mismatched;
            }
        }
    };
    std::vector<std::thread> threads;
    threads.emplace_back(work);
    threads.emplace_back(work);
    for (std::thread& thread : threads) {
        thread.join();
    }
    INFO("key generations: " << keys.generation());
    CHECK(keys.generation() > 100);  // it did rotate while both threads worked
    CHECK(unopened.load() == 0);
    CHECK(mismatched.load() == 0);
}
