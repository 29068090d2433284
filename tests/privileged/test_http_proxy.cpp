// Port 80 through the real daemon: the issue's nginx block as splicer config, curl and raw
// clients, a recording backend. Routing and rewriting, limits, errors (the daemon goes on
// serving after each), keep-alive and pipelining.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "http_test_common.h"
#include "splicer/config.h"

using namespace splicer::test;
using splicer::UniqueFd;

TEST_CASE("http: GET and POST reach the backend with Host and X-Forwarded-*", "[http]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);

    const CommandResult get = curl(site, "-H 'Host: Chat.Example.com' -H 'X-Forwarded-For: 198.18.7.3'"
                                         " -H 'Connection: keep-alive, X-Secret' -H 'X-Secret: s'",
                                   "/path?q=1");
    INFO(get.output << daemon->log_tail());
    CHECK(get.exit_code == 0);
    CHECK(get.output == "snikket GET /path?q=1");
    REQUIRE(site.snikket.wait_for_requests(1, 5s));
    const RecordedRequest seen = site.snikket.requests().at(0);
    CHECK(seen.head.start_line == "GET /path?q=1 HTTP/1.1");
    CHECK(seen.head.header("host") == "Chat.Example.com");
    CHECK(seen.head.header("x-forwarded-for") == "198.18.7.3, 127.0.0.1");
    CHECK(seen.head.header("x-forwarded-proto") == "http");
    CHECK(seen.head.header("x-forwarded-host") == "Chat.Example.com");
    CHECK(seen.head.count("x-secret") == 0);
    // The client's Connection fields are hop-by-hop; the pooled backend connection persists.
    CHECK(seen.head.count("connection") == 0);
    CHECK(seen.head.header("user-agent").starts_with("curl/"));

    const auto line = access_line(*daemon, "/path", 200);
    REQUIRE(line.has_value());
    CHECK(line->get("host") == "Chat.Example.com");
    CHECK(line->get("method") == "GET");
    CHECK(line->get("route") == "0");
    CHECK(line->get("backend") == site.snikket.address());
    CHECK(line->get("bytes").size() > 0);
    CHECK(line->has("duration_ms"));
    CHECK(line->get("client").starts_with("127.0.0.1:"));

    const CommandResult post =
        curl(site, "-H 'Host: share.chat.example.com' --data-binary 'hello body'", "/upload");
    CHECK(post.output == "snikket POST /upload");
    REQUIRE(site.snikket.wait_for_requests(2, 5s));
    const RecordedRequest posted = site.snikket.requests().at(1);
    CHECK(posted.body == "hello body");
    CHECK(posted.head.header("content-length") == "10");
    stop_daemon(*daemon);
}

TEST_CASE("http: 19 MB upload byte-exact, 21 MB refused with 413 before the body", "[http]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);
    TempDir files("splicer-http-upload");
    ByteGenerator generator(99);
    const std::string body19 = generator.take(19'000'000);
    const auto path19 = files.write_file("19mb", body19);
    const CommandResult upload =
        curl(site, "-H 'Host: chat.example.com' --data-binary @" + path19.string() +
                       " -w ' %{http_code}'", "/upload19");
    INFO(upload.output);
    CHECK(upload.output == "snikket POST /upload19 200");
    REQUIRE(site.snikket.wait_for_requests(1, 10s));
    CHECK(site.snikket.requests().at(0).body_bytes == body19.size());
    CHECK(site.snikket.requests().at(0).body_sha256 == sha256_hex(body19));

    // Raw client: only the head is sent; the answer comes without a body byte read.
    UniqueFd raw = connect_loopback(site.listen);
    write_all(raw.get(), "POST /upload21 HTTP/1.1\r\nHost: chat.example.com\r\n"
                         "Content-Length: 21000000\r\n\r\n");
    BufferedReader reader(raw.get(), 5s);
    const HttpResponse refused = read_response(reader);
    CHECK(refused.status == 413);
    CHECK(refused.head.header("connection") == "close");

    // curl with the whole file: it sends Expect: 100-continue and gets the 413 instead.
    const auto path21 = files.write_file("21mb", body19 + generator.take(2'000'000));
    const CommandResult big = curl(site, "-o /dev/null -w '%{http_code}' -H 'Host: chat.example.com'"
                                         " --data-binary @" + path21.string(), "/upload21");
    CHECK(big.output == "413");
    CHECK(site.snikket.requests().size() == 1);  // neither reached the backend
    check_http_still_serving(site);
    stop_daemon(*daemon);
}

