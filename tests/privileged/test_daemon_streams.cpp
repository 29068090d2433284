// Bytes through the daemon, on every data plane: byte-exact in bulk both ways, pipelined
// bytes behind a ClientHello, no truncation at close or half-close, bounded memory with a
// slow reader, 500 connections at once without leaks, and the failure cases (backend down,
// probe timeout, resets) after which the daemon keeps serving.
//
// Sizes and limits can be changed from the environment (see kEnv* below); the defaults keep
// the whole [daemon] set for three planes well under ten minutes on a 2-CPU VM.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "daemon_test_common.h"
#include "support/socket_memory.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;

namespace {

const std::string kXmppGreeting =
    "<?xml version='1.0'?><stream:stream from='chat.example.com' id='s1' version='1.0' "
    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

std::uint64_t env_number(const char* name, std::uint64_t fallback) {
    const char* text = std::getenv(name);
    if (text == nullptr || *text == '\0') {
        return fallback;
    }
    return std::strtoull(text, nullptr, 10);
}

// Bulk transfer size per direction (MiB). 256 by default, as issue 3 asks.
std::uint64_t big_transfer_bytes() {
    return env_number("SPLICER_TEST_BIG_MIB", 256) << 20;
}
// Slow-reader bounds: bytes in flight (sent minus read), and how much memory the daemon may
// take. The naive sockmap forwarder reached 2.2 GB in flight in 10 s and took ~1.65 GiB of
// MemAvailable; userspace peers stay at 2-25 MB. A correct relay may hold what the socket
// buffers on the path can: the sender's and the daemon's send buffers, the daemon's and the
// reader's receive buffers (autotuning maxima from tcp_wmem/tcp_rmem), plus 16 MiB for the
// daemon's own buffering or forced send buffers: 36 MiB with Linux defaults (4 MiB / 6 MiB).
// Where tcp_rmem allows more (32 MiB here: 88 MiB by that sum) autotuning never got near it
// with a 64 KiB/s reader: measured 8-22 MiB on every plane, so the bound is capped at 40 MiB,
// the peers' range with room for scheduling noise.
std::uint64_t max_in_flight_bytes() {
    if (const std::uint64_t mib = env_number("SPLICER_TEST_MAX_IN_FLIGHT_MIB", 0); mib > 0) {
        return mib << 20;
    }
    const test::TcpBufferLimits limits = test::tcp_buffer_limits();
    const std::uint64_t send_max = std::max<std::uint64_t>(limits.send_max, 4ULL << 20);
    const std::uint64_t receive_max = std::max<std::uint64_t>(limits.receive_max, 6ULL << 20);
    return std::min<std::uint64_t>(2 * send_max + 2 * receive_max + (16ULL << 20), 40ULL << 20);
}
// The daemon's own memory while the reader is slow: its RSS growth plus what its two sockets
// hold in the kernel (skmem: queues and forward allocation). A relay holds at most its receive
// buffer toward the sender and its send buffer toward the reader, plus its own buffering: the
// in-flight bound covers that, and truesize (skmem counts whole skbs, not payload) is why the
// bound is twice it. Until session 22 this was MemAvailable, which is machine-wide: compilers
// next to the test moved it by 311-360 MiB and failed it.
std::uint64_t max_daemon_memory_bytes() {
    if (const std::uint64_t mib = env_number("SPLICER_TEST_MAX_DAEMON_MEMORY_MIB", 0); mib > 0) {
        return mib << 20;
    }
    return 2 * max_in_flight_bytes();
}

constexpr std::uint64_t kSlowRate = 64 * 1024;  // bytes per second
// Long enough for a relay without flow control to blow the in-flight bound many times over
// (the naive sockmap forwarder moved 220 MB a second: 880 MB in 4 s against the 40 MiB cap)
// while a correct one has long reached its plateau (its socket buffers fill within the first
// second). 10 s until session 21: six runs of it were a minute of the suite.
constexpr auto kSlowFor = 4s;

std::string hello_for(const std::string& sni, std::vector<std::string> alpn = {}) {
    return test::make_client_hello({.server_name = sni, .alpn = std::move(alpn)});
}

// The memory a daemon holds: its RSS plus the skmem of its sockets that match `ss_filter`.
std::uint64_t daemon_memory(const test::DaemonProcess& daemon, const std::string& ss_filter) {
    return test::resident_bytes(daemon.pid()).value_or(0) +
           test::socket_memory(ss_filter).total();
}

// Samples `in_flight()` every 50 ms and the daemon's memory every 200 ms (an `ss` run) on its
// own thread until stopped.
class Sampler {
public:
    Sampler(std::function<std::uint64_t()> in_flight, std::function<std::uint64_t()> memory)
        : in_flight_(std::move(in_flight)),
          memory_(std::move(memory)),
          memory_baseline_(memory_()),
          memory_max_(memory_baseline_) {
        thread_ = std::thread([this] {
            for (unsigned tick = 0; !done_.load(); ++tick) {
                sample(tick % 4 == 0);
                std::this_thread::sleep_for(50ms);
            }
        });
    }
    ~Sampler() { stop(); }
    Sampler(const Sampler&) = delete;
    Sampler& operator=(const Sampler&) = delete;

