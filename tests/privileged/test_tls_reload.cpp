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
#include "support/test_certificates.h"

using namespace splicer::test;

namespace {

namespace fs = std::filesystem;

// As Let's Encrypt keeps live/: the directory 0700 and its files 0600, root's. The dropped
// daemon cannot read them; its privileged helper reads them for it on SIGHUP.
void make_root_only(const fs::path& dir) {
    fs::permissions(dir, fs::perms::owner_all);
    for (const auto& entry : fs::directory_iterator(dir)) {
        fs::permissions(entry.path(), fs::perms::owner_read | fs::perms::owner_write);
    }
}

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
    fs::permissions(daemon.config_path(), fs::perms::owner_read | fs::perms::owner_write);
    // The key is on the file's second last line ("};" is the last).
    const auto key_line =
        std::count(options.config_text.begin(), options.config_text.end(), '\n') - 1;

    std::ofstream(daemon.config_path(), std::ios::trunc)
        << config_with(ports, pki.a_chain, pki.stray_key);
    std::size_t from = daemon.log_count();
    ::kill(daemon.pid(), SIGHUP);
    const auto refused = daemon.wait_for_log("reload_failed", {}, 10s, from);
    REQUIRE(refused.has_value());
    CHECK(std::string(refused->get("error")) ==
          "https.certificates.[0].key (line " + std::to_string(key_line) + "): key \"" +
              pki.stray_key.string() + "\" does not match certificate \"" + pki.a_chain.string() +
              "\"");
    check_still_serving(ports, https);

    // Renewed: another certificate and its key.
    std::ofstream(daemon.config_path(), std::ios::trunc)
        << config_with(ports, pki.b_chain, pki.b_key);
    from = daemon.log_count();
    ::kill(daemon.pid(), SIGHUP);
    CHECK(daemon.wait_for_log("reloaded", {}, 10s, from).has_value());
    check_still_serving(ports, https);
    stop_daemon(daemon);
}
