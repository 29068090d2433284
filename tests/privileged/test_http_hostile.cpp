// Port 80 against hostile clients, through the real daemon: heads built to make the loop
// work hard, Host values that would poison a redirect, absolute-form targets, forwarding
// fields a client forges. Each case also shows what a normal client gets meanwhile.

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http_test_common.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

// The head: ~30 KiB (under the 32 KiB head limit), a Connection field listing 5,000
// names and 4,000 tiny fields. Rewriting it once cost fields x (fields + tokens) compares.
std::string many_field_head() {
    std::string head = "GET /attack HTTP/1.1\r\nHost: chat.example.com\r\nConnection: t0";
    for (int i = 1; i < 5000; ++i) {
        head += ",t";
    }
    head += "\r\n";
    for (int i = 0; i < 4000; ++i) {
        head += "x:y\r\n";
    }
    return head + "\r\n";
}

}  // namespace

TEST_CASE(
    "http: four clients sending 30 KiB heads of 4000 fields do not hold up a normal "
    "client",
    "[http][hostile]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);
    const std::string attack = many_field_head();
    REQUIRE(attack.size() < 32 * 1024);

    // Four attackers, each sending the head again as soon as it is answered, for 3 s.
    constexpr auto kAttack = 3s;
    constexpr int kMaxRoundsPerAttacker = 400;
    std::mutex mutex;
    std::map<int, int> attack_statuses;  // status -> answers
    std::atomic<bool> stop{false};
    std::vector<std::thread> attackers;
    for (int a = 0; a < 4; ++a) {
        attackers.emplace_back([&] {
            for (int round = 0; round < kMaxRoundsPerAttacker && !stop; ++round) {
                const HttpResponse answer = http_exchange(site.listen, attack);
                const std::lock_guard lock(mutex);
                ++attack_statuses[answer.status];
            }
        });
    }
    // Meanwhile a normal client: a GET on a new connection every 50 ms.
    std::vector<double> latencies_ms;
    int normal_failures = 0;
    const auto started = Clock::now();
    while (Clock::now() - started < kAttack) {
        const auto sent = Clock::now();
        const HttpResponse response =
            http_exchange(site.listen, get_request("chat.example.com", "/normal"));
        latencies_ms.push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
        normal_failures += response.status == 200 ? 0 : 1;
        std::this_thread::sleep_for(50ms);
    }
    stop = true;
    for (std::thread& attacker : attackers) {
        attacker.join();
    }
    std::sort(latencies_ms.begin(), latencies_ms.end());
    const double median = latencies_ms[latencies_ms.size() / 2];
    const double worst = latencies_ms.back();
    std::string statuses;
    for (const auto& [status, count] : attack_statuses) {
        statuses += std::to_string(status) + "x" + std::to_string(count) + " ";
    }
    INFO("normal requests " << latencies_ms.size() << ", median " << median << " ms, max " << worst
                            << " ms; attack answers " << statuses);
    CHECK(normal_failures == 0);
    // Refused at field 101 (kMaxHeaderFields) with 431, never forwarded.
    CHECK(attack_statuses.size() == 1);
    CHECK(attack_statuses.count(431) == 1);
    // A correctness bound, not a benchmark: with the loop doing work linear in what each
    // client sends, a normal request is answered in a few ms (nginx and HAProxy: p99 under
    // 10 ms). 250 ms leaves room for ASan on a loaded 2-core machine; the old rewrite held the
    // loop 0.3-0.4 s per attacking head (release build), so requests waited seconds.
    CHECK(median < 100.0);
    CHECK(worst < 500.0);
    check_http_still_serving(site);
    stop_daemon(*daemon);
}

TEST_CASE("http: a Host that would poison a redirect and a second Host get 400", "[http]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);
    // *.wild.example.com has redirect_https: the Host went into Location unchecked.
    auto [name, request] = GENERATE(table<std::string, std::string>({
        {"query in Host", get_request("evil.com?.wild.example.com", "/x")},
        {"path in Host", get_request("evil.com/.wild.example.com", "/x")},
        {"userinfo in Host", get_request("evil.com@a.wild.example.com", "/x")},
        {"two Host fields", get_request("a.wild.example.com", "/x", "Host: evil.com\r\n")},
        {"empty Host", get_request("", "/x")},
    }));
    CAPTURE(name);
    const HttpResponse response = http_exchange(site.listen, request);
    INFO(response.raw_head << daemon->log_tail(5));
    CHECK(response.status == 400);
    CHECK(response.head.header("location").empty());
    CHECK(site.intranet.requests().empty());
    const HttpResponse redirect =
        http_exchange(site.listen, get_request("a.wild.example.com", "/x"));
    CHECK(redirect.status == 301);
    CHECK(redirect.head.header("location") == "https://a.wild.example.com/x");
    stop_daemon(*daemon);
}

TEST_CASE(
    "http: an absolute-form target reaches its route's backend with its authority as "
    "Host and forged forwarding fields are dropped",
    "[http]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);
    const HttpResponse absolute =
        http_exchange(site.listen,
                      "GET http://share.chat.example.com:80/abs?q HTTP/1.1\r\n"
                      "Host: www.example.com\r\n"
                      "Forwarded: for=198.18.9.9;proto=https\r\n"
                      "X-Real-IP: 198.18.9.9\r\n"
                      "X-Forwarded-For: 198.18.7.1\r\n"
                      "True-Client-IP: 198.18.9.9\r\n\r\n");
    INFO(daemon->log_tail(5));
    CHECK(absolute.status == 200);
    CHECK(absolute.body == "snikket GET /abs?q");
    REQUIRE(site.snikket.wait_for_requests(1, 5s));
    const RecordedRequest seen = site.snikket.requests().at(0);
    CHECK(seen.head.start_line == "GET /abs?q HTTP/1.1");
    CHECK(seen.head.header("host") == "share.chat.example.com:80");
    CHECK(seen.head.count("host") == 1);
    CHECK(seen.head.header("x-forwarded-host") == "share.chat.example.com:80");
    CHECK(seen.head.count("forwarded") == 0);
    CHECK(seen.head.count("x-real-ip") == 0);
    CHECK(seen.head.count("true-client-ip") == 0);
    CHECK(seen.head.header("x-forwarded-for") == "198.18.7.1, 127.0.0.1");
    const auto line = access_line(*daemon, "/abs", 200);
    REQUIRE(line.has_value());
    CHECK(line->get("host") == "share.chat.example.com:80");

    // set_host still wins for what the backend is sent.
    const HttpResponse with_set_host = http_exchange(
        site.listen, "GET http://api.example.com/v HTTP/1.1\r\nHost: chat.example.com\r\n\r\n");
    CHECK(with_set_host.body == "intranet GET /v");
    REQUIRE(site.intranet.wait_for_requests(1, 5s));
    CHECK(site.intranet.requests().at(0).head.header("host") == "intranet.local");
    CHECK(site.intranet.requests().at(0).head.header("x-forwarded-host") == "api.example.com");
    stop_daemon(*daemon);
}