    void stop() {
        if (!done_.exchange(true)) {
            thread_.join();
            sample(true);
        }
    }
    [[nodiscard]] std::uint64_t max_in_flight() const { return max_in_flight_; }
    // The most the daemon's memory grew above its level when the sampler started.
    [[nodiscard]] std::uint64_t memory_growth() const { return memory_max_ - memory_baseline_; }

private:
    void sample(bool with_memory) {
        max_in_flight_ = std::max(max_in_flight_, in_flight_());
        if (with_memory) {
            memory_max_ = std::max(memory_max_, memory_());
        }
    }

    std::function<std::uint64_t()> in_flight_;
    std::function<std::uint64_t()> memory_;
    std::uint64_t memory_baseline_;
    std::uint64_t memory_max_;
    std::uint64_t max_in_flight_ = 0;
    std::atomic<bool> done_{false};
    std::thread thread_;
};

// What the slow-reader test checks, whichever side (client or backend) was the slow reader.
struct SlowReaderOutcome {
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    std::uint64_t received_while_slow = 0;
    std::string sent_sha;
    std::string received_sha;
    bool eof = false;
    std::uint64_t max_in_flight = 0;
    std::uint64_t memory_growth = 0;
};

// Sender: a SourceResult or BackendConnection; reader: a BackendConnection or SinkResult.
template <typename Sender, typename Reader>
SlowReaderOutcome slow_reader_outcome(const Sender& sender, const Reader& reader,
                                      const Sampler& sampler) {
    return {.sent = sender.sent,
            .received = reader.received,
            .received_while_slow = reader.received_while_slow,
            .sent_sha = sender.sent_sha256,
            .received_sha = reader.received_sha256,
            .eof = reader.eof,
            .max_in_flight = sampler.max_in_flight(),
            .memory_growth = sampler.memory_growth()};
}

std::uint64_t difference(std::uint64_t sent, std::uint64_t read) {
    return sent > read ? sent - read : 0;
}

// The closed line for the connection the daemon routed from local port `client_port`.
std::optional<test::LogLine> closed_line(const test::DaemonProcess& daemon,
                                         std::uint16_t client_port,
                                         std::chrono::milliseconds timeout = 10s) {
    const auto routed = test::routed_line(daemon, client_port, timeout);
    if (!routed || !routed->has("conn")) {
        return std::nullopt;
    }
    const std::string conn(routed->get("conn"));
    return daemon.wait_for_log(
        "closed", [&](const test::LogLine& line) { return line.get("conn") == conn; }, timeout);
}

std::string joined(const std::vector<std::string>& lines) {
    std::string text;
    for (const auto& line : lines) {
        text += line + "\n";
    }
    return text;
}

// A quick XMPP round trip through the daemon to the greeting backend.
void check_xmpp_still_served(std::uint16_t listen_port) {
    UniqueFd client = test::connect_and_send(listen_port, test::xmpp_stream_header(), "");
    CHECK(test::read_exactly(client.get(), kXmppGreeting.size(), 5000) == kXmppGreeting);
}

}  // namespace

