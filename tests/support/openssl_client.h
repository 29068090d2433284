#pragma once
// Runs a real `openssl s_client` against a port (directly or through splicer) and reports
// what the test needs to see which backend answered: the server certificate's CN, the ALPN
// protocol negotiated, whether the handshake completed, and everything printed.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace splicer::test {

struct SClientOptions {
    std::uint16_t port = 0;
    bool ipv6 = false;              // connect to [::1] instead of 127.0.0.1
    std::string servername;         // -servername (empty: -noservername)
    std::vector<std::string> alpn;  // -alpn list (empty: none)
    // Written to s_client's stdin; the default asks an `s_server -www` for its status page.
    std::string input = "GET / HTTP/1.0\r\n\r\n";
    std::chrono::milliseconds timeout{10000};
    // Appended as they are: "-tls1_2", "-sess_out", PATH, ...
    std::vector<std::string> extra_args;
};

struct SClientResult {
    int exit_code = -1;  // 124-ish values / -1 when it had to be killed at the timeout
    bool timed_out = false;
    std::string output;      // stdout and stderr
    std::string subject_cn;  // of the server certificate ("" if none was seen)
    std::string alpn;        // negotiated ALPN protocol ("" if none)
    bool handshake_done = false;
    // From the "New, TLSv1.3, Cipher is ..." / "Reused, TLSv1.2, ..." line: "New" or "Reused"
    // ("" when the line is absent: no handshake); the protocol from the session block's
    // "Protocol  :" line.
    std::string session;
    std::string protocol;
    std::string peer_certificate_pem;  // the first PEM block printed ("" if none)
};

SClientResult run_s_client(const SClientOptions& options);

// Appends `-alpn h2,http/1.1` to an s_client / s_server command line (nothing when empty).
void add_alpn_option(std::vector<std::string>& argv, const std::vector<std::string>& protocols);

}  // namespace splicer::test
