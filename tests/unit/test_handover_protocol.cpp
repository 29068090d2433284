// The bytes of the upgrade handover (upgrade/handover_protocol.h) and the records that carry
// them with their fds (upgrade/fd_passing.h): what a new binary accepts from the old process,
// whose bytes are untrusted.

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <string>
#include <vector>

#include "upgrade/fd_passing.h"
#include "upgrade/handover_protocol.h"

using splicer::UniqueFd;
namespace upgrade = splicer::upgrade;

namespace {

std::span<const std::byte> bytes_of(const std::string& text) {
    return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

std::pair<UniqueFd, UniqueFd> seqpacket_pair() {
    int ends[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) == 0);
    return {UniqueFd(ends[0]), UniqueFd(ends[1])};
}

}  // namespace

TEST_CASE("an offer round-trips its listeners' flags in order", "[upgrade]") {
    const std::vector<upgrade::OfferedListener> listeners = {
        {.http = false, .from_systemd = false},
        {.http = true, .from_systemd = false},
        {.http = false, .from_systemd = true},
        {.http = true, .from_systemd = true},
        {.http = false, .from_systemd = false, .metrics = true}};
    const std::string offer = upgrade::encode_offer(listeners);
    auto decoded = upgrade::decode_offer(bytes_of(offer));
    REQUIRE(decoded);
    REQUIRE(decoded->size() == listeners.size());
    for (std::size_t i = 0; i < listeners.size(); ++i) {
        CAPTURE(i);
        CHECK((*decoded)[i].http == listeners[i].http);
        CHECK((*decoded)[i].from_systemd == listeners[i].from_systemd);
        CHECK((*decoded)[i].metrics == listeners[i].metrics);
    }
}

TEST_CASE("a malformed offer is refused with its reason", "[upgrade]") {
    const std::string good =
        upgrade::encode_offer(std::vector<upgrade::OfferedListener>{{.http = true}});
    std::string other_version = good;
    other_version[5] = 2;
    std::string unknown_flag = good;
    unknown_flag[8] = 8;
    std::string too_many = good;
    too_many[6] = 0x01;  // 256 + 1 listeners
    std::string none = good.substr(0, 8);
    none[7] = 0;
    const auto [bytes, reason] = GENERATE_COPY(table<std::string, std::string>({
        {"", "not a handover offer"},
        {"SPLX" + good.substr(4), "not a handover offer"},
        {good.substr(0, 7), "not a handover offer"},
        {other_version, "handover protocol version 2"},
        {unknown_flag, "unknown flags"},
        {too_many, "an offer of 257 listeners"},
        {none, "an offer of 0 listeners"},
        {good + "x", "an offer of 10 bytes for 1 listeners"},
        {good.substr(0, 8), "an offer of 8 bytes for 1 listeners"},
    }));
    CAPTURE(reason);
    auto decoded = upgrade::decode_offer(bytes_of(bytes));
    REQUIRE_FALSE(decoded);
    CHECK_THAT(decoded.error().message, Catch::Contains(reason));
}

TEST_CASE("every prefix of an offer is refused", "[upgrade]") {
    const std::string offer = upgrade::encode_offer(
        std::vector<upgrade::OfferedListener>{{.http = false}, {.http = true}});
    for (std::size_t length = 0; length < offer.size(); ++length) {
        CAPTURE(length);
        CHECK_FALSE(upgrade::decode_offer(bytes_of(offer.substr(0, length))));
    }
}

TEST_CASE("a ready message carries a real pid and nothing else", "[upgrade]") {
    auto decoded = upgrade::decode_ready(bytes_of(upgrade::encode_ready(123456)));
    REQUIRE(decoded);
    CHECK(*decoded == 123456);
    for (const pid_t pid : {0, 1}) {
        CAPTURE(pid);
        CHECK_FALSE(upgrade::decode_ready(bytes_of(upgrade::encode_ready(pid))));
    }
    std::string huge = upgrade::encode_ready(5);
    huge[6] = static_cast<char>(0x80);  // above INT_MAX
    CHECK_FALSE(upgrade::decode_ready(bytes_of(huge)));
    CHECK_FALSE(upgrade::decode_ready(bytes_of(upgrade::encode_ready(5) + "x")));
    CHECK_FALSE(upgrade::decode_ready(
        bytes_of(upgrade::encode_offer(std::vector<upgrade::OfferedListener>{{}}))));
}

TEST_CASE("a record carries its fds, owned and close-on-exec on arrival", "[upgrade]") {
    auto [sender, receiver] = seqpacket_pair();
    int pipe_ends[2] = {-1, -1};
    REQUIRE(::pipe(pipe_ends) == 0);
    UniqueFd read_end(pipe_ends[0]);
    UniqueFd write_end(pipe_ends[1]);
    const int fds[2] = {read_end.get(), write_end.get()};
    REQUIRE(upgrade::send_record(sender.get(), "hello", fds));
    auto record = upgrade::receive_record(receiver.get(), 16, 2);
    REQUIRE(record);
    CHECK(record->bytes == "hello");
    REQUIRE(record->fds.size() == 2);
    for (const UniqueFd& fd : record->fds) {
        CHECK((::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC) != 0);
    }
    // The same pipe: written through the received end, read through ours.
    REQUIRE(::write(record->fds[1].get(), "x", 1) == 1);
    char got = 0;
    CHECK(::read(read_end.get(), &got, 1) == 1);
    CHECK(got == 'x');
}

TEST_CASE("a record above its bounds is refused and its fds closed", "[upgrade]") {
    auto [sender, receiver] = seqpacket_pair();
    int pipe_ends[2] = {-1, -1};
    REQUIRE(::pipe(pipe_ends) == 0);
    UniqueFd read_end(pipe_ends[0]);
    UniqueFd write_end(pipe_ends[1]);
    const int two[2] = {write_end.get(), write_end.get()};
    REQUIRE(upgrade::send_record(sender.get(), "x", two));
    auto too_many_fds = upgrade::receive_record(receiver.get(), 16, 1);
    REQUIRE_FALSE(too_many_fds);
    CHECK_THAT(too_many_fds.error().message, Catch::Contains("2 fds"));
    REQUIRE(upgrade::send_record(sender.get(), std::string(17, 'x'), {}));
    CHECK_FALSE(upgrade::receive_record(receiver.get(), 16, 1));
    // Every copy of the write end that arrived was closed: only ours holds it now, so the
    // read end sees EOF once ours goes.
    write_end.reset();
    char got = 0;
    CHECK(::read(read_end.get(), &got, 1) == 0);
    sender.reset();
    auto closed = upgrade::receive_record(receiver.get(), 16, 1);
    REQUIRE_FALSE(closed);
    CHECK(closed.error().message == "closed");
}
