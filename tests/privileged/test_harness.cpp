// Self-tests of the integration-test harness (tests/support), without the daemon: clients
// talk to the backends directly, and a shell script stands in for splicer to exercise
// DaemonProcess. If these fail, a failing daemon test says nothing about the daemon.

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <limits>
#include <set>
#include <thread>

#include "splicer/log.h"
#include "support/backends.h"
#include "support/client_hello.h"
#include "support/daemon.h"
#include "support/log_lines.h"
#include "support/openssl_client.h"
#include "support/privileged.h"
#include "support/proc_stats.h"
#include "support/raw_client.h"
#include "support/sockets.h"
#include "support/streams.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;

TEST_CASE("ByteGenerator is deterministic however the stream is cut", "[harness]") {
    test::ByteGenerator whole(7);
    const std::string expected = whole.take(10'007);
    test::ByteGenerator pieces(7);
    std::string joined;
    for (const std::size_t size : {1U, 3U, 8U, 13U, 1000U, 0U, 7U, 8975U}) {
        joined += pieces.take(size);
    }
    REQUIRE(joined.size() == expected.size());
    CHECK(joined == expected);
    // The stream itself, pinned: xorshift64* words, low byte first (computed apart from this
    // code), so a faster fill() cannot change which bytes the tests send and expect.
    CHECK(test::sha256_hex(expected) ==
          "c1a16652b46f1f310a68f7bd682e4b5c8d9b3809fa97a1495c6d528847c72038");
    CHECK(test::ByteGenerator(8).take(64) != test::ByteGenerator(7).take(64));
    CHECK(test::ByteGenerator(0).take(64) != std::string(64, '\0'));
}

TEST_CASE("Sha256Hasher matches the FIPS 180-2 vector and hashes in pieces", "[harness]") {
    CHECK(test::sha256_hex("abc") ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    test::Sha256Hasher pieces;
    pieces.update("a");
    pieces.update("bc");
    CHECK(pieces.hex() == test::sha256_hex("abc"));
    const std::string prefix = "hello";
    CHECK(test::sha256_of_generated(prefix, 3, 100'000) ==
          test::sha256_hex(prefix + test::ByteGenerator(3).take(100'000)));
}

TEST_CASE("logfmt lines written by splicer::log parse back field by field", "[harness]") {
    const std::string line = splicer::log::format_line(splicer::log::Level::info, "routed",
                                                       {{"conn", "7"},
                                                        {"client", "127.0.0.1:51234"},
                                                        {"sni", "chat.example.com"},
                                                        {"error", "Connection refused"},
                                                        {"odd", "a \"quoted\" \\ value=x\n"},
                                                        {"empty", ""}});
    const test::LogLine parsed = test::parse_log_line(line);
    CHECK(parsed.event() == "routed");
    CHECK(parsed.level() == "info");
    CHECK(parsed.has("ts"));
    CHECK(parsed.number("conn") == 7ULL);
    CHECK(parsed.get("client") == "127.0.0.1:51234");
    CHECK(parsed.get("error") == "Connection refused");
    CHECK(parsed.get("odd") == "a \"quoted\" \\ value=x\n");
    CHECK(parsed.has("empty"));
    CHECK(parsed.get("empty").empty());
    CHECK_FALSE(parsed.has("missing"));
    CHECK(test::parse_log_line("splicer: not logfmt at all").fields.empty());
    CHECK(test::log_line_is_client(test::parse_log_line("event=routed client=[::1]:4000"), 4000));
    CHECK_FALSE(
        test::log_line_is_client(test::parse_log_line("event=routed client=1.2.3.4:14000"), 4000));
}

TEST_CASE("transfer_both_ways moves 64 MiB each way over a direct TCP pair", "[harness]") {
    auto [client, server] = test::tcp_pair();
    test::TransferOptions client_side;
    client_side.send = {"prefix", 64ULL << 20, 1};
    client_side.expect = test::kUntilEof;
    test::TransferOptions server_side;
    server_side.send = {"", 64ULL << 20, 2};
    server_side.expect = test::kUntilEof;
    test::TransferResult server_result;
    std::thread server_thread(
        [&, fd = server.get()] { server_result = test::transfer_both_ways(fd, server_side); });
    const test::TransferResult client_result = test::transfer_both_ways(client.get(), client_side);
    server_thread.join();
    CHECK(client_result.complete(client_side));
    CHECK(server_result.complete(server_side));
    CHECK(server_result.received == client_side.send.total());
    CHECK(server_result.received_sha256 == client_result.sent_sha256);
    CHECK(client_result.received_sha256 == server_result.sent_sha256);
    CHECK(client_result.sent_sha256 == test::sha256_of_generated("prefix", 1, 64ULL << 20));
    CHECK(server_result.received_head.substr(0, 6) == "prefix");
    WARN("direct 64 MiB each way: " << client_result.elapsed.count() << " ms");
}

TEST_CASE("transfer_both_ways with verify names where a stream went wrong", "[harness]") {
    const test::Outgoing expected{"head", 1ULL << 20, 5};
    const std::string bytes = test::expected_bytes(expected, 0, expected.total());
    REQUIRE(bytes.size() == expected.total());
    struct Case {
        std::string name;
        std::string sent;
        std::uint64_t mismatch;
        std::uint64_t found_at;
    };
    constexpr std::uint64_t kNone = std::numeric_limits<std::uint64_t>::max();
    const std::vector<Case> cases = {
        {"exact", bytes, kNone, kNone},
        {"a hole of 1000 bytes", bytes.substr(0, 300'000) + bytes.substr(301'000), 300'000,
         301'000},
        {"100,000 bytes twice", bytes.substr(0, 500'000) + bytes.substr(400'000), 500'000, 400'000},
        {"truncated", bytes.substr(0, 700'000), kNone, kNone},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        auto [writer, reader] = test::tcp_pair();
        std::thread sending([&, fd = writer.get()] {
            test::write_all(fd, c.sent);
            ::shutdown(fd, SHUT_WR);
        });
        test::TransferOptions options;
        options.verify = &expected;
        const test::TransferResult result = test::transfer_both_ways(reader.get(), options);
        sending.join();
        CHECK(result.eof);
        CHECK(result.received == c.sent.size());
        CHECK(result.first_mismatch == c.mismatch);
        CHECK(result.mismatch_found_at == c.found_at);
    }
}

TEST_CASE("TcpBackend exchange: records what arrives and replies concurrently", "[harness]") {
    test::TcpBackend backend(test::BackendScript::exchange(8ULL << 20, 500));
    UniqueFd client = test::connect_to(backend.port());
    test::TransferOptions options;
    options.send = {test::xmpp_stream_header(), 8ULL << 20, 9};
    options.expect = test::kUntilEof;
    const test::TransferResult result = test::transfer_both_ways(client.get(), options);
    CHECK(result.complete(options));
    REQUIRE(backend.wait_for_finished(1, 5s));
    const test::BackendConnection record = backend.finished().front();
    CHECK(record.index == 0);
    CHECK(record.eof);
    CHECK_FALSE(record.reset);
    CHECK(record.received == options.send.total());
    CHECK(record.received_sha256 == result.sent_sha256);
    CHECK(record.received_head.rfind(test::xmpp_stream_header(), 0) == 0);
    CHECK(record.sent == 8ULL << 20);
    CHECK(record.sent_sha256 == result.received_sha256);
    CHECK(record.sent_sha256 == test::sha256_of_generated("", 500, 8ULL << 20));  // seed + index 0
    CHECK(backend.live_received() == record.received);
    CHECK(backend.live_sent() == record.sent);
}

TEST_CASE("TcpBackend message_then_close: the message arrives whole, then EOF", "[harness]") {
    const std::string header = test::xmpp_stream_header();
    test::TcpBackend backend(
        test::BackendScript::message_then_close("last words", 4ULL << 20, header.size()));
    UniqueFd client = test::connect_and_send(backend.port(), header, "");
    test::TransferOptions options;
    options.expect = test::kUntilEof;
    options.after_send = test::AfterSend::nothing;
    const test::TransferResult result = test::transfer_both_ways(client.get(), options);
    CHECK(result.complete(options));
    CHECK(result.received == 10 + (4ULL << 20));
    CHECK(result.received_head.rfind("last words", 0) == 0);
    REQUIRE(backend.wait_for_finished(1, 5s));
    CHECK(backend.finished().front().sent_sha256 == result.received_sha256);
    CHECK(backend.finished().front().received == header.size());
}

TEST_CASE("TcpBackend read_to_eof_then_reply: half-close, then the reply", "[harness]") {
    test::TcpBackend backend(test::BackendScript::read_to_eof_then_reply("reply:", 1ULL << 20));
    UniqueFd client = test::connect_to(backend.port());
    test::TransferOptions options;
    options.send = {"question:", 1ULL << 20, 5};
    options.after_send = test::AfterSend::shutdown_write;
    options.expect = test::kUntilEof;
    const test::TransferResult result = test::transfer_both_ways(client.get(), options);
    CHECK(result.complete(options));
    REQUIRE(backend.wait_for_finished(1, 5s));
    const auto record = backend.finished().front();
    CHECK(record.eof);
    CHECK(record.received_sha256 == result.sent_sha256);
    CHECK(record.sent_sha256 == result.received_sha256);
    CHECK(result.received_head.rfind("reply:", 0) == 0);
}

TEST_CASE("transfer_many drives 100 connections at once against one backend", "[harness]") {
    test::TcpBackend backend(test::BackendScript::exchange(256 * 1024, 10'000));
    constexpr std::size_t kConnections = 100;
    std::vector<UniqueFd> clients;
    std::vector<int> fds;
    std::vector<test::TransferOptions> options(kConnections);
    for (std::size_t i = 0; i < kConnections; ++i) {
        clients.push_back(test::connect_to(backend.port()));
        fds.push_back(clients.back().get());
        options[i].send = {"", 256 * 1024, 1 + i};
        options[i].expect = test::kUntilEof;
    }
    const auto results = test::transfer_many(fds, options, 30s);
    REQUIRE(backend.wait_for_finished(kConnections, 10s));
    std::multiset<std::string> client_sent;
    std::multiset<std::string> client_received;
    for (std::size_t i = 0; i < kConnections; ++i) {
        CHECK(results[i].complete(options[i]));
        client_sent.insert(results[i].sent_sha256);
        client_received.insert(results[i].received_sha256);
    }
    std::multiset<std::string> backend_received;
    std::multiset<std::string> backend_sent;
    for (const auto& record : backend.finished()) {
        backend_received.insert(record.received_sha256);
        backend_sent.insert(record.sent_sha256);
    }
    CHECK(client_sent.size() == kConnections);
    CHECK(std::set<std::string>(client_sent.begin(), client_sent.end()).size() == kConnections);
    CHECK(client_sent == backend_received);
    CHECK(client_received == backend_sent);
}

TEST_CASE("resets are seen as resets on both sides", "[harness]") {
    SECTION("backend resets") {
        // The backend answers and resets only once it read the client's byte: answering at
        // its accept, its reset could reach the client while connect_to was still reading
        // the connect's outcome (SO_ERROR: ECONNRESET, CI under load, session 32).
        test::BackendScript script = test::BackendScript::message_then_close("x", 0, 1);
        script.end = test::BackendEnd::reset;
        test::TcpBackend backend(script);
        UniqueFd client = test::connect_to(backend.port());
        test::write_all(client.get(), "y");
        REQUIRE(backend.wait_for_finished(1, 5s));
        std::uint64_t received = 0;
        const std::string how = test::wait_for_close(client.get(), 3s, &received);
        CHECK(how == "reset");
    }
    SECTION("client resets mid-stream") {
        test::TcpBackend backend(test::BackendScript::exchange(64ULL << 20));
        UniqueFd client = test::connect_to(backend.port());
        test::write_all(client.get(), std::string(100'000, 'a'));
        REQUIRE(test::read_exactly(client.get(), 100'000).size() == 100'000);
        test::close_with_reset(std::move(client));
        REQUIRE(backend.wait_for_finished(1, 5s));
        const auto record = backend.finished().front();
        CHECK((record.reset || record.eof));
        CHECK(record.elapsed < 5s);
    }
}

TEST_CASE("BlackholeListener makes a connect time out instead of being refused", "[harness]") {
    test::BlackholeListener blackhole;
    const auto start = test::Clock::now();
    CHECK_THROWS_WITH(test::connect_to(blackhole.port(), false, 1500ms),
                      Catch::Contains("timed out"));
    CHECK(test::Clock::now() - start >= 1400ms);
}

TEST_CASE("free_port gives distinct ports free on both loopbacks", "[harness]") {
    std::set<std::uint16_t> ports;
    for (int i = 0; i < 20; ++i) {
        const std::uint16_t port = test::free_port();
        CHECK(port != 0);
        ports.insert(port);
    }
    CHECK(ports.size() == 20);
}

TEST_CASE("slow sink and fast source bound the bytes in flight on a direct connection",
          "[harness]") {
    // The same measurement the daemon tests make, without the daemon: the reference figure.
    const auto run = [](bool backend_reads_slowly) {
        const std::string prefix = "slow-reader-prefix";
        std::atomic<std::uint64_t> client_sent{0};
        std::atomic<std::uint64_t> client_received{0};
        std::optional<test::TcpBackend> backend;
        if (backend_reads_slowly) {
            backend.emplace(test::BackendScript::slow_sink(64 * 1024, 3000ms));
        } else {
            backend.emplace(test::BackendScript::fast_source(prefix.size(), 3000ms));
        }
        UniqueFd client = test::connect_to(backend->port());
        std::atomic<bool> done{false};
        std::uint64_t max_in_flight = 0;
        std::thread sampler([&] {
            while (!done.load()) {
                const std::uint64_t sent =
                    backend_reads_slowly ? client_sent.load() : backend->live_sent();
                const std::uint64_t read =
                    backend_reads_slowly ? backend->live_received() : client_received.load();
                max_in_flight = std::max(max_in_flight, sent > read ? sent - read : 0);
                std::this_thread::sleep_for(20ms);
            }
        });
        std::string sent_sha;
        std::string received_sha;
        std::uint64_t sent = 0;
        std::uint64_t received = 0;
        if (backend_reads_slowly) {
            test::SourceOptions source;
            source.duration = 3000ms;
            source.live_sent = &client_sent;
            const auto result = test::source_for(client.get(), source);
            sent = result.sent;
            sent_sha = result.sent_sha256;
            REQUIRE(backend->wait_for_finished(1, 30s));
            received = backend->finished().front().received;
            received_sha = backend->finished().front().received_sha256;
        } else {
            test::write_all(client.get(), prefix);
            test::SinkOptions sink;
            sink.slow_for = 3000ms;
            sink.live_received = &client_received;
            const auto result = test::sink_slowly(client.get(), sink);
            CHECK(result.eof);
            CHECK(result.received_while_slow <= 64 * 1024 * 4);
            received = result.received;
            received_sha = result.received_sha256;
            REQUIRE(backend->wait_for_finished(1, 30s));
            sent = backend->finished().front().sent;
            sent_sha = backend->finished().front().sent_sha256;
        }
        done = true;
        sampler.join();
        WARN("direct, " << (backend_reads_slowly ? "backend" : "client")
                        << " reads slowly: max in flight " << (max_in_flight >> 10) << " KiB, "
                        << (sent >> 10) << " KiB sent in total");
        CHECK(received == sent);
        CHECK(received_sha == sent_sha);
        CHECK(max_in_flight < (64ULL << 20));
    };
    SECTION("backend is the slow reader") {
        run(true);
    }
    SECTION("client is the slow reader") {
        run(false);
    }
}

TEST_CASE("a ClientHello and pipelined bytes arrive together in one write", "[harness]") {
    const std::string pipelined = test::ByteGenerator(77).take(300'000);
    const std::string hello = test::make_client_hello({.server_name = "chat.example.com"});
    test::TcpBackend backend(test::BackendScript::record(hello.size() + pipelined.size()));
    // (make_client_hello is random each call: send the very hello measured above.)
    UniqueFd client = test::connect_and_send(backend.port(), hello, pipelined);
    REQUIRE(backend.wait_for_finished(1, 5s));
    const auto record = backend.finished().front();
    CHECK(record.received == hello.size() + pipelined.size());
    CHECK(record.received_sha256 == test::sha256_hex(hello + pipelined));
    CHECK(static_cast<unsigned char>(record.received_head[0]) == 0x16);  // TLS handshake record
}

TEST_CASE("openssl s_server and s_client: a real handshake, CN and ALPN visible", "[harness]") {
    SECTION("IPv4, ALPN negotiated") {
        test::OpensslServer server({.common_name = "p1.backend.test", .alpn = {"xmpp-client"}});
        const test::SClientResult result = test::run_s_client(
            {.port = server.port(), .servername = "chat.example.com", .alpn = {"xmpp-client"}});
        INFO(result.output);
        CHECK_FALSE(result.timed_out);
        CHECK(result.handshake_done);
        CHECK(result.subject_cn == "p1.backend.test");
        CHECK(result.alpn == "xmpp-client");
        CHECK(result.output.find("s_server") != std::string::npos);  // the -www status page
    }
    SECTION("IPv6, no ALPN") {
        test::OpensslServer server({.common_name = "p2.backend.test", .ipv6 = true});
        const test::SClientResult result = test::run_s_client(
            {.port = server.port(), .ipv6 = true, .servername = "share.chat.example.com"});
        INFO(result.output);
        CHECK(result.handshake_done);
        CHECK(result.subject_cn == "p2.backend.test");
        CHECK(result.alpn.empty());
    }
}

namespace {

// A shell script that behaves like the daemon's log contract: it logs listening and ready,
// echoes its arguments and the config's first line, and exits 0 on SIGTERM (or ignores it).
std::string fake_daemon(const test::TempDir& dir, bool ignore_term) {
    std::string script =
        "#!/bin/sh\n"
        "log() { echo \"ts=2026-01-01T00:00:00.000Z level=info event=$*\" >&2; }\n";
    script += ignore_term ? "trap '' TERM\n" : "trap 'log stopped; exit 0' TERM\n";
    script +=
        "log args \"argv=\\\"$*\\\"\"\n"
        "log config \"first=\\\"$(head -n1 \"$3\")\\\"\"\n"
        "log listening addr=127.0.0.1:1\n"
        "log ready plane=copy\n"
        "i=0; while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n";
    const auto path = dir.write_file("fake-splicer", script);
    std::filesystem::permissions(path, std::filesystem::perms::owner_all);
    return path.string();
}

}  // namespace

TEST_CASE("DaemonProcess spawns, captures logfmt lines and stops with SIGTERM", "[harness]") {
    test::TempDir dir;
    test::DaemonOptions options;
    options.binary = fake_daemon(dir, false);
    options.config_text = "listen: ();\n";
    options.splice_mode = "copy";
    test::DaemonProcess daemon(options);
    REQUIRE(daemon.wait_ready(5s));
    const auto args = daemon.wait_for_log("args", {}, 1s);
    REQUIRE(args.has_value());
    const std::string argv(args->get("argv"));
    CHECK(argv.find("run --config " + daemon.config_path().string()) == 0);
    CHECK(argv.find("--splice-mode copy") != std::string::npos);
    CHECK(argv.find("--pin-dir " + daemon.pin_dir()) != std::string::npos);
    CHECK(daemon.pin_dir().rfind("/sys/fs/bpf/splicer-test-", 0) == 0);
    const auto config = daemon.wait_for_log("config", {}, 1s);
    REQUIRE(config.has_value());
    CHECK(config->get("first") == "listen: ();");
    CHECK(daemon.wait_for_log(
        "listening", [](const test::LogLine& line) { return line.get("addr") == "127.0.0.1:1"; },
        1s));
    CHECK_FALSE(daemon.wait_for_log("no_such_event", {}, 200ms));
    CHECK(daemon.open_fd_count() >= 3);
    CHECK(daemon.logs("ready").size() == 1);
    const auto status = daemon.stop(5s);
    REQUIRE(status.has_value());
    CHECK(*status == 0);
    CHECK(daemon.wait_for_log("stopped", {}, 1s));
    CHECK(daemon.open_fd_count() == -1);
}

TEST_CASE("DaemonProcess: a daemon ignoring SIGTERM is reported and then killed", "[harness]") {
    test::TempDir dir;
    pid_t pid = 0;
    {
        test::DaemonOptions options;
        options.binary = fake_daemon(dir, true);
        test::DaemonProcess daemon(options);
        REQUIRE(daemon.wait_ready(5s));
        pid = daemon.pid();
        CHECK_FALSE(daemon.stop(500ms).has_value());
        CHECK(daemon.running());
    }
    CHECK(test::open_fd_count(pid) == -1);  // killed and reaped by the destructor
}

TEST_CASE("proc stats: MemAvailable, fd counts, pinned maps and their entries", "[harness]") {
    test::require_root();
    const auto available = test::mem_available();
    REQUIRE(available.has_value());
    CHECK(*available > 0);
    const int fds = test::open_fd_count(::getpid());
    {
        UniqueFd extra(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        CHECK(test::open_fd_count(::getpid()) == fds + 1);
    }
    CHECK(test::pinned_objects("/nonexistent/pin/dir").empty());

    // A private bpffs with one pinned hash map of three entries.
    test::TempDir mount_point("splicer-bpffs");
    if (::mount("bpf", mount_point.path().c_str(), "bpf", 0, nullptr) != 0) {
        WARN("cannot mount bpffs here; pinned-map counting not checked");
        return;
    }
    {
        const std::string pin_dir = (mount_point.path() / "pins").string();
        ::mkdir(pin_dir.c_str(), 0700);
        UniqueFd map(bpf_map_create(BPF_MAP_TYPE_HASH, "harness", sizeof(std::uint64_t),
                                    sizeof(std::uint64_t), 16, nullptr));
        REQUIRE(map);
        for (std::uint64_t key = 1; key <= 3; ++key) {
            REQUIRE(bpf_map_update_elem(map.get(), &key, &key, BPF_ANY) == 0);
        }
        REQUIRE(bpf_obj_pin(map.get(), (pin_dir + "/peers").c_str()) == 0);
        const auto objects = test::pinned_objects(pin_dir);
        REQUIRE(objects.size() == 1);
        CHECK(objects[0].kind == "map");
        CHECK(objects[0].map_type == BPF_MAP_TYPE_HASH);
        CHECK(objects[0].entries == 3ULL);

        test::PinDir owner(pin_dir);
        CHECK(owner.exists());
    }  // ~PinDir unpins and removes the dir
    CHECK_FALSE(std::filesystem::exists(mount_point.path() / "pins"));
    ::umount2(mount_point.path().c_str(), MNT_DETACH);
}
