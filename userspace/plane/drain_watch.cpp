#include "plane/drain_watch.h"

namespace splicer::plane {

bool DrainWatch::full(const SinkLook& look) {
    if (raised_) {
        return false;
    }
    if (!streak_started_ || look.acked < streak_acked_) {
        streak_started_ = true;
        streak_acked_ = look.acked;
        streak_at_ = look.at;
        return false;
    }
    const std::uint64_t taken = look.acked - streak_acked_;
    if (taken < kRaiseAfterBytes) {
        return false;
    }
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::microseconds>(look.at - streak_at_).count();
    // taken / elapsed >= kRaiseRate, without dividing by a zero interval.
    const bool fast = static_cast<double>(taken) * 1e6 >=
                      static_cast<double>(kRaiseRate) * static_cast<double>(elapsed);
    // Either way a new run starts here: a reader too slow now may speed up later.
    streak_acked_ = look.acked;
    streak_at_ = look.at;
    if (fast) {
        raised_ = true;
        lowered_ = false;
    }
    return fast;
}

SinkVerdict DrainWatch::tick(const SinkLook& look, std::chrono::seconds stall_timeout) {
    // Checked first, idle or not: a reader that took everything queued has resumed too.
    if (lowered_ && look.acked >= lowered_acked_ + kResumeAfterBytes) {
        lowered_ = false;
        watching_ = false;
        return SinkVerdict::resumed;
    }
    if (!look.queued && !look.held) {
        watching_ = false;
        return SinkVerdict::idle;
    }
    if (!watching_ || look.acked != last_acked_) {
        const bool progress = watching_;
        watching_ = true;
        last_acked_ = look.acked;
        last_progress_ = look.at;
        return progress ? SinkVerdict::moving : SinkVerdict::waiting;
    }
    const auto waited = look.at - last_progress_;
    if (stall_timeout.count() > 0 && waited >= stall_timeout) {
        return SinkVerdict::stalled;
    }
    if (waited >= kLowerAfter && !lowered_) {
        lowered_ = true;
        lowered_acked_ = look.acked;
        stopped_since_ = last_progress_;
        raised_ = false;
        streak_started_ = false;
        return SinkVerdict::lower;
    }
    return SinkVerdict::waiting;
}

}  // namespace splicer::plane
