#pragma once
// The sockmap plane's decisions, apart from the syscalls that feed them: when a direction copies
// bytes the verdict passed (flow control), when a source's EOF may reach the sink (kernel
// fact 4), and when the watch peeks for passed bytes a missed wake-up left behind. Pure: the
// caller looks at the sockets, fills in an observation and carries out the
// step; a step named check_* asks for one more look before the decision can be made. The
// questions come one at a time because some looks cost a syscall and one (connection_broken,
// which reads SO_ERROR) may only be made where a true answer ends the pair.
// Used by plane/sockmap_plane.cpp and by the test forwarder (tests/support/forwarder.cpp);
// tested row by row in tests/unit/test_sockmap_steps.cpp.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace splicer::plane {

// One direction's copy round, at the point where it either holds a buffer of passed bytes not
// yet written or holds none.
enum class CopyStep : std::uint8_t {
    take,            // read the next buffer of passed bytes from the source
    yield,           // this turn's buffers are done: back to the source's poll
    check_absorbed,  // ask whether the sink took every byte redirected before the buffer
    check_sink,      // not absorbed yet: ask whether the sink can take anything more
    wait,            // look again after the recheck interval
    abort,           // the sink can take nothing more: end the pair with a RST each way
    send,            // write the buffer: no redirected byte is still ahead of it
};

struct CopyObservation {
    bool holding = false;             // a buffer of passed bytes in hand, not yet written
    int rounds = 0;                   // buffers written this turn
    std::optional<bool> absorbed;     // redirects_absorbed() for the buffer in hand
    std::optional<bool> sink_broken;  // connection_broken() of the sink (an error counts)
};

CopyStep copy_step(const CopyObservation& seen, int rounds_per_turn);

// An EOF that cannot be propagated because the sink takes nothing for this long ends the pair.
inline constexpr std::chrono::seconds kNoProgressLimit{60};

// A source at EOF whose FIN has not gone to the sink yet.
enum class EofStep : std::uint8_t {
    check_may,       // ask eof_may_propagate()
    propagate,       // shut the sink's write side: every byte before the FIN is in it
    check_progress,  // ask whether the sink absorbed bytes since the last look
    check_sink,      // the sink took nothing: ask whether it can take anything more
    abort_sink,      // it cannot: end the pair with a RST each way
    abort_stalled,   // it took nothing for longer than the limit: end the pair, stalled
    copy_late_pass,  // a pass the kernel deferred landed behind the FIN: copy it first
    wait,            // look again after the recheck interval
};

struct EofObservation {
    std::optional<bool> may_propagate;  // eof_may_propagate()
    std::optional<bool> progressed;     // the sink absorbed bytes since the last look
    std::optional<bool> sink_broken;    // connection_broken() of the sink (an error counts)
    bool stalled = false;               // no progress for longer than the limit
    bool copying = false;               // a copy round of this direction is under way
    bool passed_uncopied = false;       // the verdict passed more than was copied
};

EofStep eof_step(const EofObservation& seen);

// How long the recheck timer waits before the plane looks again. A copy waiting for its sink
// needs the short interval: passed bytes wait on it. Without one (`idle`), the timer serves
// two kinds of wait, and both back off, 2, 4, 8, then every 16 ms for as long as they last
// (`idle_waits` counts them in a row so far; the plane saturates it at kIdleRecheckDoublings):
// - an EOF waiting for its sink to take the redirected bytes before it, i.e. for the kernel's
//   psock worker, which runs late only under load; each look costs ~6 system calls (the link,
//   TCP_INFO of both sockets, SIOCOUTQ, the timer);
// - a source's poll deferred after a wake-up with nothing to read, where the sink holds no
//   bulk stream. Every redirected flight wakes it (docs/sockmap-wakeups.md), so on a busy
//   connection each re-arm cost a CQE, a peek and a timer every 2 ms per direction, for
//   nothing: 56,000 in a 4 s keep-alive run of 16 connections. Passed bytes that arrive
//   meanwhile wait for the re-arm, at most 16 ms; the copy that takes them brings the short
//   interval back. A bulk stream's source keeps the short interval (kBusySinkBytes): there a
//   late look at a pass stalls the stream (one stream 9% slower at 16 ms).
inline constexpr std::chrono::milliseconds kRecheckInterval{2};
inline constexpr std::uint8_t kIdleRecheckDoublings = 3;
// A deferred poll whose sink holds this much keeps the short interval (sockmap_plane.cpp,
// sink_holds_bulk): more than a request or a reply in flight, less than a bulk stream's
// send buffer once full (autotuned to MiBs).
inline constexpr std::size_t kBusySinkBytes = 256 * 1024;

std::chrono::nanoseconds recheck_interval(bool idle, std::uint8_t idle_waits);

// The watch's look, once an interval, at one direction's passed bytes that the plane has not
// copied yet. A copy starts when the source's poll reports passed bytes readable; a wake-up
// that never comes (stable kernels have lost readiness wake-ups on sockmap sockets, DESIGN.md
// kernel fact 9) would leave them there for good: the source's receive window stays shut
// under them, its sender probes a zero window with a growing backoff, and nothing else looks,
// since the sink's reader took everything (the watch saw nothing queued toward it).
enum class OwedStep : std::uint8_t {
    none,   // every passed byte is copied: nothing owed
    watch,  // owed, and a copy is under way or the state is new: look again next interval
    peek,   // owed, no copy under way for a whole interval and none copied meanwhile: peek
            // at the source; bytes readable there mean the wake-up was missed: copy them
};

struct OwedObservation {
    bool owed = false;         // the verdict passed more bytes than the plane copied
    bool copying = false;      // a copy round is under way (reading, waiting or sending)
    bool idle_before = false;  // the previous look found bytes owed, no copy under way, and
                               // the plane has copied nothing since
};

OwedStep owed_step(const OwedObservation& seen);

}  // namespace splicer::plane
