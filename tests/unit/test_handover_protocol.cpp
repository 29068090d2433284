// The bytes of the upgrade handover (upgrade/handover_protocol.h), the records that carry
// them with their fds (upgrade/fd_passing.h) and the established connections' batches
// (upgrade/batch_transfer.h): what a new binary accepts from the old process, whose bytes
// are untrusted.

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include "upgrade/batch_transfer.h"
#include "upgrade/fd_passing.h"
#include "upgrade/handover_protocol.h"

using splicer::UniqueFd;
namespace upgrade = splicer::upgrade;

namespace {

std::span<const std::byte> bytes_of(const std::string& text) {
    return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

// A pipe's two ends, owned: fds to pass whose arrival (and closing) can be seen.
struct OwnedPipe {
    UniqueFd read_end;
    UniqueFd write_end;
};
OwnedPipe owned_pipe() {
    int ends[2] = {-1, -1};
    REQUIRE(::pipe(ends) == 0);
    return {UniqueFd(ends[0]), UniqueFd(ends[1])};
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
    const std::vector<std::string> offer = upgrade::encode_offer(listeners);
    REQUIRE(offer.size() == 1);
    auto decoded = upgrade::decode_offer(bytes_of(offer.front()));
    REQUIRE(decoded);
    CHECK(decoded->total == listeners.size());
    CHECK(decoded->first == 0);
    REQUIRE(decoded->listeners.size() == listeners.size());
    for (std::size_t i = 0; i < listeners.size(); ++i) {
        CAPTURE(i);
        CHECK(decoded->listeners[i].http == listeners[i].http);
        CHECK(decoded->listeners[i].from_systemd == listeners[i].from_systemd);
        CHECK(decoded->listeners[i].metrics == listeners[i].metrics);
    }
}

TEST_CASE("an offer of more listeners than one record carries goes in records, in order",
          "[upgrade]") {
    // 8 addresses on 64 workers, plus the metrics endpoint's.
    std::vector<upgrade::OfferedListener> listeners(8 * 64 + 1);
    for (std::size_t i = 0; i < listeners.size(); ++i) {
        listeners[i].http = i % 3 == 0;
    }
    listeners.back() = {.metrics = true};
    const std::vector<std::string> offer = upgrade::encode_offer(listeners);
    REQUIRE(offer.size() == 3);  // 250 + 250 + 13
    std::size_t next = 0;
    for (const std::string& record : offer) {
        CHECK(record.size() <= upgrade::kMaxRecordBytes);
        auto decoded = upgrade::decode_offer(bytes_of(record));
        REQUIRE(decoded);
        CHECK(decoded->total == listeners.size());
        CHECK(decoded->first == next);
        CHECK(decoded->listeners.size() <= upgrade::kListenersPerRecord);
        for (std::size_t i = 0; i < decoded->listeners.size(); ++i) {
            CAPTURE(next + i);
            CHECK(decoded->listeners[i].http == listeners[next + i].http);
            CHECK(decoded->listeners[i].metrics == listeners[next + i].metrics);
        }
        next += decoded->listeners.size();
    }
    CHECK(next == listeners.size());
}

TEST_CASE("a malformed offer is refused with its reason", "[upgrade]") {
    // Header: magic (4), version (2), total (2), first (2), count (2); then one flags byte.
    const std::string good =
        upgrade::encode_offer(std::vector<upgrade::OfferedListener>{{.http = true}}).front();
    REQUIRE(good.size() == 13);
    const auto with = [&good](std::size_t at, char byte) {
        std::string changed = good;
        changed[at] = byte;
        return changed;
    };
    std::string too_many = with(6, 0x10);  // a total of 4096 + 1
    too_many[7] = 1;
    std::string big_record = with(6, 0x01);  // 256 + 1 of 257 in one record
    big_record[7] = 1;
    big_record[10] = 0x01;
    big_record[11] = 1;
    const auto [bytes, reason] = GENERATE_COPY(table<std::string, std::string>({
        {"", "not a handover offer"},
        {"SPLX" + good.substr(4), "not a handover offer"},
        {good.substr(0, 11), "not a handover offer"},
        {with(5, 1), "handover protocol version 1"},
        {with(12, 8), "unknown flags"},
        {too_many, "an offer of 4097 listeners"},
        {with(7, 0), "an offer of 0 listeners"},
        {with(11, 0), "an offer record of 0 listeners"},
        {big_record, "an offer record of 257 listeners"},
        {with(9, 1), "an offer record of listeners 1 to 1 of 1"},
        {with(11, 2), "an offer record of listeners 0 to 1 of 1"},
        {good + "x", "an offer record of 14 bytes for 1 listeners"},
        {good.substr(0, 12), "an offer record of 12 bytes for 1 listeners"},
    }));
    CAPTURE(reason);
    auto decoded = upgrade::decode_offer(bytes_of(bytes));
    REQUIRE_FALSE(decoded);
    CHECK_THAT(decoded.error().message, Catch::Contains(reason));
}

TEST_CASE("every prefix of an offer is refused", "[upgrade]") {
    const std::string offer = upgrade::encode_offer(std::vector<upgrade::OfferedListener>{
                                                        {.http = false}, {.http = true}})
                                  .front();
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
        bytes_of(upgrade::encode_offer(std::vector<upgrade::OfferedListener>{{}}).front())));
}