TEST_CASE("256 MiB each way on one connection arrive byte-exact", "[daemon][serial]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    const std::uint64_t size = big_transfer_bytes();
    const std::string hello = hello_for("chat.example.com");
    // One bound for every end of both transfers: the backend's own default (60 s) was shorter
    // than the clients', so on a loaded machine it gave up mid-stream and the bytes it never
    // read looked lost.
    constexpr auto kTransferTimeout = 180s;
    test::BackendScript script = test::BackendScript::exchange(size, 77);
    script.verify = test::Outgoing{hello, size, 1};  // what both clients below send
    script.timeout = kTransferTimeout;
    test::TcpBackend https(script);
    test::TcpBackend unused(test::BackendScript::record());
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = unused.port(),
                                   .https = https.port(),
                                   .xmpp = unused.port()};
    auto daemon = test::start_daemon(plane, test::snikket_config(ports));
    const int baseline_fds = daemon->open_fd_count();

    // The same transfer straight to the backend first: the reference figure, side by side.
    std::chrono::milliseconds direct_elapsed{0};
    {
        UniqueFd direct = test::connect_and_send(https.port(), hello, "");
        test::TransferOptions options;
        options.sent_before = hello;
        options.send = {"", size, 1};
        options.expect = test::kUntilEof;
        options.timeout = kTransferTimeout;
        const test::TransferResult result = test::transfer_both_ways(direct.get(), options);
        REQUIRE(result.complete(options));
        REQUIRE(https.wait_for_finished(1, 30s));
        direct_elapsed = result.elapsed;
    }

    UniqueFd client = test::connect_and_send(ports.listen, hello, "");
    const std::uint16_t client_port = test::local_port(client.get());
    test::TransferOptions options;
    options.sent_before = hello;
    options.send = {"", size, 1};
    options.expect = test::kUntilEof;
    options.timeout = kTransferTimeout;
    const test::Outgoing reply{"", size, 78};  // the backend's second connection
    options.verify = &reply;
    const test::TransferResult result = test::transfer_both_ways(client.get(), options);
    const auto gbits = [&](std::chrono::milliseconds elapsed) {
        const double seconds =
            static_cast<double>(std::max<std::int64_t>(1, elapsed.count())) / 1000.0;
        return static_cast<double>(2 * size) * 8 / seconds / 1e9;
    };
    WARN("plane " << plane << ": " << (size >> 20) << " MiB each way on one connection in "
                  << result.elapsed.count() << " ms = " << gbits(result.elapsed)
                  << " Gbit/s (both directions together); direct, same run: "
                  << direct_elapsed.count() << " ms = " << gbits(direct_elapsed) << " Gbit/s");
    INFO("client: " << test::describe_stream(result));
    const bool finished = https.wait_for_finished(2, 30s);
    INFO("daemon stats:\n"
         << test::daemon_stats(*daemon) << "daemon log:\n"
         << daemon->log_tail(30));
    CHECK(result.complete(options));

    REQUIRE(finished);
    const auto record = https.finished().back();
    INFO("backend: " << test::describe_stream(record));
    CHECK_FALSE(record.timed_out);  // a harness bound, not the daemon, ended the transfer
    CHECK(record.index == 1);
    CHECK(record.received == hello.size() + size);
    CHECK(record.received_sha256 == result.sent_sha256);
    CHECK(record.eof);
    CHECK(record.sent == size);
    CHECK(result.received == size);
    CHECK(result.received_sha256 == record.sent_sha256);

    const auto closed = closed_line(*daemon, client_port);
    INFO(daemon->log_tail());
    REQUIRE(closed.has_value());
    const std::multiset<unsigned long long> counted = {closed->number("bytes_in").value_or(0),
                                                       closed->number("bytes_out").value_or(0)};
    const std::multiset<unsigned long long> moved = {hello.size() + size, size};
    CHECK(counted == moved);
    client.reset();
    CHECK(test::wait_for_fd_count(*daemon, baseline_fds) == baseline_fds);
    test::stop_daemon(*daemon);
}

TEST_CASE("bytes pipelined behind the first message reach the backend with no further send",
          "[daemon]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    test::TcpBackend https(test::BackendScript::record());
    test::TcpBackend xmpp(test::BackendScript::record());
    test::TcpBackend unused(test::BackendScript::record());
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = unused.port(),
                                   .https = https.port(),
                                   .xmpp = xmpp.port()};
    auto daemon = test::start_daemon(plane, test::snikket_config(ports));

    struct Case {
        std::string name;
        test::HelloOptions hello;  // server_name empty: an XMPP stream header instead
        std::size_t pipelined;
    };
    const std::vector<Case> cases = {
        {"hello + 100 B", {.server_name = "chat.example.com"}, 100},
        {"hello + 64 KiB", {.server_name = "groups.chat.example.com"}, 64 * 1024},
        {"hello + 1 MiB", {.server_name = "share.chat.example.com"}, 1 << 20},
        {"hello in 512-byte records + 10 KiB",
         {.server_name = "chat.example.com", .padding_extension_bytes = 4000, .max_fragment = 512},
         10 * 1024},
        {"xmpp header + 32 KiB", {}, 32 * 1024},
    };
    std::uint64_t seed = 100;
    for (const Case& c : cases) {
        CAPTURE(c.name);
        const bool tls = !c.hello.server_name.empty();
        test::TcpBackend& backend = tls ? https : xmpp;
        const std::string first =
            tls ? test::make_client_hello(c.hello) : test::xmpp_stream_header();
        const std::string pipelined = test::ByteGenerator(seed++).take(c.pipelined);
        const std::uint64_t expected = first.size() + pipelined.size();
        const std::size_t finished_before = backend.finished().size();
        const std::uint64_t received_before = backend.live_received();

        UniqueFd client = test::connect_and_send(ports.listen, first, pipelined);
        // The client now waits, sending nothing: everything must arrive anyway.
        const auto deadline = test::Clock::now() + 5s;
        while (backend.live_received() - received_before < expected &&
               test::Clock::now() < deadline) {
            std::this_thread::sleep_for(10ms);
        }
        INFO(daemon->log_tail());
        CHECK(backend.live_received() - received_before == expected);

        ::shutdown(client.get(), SHUT_WR);
        REQUIRE(backend.wait_for_finished(finished_before + 1, 5s));
        const auto record = backend.finished().back();
        CHECK(record.received == expected);
        CHECK(record.received_sha256 == test::sha256_hex(first + pipelined));
        CHECK(test::wait_for_close(client.get(), 5s) == "eof");
    }
    test::stop_daemon(*daemon);
}

