// The handoff wire format (userspace/handoff/wire.h) and the fd check (handoff/fd_check.h):
// records survive a round trip, and a receiver refuses, with an error naming the problem,
// every kind of bad message (a table of them, each made by corrupting a good one) and fds
// that are not what the records claim.

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "handoff/fd_check.h"
#include "handoff/wire.h"
#include "support/sockets.h"

using namespace splicer;
using handoff::ConnectionRecord;
using handoff::kNoFd;

namespace {

// A pipe holding the 4096 bytes the sample's splice record says it holds.
struct SamplePipe {
    UniqueFd read_end;
    UniqueFd write_end;
};

SamplePipe pipe_holding_4096() {
    int ends[2] = {-1, -1};
    REQUIRE(::pipe2(ends, O_CLOEXEC | O_NONBLOCK) == 0);
    SamplePipe pipe{UniqueFd(ends[0]), UniqueFd(ends[1])};
    const std::string payload(4096, 'p');
    REQUIRE(::write(pipe.write_end.get(), payload.data(), payload.size()) == 4096);
    return pipe;
}

// Duplicates of `fds`, in order, as a received batch holds them.
std::vector<UniqueFd> duplicates_of(std::initializer_list<int> fds) {
    std::vector<UniqueFd> out;
    for (const int fd : fds) {
        out.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    }
    return out;
}

// A copy record (fds 0, 1) with buffered bytes one way, and a splice record (fds 2..5)
// with a pipe the other way.
std::vector<ConnectionRecord> sample_records() {
    ConnectionRecord copy;
    copy.plane = handoff::PlaneKind::copy;
    copy.id = 7;
    copy.client = 0;
    copy.backend = 1;
    copy.listener = 1;
    copy.age_ms = 1234;
    copy.protocol = "xmpp";
    copy.directions[0].bytes = 1000;
    copy.directions[0].buffered = {std::byte{1}, std::byte{2}, std::byte{3}};
    copy.directions[0].consumed_known = true;
    copy.directions[0].consumed_at_start = 17;
    copy.directions[0].baseline_consumed = 100;
    copy.directions[0].baseline_written = 101;
    copy.directions[0].copied = 102;
    copy.directions[0].urgent_removed = 1;
    copy.directions[1].bytes = 5;
    copy.directions[1].source_eof = true;
    copy.directions[1].sink_shut = true;
    copy.proxied_client = {.family = 4, .port = 51234, .address = {198, 18, 0, 7}};
    copy.client_peer = {.family = 4, .port = 40000, .address = {198, 18, 0, 1}};  // balancer
    ConnectionRecord splice;
    splice.plane = handoff::PlaneKind::splice;
    splice.id = 8;
    splice.client = 2;
    splice.backend = 3;
    splice.protocol = "tls";
    splice.directions[1].pipe_read = 4;
    splice.directions[1].pipe_write = 5;
    splice.directions[1].in_pipe = 4096;
    splice.directions[1].source_braked = true;
    splice.proxied_client = {.family = 6, .port = 443, .address = {0x20, 0x01, 0x0d, 0xb8}};
    splice.proxied_client.address[15] = 1;  // 2001:db8::1
    splice.client_peer = splice.proxied_client;
    splice.client_peer.address[15] = 2;  // 2001:db8::2
    return {copy, splice};
}

std::vector<std::byte> sample_bytes() { return handoff::encode(sample_records(), 6); }

// Byte offsets in sample_bytes(), from wire.h's layout.
constexpr std::size_t kVersionAt = 8;
constexpr std::size_t kCountAt = 12;
constexpr std::size_t kFdCountAt = 16;
constexpr std::size_t kRecord0 = 20;
constexpr std::size_t kPlaneAt = kRecord0;
constexpr std::size_t kReservedAt = kRecord0 + 1;
constexpr std::size_t kProtocolLengthAt = kRecord0 + 2;
constexpr std::size_t kClientAt = kRecord0 + 12;
constexpr std::size_t kBackendAt = kRecord0 + 16;
constexpr std::size_t kDirection0 = kRecord0 + 32 + 4;  // after "xmpp"
constexpr std::size_t kFlagsAt = kDirection0 + 8;
constexpr std::size_t kPipeReadAt = kDirection0 + 17;
constexpr std::size_t kInPipeAt = kDirection0 + 25;
constexpr std::size_t kUrgentRemovedAt = kDirection0 + 53;
constexpr std::size_t kBufferedAt = kDirection0 + 61;
// After direction 0 (65 bytes and its 3 buffered ones) and direction 1 (65 bytes).
constexpr std::size_t kClientFamilyAt = kDirection0 + 133;
constexpr std::size_t kClientAddressAt = kClientFamilyAt + 3;
constexpr std::size_t kClientPeerFamilyAt = kClientAddressAt + 16;
constexpr std::size_t kClientPeerAddressAt = kClientPeerFamilyAt + 3;

void put32(std::vector<std::byte>& bytes, std::size_t at, std::uint32_t value) {
    for (std::size_t i = 0; i < 4; ++i) {
        bytes.at(at + i) = static_cast<std::byte>((value >> (8 * i)) & 0xffU);
    }
}

void put16(std::vector<std::byte>& bytes, std::size_t at, std::uint16_t value) {
    bytes.at(at) = static_cast<std::byte>(value & 0xffU);
    bytes.at(at + 1) = static_cast<std::byte>(value >> 8);
}

struct BadMessage {
    const char* what;
    std::function<void(std::vector<std::byte>&)> corrupt;
    std::uint32_t fd_count;
    const char* error_names;  // a part of the error text
};

}  // namespace