TEST_CASE("a record carries its fds, owned and close-on-exec on arrival", "[upgrade]") {
    auto [sender, receiver] = seqpacket_pair();
    auto [read_end, write_end] = owned_pipe();
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
    auto [read_end, write_end] = owned_pipe();
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

TEST_CASE("a batch larger than one record crosses in pieces, bytes and fds in order", "[upgrade]") {
    auto [sender, receiver] = seqpacket_pair();
    // 300 fds (two pieces' worth) naming 150 pipes' two ends; 100 KiB of bytes (four pieces).
    std::vector<UniqueFd> pipes;
    std::vector<int> fds;
    for (int i = 0; i < 150; ++i) {
        int ends[2] = {-1, -1};
        REQUIRE(::pipe2(ends, O_CLOEXEC) == 0);
        pipes.emplace_back(ends[0]);
        pipes.emplace_back(ends[1]);
        fds.push_back(ends[0]);
        fds.push_back(ends[1]);
    }
    std::vector<std::byte> bytes(100 * 1024);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        bytes[i] = static_cast<std::byte>(i * 7 + i / 251);
    }
    // Sent from a thread: the socket buffer holds only part of it until the receiver reads.
    std::thread sending([&, socket = sender.get()] {
        CHECK(upgrade::send_batch(socket, bytes, fds));
        CHECK(upgrade::send_batch(socket, {}, {}));
        CHECK(upgrade::send_batches_end(socket));
    });
    auto batch = upgrade::receive_batch(receiver.get());
    auto empty = upgrade::receive_batch(receiver.get());
    auto end = upgrade::receive_batch(receiver.get());
    sending.join();
    // The answers, the other way.
    REQUIRE(upgrade::send_batch_answer(receiver.get(), true));
    REQUIRE(upgrade::send_batch_answer(receiver.get(), false));
    auto taken = upgrade::receive_batch_answer(sender.get());
    auto refused = upgrade::receive_batch_answer(sender.get());
    REQUIRE(taken);
    CHECK(*taken);
    REQUIRE(refused);
    CHECK_FALSE(*refused);
    REQUIRE(upgrade::send_record(receiver.get(), "SPLA", {}));
    CHECK_FALSE(upgrade::receive_batch_answer(sender.get()));
    receiver.reset();
    CHECK_FALSE(upgrade::receive_batch_answer(sender.get()));
    REQUIRE(batch);
    REQUIRE(batch->has_value());
    CHECK((*batch)->bytes == bytes);
    REQUIRE((*batch)->fds.size() == fds.size());
    // In order: each received read end reads what its own pipe's write end got.
    for (std::size_t i = 0; i < fds.size(); i += 2) {
        CAPTURE(i);
        const char mark = static_cast<char>('a' + i % 26);
        REQUIRE(::write((*batch)->fds[i + 1].get(), &mark, 1) == 1);
        char got = 0;
        REQUIRE(::read(pipes[i].get(), &got, 1) == 1);
        CHECK(got == mark);
    }
    REQUIRE(empty);
    REQUIRE(empty->has_value());
    CHECK((*empty)->bytes.empty());
    CHECK((*empty)->fds.empty());
    REQUIRE(end);
    CHECK_FALSE(end->has_value());
}

TEST_CASE("a malformed batch is refused", "[upgrade]") {
    auto [sender, receiver] = seqpacket_pair();
    const auto batch_header = [](std::uint32_t bytes, std::uint32_t fds) {
        std::string out = "SPLB";
        out += {'\0', static_cast<char>(upgrade::kProtocolVersion)};
        for (const std::uint32_t value : {bytes, fds}) {
            for (int shift = 24; shift >= 0; shift -= 8) {
                out.push_back(static_cast<char>((value >> shift) & 0xff));
            }
        }
        return out;
    };
    const std::string piece =
        std::string("SPLP") + '\0' + static_cast<char>(upgrade::kProtocolVersion);
    SECTION("a piece with no header") {
        REQUIRE(upgrade::send_record(sender.get(), piece + "abc", {}));
    }
    SECTION("a piece past the header's byte count") {
        REQUIRE(upgrade::send_record(sender.get(), batch_header(2, 0), {}));
        REQUIRE(upgrade::send_record(sender.get(), piece + "abc", {}));
    }
    SECTION("a header above the bounds") {
        REQUIRE(upgrade::send_record(
            sender.get(), batch_header(static_cast<std::uint32_t>(upgrade::kMaxBatchBytes) + 1, 0),
            {}));
    }
    SECTION("another protocol version") {
        std::string other = batch_header(0, 0);
        other[5] = 1;
        REQUIRE(upgrade::send_record(sender.get(), other, {}));
    }
    SECTION("the old process gone mid-batch") {
        REQUIRE(upgrade::send_record(sender.get(), batch_header(10, 0), {}));
        REQUIRE(upgrade::send_record(sender.get(), piece + "abc", {}));
        sender.reset();
    }
    auto received = upgrade::receive_batch(receiver.get());
    CHECK_FALSE(received);
}
