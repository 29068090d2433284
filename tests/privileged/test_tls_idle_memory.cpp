// Issue 14's idle TLS memory: 1,000 terminated TLS connections, each a full handshake and one
// keep-alive GET answered through the daemon, then held idle. The daemon's own memory per
// connection (RssAnon growth: heap and anonymous maps, not the pages of code a new path maps
// in) is bounded tightly enough that any buffer held per idle connection fails it: the
// exchange's 64 KiB read buffer, a 16 KiB ciphertext queue, OpenSSL's record buffers. After
// the hold every connection answers a second request, so none was dropped to look small.
//
// What an idle connection is left with (README "TLS termination"): the OpenSSL SSL object
// after its handshake, the connection record, the HTTP exchange (no parser, no buffer) and
// its client transport.
// Tagged [serial]: 1,000 handshakes take both cores for a few seconds.

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/time.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "support/proc_stats.h"
#include "tls/openssl_handles.h"
#include "tls_termination_common.h"

using namespace splicer::test;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t kConnections = 1000;
// Opened, served and closed first, so allocator arenas, OpenSSL's per-thread state, the
// buffer pool and the loop's tables have their working size before the baseline.
constexpr std::size_t kWarmUp = 100;

// Measured on this machine (the WARN line gives each run's figure), debug build, workers 1:
// 13.97-14.11 KiB per idle connection (median 14.06 of 6 runs interleaved with the commit
// before, 14.14-14.52, median 14.23) since its records shrank by 224 bytes with their malloc
// headers, 256 with this test's 16-byte SNI (session 31: the connection record 392 -> 216
// bytes, two to a slab allocation, with probing's state and a PROXY header's addresses out
// of it; the exchange 168 -> 152 without its parser pointers; the TLS transport 184 -> 216
// with its cipher queues, which had a 56-byte allocation of their own);
// 14.15-14.16 KiB since the records it keeps were packed (session 30:
// the connection record 552 -> 392 bytes, the exchange 232 -> 168, its TLS transport 240 ->
// 184, the cipher channel 72 -> 56); 14.31 before (main of session 30), 14.16 in session 29
// when the plane's state left the record (1,120 -> 552 bytes) and the exchange kept its
// request's state only while a request is under way (608 -> 232 bytes); 15.0-15.2 KiB
// before that, 16.4-16.5 while the exchange kept both HTTP parsers, its backend transport
// and the last response head between requests (session 28), 21.2 KiB before the exchange's
// read buffer was lent only while bytes wait. OpenSSL's own part is about 14 KiB of it
// (README, TLS termination).
// The same code read 14.27 KiB on the project's CI machine (session 30's submission: a bound
// of 14.25 failed there), so the figure moves by a tenth of a KiB between machines (where the
// allocator's heap top and arenas happen to end). The bound keeps 0.6 KiB above this
// machine's figure (0.69 above session 31's median; left as it was): a record-size
// regression of that order shows in the WARN line and the README's bench figures, while what
// this test exists to catch, any page or buffer held per idle connection (4 KiB and up: the
// read buffer, the ciphertext queue, OpenSSL's record buffers), fails it on any machine.
constexpr double kBoundKiB = 14.75;

// The warm-up's connections gone (the daemon trims its heap after the last one, at most once
// a second: up to 2 s later) before the baseline is read. Under ASan the figure is only
// reported (below), so no time is spent settling it; scripts/test runs this test in the debug
// build only (tag [figures]).
#ifdef __SANITIZE_ADDRESS__
constexpr auto kBaselineSettle = 0ms;
#else
constexpr auto kBaselineSettle = 3000ms;
#endif

// One client: a blocking TCP socket with 10 s timeouts and its TLS session.
struct IdleClient {
    splicer::UniqueFd socket;
    splicer::tls::SslPtr ssl;
};

// A keep-alive GET of `path` on `client`, true when the daemon's answer ("web GET PATH" from
// the backend) came back whole.
bool served(IdleClient& client, const std::string& path) {
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: chat.example.com\r\n\r\n";
    std::size_t written = 0;
    if (SSL_write_ex(client.ssl.get(), request.data(), request.size(), &written) != 1) {
        return false;
    }
    const std::string expected = "web GET " + path;
    std::string got;
    char buffer[4096];
    for (int reads = 0; reads < 64 && got.find(expected) == std::string::npos; ++reads) {
        std::size_t n = 0;
        if (SSL_read_ex(client.ssl.get(), buffer, sizeof buffer, &n) != 1) {
            return false;
        }
        got.append(buffer, n);
    }
    return got.rfind("HTTP/1.1 200", 0) == 0 && got.find(expected) != std::string::npos;
}