TEST_CASE("handoff wire: records survive encode and decode unchanged", "[handoff]") {
    const auto records = sample_records();
    auto decoded = handoff::decode(handoff::encode(records, 6), 6);
    INFO((decoded ? std::string() : decoded.error().message));
    REQUIRE(decoded);
    REQUIRE(decoded->size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
        const ConnectionRecord& a = records[i];
        const ConnectionRecord& b = (*decoded)[i];
        CHECK(a.plane == b.plane);
        CHECK(a.id == b.id);
        CHECK(a.client == b.client);
        CHECK(a.backend == b.backend);
        CHECK(a.listener == b.listener);
        CHECK(a.age_ms == b.age_ms);
        CHECK(a.protocol == b.protocol);
        CHECK(a.proxied_client.family == b.proxied_client.family);
        CHECK(a.proxied_client.port == b.proxied_client.port);
        CHECK(a.proxied_client.address == b.proxied_client.address);
        CHECK(a.client_peer.family == b.client_peer.family);
        CHECK(a.client_peer.port == b.client_peer.port);
        CHECK(a.client_peer.address == b.client_peer.address);
        for (std::size_t d = 0; d < 2; ++d) {
            CAPTURE(i, d);
            CHECK(a.directions[d].bytes == b.directions[d].bytes);
            CHECK(a.directions[d].source_eof == b.directions[d].source_eof);
            CHECK(a.directions[d].sink_shut == b.directions[d].sink_shut);
            CHECK(a.directions[d].source_braked == b.directions[d].source_braked);
            CHECK(a.directions[d].braked_by_watch == b.directions[d].braked_by_watch);
            CHECK(a.directions[d].consumed_known == b.directions[d].consumed_known);
            CHECK(a.directions[d].consumed_at_start == b.directions[d].consumed_at_start);
            CHECK(a.directions[d].pipe_read == b.directions[d].pipe_read);
            CHECK(a.directions[d].pipe_write == b.directions[d].pipe_write);
            CHECK(a.directions[d].in_pipe == b.directions[d].in_pipe);
            CHECK(a.directions[d].baseline_consumed == b.directions[d].baseline_consumed);
            CHECK(a.directions[d].baseline_written == b.directions[d].baseline_written);
            CHECK(a.directions[d].copied == b.directions[d].copied);
            CHECK(a.directions[d].urgent_removed == b.directions[d].urgent_removed);
            CHECK(a.directions[d].buffered == b.directions[d].buffered);
        }
    }
    // No records, no fds: a valid (empty) handover.
    auto empty = handoff::decode(handoff::encode({}, 0), 0);
    REQUIRE(empty);
    CHECK(empty->empty());
}

