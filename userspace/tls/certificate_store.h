#pragma once
// What the connection handler will use for TLS termination, built from the loaded `https`
// section (splicer/config.h): the server context every terminated connection's Session is
// made from, and per https route with an https:// backend the client context for it.
//
// Built at start-up and again for every SIGHUP (off the loop, as the rest of a reload); a
// failure leaves the store in force untouched. Held by shared_ptr: a connection keeps the
// store it started with (the ServerContext must outlive its Sessions), a reload swaps in the
// next one for new connections.

#include <ctime>
#include <memory>
#include <vector>

#include "splicer/config.h"
#include "splicer/result.h"
#include "tls/certificate_check.h"
#include "tls/pem_files.h"
#include "tls/server_context.h"
#include "tls/upstream_context.h"

namespace splicer::tls {

struct CertificateStore {
    std::shared_ptr<ServerContext> server;
    // Indexed like HttpsConfig::routes; nullptr for a route with a plain http:// backend.
    std::vector<std::shared_ptr<UpstreamContext>> upstreams;
    // Notices about the files (an expired certificate, a chain out of order): the daemon
    // serves with them, as nginx does, and logs them.
    std::vector<config::Diagnostic> notices;
};

// Every problem with the files of `https` as `splicer check` prints it: each certificate
// entry's (check_certificate_files), then each https route's ca_file that cannot be read or
// holds no certificate. Errors and notices, in file order.
std::vector<config::Diagnostic> check_https_files(const config::HttpsConfig& https,
                                                  std::time_t now = std::time(nullptr),
                                                  const FileReader& read_file = read_file_bytes);

// Reads every certificate, key, OCSP response and CA file once through `read_file`. The
// error names the setting, its line and the file, as `splicer check` does:
// "https.certificates.[0].key (line 12): key "/k.pem" does not match certificate "/c.pem"".
// `now` decides expiry and not-yet-valid (tests pass a shifted one).
Result<CertificateStore> build_certificate_store(const config::HttpsConfig& https,
                                                 const FileReader& read_file = read_file_bytes,
                                                 Clock clock = {},
                                                 std::time_t now = std::time(nullptr));

// One entry's files, and where the loader saw each setting (for check_certificate_files).
CertificatePlaces places_of(const config::CertificateConfig& entry);
CertificateFiles files_of(const config::CertificateConfig& entry);

}  // namespace splicer::tls