// A full handshake (no session resumption: the cost of a fresh session is the figure) and
// one request; the client is kept open.
IdleClient open_served(SSL_CTX* context, std::uint16_t port, const std::string& path) {
    IdleClient client{connect_to(port, false, 10s), splicer::tls::SslPtr(SSL_new(context))};
    const timeval timeout{10, 0};
    ::setsockopt(client.socket.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(client.socket.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    REQUIRE(client.ssl);
    REQUIRE(SSL_set_fd(client.ssl.get(), client.socket.get()) == 1);
    REQUIRE(SSL_set_tlsext_host_name(client.ssl.get(), "chat.example.com") == 1);
    const int connected = SSL_connect(client.ssl.get());
    INFO("SSL_connect: " << splicer::tls::take_openssl_error("no OpenSSL error"));
    REQUIRE(connected == 1);
    REQUIRE(served(client, path));
    return client;
}

std::uint64_t anonymous_rss(const DaemonProcess& daemon) {
    const auto bytes = resident_anonymous_bytes(daemon.pid());
    REQUIRE(bytes.has_value());
    return *bytes;
}

}  // namespace

TEST_CASE("tls termination: 1000 idle terminated connections cost the daemon bounded memory "
          "each and all still answer",
          "[daemon][tls_termination][serial][figures]") {
    require_root();
    raise_fd_limit(4 * kConnections);
    TerminatingSite site;
    const std::string config = "workers: 1;\nmax_connections: 4000;\n"
                               "max_connections_per_client: 4000;\n" +
                               terminating_config(site, {.idle_timeout = 120});
    auto daemon = start_daemon("copy", config);
    INFO(daemon->log_tail());

    const splicer::tls::SslCtxPtr context(SSL_CTX_new(TLS_client_method()));
    REQUIRE(context);
    SSL_CTX_set_verify(context.get(), SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_session_cache_mode(context.get(), SSL_SESS_CACHE_OFF);

    {
        std::vector<IdleClient> warm;
        for (std::size_t i = 0; i < kWarmUp; ++i) {
            warm.push_back(open_served(context.get(), site.listen, "/warm"));
        }
    }
    // The first request's one-time set-up is behind us; the warm-up's memory settles
    // (kBaselineSettle).
    std::this_thread::sleep_for(kBaselineSettle);
    const std::uint64_t before = anonymous_rss(*daemon);

    std::vector<IdleClient> held;
    held.reserve(kConnections);
    const auto deadline = std::chrono::steady_clock::now() + 240s;
    while (held.size() < kConnections && std::chrono::steady_clock::now() < deadline) {
        held.push_back(open_served(context.get(), site.listen, "/first"));
    }
    REQUIRE(held.size() == kConnections);
    // Every connection idle: past the backend connections' close and the once-a-second
    // heap trim after closes.
    std::this_thread::sleep_for(2500ms);
    const std::uint64_t after = anonymous_rss(*daemon);
    const double per_connection_kib =
        (static_cast<double>(after) - static_cast<double>(before)) / 1024.0 / kConnections;
    WARN("daemon memory per idle terminated TLS connection: " << per_connection_kib
                                                              << " KiB (RssAnon " << before / 1024
                                                              << " -> " << after / 1024 << " KiB)");
#ifdef __SANITIZE_ADDRESS__
    // ASan's allocator keeps freed memory in its quarantine (to catch use after free: each of
    // the 1000 handshakes frees far more than a connection keeps) and has no malloc_trim, so
    // its RSS says nothing about what an idle connection holds (test_daemon_load does the
    // same). Figures only; the bound is the debug build's, and every connection still answers.
    (void)kBoundKiB;
#else
    CHECK(per_connection_kib <= kBoundKiB);
#endif
    // None was dropped or broken while it was idle: each answers again.
    std::size_t answered = 0;
    for (IdleClient& client : held) {
        answered += served(client, "/second") ? 1 : 0;
    }
    CHECK(answered == kConnections);
    held.clear();
    stop_daemon(*daemon);
}