TEST_CASE("http: chunked request over the limit gets 413 mid-stream", "[http]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);
    UniqueFd raw = connect_loopback(site.listen);
    write_all(raw.get(), "POST /chunks HTTP/1.1\r\nHost: small.example.com\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n200\r\n" + std::string(512, 'a') +
                         "\r\n");
    // The first 512 bytes are within the 1K limit; the next chunk crosses it.
    write_all(raw.get(), "400\r\n" + std::string(1024, 'b') + "\r\n0\r\n\r\n");
    BufferedReader reader(raw.get(), 5s);
    CHECK(read_response(reader).status == 413);
    CHECK(access_line(*daemon, "/chunks", 413).has_value());

    // Within the limit, chunked both ways.
    const HttpResponse ok = http_exchange(
        site.listen, "POST /chunked HTTP/1.1\r\nHost: small.example.com\r\nTransfer-Encoding: "
                     "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    CHECK(ok.status == 200);
    CHECK(ok.head.header("transfer-encoding") == "chunked");
    CHECK(ok.body == "hello chunked world");
    // The refused request reached the backend too (its head): it is recorded once its
    // connection ends, in either order with this one.
    REQUIRE(site.snikket.wait_for_requests(2, 5s));
    const auto requests = site.snikket.requests();
    const auto chunked = std::find_if(requests.begin(), requests.end(),
                                      [](const auto& r) { return r.target == "/chunked"; });
    REQUIRE(chunked != requests.end());
    CHECK(chunked->body == "hello");
    const auto refused = std::find_if(requests.begin(), requests.end(),
                                      [](const auto& r) { return r.target == "/chunks"; });
    REQUIRE(refused != requests.end());
    // Nothing past the limit went up (the first chunk did only if it was framed on its own).
    CHECK(refused->body_bytes <= 512);
    CHECK(refused->body.find('b') == std::string::npos);
    check_http_still_serving(site);
    stop_daemon(*daemon);
}

TEST_CASE("http: a backend that answers before the body is read is relayed", "[http]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);
    const HttpResponse response = post_answered_early(site.listen, "chat.example.com", "/early");
    INFO(daemon->log_tail(5));
    CHECK(response.status == 401);
    CHECK(response.body == "no way");
    CHECK(response.head.header("connection") == "close");
    check_http_still_serving(site);
    stop_daemon(*daemon);
}

TEST_CASE("http: redirect_https answers 301 but ACME challenges are proxied", "[http]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);
    const HttpResponse redirect =
        http_exchange(site.listen, get_request("www.example.com:80", "/a/b?c=d"));
    CHECK(redirect.status == 301);
    CHECK(redirect.head.header("location") == "https://www.example.com/a/b?c=d");
    const CommandResult acme = curl(site, "-H 'Host: www.example.com'",
                                    "/.well-known/acme-challenge/TOKEN123");
    CHECK(acme.output == "intranet GET /.well-known/acme-challenge/TOKEN123");
    REQUIRE(site.intranet.wait_for_requests(1, 5s));
    const RecordedRequest seen = site.intranet.requests().at(0);
    CHECK(seen.head.header("host") == "intranet.local");  // set_host
    CHECK(seen.head.header("x-forwarded-host") == "www.example.com");
    CHECK(site.intranet.requests().size() == 1);  // the redirect never reached it
    stop_daemon(*daemon);
}

TEST_CASE("http: set_host, wildcard and default routes, unknown host 404", "[http]") {
    HttpSite site;
    SECTION("without a default route") {
        auto daemon = start_http_daemon(site);
        const HttpResponse api = http_exchange(site.listen, get_request("API.example.com", "/x"));
        CHECK(api.body == "intranet GET /x");
        REQUIRE(site.intranet.wait_for_requests(1, 5s));
        CHECK(site.intranet.requests().at(0).head.header("host") == "intranet.local");
        const HttpResponse wild =
            http_exchange(site.listen, get_request("a.b.wild.example.com", "/.well-known/acme-challenge/x"));
        CHECK(wild.body == "intranet GET /.well-known/acme-challenge/x");
        const HttpResponse unknown = http_exchange(site.listen, get_request("nobody.example.org"));
        CHECK(unknown.status == 404);
        CHECK(access_line(*daemon, "/", 404).has_value());
        check_http_still_serving(site);
        stop_daemon(*daemon);
    }
    SECTION("with a default route") {
        auto daemon = start_http_daemon(site, {.default_route = true});
        const HttpResponse other = http_exchange(site.listen, get_request("nobody.example.org", "/y"));
        CHECK(other.body == "fallback GET /y");
        const HttpResponse named = http_exchange(site.listen, get_request("groups.chat.example.com", "/z"));
        CHECK(named.body == "snikket GET /z");
        stop_daemon(*daemon);
    }
}

TEST_CASE("http: bad requests and failing backends get their status, the daemon goes on",
          "[http]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);
    auto [name, request, status] = GENERATE(table<std::string, std::string, int>({
        {"garbage", "\x16\x03\x01 not http at all\r\n\r\n", 400},
        {"CL+TE", "POST / HTTP/1.1\r\nHost: chat.example.com\r\nContent-Length: 4\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        {"two CL", "POST / HTTP/1.1\r\nHost: chat.example.com\r\nContent-Length: 1\r\n"
                   "Content-Length: 2\r\n\r\nab", 400},
        {"bad chunk", "POST / HTTP/1.1\r\nHost: chat.example.com\r\nTransfer-Encoding: "
                      "chunked\r\n\r\nxyz\r\n", 400},
        {"obs-fold", "GET / HTTP/1.1\r\nHost: chat.example.com\r\nX: a\r\n b\r\n\r\n", 400},
        {"bare LF", "GET / HTTP/1.1\nHost: chat.example.com\n\n", 400},
        {"long target", "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
        {"big head", get_request("chat.example.com", "/", "X-Big: " + std::string(40000, 'b') + "\r\n"), 431},
        {"no route", get_request("nobody.example.org"), 404},
        {"refused", get_request("refused.example.com"), 502},
        {"connect timeout", get_request("blackhole.example.com"), 504},
        {"garbage backend", get_request("chat.example.com", "/garbage"), 502},
        {"slow backend", get_request("chat.example.com", "/delay/4000"), 504},
    }));
    CAPTURE(name);
    const HttpResponse response = http_exchange(site.listen, request);
    INFO(daemon->log_tail(10));
    CHECK(response.status == status);
    CHECK(response.head.header("connection") == "close");
    const auto line = daemon->wait_for_log(
        "http", [&](const LogLine& logged) { return logged.get("status") == std::to_string(status); });
    REQUIRE(line.has_value());
    CHECK(line->number("bytes").value_or(0) > 0);  // logged once the answer went out
    CHECK(line->get("error").size() > 0);
    check_http_still_serving(site);
    CHECK(daemon->running());
    stop_daemon(*daemon);
}

TEST_CASE("http: a slow head gets 408 and other connections are untouched", "[http]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);
    UniqueFd slow = connect_loopback(site.listen);
    write_all(slow.get(), "GET / HTTP/1.1\r\nHost: chat.exa");  // never finished
    UniqueFd silent = connect_loopback(site.listen);
    check_http_still_serving(site);  // served meanwhile
    BufferedReader reader(slow.get(), 5s);
    const auto started = Clock::now();
    CHECK(read_response(reader).status == 408);
    CHECK(Clock::now() - started < 4s);  // header_timeout is 2 s (a bound, not a benchmark)
    BufferedReader silent_reader(silent.get(), 5s);
    CHECK(read_response(silent_reader).status == 408);
    check_http_still_serving(site);
    stop_daemon(*daemon);
}

TEST_CASE("http: keep-alive serves 100 requests on one connection, pipelining in order",
          "[http]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);
    UniqueFd client = connect_loopback(site.listen);
    BufferedReader reader(client.get(), 5s);
    for (int i = 0; i < 100; ++i) {
        const std::string target = "/seq/" + std::to_string(i);
        write_all(client.get(), get_request("chat.example.com", target));
        const HttpResponse response = read_response(reader);
        REQUIRE(response.status == 200);
        REQUIRE(response.body == "snikket GET " + target);
        REQUIRE(response.head.count("connection") == 0);  // kept open
    }
    REQUIRE(site.snikket.wait_for_requests(100, 10s));

    std::string pipelined;
    for (int i = 0; i < 5; ++i) {
        pipelined += "POST /pipe/" + std::to_string(i) +
                     " HTTP/1.1\r\nHost: chat.example.com\r\nContent-Length: 3\r\n\r\nabc";
    }
    pipelined += get_request("chat.example.com", "/chunked");
    pipelined += get_request("chat.example.com", "/last", "Connection: close\r\n");
    write_all(client.get(), pipelined);
    for (int i = 0; i < 5; ++i) {
        const HttpResponse response = read_response(reader);
        CHECK(response.body == "snikket POST /pipe/" + std::to_string(i));
    }
    CHECK(read_response(reader).body == "hello chunked world");
    const HttpResponse last = read_response(reader);
    CHECK(last.body == "snikket GET /last");
    CHECK(last.head.header("connection") == "close");
    CHECK(wait_for_close(client.get(), 5s) == "eof");

    // HEAD and a body delimited by the backend's close.
    const HttpResponse head = http_exchange(site.listen, "HEAD / HTTP/1.1\r\nHost: chat.example.com\r\n\r\n");
    CHECK(head.status == 200);
    CHECK(head.body_bytes == 0);
    const HttpResponse eof = http_exchange(site.listen, get_request("chat.example.com", "/eof"));
    CHECK(eof.body == "until the end");
    CHECK(eof.head.header("connection") == "close");
    stop_daemon(*daemon);
}

TEST_CASE("http: a small response reaches the client in one segment, head and body together",
          "[http]") {
    // The backend writes each answer (head and body) at once; the daemon sends the body it
    // read with the head in the same send, so each response is one data segment, not two.
    HttpSite site;
    auto daemon = start_http_daemon(site);
    UniqueFd client = connect_loopback(site.listen);
    BufferedReader reader(client.get(), 5s);
    constexpr int kRequests = 3;
    for (int i = 0; i < kRequests; ++i) {
        const std::string target = "/together/" + std::to_string(i);
        write_all(client.get(), get_request("chat.example.com", target));
        const HttpResponse response = read_response(reader);
        REQUIRE(response.status == 200);
        REQUIRE(response.body == "snikket GET " + target);
    }
    // tcpi_data_segs_in (Linux 4.6): the data segments the client received. Read at its
    // offset in the kernel's struct tcp_info (linux/tcp.h, a fixed ABI), whose header clashes
    // with <netinet/tcp.h> in a unity batch and whose glibc copy stops before it.
    // After tcpi_total_retrans (offset 100, the last field glibc has) come the u64s
    // pacing_rate, max_pacing_rate, bytes_acked, bytes_received (104..135), then the u32s
    // segs_out, segs_in, notsent_bytes, min_rtt (136..151).
    static_assert(offsetof(tcp_info, tcpi_total_retrans) == 100);
    constexpr std::size_t kDataSegsInOffset = 152;
    std::array<unsigned char, 512> info{};
    socklen_t length = info.size();
    REQUIRE(::getsockopt(client.get(), IPPROTO_TCP, TCP_INFO, info.data(), &length) == 0);
    REQUIRE(length >= kDataSegsInOffset + sizeof(std::uint32_t));
    std::uint32_t data_segments_in = 0;
    std::memcpy(&data_segments_in, info.data() + kDataSegsInOffset, sizeof(data_segments_in));
    CHECK(data_segments_in == kRequests);
    stop_daemon(*daemon);
}

namespace {

// The embedded default config with its ports moved to test ports (and nothing else changed).
std::string default_config_on(const HttpSite& site) {
    std::string text(splicer::config::embedded_default_text());
    const auto replace = [&text](const std::string& from, const std::string& to) {
        const std::size_t at = text.find(from);
        REQUIRE(at != std::string::npos);
        text.replace(at, from.size(), to);
    };
    replace("{ host: \"0.0.0.0\"; port: \"443\"; }",
            "{ host: \"127.0.0.1\"; port: \"" + std::to_string(site.tls_listen) + "\"; }");
    replace("{ host: \"0.0.0.0\"; port: \"80\"; }",
            "{ host: \"127.0.0.1\"; port: \"" + std::to_string(site.listen) + "\"; }");
    replace("\"127.0.0.1:5080\"", "\"" + site.snikket.address() + "\"");
    return text;
}

}  // namespace

TEST_CASE("http: the embedded default config proxies every host and ACME to its backend",
          "[http]") {
    require_root();
    HttpSite site;
    auto daemon = start_daemon("copy", default_config_on(site));
    const CommandResult get = curl(site, "-H 'Host: anything.example.net'", "/x");
    CHECK(get.output == "snikket GET /x");
    const CommandResult acme =
        curl(site, "-H 'Host: chat.example.com'", "/.well-known/acme-challenge/T");
    CHECK(acme.output == "snikket GET /.well-known/acme-challenge/T");
    REQUIRE(site.snikket.wait_for_requests(2, 5s));
    CHECK(site.snikket.requests().at(1).head.header("x-forwarded-for") == "127.0.0.1");
    // 20M: a 21 MB Content-Length is refused.
    const HttpResponse big = http_exchange(
        site.listen, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 21000000\r\n\r\n");
    CHECK(big.status == 413);
    stop_daemon(*daemon);
}