TEST_CASE("nothing is truncated at close or half-close, in either direction", "[daemon]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    constexpr std::uint64_t kTail = 4ULL << 20;  // the naive forwarder lost a server's last 4 MiB
    const std::string header = test::xmpp_stream_header();
    // 5222: reads the XMPP header, writes a final message, closes at once.
    test::TcpBackend closing(
        test::BackendScript::message_then_close("final:", kTail, header.size()));
    // 5443: records everything the client sends before its close().
    test::TcpBackend recording(test::BackendScript::record());
    // 5223: reads until the client's shutdown(SHUT_WR), then replies and closes.
    test::TcpBackend replying(test::BackendScript::read_to_eof_then_reply("reply:", kTail));
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = replying.port(),
                                   .https = recording.port(),
                                   .xmpp = closing.port()};
    auto daemon = test::start_daemon(plane, test::snikket_config(ports));
    const int baseline_fds = daemon->open_fd_count();

    SECTION("backend writes a final message and closes: the client gets all of it, then EOF") {
        UniqueFd client = test::connect_and_send(ports.listen, header, "");
        test::TransferOptions options;
        options.sent_before = header;
        options.after_send = test::AfterSend::nothing;
        options.expect = test::kUntilEof;
        options.timeout = 20s;
        const auto result = test::transfer_both_ways(client.get(), options);
        REQUIRE(closing.wait_for_finished(1, 10s));
        const auto record = closing.finished().front();
        INFO(daemon->log_tail());
        CHECK(result.eof);
        CHECK_FALSE(result.reset);
        CHECK(result.received == 6 + kTail);
        CHECK(result.received_sha256 == record.sent_sha256);
        CHECK(record.received == header.size());
    }

    SECTION("client writes and closes: the backend gets all of it, then EOF") {
        const std::string hello = hello_for("chat.example.com");
        UniqueFd client = test::connect_and_send(ports.listen, hello, "");
        test::TransferOptions options;
        options.sent_before = hello;
        options.send = {"", kTail, 5};
        options.after_send = test::AfterSend::nothing;
        options.expect = 0;
        const auto result = test::transfer_both_ways(client.get(), options);
        CHECK(result.complete(options));
        client.reset();  // close() right after the last write, no shutdown first
        REQUIRE(recording.wait_for_finished(1, 10s));
        const auto record = recording.finished().front();
        INFO(daemon->log_tail());
        CHECK(record.eof);
        CHECK_FALSE(record.reset);
        CHECK(record.received == hello.size() + kTail);
        CHECK(record.received_sha256 == result.sent_sha256);
    }

    SECTION("client half-closes: the backend sees EOF, its reply still reaches the client") {
        const std::string hello = hello_for("chat.example.com", {"xmpp-client"});
        UniqueFd client = test::connect_and_send(ports.listen, hello, "");
        test::TransferOptions options;
        options.sent_before = hello;
        options.send = {"", kTail, 6};
        options.after_send = test::AfterSend::shutdown_write;
        options.expect = test::kUntilEof;
        options.timeout = 20s;
        const auto result = test::transfer_both_ways(client.get(), options);
        REQUIRE(replying.wait_for_finished(1, 10s));
        const auto record = replying.finished().front();
        INFO(daemon->log_tail());
        CHECK(result.complete(options));
        CHECK(record.eof);
        CHECK(record.received == hello.size() + kTail);
        CHECK(record.received_sha256 == result.sent_sha256);
        CHECK(result.received == 6 + kTail);
        CHECK(result.received_sha256 == record.sent_sha256);
        CHECK(result.received_head.rfind("reply:", 0) == 0);
    }

    CHECK(test::wait_for_fd_count(*daemon, baseline_fds) == baseline_fds);
    test::stop_daemon(*daemon);
}

