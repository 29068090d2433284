// bench_tls_idle_holder HOST PORT NAME COUNT SECONDS: opens up to COUNT TLS connections to a
// TLS-terminating forwarder (SNI NAME, no certificate check: the bench measures, it does not
// authenticate), proves each one end to end (a GET / for Host NAME answered 200 through the
// forwarder's HTTP proxy, the connection kept alive), then holds them all open and idle.
// Prints "established=N" once (N < COUNT when the forwarder refused, stalled or died, or
// SECONDS ran out) and holds until killed, so the caller can measure what the forwarder
// keeps per idle terminated connection: its TLS session, buffers and HTTP state.

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "tool_support.h"

namespace bench = splicer::bench;

namespace {

struct SslFree {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
};
struct SslCtxFree {
    void operator()(SSL_CTX* context) const { SSL_CTX_free(context); }
};

struct Held {
    splicer::UniqueFd fd;
    std::unique_ptr<SSL, SslFree> ssl;
};

// One request on `ssl`, true when a 200 response head arrived within the socket's timeout.
bool request_answered(SSL* ssl, const std::string& name) {
    const std::string request = "GET / HTTP/1.1\r\nHost: " + name + "\r\n\r\n";
    std::size_t written = 0;
    if (SSL_write_ex(ssl, request.data(), request.size(), &written) != 1) {
        return false;
    }
    std::string response;
    char buffer[4096];
    // The head, and the small body behind it: every backend in the bench answers "ok\n".
    for (int reads = 0; reads < 64 && response.find("ok\n") == std::string::npos; ++reads) {
        std::size_t got = 0;
        if (SSL_read_ex(ssl, buffer, sizeof buffer, &got) != 1) {
            return false;
        }
        response.append(buffer, got);
    }
    return response.rfind("HTTP/1.1 200", 0) == 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 6) {
        bench::die("usage: bench_tls_idle_holder HOST PORT NAME COUNT SECONDS");
    }
    bench::raise_fd_limit();
    const auto address = bench::endpoint_from_args(argv[1], argv[2]);
    const std::string name = argv[3];
    const auto count = bench::number_from_arg(argv[4], "count");
    const auto deadline =
        std::chrono::steady_clock::now() + bench::seconds_from_arg(argv[5], "seconds");
    std::unique_ptr<SSL_CTX, SslCtxFree> context(SSL_CTX_new(TLS_client_method()));
    if (!context) {
        bench::die("SSL_CTX_new failed");
    }
    // Each connection a full handshake: the figure is the cost of a fresh session.
    SSL_CTX_set_session_cache_mode(context.get(), SSL_SESS_CACHE_OFF);
    std::vector<Held> held;
    held.reserve(count);
    while (held.size() < count && std::chrono::steady_clock::now() < deadline) {
        Held one{bench::connect_within(address, 2000), nullptr};
        if (!one.fd) {
            break;  // the forwarder's limit: report how far it got
        }
        const timeval timeout{2, 0};
        ::setsockopt(one.fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        ::setsockopt(one.fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        one.ssl.reset(SSL_new(context.get()));
        if (!one.ssl || SSL_set_fd(one.ssl.get(), one.fd.get()) != 1 ||
            SSL_set_tlsext_host_name(one.ssl.get(), name.c_str()) != 1 ||
            SSL_connect(one.ssl.get()) != 1 || !request_answered(one.ssl.get(), name)) {
            ERR_print_errors_fp(stderr);
            break;
        }
        held.push_back(std::move(one));
    }
    std::printf("established=%zu\n", held.size());
    std::fflush(stdout);
    for (;;) {
        ::pause();
    }
}
