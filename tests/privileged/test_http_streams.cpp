// Port 80 bulk paths through the real daemon: a 1 GiB response streamed with the daemon's
// memory bounded, and a WebSocket upgrade whose connection then moves 64 MiB each way through
// each data plane (sockmap: in the kernel) byte-exact.

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "http_test_common.h"

using namespace splicer::test;
using splicer::UniqueFd;

TEST_CASE("http: a 1 GiB response streams through with bounded daemon RSS", "[http][serial]") {
    constexpr std::uint64_t kSize = 1ULL << 30;
    // Two 64 KiB buffers per connection: a growth anywhere near the body size would mean
    // buffering. Bounded above the daemon's own RSS before the request, not as an absolute
    // figure: that one moves with the build (ASan's shadow) and the libraries linked.
    constexpr std::uint64_t kGrowthBound = 64ULL << 20;
    HttpSite site;
    auto daemon = start_http_daemon(site);
    const std::optional<std::uint64_t> before = resident_bytes(daemon->pid());
    REQUIRE(before.has_value());
    std::atomic<bool> done{false};
    std::uint64_t peak = 0;
    int samples = 0;
    std::thread sampler([&] {
        while (!done) {
            if (auto rss = resident_bytes(daemon->pid())) {
                peak = std::max(peak, *rss);
                ++samples;
            }
            std::this_thread::sleep_for(20ms);
        }
    });
    UniqueFd client = connect_loopback(site.listen);
    write_all(client.get(), get_request("chat.example.com", "/huge/" + std::to_string(kSize)));
    BufferedReader reader(client.get(), 30s);
    const HttpResponse response = read_response(reader);
    done = true;
    sampler.join();
    CHECK(response.status == 200);
    CHECK(response.body_bytes == kSize);
    CHECK(response.body_sha256 == sha256_of_generated("", kHugeSeed, kSize));
    INFO("peak VmRSS " << peak << " bytes over " << samples << " samples, " << *before
                       << " before the request");
    CHECK(samples > 10);
    CHECK(peak < *before + kGrowthBound);
    const auto line = access_line(*daemon, "/huge/" + std::to_string(kSize), 200);
    REQUIRE(line.has_value());
    CHECK(line->number("bytes").value_or(0) > kSize);  // head + body
    stop_daemon(*daemon);
}

TEST_CASE("http: a client that stops reading a response is ended at idle_timeout, not before",
          "[http]") {
    // The daemon's sends first try without waiting (daemon/transport.h): the try that finds
    // no room must turn into a send that waits, under idle_timeout (5 s here), and not end
    // the connection early; nor may it wait for ever.
    HttpSite site;
    auto daemon = start_http_daemon(site);
    UniqueFd client = connect_loopback(site.listen);
    write_all(client.get(), get_request("chat.example.com", "/huge/" + std::to_string(1ULL << 30)));
    // Some of the body arrives, then the client reads no more.
    std::array<char, 64 * 1024> part{};
    std::size_t received = 0;
    for (int reads = 0; reads < 100 && received < part.size(); ++reads) {
        const ssize_t n = ::recv(client.get(), part.data(), part.size() - received, 0);
        REQUIRE(n > 0);
        received += static_cast<std::size_t>(n);
    }
    const auto stopped = std::chrono::steady_clock::now();
    const auto closed = daemon->wait_for_log("closed", {}, 15s);
    const auto waited = std::chrono::steady_clock::now() - stopped;
    INFO(daemon->log_tail());
    REQUIRE(closed.has_value());
    CHECK(closed->get("end") == "send_timeout");
    // The send blocks as soon as the socket buffers on the way fill (well under a second on
    // loopback), so the timeout ends it about 5 s after the client stopped.
    CHECK(waited > 4s);
    CHECK(waited < 12s);
    stop_daemon(*daemon);
}

TEST_CASE("http: a WebSocket upgrade hands the pair to the data plane, 64 MiB each way",
          "[http][serial]") {
    SPLICER_FOR_EACH_PLANE(plane);
    constexpr std::uint64_t kSize = 64ULL << 20;
    HttpSite site;
    auto daemon = start_http_daemon(site, {.splice_mode = plane});
    UniqueFd client = connect_loopback(site.listen);
    // Bytes right behind the request: splicer has read them into userspace with the head and
    // must deliver them before the plane takes over.
    const std::string early = "early frame bytes";
    write_all(client.get(),
              "GET /ws HTTP/1.1\r\nHost: chat.example.com\r\nConnection: Upgrade\r\n"
              "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" + early);
    BufferedReader reader(client.get(), 10s);
    const auto head = reader.read_head();
    REQUIRE(head.has_value());
    const ParsedHead parsed = parse_head(*head);
    CHECK(parsed.start_line == "HTTP/1.1 101 Switching Protocols");
    CHECK(parsed.header("upgrade") == "websocket");
    CHECK(parsed.header("connection") == "upgrade");
    std::string echoed;
    REQUIRE(reader.read_exact(early.size(), [&](std::string_view piece) { echoed += piece; }));
    CHECK(echoed == early);
    REQUIRE(site.snikket.wait_for_requests(1, 5s));
    const RecordedRequest seen = site.snikket.requests().at(0);
    CHECK(seen.head.header("upgrade") == "websocket");
    CHECK(seen.head.header("connection") == "upgrade");
    CHECK(seen.head.header("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ==");

    const auto routed = daemon->wait_for_log("routed", {}, 5s);
    REQUIRE(routed.has_value());
    CHECK(routed->get("plane") == plane);
    CHECK(routed->get("protocol") == "http-upgrade");

    // The backend echoes: everything sent comes back, so both directions carry 64 MiB.
    TransferOptions options;
    options.send = Outgoing{"", kSize, 4242};
    options.expect = kSize;
    options.timeout = 60s;
    const TransferResult result = transfer_both_ways(client.get(), options);
    INFO("sent " << result.sent << " received " << result.received << " " << result.error
                 << (result.timed_out ? " timed out" : "") << "\n" << daemon->log_tail(10));
    CHECK(result.sent == kSize);
    CHECK(result.received == kSize);
    CHECK(result.received_sha256 == result.sent_sha256);
    client.reset();
    CHECK(daemon->wait_for_log("closed", {}, 10s).has_value());
    check_http_still_serving(site);
    stop_daemon(*daemon);
}