// Not [serial]: the memory it bounds is its own daemon's (RSS and its sockets, ss by port),
// the bytes in flight its own connection's, and the slow side paces itself by the clock.
TEST_CASE("a slow reader keeps bytes in flight bounded, memory steady, every byte delivered",
          "[daemon]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    const bool backend_slow = GENERATE(true, false);
    const std::string who = backend_slow ? "backend" : "client";
    CAPTURE(who);
    const std::string header = test::xmpp_stream_header();

    std::optional<test::TcpBackend> backend;
    if (backend_slow) {
        backend.emplace(test::BackendScript::slow_sink(kSlowRate, kSlowFor));
    } else {
        backend.emplace(test::BackendScript::fast_source(header.size(), kSlowFor));
    }
    test::TcpBackend unused(test::BackendScript::record());
    // The slow backend sits behind the HTTPS rule, the fast one behind plain XMPP.
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = unused.port(),
                                   .https = backend_slow ? backend->port() : unused.port(),
                                   .xmpp = backend_slow ? unused.port() : backend->port()};
    auto daemon = test::start_daemon(plane, test::snikket_config(ports));
    // The daemon's two sockets: accepted on the listener, connected to the backend.
    const std::string daemon_sockets = "( sport = :" + std::to_string(ports.listen) +
                                       " or dport = :" + std::to_string(backend->port()) + " )";
    const auto memory = [&] { return daemon_memory(*daemon, daemon_sockets); };

    std::atomic<std::uint64_t> client_sent{0};
    std::atomic<std::uint64_t> client_received{0};
    SlowReaderOutcome outcome;

    if (backend_slow) {
        const std::string hello = hello_for("chat.example.com");
        UniqueFd client = test::connect_to(ports.listen);
        Sampler sampler([&] { return difference(client_sent.load(), backend->live_received()); },
                        memory);
        test::SourceOptions source;
        source.prefix = hello;
        source.duration = kSlowFor;
        source.live_sent = &client_sent;
        const auto result = test::source_for(client.get(), source);
        const bool finished = backend->wait_for_finished(1, 120s);
        sampler.stop();
        REQUIRE(finished);
        outcome = slow_reader_outcome(result, backend->finished().front(), sampler);
    } else {
        UniqueFd client = test::connect_and_send(ports.listen, header, "");
        Sampler sampler([&] { return difference(backend->live_sent(), client_received.load()); },
                        memory);
        test::SinkOptions sink;
        sink.rate_bytes_per_second = kSlowRate;
        sink.slow_for = kSlowFor;
        sink.timeout = 120s;
        sink.live_received = &client_received;
        const auto result = test::sink_slowly(client.get(), sink);
        sampler.stop();
        REQUIRE(backend->wait_for_finished(1, 10s));
        outcome = slow_reader_outcome(backend->finished().front(), result, sampler);
    }
    const auto& [sent, received, received_while_slow, sent_sha, received_sha, eof, max_in_flight,
                 memory_growth] = outcome;

    WARN("plane " << plane << ", " << who << " reads at 64 KiB/s for " << kSlowFor.count()
                  << " s: max in flight " << (max_in_flight >> 10) << " KiB (limit "
                  << (max_in_flight_bytes() >> 20) << " MiB), daemon RSS + socket memory grew "
                  << (memory_growth >> 10) << " KiB (limit " << (max_daemon_memory_bytes() >> 20)
                  << " MiB), sender sent " << (sent >> 10)
                  << " KiB, reader took " << (received_while_slow >> 10) << " KiB while slow, "
                  << (received >> 10) << " KiB in all");
    INFO(daemon->log_tail());
    CHECK(max_in_flight <= max_in_flight_bytes());
    CHECK(memory_growth <= max_daemon_memory_bytes());
    CHECK(eof);
    CHECK(received == sent);
    CHECK(received_sha == sent_sha);
    // The reader really was slow, and the sender really was held back by it.
    CHECK(received_while_slow <= kSlowRate * static_cast<std::uint64_t>(kSlowFor.count() + 2));
    CHECK(sent > received_while_slow);
    test::stop_daemon(*daemon);
}

