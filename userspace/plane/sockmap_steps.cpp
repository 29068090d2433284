#include "plane/sockmap_steps.h"

namespace splicer::plane {

CopyStep copy_step(const CopyObservation& seen, int rounds_per_turn) {
    if (!seen.holding) {
        // Let the loop serve other connections once a turn's buffers are done.
        return seen.rounds >= rounds_per_turn ? CopyStep::yield : CopyStep::take;
    }
    // Passed bytes sit behind every redirected one: written before the sink absorbed those,
    // they would overtake them.
    if (!seen.absorbed) {
        return CopyStep::check_absorbed;
    }
    if (*seen.absorbed) {
        return CopyStep::send;
    }
    // Redirected bytes queued for a sink that can take nothing more are gone (the psock drops
    // them): waiting for their absorption would wait forever.
    if (!seen.sink_broken) {
        return CopyStep::check_sink;
    }
    return *seen.sink_broken ? CopyStep::abort : CopyStep::wait;
}

EofStep eof_step(const EofObservation& seen) {
    if (!seen.may_propagate) {
        return EofStep::check_may;
    }
    if (*seen.may_propagate) {
        return EofStep::propagate;
    }
    if (!seen.progressed) {
        return EofStep::check_progress;
    }
    if (!*seen.progressed) {
        // No progress: first because none can come, then because none came for too long.
        if (!seen.sink_broken) {
            return EofStep::check_sink;
        }
        if (*seen.sink_broken) {
            return EofStep::abort_sink;
        }
        if (seen.stalled) {
            return EofStep::abort_stalled;
        }
    }
    // A pass the kernel deferred can land behind the FIN: copy it, or the counts never meet.
    if (seen.passed_uncopied && !seen.copying) {
        return EofStep::copy_late_pass;
    }
    return EofStep::wait;
}

std::chrono::nanoseconds recheck_interval(bool idle, std::uint8_t idle_waits) {
    if (!idle) {
        return kRecheckInterval;
    }
    const int doublings = idle_waits < kIdleRecheckDoublings ? idle_waits : kIdleRecheckDoublings;
    return kRecheckInterval * (1 << doublings);
}

OwedStep owed_step(const OwedObservation& seen) {
    if (!seen.owed) {
        return OwedStep::none;
    }
    // A copy round has its own waits (the sink absorbing, a send in flight) and its own end.
    if (seen.copying) {
        return OwedStep::watch;
    }
    // Between a yield or an empty read and the poll's completion the plane is briefly not
    // copying: only a state that lasted a whole interval is a missed wake-up. Passes the
    // kernel deferred behind the source's own redirected bytes are owed but not yet readable:
    // the peek finds nothing and the watch goes on.
    return seen.idle_before ? OwedStep::peek : OwedStep::watch;
}

}  // namespace splicer::plane
