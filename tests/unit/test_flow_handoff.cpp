// The planes' common handoff bookkeeping (userspace/plane/flow_handoff.h): what a completion
// arriving while a connection is quiesced records, and a flow's sockets, counts and unsent
// bytes carried into a record and back into a fresh flow.

#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <vector>

#include "plane/flow_handoff.h"
#include "support/sockets.h"

using namespace splicer;
using plane::PlaneOp;
using plane::PlaneTag;

namespace {

struct SettleRow {
    const char* what;
    PlaneOp op;
    int result;
    bool keep_buffer;
    std::size_t filled_after;
    std::size_t sent_after;
    std::uint64_t delivered;  // what settle_copy_round returns
    bool source_eof;
    bool failed;
    bool buffer_kept;
};

}  // namespace

TEST_CASE("flow handoff: a completion while quiescing records what it did and nothing else",
          "[handoff]") {
    // Before: a round holding 100 bytes of which 40 were sent.
    auto row = GENERATE(values<SettleRow>({
        {"recv read bytes", PlaneOp::plane_recv, 70, true, 70, 0, 0, false, false, true},
        {"recv saw the FIN", PlaneOp::plane_recv, 0, true, 100, 40, 0, true, false, true},
        {"recv cancelled", PlaneOp::plane_recv, -ECANCELED, true, 100, 40, 0, false, false, true},
        {"recv found nothing (splice plane)", PlaneOp::plane_recv, -EAGAIN, false, 100, 40, 0,
         false, false, false},
        {"recv reset", PlaneOp::plane_recv, -ECONNRESET, true, 100, 40, 0, false, true, true},
        {"send wrote part", PlaneOp::plane_send, 25, true, 100, 65, 25, false, false, true},
        {"send wrote the rest (splice plane frees)", PlaneOp::plane_send, 60, false, 100, 100, 60,
         false, false, false},
        {"send cancelled", PlaneOp::plane_send, -ECANCELED, true, 100, 40, 0, false, false, true},
        {"send broken pipe", PlaneOp::plane_send, -EPIPE, true, 100, 40, 0, false, true, true},
    }));
    CAPTURE(row.what);
    plane::Flow flow;
    flow.make_plane_state();  // as the plane handler does when a plane starts
    plane::Direction& direction = flow.plane->directions[1];
    direction.buffer = std::make_unique<std::byte[]>(handoff::kMaxBufferedBytes);
    direction.filled = 100;
    direction.sent = 40;
    direction.bytes = 1000;
    const std::uint64_t delivered = plane::settle_copy_round(
        flow, PlaneTag{row.op, 1}, row.result, row.keep_buffer);
    CHECK(delivered == row.delivered);
    CHECK(direction.filled == row.filled_after);
    CHECK(direction.sent == row.sent_after);
    CHECK(direction.bytes == 1000 + row.delivered);
    CHECK(direction.source_eof == row.source_eof);
    CHECK(flow.export_failed == row.failed);
    CHECK(static_cast<bool>(direction.buffer) == row.buffer_kept);
    CHECK(flow.plane->directions[0].filled == 0);  // the other direction untouched
}

TEST_CASE("flow handoff: sockets, counts and unsent bytes go into a record and back into a fresh flow",
          "[handoff]") {
    auto pair = test::tcp_pair();
    const int client_fd = pair.first.get();
    const int backend_fd = pair.second.get();
    plane::Flow from;
    from.client = std::move(pair.first);
    from.backend = std::move(pair.second);
    from.make_plane_state();
    plane::Direction& up = from.plane->directions[0];
    up.bytes = 12345;
    up.buffer = std::make_unique<std::byte[]>(handoff::kMaxBufferedBytes);
    std::memcpy(up.buffer.get(), "0123456789", 10);
    up.filled = 10;
    up.sent = 4;
    up.source_braked = true;
    from.plane->directions[1].source_eof = true;
    from.plane->directions[1].sink_shut = true;
    from.plane->baselines[0] = {.consumed = 7, .written = 8};
    from.plane->directions[0].copied = 30;
    from.plane->directions[0].urgent_removed = 2;

    handoff::ConnectionRecord record;
    std::vector<UniqueFd> fds;
    plane::export_flow_common(from, record, fds);
    CHECK(from.exported);
    CHECK_FALSE(from.client.valid());  // moved, not closed
    CHECK_FALSE(from.backend.valid());
    REQUIRE(fds.size() == 2);
    CHECK(fds[record.client].get() == client_fd);
    CHECK(fds[record.backend].get() == backend_fd);
    const std::vector<std::byte> unsent(reinterpret_cast<const std::byte*>("456789"),
                                        reinterpret_cast<const std::byte*>("456789") + 6);
    CHECK(record.directions[0].buffered == unsent);
    CHECK(record.directions[0].bytes == 12345);
    CHECK(record.directions[0].source_braked);
    CHECK(record.directions[1].sink_shut);
    // The sockmap fields are the plane's to fill (SockmapPlane::export_flow).
    record.directions[0].baseline_consumed = 7;
    record.directions[0].baseline_written = 8;
    record.directions[0].copied = 30;
    record.directions[0].urgent_removed = 2;

    plane::Flow to;
    REQUIRE_FALSE(to.plane);  // a fresh flow pays for no plane state
    plane::import_flow(record, fds, to, handoff::kMaxBufferedBytes);
    REQUIRE(to.plane);  // the adopt made it
    CHECK(to.client.get() == client_fd);
    CHECK(to.backend.get() == backend_fd);
    CHECK_FALSE(fds[0].valid());
    REQUIRE(to.plane->directions[0].buffer);
    CHECK(to.plane->directions[0].filled == 6);
    CHECK(to.plane->directions[0].sent == 0);
    CHECK(std::memcmp(to.plane->directions[0].buffer.get(), "456789", 6) == 0);
    CHECK(to.plane->directions[0].bytes == 12345);
    CHECK(to.plane->directions[0].source_braked);
    CHECK(to.plane->directions[1].source_eof);
    CHECK(to.plane->directions[1].sink_shut);
    CHECK_FALSE(to.plane->directions[1].buffer);
    CHECK(to.plane->baselines[0].consumed == 7);
    CHECK(to.plane->baselines[0].written == 8);
    CHECK(to.plane->directions[0].copied == 30);
    CHECK(to.plane->directions[0].urgent_removed == 2);
}
