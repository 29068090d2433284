#pragma once
// The daemon's part of a sockmap pair, done synchronously for the self-test: baselines, pair,
// kick (DESIGN.md data flow 5), then, each time service() is called, what the sockmap plane
// does from its event loop: copy the bytes flow control passed up once the sink has absorbed
// every byte redirected before them, and propagate an EOF only when every earlier byte is in
// the sink (kernel facts 1, 2, 4). The same plane:: accounting and SpliceProgram calls as
// plane/sockmap_plane.cpp; the loop around them is a plain non-blocking one.

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "splicer/flow_accounting.h"
#include "splicer/result.h"
#include "splicer/splice_program.h"

namespace splicer::selftest {

class Relay {
public:
    // Takes both baselines, pairs front (client side) and back (backend side), kicks both.
    static Result<Relay> start(bpf::SpliceProgram& program, int front_fd, int back_fd);

    Relay(Relay&& other) noexcept;
    Relay& operator=(Relay&&) = delete;
    Relay(const Relay&) = delete;
    Relay& operator=(const Relay&) = delete;
    // Unpairs: the sockets leave every map (the caller closes them afterwards).
    ~Relay();

    // One round of the daemon's duties, both directions. True when it did something (read,
    // wrote, shut a sink down); an error when the pair cannot go on (the verdict aborted it,
    // a map lookup failed, a socket broke).
    Result<bool> service();

    // The EOF of `direction` (enum splicer_direction) was propagated to its sink.
    [[nodiscard]] bool eof_propagated(int direction) const;
    // Passed bytes copied so far in `direction`.
    [[nodiscard]] std::uint64_t copied(int direction) const;

private:
    struct Direction {
        int source = -1;
        int sink = -1;
        splicer_cookie cookie = 0;    // the source's
        std::vector<std::byte> held;  // passed bytes read from the source, not yet all sent
        std::size_t sent = 0;
        std::uint64_t redirected_before = 0;  // the link's `redirected` when `held` was read
        std::uint64_t copied = 0;
        bool source_eof = false;
        bool sink_shut = false;
    };

    explicit Relay(bpf::SpliceProgram& program) : program_(&program) {}
    Result<bool> service(std::size_t direction);
    Result<bool> read_passed(Direction& flow);
    Result<bool> send_held(Direction& flow, const plane::SocketBaseline& sink_baseline);
    Result<bool> propagate_eof(std::size_t direction);

    bpf::SpliceProgram* program_;
    std::array<Direction, 2> directions_{};
    std::array<plane::SocketBaseline, 2> baselines_{};  // front, back
    bool paired_ = false;
};

}  // namespace splicer::selftest