TEST_CASE("500 concurrent connections x 1 MiB each way, byte-exact, nothing left over",
          "[daemon][serial]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    constexpr std::size_t kConnections = 500;
    constexpr std::uint64_t kBytes = 1ULL << 20;
    // 500 client sockets + 500 backend sockets in this process.
    REQUIRE(test::raise_fd_limit(4 * kConnections + 256) >= 2 * kConnections + 64);

    test::TcpBackend https(test::BackendScript::exchange(kBytes, 1'000'000));
    test::TcpBackend unused(test::BackendScript::record());
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = unused.port(),
                                   .https = https.port(),
                                   .xmpp = unused.port()};
    // Every client comes from 127.0.0.1: lift the per-client limit (256 by default) over them.
    auto daemon = test::start_daemon(
        plane, "max_connections_per_client: 1000;\n" + test::snikket_config(ports));
    const int baseline_fds = daemon->open_fd_count();
    const auto baseline_entries = test::keyed_map_entries(daemon->pin_dir());

    // Each client sends its hello right after connecting, so no probe waits on the others.
    const std::string hello = hello_for("chat.example.com");
    std::vector<UniqueFd> clients;
    std::vector<int> fds;
    std::vector<test::TransferOptions> options(kConnections);
    for (std::size_t i = 0; i < kConnections; ++i) {
        clients.push_back(test::connect_and_send(ports.listen, hello, ""));
        fds.push_back(clients.back().get());
        options[i].sent_before = hello;
        options[i].send = {"", kBytes, 1 + i};
        options[i].expect = test::kUntilEof;
    }
    const auto start = test::Clock::now();
    const auto results = test::transfer_many(fds, options, 180s);
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(test::Clock::now() - start);
    const bool all_finished = https.wait_for_finished(kConnections, 30s);
    WARN("plane " << plane << ": " << kConnections << " connections x 1 MiB each way in "
                  << elapsed.count() << " ms");

    std::size_t complete = 0;
    for (std::size_t i = 0; i < kConnections; ++i) {
        complete += results[i].complete(options[i]) ? 1 : 0;
    }
    const test::StreamHashes client = test::client_hashes(results);
    const test::StreamHashes backend = test::backend_hashes(https);
    INFO(daemon->log_tail(20));
    CHECK(complete == kConnections);
    CHECK(all_finished);
    CHECK(https.accepted() == kConnections);
    CHECK(client.sent == backend.received);
    CHECK(client.received == backend.sent);

    // Afterwards: every fd released, every map entry gone, a closed line per connection.
    clients.clear();
    const int fds_after = test::wait_for_fd_count(*daemon, baseline_fds, 15s);
    INFO("daemon fds now:\n" << joined(test::open_fd_targets(daemon->pid())));
    CHECK(fds_after == baseline_fds);
    for (const auto& [path, entries] : test::keyed_map_entries(daemon->pin_dir())) {
        CAPTURE(path, entries);
        const auto before = baseline_entries.find(path);
        CHECK(entries <= (before == baseline_entries.end() ? 0 : before->second));
    }
    // The log writer hands lines on in batches (up to 20 ms late): a connection's fds can be
    // gone before its closed line is out.
    std::size_t closed_lines = daemon->logs("closed").size();
    for (const auto deadline = test::Clock::now() + 5s;
         closed_lines < kConnections && test::Clock::now() < deadline;) {
        std::this_thread::sleep_for(20ms);
        closed_lines = daemon->logs("closed").size();
    }
    CHECK(closed_lines >= kConnections);

    test::check_still_serving(ports, https);
    test::stop_daemon(*daemon);
}

TEST_CASE("backend refused or timing out: the client is closed promptly, the daemon goes on",
          "[daemon]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    const std::uint16_t refused_port = test::free_port();  // nothing listens there
    test::BlackholeListener blackhole;                     // SYNs dropped: connect times out
    test::TcpBackend xmpp(test::BackendScript::greet_then_record(kXmppGreeting));
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = refused_port,
                                   .https = blackhole.port(),
                                   .xmpp = xmpp.port()};
    auto daemon =
        test::start_daemon(plane, test::snikket_config(ports, {.connect_timeout_seconds = 2}));
    const int baseline_fds = daemon->open_fd_count();
    const std::string refused_backend = "127.0.0.1:" + std::to_string(refused_port);
    const std::string blackhole_backend = "127.0.0.1:" + std::to_string(blackhole.port());

    {
        const auto start = test::Clock::now();
        UniqueFd client = test::connect_and_send(
            ports.listen, hello_for("chat.example.com", {"xmpp-client"}), "");
        const std::string how = test::wait_for_close(client.get(), 5s);
        const auto took = test::Clock::now() - start;
        CAPTURE(how);
        CHECK((how == "eof" || how == "reset"));
        CHECK(took < 2s);
        const auto failed = daemon->wait_for_log(
            "backend_failed",
            [&](const test::LogLine& line) { return line.get("backend") == refused_backend; }, 2s);
        INFO(daemon->log_tail());
        CHECK(failed.has_value());
    }
    {
        const auto start = test::Clock::now();
        UniqueFd client = test::connect_and_send(ports.listen, hello_for("chat.example.com"), "");
        const std::string how = test::wait_for_close(client.get(), 8s);
        const auto took = test::Clock::now() - start;
        CAPTURE(how, std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
        CHECK((how == "eof" || how == "reset"));
        CHECK(took >= 1500ms);  // it did wait for connect_timeout (2 s)...
        CHECK(took < 5s);       // ...and no longer
        const auto failed = daemon->wait_for_log(
            "backend_failed",
            [&](const test::LogLine& line) { return line.get("backend") == blackhole_backend; },
            2s);
        INFO(daemon->log_tail());
        CHECK(failed.has_value());
    }
    check_xmpp_still_served(ports.listen);
    CHECK(test::wait_for_fd_count(*daemon, baseline_fds) == baseline_fds);
    test::stop_daemon(*daemon);
}

