// The daemon builds its TLS certificate store (tls/certificate_store.h) from the https
// section at start and again on SIGHUP, the files root-only and read after the privilege drop
// by the privileged helper (privsep/helper.h): a renewed certificate is read, a broken one is refused
// with reload_failed naming the setting, line and file while everything in force stays, and a
// terminating rule, which no connection handler serves yet, is refused at start saying so.

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "daemon_test_common.h"
#include "support/command.h"
#include "support/daemon_reload.h"
#include "support/file_modes.h"
#include "support/test_certificates.h"

using namespace splicer::test;

namespace {

namespace fs = std::filesystem;

// The Snikket rules, plus an https section with one certificate entry (its key on the
// section's third line) that no rule terminates with yet.
std::string config_with(const SnikketPorts& ports, const fs::path& certificate,
                        const fs::path& key) {
    return snikket_config(ports) + "https: {\n  certificates: ( {\n    certificate: \"" +
           certificate.string() + "\";\n    key: \"" + key.string() + "\"; } );\n};\n";
}

}  // namespace

TEST_CASE("SIGHUP: renewed root-only certificates are read, a key that does not match is refused",
          "[daemon][reload][tls_termination]") {
    require_root();
    const TestCertificates pki;
    // As Let's Encrypt keeps live/: the dropped daemon cannot read the files; its privileged
    // helper reads them for it on SIGHUP.
    make_root_only(pki.dir.path());
    TcpBackend https(BackendScript::exchange(1024, 1));
    TcpBackend unused(BackendScript::record());
    const SnikketPorts ports{.listen = free_port(),
                             .xmpp_tls = unused.port(),
                             .https = https.port(),
                             .xmpp = unused.port()};
    DaemonOptions options;
    options.binary = SPLICER_BINARY;
    options.config_text = config_with(ports, pki.a_chain, pki.a_key);
    options.splice_mode = "copy";
    DaemonProcess daemon(options);
    INFO(daemon.log_tail());
    REQUIRE(daemon.wait_ready(15s));
    make_root_only(daemon.config_path());
    // The key is on the file's second last line ("};" is the last).
    const auto key_line =
        std::count(options.config_text.begin(), options.config_text.end(), '\n') - 1;

    daemon.rewrite_config(config_with(ports, pki.a_chain, pki.stray_key));
    const auto refused = reload_daemon(daemon);
    REQUIRE(refused.has_value());
    REQUIRE(refused->event() == "reload_failed");
    CHECK(std::string(refused->get("error")) ==
          "https.certificates.[0].key (line " + std::to_string(key_line) + "): key \"" +
              pki.stray_key.string() + "\" does not match certificate \"" + pki.a_chain.string() +
              "\"");
    check_still_serving(ports, https);

    // Renewed: another certificate and its key.
    daemon.rewrite_config(config_with(ports, pki.b_chain, pki.b_key));
    const auto renewed = reload_daemon(daemon);
    REQUIRE(renewed.has_value());
    CHECK(renewed->event() == "reloaded");
    check_still_serving(ports, https);
    stop_daemon(daemon);
}
