#pragma once
// Debian's nginx as a test's web backend, in a network namespace: an HTTPS server that reads
// a PROXY protocol header (`listen ADDR:PORT ssl proxy_protocol;`) and logs
// `$proxy_protocol_addr:$proxy_protocol_port`, and a plain HTTP server that logs
// `$http_x_forwarded_for`; both log `$remote_addr` (the peer nginx saw) and serve one file of
// random bytes at /blob. Own config, prefix, logs and certificate in a temp dir; run in the
// foreground, killed by pid, the dir removed.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "support/process.h"
#include "support/test_certificates.h"

namespace splicer::test {

struct NginxOptions {
    std::vector<std::string> command_prefix;  // e.g. EdgeNetns::command_prefix(backend)
    std::string address;
    std::uint16_t https_port = 5443;  // ssl proxy_protocol
    std::uint16_t http_port = 5280;   // plain, behind splicer's port 80
    std::string server_name = "chat.example.com";
    std::size_t blob_bytes = 1 << 20;
    // false: the HTTPS server reads no PROXY header (a plain https:// backend).
    bool https_proxy_protocol = true;
    // nginx's worker_connections (its fd limit follows): raise it for a test holding more
    // than a few dozen connections to it at once.
    std::uint32_t worker_connections = 64;
    // The HTTPS server's certificate (full chain) and key instead of a self-signed one for
    // server_name (ca_file() is then this chain).
    std::string certificate;
    std::string key;
};

// nginx on 127.0.0.1 (two free ports) serving HTTPS as a.test with `pki`'s a.test certificate
// and no PROXY header: the verified https:// backend of the TLS upstream and pool tests.
NginxOptions a_test_https_backend(const TestCertificates& pki);

class NginxServer {
public:
    // Throws (with nginx's error log) when it does not start listening on both ports.
    NginxServer(NginxOptions options, const std::function<bool(std::uint16_t)>& listening);
    ~NginxServer();
    NginxServer(const NginxServer&) = delete;
    NginxServer& operator=(const NginxServer&) = delete;

    [[nodiscard]] const NginxOptions& options() const { return options_; }
    [[nodiscard]] const std::string& ca_file() const { return cert_path_; }
    [[nodiscard]] const std::string& blob_path() const { return blob_path_; }
    // One line per request, written when the request is done:
    //   https: `pp=ADDR:PORT remote=ADDR sni=NAME "REQUEST" STATUS BYTES`
    //   http:  `xff=X-FORWARDED-FOR remote=ADDR "REQUEST" STATUS BYTES`
    [[nodiscard]] std::string https_log() const;
    // One line per HTTPS request: `conn=N "REQUEST" STATUS`, N nginx's connection serial
    // (requests on one connection share it: backend connection reuse).
    [[nodiscard]] std::string https_connection_log() const;
    [[nodiscard]] std::string http_log() const;
    [[nodiscard]] std::string error_log() const;

private:
    NginxOptions options_;
    TempDir dir_;
    std::string cert_path_;
    std::string blob_path_;
    ChildProcess process_;
};

}  // namespace splicer::test
