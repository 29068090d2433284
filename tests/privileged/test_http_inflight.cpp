// Port 80 with many requests in flight on one worker: the exchanges' 64 KiB read buffers
// have pages of their own (daemon/heap_trim.cpp), so the loop's pool of spares
// (memory/buffer_pool.h) must follow the load, or every buffer beyond a fixed few is unmapped
// when given back and mapped (and faulted in) again by the next request; and once the load
// is gone, the spares it left must go back to the kernel (README "Memory after a burst").
// [figures]: page faults and RSS mean what they say in the debug build only (ASan's
// allocator has a quarantine of its own).

#include <sys/types.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "http_test_common.h"
#include "support/proc_stats.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

constexpr int kInflightClients = 120;
constexpr int kInflightRounds = 6;
// Most of a read buffer: a response this size touches every page of the buffer it is read
// into, so a buffer made anew shows as ~15 page faults and a kept one as none.
constexpr std::uint64_t kInflightBodyBytes = 60 * 1024;

// minflt (the 10th field of /proc/PID/stat): page faults served without I/O, every thread.
std::optional<std::uint64_t> daemon_minor_faults(pid_t pid) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!std::getline(file, text)) {
        return std::nullopt;
    }
    const auto name_end = text.rfind(')');  // the command name may hold spaces and ')'
    if (name_end == std::string::npos) {
        return std::nullopt;
    }
    std::istringstream fields(text.substr(name_end + 1));
    std::string skipped;
    for (int field = 3; field < 10; ++field) {  // state .. cmajflt
        fields >> skipped;
    }
    std::uint64_t faults = 0;
    if (!(fields >> faults)) {
        return std::nullopt;
    }
    return faults;
}

// Every client sends its GET, then every response is read: all kInflightClients in flight at once.
void inflight_round(const std::vector<UniqueFd>& clients, const std::string& request) {
    for (const UniqueFd& client : clients) {
        write_all(client.get(), request);
    }
    for (const UniqueFd& client : clients) {
        BufferedReader reader(client.get(), 10s);
        const HttpResponse response = read_response(reader);
        REQUIRE(response.status == 200);
        REQUIRE(response.body_bytes == kInflightBodyBytes);
    }
}

}  // namespace

TEST_CASE("http: 120 requests in flight reuse the loop's spare buffers, and idle gives them back",
          "[http][figures]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);  // one worker: every exchange on one loop's pool
    const std::string request =
        get_request("chat.example.com", "/huge/" + std::to_string(kInflightBodyBytes));
    {
        UniqueFd warm = connect_loopback(site.listen);  // code paths and heap in use once
        write_all(warm.get(), request);
        BufferedReader reader(warm.get(), 10s);
        REQUIRE(read_response(reader).status == 200);
    }
    // Past the trim after that connection closed (at most a second later).
    std::this_thread::sleep_for(1500ms);
    const std::optional<std::uint64_t> idle_rss = resident_bytes(daemon->pid());
    REQUIRE(idle_rss.has_value());

    std::vector<UniqueFd> clients;
    for (int i = 0; i < kInflightClients; ++i) {
        clients.push_back(connect_loopback(site.listen));
    }
    inflight_round(clients, request);  // the first swing: these buffers are new
    const std::optional<std::uint64_t> faults_before = daemon_minor_faults(daemon->pid());
    REQUIRE(faults_before.has_value());
    for (int round = 1; round < kInflightRounds; ++round) {
        inflight_round(clients, request);
    }
    const std::optional<std::uint64_t> faults_after = daemon_minor_faults(daemon->pid());
    REQUIRE(faults_after.has_value());
    const double faults_per_request = static_cast<double>(*faults_after - *faults_before) /
                                      static_cast<double>((kInflightRounds - 1) * kInflightClients);
    // With the 16 spares of a fixed pool, each request's backend buffer beyond them was made
    // anew: 11.3 faults per request measured (main at d6d2b0f, Release). Following the load:
    // 0.02-0.3 on a quiet machine, up to 2.6 while another build ran (the faults count the
    // whole daemon: its heap trim and everything else it touched meanwhile), so the bound
    // sits between the two.
    WARN(faults_per_request << " page faults per request in rounds 2-" << kInflightRounds);
    CHECK(faults_per_request < 5.0);

    // The spares are the load's while it lasts: the buffers filled by the rounds are held.
    const std::optional<std::uint64_t> loaded_rss = resident_bytes(daemon->pid());
    REQUIRE(loaded_rss.has_value());
    clients.clear();
    // Back within 3 MiB of the idle size (the 1 MiB floor of spares, now touched, and the
    // heap's slack) within 6 s: the pool is at its floor two periods (two seconds) after the
    // load, the heap trimmed once the last connection is gone.
    std::uint64_t rss = *loaded_rss;
    const auto deadline = Clock::now() + 6s;
    while (Clock::now() < deadline && rss > *idle_rss + (3ULL << 20)) {
        std::this_thread::sleep_for(100ms);
        rss = resident_bytes(daemon->pid()).value_or(rss);
    }
    WARN("VmRSS idle " << (*idle_rss >> 10) << " KiB, loaded " << (*loaded_rss >> 10)
                       << " KiB, after " << (rss >> 10) << " KiB");
#ifndef __SANITIZE_ADDRESS__
    // ASan's allocator keeps what is freed in its quarantine: there the RSS figures say
    // nothing about the daemon (test_daemon_load does the same), so they are only shown.
    // The test sees the buffers at all: 120 of them filled are ~7 MiB.
    CHECK(*loaded_rss > *idle_rss + (4ULL << 20));
    CHECK(rss <= *idle_rss + (3ULL << 20));
#endif
    stop_daemon(*daemon);
}