TEST_CASE("handoff wire: every prefix of a message is refused as truncated, never read past",
          "[handoff]") {
    const auto bytes = sample_bytes();
    for (std::size_t length = 0; length < bytes.size(); ++length) {
        CAPTURE(length);
        auto decoded = handoff::decode(std::span(bytes.data(), length), 6);
        CHECK_FALSE(decoded);
    }
}

TEST_CASE("handoff wire: a bad message is refused with an error that names the problem",
          "[handoff]") {
    auto bad = GENERATE(values<BadMessage>({
        {"bad magic", [](auto& b) { b[0] = std::byte{'X'}; }, 6, "bad magic"},
        // Version 2 (no client peer address): an older binary's records are not guessed at.
        {"the previous version", [](auto& b) { put32(b, kVersionAt, 2); }, 6, "version 2"},
        {"a later version", [](auto& b) { put32(b, kVersionAt, 4); }, 6, "version 4"},
        {"record count over the bound",
         [](auto& b) { put32(b, kCountAt, handoff::kMaxRecords + 1); }, 6, "over the bound"},
        {"more records than bytes", [](auto& b) { put32(b, kCountAt, 3); }, 6, "truncated"},
        {"fewer fds arrived than named", [](auto&) {}, 5, "5 arrived"},
        {"fd count lies", [](auto& b) { put32(b, kFdCountAt, 7); }, 6, "names 7 fds"},
        {"unknown plane", [](auto& b) { b[kPlaneAt] = std::byte{9}; }, 6, "unknown plane 9"},
        {"reserved byte set", [](auto& b) { b[kReservedAt] = std::byte{1}; }, 6, "reserved"},
        {"protocol name over the bound", [](auto& b) { put16(b, kProtocolLengthAt, 4000); }, 6,
         "over the bound"},
        {"client fd index past the array", [](auto& b) { put32(b, kClientAt, 6); }, 6,
         "bad client fd index 6"},
        {"client fd missing", [](auto& b) { put32(b, kClientAt, kNoFd); }, 6,
         "bad client fd index"},
        {"one fd named twice", [](auto& b) { put32(b, kBackendAt, 0); }, 6,
         "bad backend fd index 0"},
        {"unknown direction flag", [](auto& b) { b[kFlagsAt] = std::byte{0x80}; }, 6,
         "unknown flags"},
        {"a pipe on the copy plane", [](auto& b) { put32(b, kPipeReadAt, 4); }, 6,
         "plane without pipes"},
        {"pipe bytes without a pipe", [](auto& b) { put32(b, kInPipeAt, 10); }, 6,
         "bytes need a pipe"},
        {"buffered bytes over the bound",
         [](auto& b) { put32(b, kBufferedAt, handoff::kMaxBufferedBytes + 1); }, 6,
         "over the bound"},
        {"buffered length past the end", [](auto& b) { put32(b, kBufferedAt, 60000); }, 6,
         "truncated"},
        {"buffered bytes after the stream ended",
         [](auto& b) { b[kFlagsAt] = std::byte{0x03}; }, 6, "after the end of the stream"},
        {"sink shut before the source ended", [](auto& b) { b[kFlagsAt] = std::byte{0x02}; }, 6,
         "sink shut before"},
        {"more urgent bytes left out than copied",
         [](auto& b) { put32(b, kUrgentRemovedAt, 1000); }, 6, "more urgent bytes"},
        {"buffered bytes on the sockmap plane", [](auto& b) { b[kPlaneAt] = std::byte{3}; }, 6,
         "buffered bytes on the sockmap plane"},
        {"unknown client address family", [](auto& b) { b[kClientFamilyAt] = std::byte{5}; },
         6, "unknown family"},
        {"an IPv4 client address with bytes past its four",
         [](auto& b) { b[kClientAddressAt + 4] = std::byte{1}; }, 6, "stray bytes"},
        {"unknown client peer address family",
         [](auto& b) { b[kClientPeerFamilyAt] = std::byte{5}; }, 6,
         "client peer address of family 5"},
        {"an IPv4 client peer address with bytes past its four",
         [](auto& b) { b[kClientPeerAddressAt + 4] = std::byte{1}; }, 6,
         "client peer address of family 4 with stray bytes"},
        {"a client peer address of no family with a port",
         [](auto& b) {
             b[kClientPeerFamilyAt] = std::byte{0};
             for (std::size_t i = 0; i < 16; ++i) {
                 b[kClientPeerAddressAt + i] = std::byte{0};
             }
         },
         6, "client peer address of family 0"},
        {"bytes after the last record", [](auto& b) { b.push_back(std::byte{0}); }, 6,
         "after the last record"},
    }));
    CAPTURE(bad.what);
    auto bytes = sample_bytes();
    bad.corrupt(bytes);
    auto decoded = handoff::decode(bytes, bad.fd_count);
    REQUIRE_FALSE(decoded);
    CAPTURE(decoded.error().message);
    CHECK(decoded.error().message.find(bad.error_names) != std::string::npos);
}