TEST_CASE("probe timeout: the on-timeout rule, or a clean close, no client holds a probe",
          "[daemon]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    test::TcpBackend xmpp(test::BackendScript::greet_then_record(kXmppGreeting));
    test::TcpBackend tls(test::BackendScript::record());
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = tls.port(),
                                   .https = tls.port(),
                                   .xmpp = xmpp.port()};

    SECTION("a silent client goes to the on-timeout rule (plain XMPP, server speaks first)") {
        auto daemon =
            test::start_daemon(plane, test::snikket_config(ports, {.probe_timeout_seconds = 1}));
        const auto start = test::Clock::now();
        UniqueFd client = test::connect_to(ports.listen);
        const std::string greeting = test::read_exactly(client.get(), kXmppGreeting.size(), 5000);
        const auto took = test::Clock::now() - start;
        CAPTURE(std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
        INFO(daemon->log_tail());
        CHECK(greeting == kXmppGreeting);
        CHECK(took >= 700ms);  // the probe waited for its timeout (1 s)...
        CHECK(took < 3500ms);  // ...and not much longer
        const auto routed = test::routed_line(*daemon, test::local_port(client.get()));
        REQUIRE(routed.has_value());
        CHECK(routed->get("backend") == xmpp.address());
        // The client's first bytes after the greeting reach the backend intact.
        test::write_all(client.get(), std::string("<presence/>"));
        ::shutdown(client.get(), SHUT_WR);
        REQUIRE(xmpp.wait_for_finished(1, 5s));
        CHECK(xmpp.finished().front().received_head == "<presence/>");
        CHECK(tls.accepted() == 0);
        test::stop_daemon(*daemon);
    }

    SECTION("a client trickling an undecidable prefix is decided at the timeout") {
        auto daemon =
            test::start_daemon(plane, test::snikket_config(ports, {.probe_timeout_seconds = 1}));
        UniqueFd client = test::connect_to(ports.listen);
        // A real (padded, long) ClientHello one byte every 200 ms: every prefix is valid, so
        // the probe answers need-more until the timeout ends it.
        const std::string trickle = test::make_client_hello(
            {.server_name = "chat.example.com", .padding_extension_bytes = 4000});
        const auto start = test::Clock::now();
        std::string decided = "no";
        for (std::size_t i = 0; i < trickle.size() && test::Clock::now() - start < 5s; ++i) {
            if (::send(client.get(), trickle.data() + i, 1, MSG_NOSIGNAL) != 1) {
                decided = "client closed";
                break;
            }
            if (xmpp.accepted() > 0) {
                decided = "on-timeout rule";
                break;
            }
            const std::string how = test::wait_for_close(client.get(), 200ms);
            if (how != "open") {
                decided = "client closed (" + how + ")";
                break;
            }
        }
        const auto took = test::Clock::now() - start;
        CAPTURE(decided, std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
        INFO(daemon->log_tail());
        CHECK(decided != "no");
        CHECK(took < 3500ms);
        CHECK(tls.accepted() == 0);
        check_xmpp_still_served(ports.listen);
        test::stop_daemon(*daemon);
    }

    SECTION("without on-timeout a silent client is closed at the timeout") {
        auto daemon = test::start_daemon(
            plane,
            test::snikket_config(ports, {.probe_timeout_seconds = 1, .on_timeout_xmpp = false}));
        const auto start = test::Clock::now();
        UniqueFd client = test::connect_to(ports.listen);
        const std::string how = test::wait_for_close(client.get(), 5s);
        const auto took = test::Clock::now() - start;
        CAPTURE(how, std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
        INFO(daemon->log_tail());
        CHECK((how == "eof" || how == "reset"));
        CHECK(took >= 700ms);
        CHECK(took < 3500ms);
        CHECK(daemon->wait_for_log("probe_timeout", {}, 2s).has_value());
        CHECK(xmpp.accepted() == 0);
        CHECK(tls.accepted() == 0);
        check_xmpp_still_served(ports.listen);  // a real XMPP client is still routed
        test::stop_daemon(*daemon);
    }
}

// A client that resets in the middle of an upload has not sent all of it: the backend must
// not read a clean end of stream (it would take a truncated upload for a whole one), but a
// reset, as from a direct connection. Every plane ends such a pair with RSTs, never a FIN.
TEST_CASE("a client reset mid-upload reaches the backend as a reset, not as a clean end",
          "[daemon]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    // 5443 reads to EOF before it answers: what it reads last is how the upload ended.
    test::TcpBackend reading(test::BackendScript::read_to_eof_then_reply("stored"));
    test::TcpBackend unused_tls(test::BackendScript::exchange(1024, 3));
    test::TcpBackend unused_xmpp(test::BackendScript::exchange(1024, 4));
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = unused_tls.port(),
                                   .https = reading.port(),
                                   .xmpp = unused_xmpp.port()};
    auto daemon = test::start_daemon(plane, test::snikket_config(ports));
    UniqueFd client = test::connect_and_send(ports.listen, hello_for("share.chat.example.com"),
                                             std::string(1 << 20, 'u'));
    const std::uint16_t client_port = test::local_port(client.get());
    // Part of the upload reaches the backend, then the client resets.
    std::this_thread::sleep_for(300ms);
    test::close_with_reset(std::move(client));
    REQUIRE(reading.wait_for_finished(1, 5s));
    const auto record = reading.finished().front();
    INFO(daemon->log_tail());
    CAPTURE(record.received, record.eof, record.reset);
    CHECK(record.received > 0);
    CHECK(record.reset);
    CHECK_FALSE(record.eof);
    CHECK(closed_line(*daemon, client_port, 5s).has_value());
    test::stop_daemon(*daemon);
}

TEST_CASE("a reset mid-stream closes the other side and leaks nothing", "[daemon]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    const std::string header = test::xmpp_stream_header();
    // 5223 streams 256 MiB at the client (mid-stream when the client resets).
    test::TcpBackend streaming(test::BackendScript::exchange(256ULL << 20, 9));
    // 5222 sends 8 MiB and resets.
    test::BackendScript resetting_script =
        test::BackendScript::message_then_close("", 8ULL << 20, header.size());
    resetting_script.end = test::BackendEnd::reset;
    test::TcpBackend resetting(resetting_script);
    // 5443 for the still-serving check.
    test::TcpBackend https(test::BackendScript::exchange(64 * 1024, 5));
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = streaming.port(),
                                   .https = https.port(),
                                   .xmpp = resetting.port()};
    auto daemon = test::start_daemon(plane, test::snikket_config(ports));
    const int baseline_fds = daemon->open_fd_count();

    SECTION("the client resets: the backend is closed promptly") {
        UniqueFd client =
            test::connect_and_send(ports.listen, hello_for("chat.example.com", {"xmpp-client"}),
                                   std::string(64 * 1024, 'u'));
        const std::uint16_t client_port = test::local_port(client.get());
        CHECK(test::read_exactly(client.get(), 4 << 20, 10000).size() == (4U << 20));
        const auto reset_at = test::Clock::now();
        test::close_with_reset(std::move(client));
        const bool finished = streaming.wait_for_finished(1, 5s);
        INFO(daemon->log_tail());
        REQUIRE(finished);
        const auto record = streaming.finished().front();
        CHECK((record.reset || record.eof));
        CHECK_FALSE(record.timed_out);
        CHECK(test::Clock::now() - reset_at < 5s);
        CHECK(closed_line(*daemon, client_port, 5s).has_value());
    }

    SECTION("the backend resets: the client is closed promptly") {
        UniqueFd client = test::connect_and_send(ports.listen, header, "");
        const std::uint16_t client_port = test::local_port(client.get());
        std::uint64_t received = 0;
        const std::string how = test::wait_for_close(client.get(), 10s, &received);
        CAPTURE(how, received);
        INFO(daemon->log_tail());
        CHECK((how == "eof" || how == "reset"));
        REQUIRE(resetting.wait_for_finished(1, 5s));
        CHECK(closed_line(*daemon, client_port, 5s).has_value());
    }

    CHECK(test::wait_for_fd_count(*daemon, baseline_fds) == baseline_fds);
    test::check_still_serving(ports, https);
    test::stop_daemon(*daemon);
}