TEST_CASE("handoff wire: an fd nobody names is refused", "[handoff]") {
    auto records = sample_records();
    records.pop_back();  // names fds 0 and 1 only
    auto decoded = handoff::decode(handoff::encode(records, 3), 3);
    REQUIRE_FALSE(decoded);
    CHECK(decoded.error().message.find("fd 2 is named by no record") != std::string::npos);
}

TEST_CASE("handoff fd check: sockets and pipes must be what the records say", "[handoff]") {
    // Record 1 of the sample: client 2, backend 3, a pipe (4, 5) holding 4096 bytes; record
    // 0's fds (0, 1) are a real TCP pair.
    const auto pair0 = test::tcp_pair();
    const auto pair1 = test::tcp_pair();
    const SamplePipe pipe = pipe_holding_4096();
    const UniqueFd& read_end = pipe.read_end;
    const UniqueFd& write_end = pipe.write_end;
    const auto records = sample_records();
    auto fds_with = [&](int replace_at, int fd) {
        const int plain[6] = {pair0.first.get(), pair0.second.get(), pair1.first.get(),
                              pair1.second.get(), read_end.get(), write_end.get()};
        auto at = [&](int i) { return i == replace_at ? fd : plain[i]; };
        return duplicates_of({at(0), at(1), at(2), at(3), at(4), at(5)});
    };
    SECTION("the right fds pass") { CHECK(handoff::check_fds(records, fds_with(-1, -1))); }
    SECTION("a pipe where a socket belongs") {
        auto checked = handoff::check_fds(records, fds_with(0, read_end.get()));
        REQUIRE_FALSE(checked);
        CHECK(checked.error().message.find("client fd: not a socket") != std::string::npos);
    }
    SECTION("a UDP socket where a TCP one belongs") {
        UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        auto checked = handoff::check_fds(records, fds_with(1, udp.get()));
        REQUIRE_FALSE(checked);
        CHECK(checked.error().message.find("backend fd: not a stream socket") !=
              std::string::npos);
    }
    SECTION("a TCP socket that is not connected") {
        UniqueFd lone(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        auto checked = handoff::check_fds(records, fds_with(2, lone.get()));
        REQUIRE_FALSE(checked);
        CHECK(checked.error().message.find("not connected") != std::string::npos);
    }
    SECTION("a listening TCP socket") {
        UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in loopback{};
        loopback.sin_family = AF_INET;
        loopback.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // port 0: any free one
        REQUIRE(::bind(listener.get(), reinterpret_cast<const sockaddr*>(&loopback),
                       sizeof(loopback)) == 0);
        REQUIRE(::listen(listener.get(), 1) == 0);
        auto checked = handoff::check_fds(records, fds_with(3, listener.get()));
        REQUIRE_FALSE(checked);
        CHECK(checked.error().message.find("backend fd: a listening socket") !=
              std::string::npos);
    }
    SECTION("pipe ends swapped") {
        auto fds = fds_with(-1, -1);
        std::swap(fds[4], fds[5]);
        auto checked = handoff::check_fds(records, fds);
        REQUIRE_FALSE(checked);
        CHECK(checked.error().message.find("swapped") != std::string::npos);
    }
    SECTION("ends of two different pipes") {
        int other[2] = {-1, -1};
        REQUIRE(::pipe2(other, O_CLOEXEC) == 0);
        UniqueFd other_read(other[0]);
        UniqueFd other_write(other[1]);
        auto checked = handoff::check_fds(records, fds_with(5, other_write.get()));
        REQUIRE_FALSE(checked);
        CHECK(checked.error().message.find("different pipes") != std::string::npos);
    }
    SECTION("a pipe holding other than the record says") {
        REQUIRE(::write(write_end.get(), "x", 1) == 1);
        auto checked = handoff::check_fds(records, fds_with(-1, -1));
        REQUIRE_FALSE(checked);
        CHECK(checked.error().message.find("pipe holds 4097 bytes, the record says 4096") !=
              std::string::npos);
    }
}

namespace {

// Until `fd`'s TCP peer is gone as getpeername sees it (loopback delivers at once: bounded
// at 2 s all the same).
bool wait_not_connected(int fd) {
    for (int i = 0; i < 200; ++i) {
        sockaddr_storage peer{};
        socklen_t length = sizeof(peer);
        if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) != 0) {
            return true;
        }
        ::usleep(10'000);
    }
    return false;
}

}  // namespace

// Between the old loop's export and the new loop's check nobody serves a pair: a peer may
// reset it, or finish it both ways, meanwhile. That is a race, not a lying sender: the
// record passes (the adopting plane reads the socket's EOF or ECONNRESET and ends the pair
// as the old loop would have), and with it the rest of its batch.
TEST_CASE("handoff fd check: a socket closed since it was connected passes with its batch",
          "[handoff]") {
    const auto pair0 = test::tcp_pair();
    auto pair1 = test::tcp_pair();
    const auto pair2 = test::tcp_pair();
    const SamplePipe pipe = pipe_holding_4096();
    const UniqueFd& read_end = pipe.read_end;
    const UniqueFd& write_end = pipe.write_end;
    SECTION("reset by its peer") {
        const linger abortive{.l_onoff = 1, .l_linger = 0};
        REQUIRE(::setsockopt(pair1.second.get(), SOL_SOCKET, SO_LINGER, &abortive,
                             sizeof(abortive)) == 0);
        pair1.second.reset();  // a RST to pair1.first, record 1's client
    }
    SECTION("FINs both ways") {
        REQUIRE(::shutdown(pair1.first.get(), SHUT_WR) == 0);
        pair1.second.reset();  // its FIN: pair1.first goes FIN_WAIT2 -> TIME_WAIT -> CLOSE
    }
    REQUIRE(wait_not_connected(pair1.first.get()));
    const auto fds = duplicates_of({pair0.first.get(), pair0.second.get(), pair1.first.get(),
                                    pair2.first.get(), read_end.get(), write_end.get()});
    const auto checked = handoff::check_fds(sample_records(), fds);
    INFO((checked ? std::string() : checked.error().message));
    CHECK(checked);
}
