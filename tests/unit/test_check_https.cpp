// `splicer check` on the https section's files (issue 14 point 2): every problem with a
// certificate entry or an https route's ca_file is named with the setting and the line the
// loader read it from, on files made by a throw-away CA (support/test_certificates); and
// check_https_files reads only through the reader it is given (the privileged parent's seam).

#include <catch2/catch.hpp>
#include <ctime>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "splicer/config.h"
#include "support/command.h"
#include "support/config_text.h"
#include "support/process.h"
#include "support/test_certificates.h"
#include "tls/certificate_store.h"

namespace splicer::test {
namespace {

const std::string kSplicerBinary = SPLICER_BINARY;

struct HttpsFiles {
    std::string certificate;
    std::string key;
    std::string ca_file;  // empty: no ca_file line (line 9 stays "verify: true;")
};

// Line 5: certificate, line 6: key, line 8: the route, line 9: its ca_file.
std::string https_config(const HttpsFiles& files) {
    return "listen: ( { host: \"127.0.0.1\"; port: 443; } );\n"
           "protocols: ( { name: \"tls\"; terminate: true; } );\n"
           "https: {\n"
           "  certificates: ( {\n"
           "    certificate: \"" +
           files.certificate +
           "\";\n"
           "    key: \"" +
           files.key +
           "\";\n"
           "  } );\n"
           "  routes: ( { hosts: [ \"a.test\" ]; backend: \"https://127.0.0.1:5443\";\n" +
           (files.ca_file.empty() ? std::string("    verify: true;")
                                  : "    ca_file: \"" + files.ca_file + "\";") +
           " } );\n"
           "};\n";
}

}  // namespace

TEST_CASE("splicer check reads the https files and names each problem's setting and line",
          "[cli][tls_termination]") {
    const TestCertificates pki;
    const std::string a = pki.a_chain.string();
    const std::string a_key = pki.a_key.string();
    const std::string ca = pki.ca.string();
    const std::string dir = pki.dir.path().string();
    const std::string missing = dir + "/missing.pem";
    struct Case {
        std::string label;
        HttpsFiles files;
        int exit_code;
        std::string expected;  // a line of the output (the config's path is prefixed)
    };
    const std::vector<Case> cases = {
        {"all good",
         {a, a_key, ca},
         0,
         "https route 0: hosts=[a.test] -> https://127.0.0.1:5443 verify=" + ca + " (line 8)"},
        {"a missing certificate",
         {missing, a_key, ca},
         1,
         ":5: error: https.certificates.[0].certificate: cannot read \"" + missing +
             "\": No such file or directory"},
        {"a directory for the key",
         {a, dir, ca},
         1,
         ":6: error: https.certificates.[0].key: cannot read \"" + dir + "\": Is a directory"},
        {"a key that does not match",
         {a, pki.stray_key.string(), ca},
         1,
         ":6: error: https.certificates.[0].key: key \"" + pki.stray_key.string() +
             "\" does not match certificate \"" + a + "\""},
        {"an expired certificate is a notice",
         {pki.expired_chain.string(), pki.expired_key.string(), ca},
         0,
         ":5: notice: https.certificates.[0].certificate: certificate \"" +
             pki.expired_chain.string() + "\" expired on 20"},
        {"a missing ca_file",
         {a, a_key, missing},
         1,
         ":9: error: https.routes.[0].ca_file: cannot read \"" + missing +
             "\": No such file or directory"},
        {"a ca_file that holds no certificate",
         {a, a_key, pki.not_pem.string()},
         1,
         ":9: error: https.routes.[0].ca_file: \"" + pki.not_pem.string() +
             "\" holds no PEM certificate"},
    };
    const TempDir dir_for_configs("splicer-check-https");
    for (const Case& row : cases) {
        CAPTURE(row.label);
        const auto path = dir_for_configs.write_file("splicer.conf", https_config(row.files));
        const auto result = run_command(kSplicerBinary + " check --config " + path.string());
        CAPTURE(result.output);
        CHECK(result.exit_code == row.exit_code);
        const std::string expected =
            row.expected.starts_with(":") ? path.string() + row.expected : row.expected;
        CHECK_THAT(result.output, Catch::Contains(expected));
        if (row.exit_code == 0) {
            CHECK_THAT(result.output,
                       Catch::Contains("https certificate 0: " + row.files.certificate + " key " +
                                       row.files.key + " (default) (line 4)"));
            CHECK_THAT(result.output, Catch::Contains("configuration ok"));
        } else {
            CHECK_THAT(result.output, Catch::Contains("invalid configuration"));
        }
    }
}

TEST_CASE("https file check: not yet valid, and every file read through the reader given",
          "[cli][tls_termination]") {
    const TestCertificates pki;
    // Paths that exist nowhere: only the reader knows their bytes (as the privileged parent
    // will hand the worker the bytes of files it cannot open).
    const std::map<std::filesystem::path, std::filesystem::path> behind = {
        {"/parent/a.pem", pki.a_chain}, {"/parent/a.key", pki.a_key}, {"/parent/ca.pem", pki.ca}};
    std::vector<std::string> asked;
    const tls::FileReader reader = [&](const std::filesystem::path& path) -> Result<std::string> {
        asked.push_back(path.string());
        const auto found = behind.find(path);
        if (found == behind.end()) {
            return Error{"parent refuses " + path.string()};
        }
        return read_file(found->second);
    };
    const auto loaded =
        config::load_string(https_config({"/parent/a.pem", "/parent/a.key", "/parent/ca.pem"}));
    REQUIRE(loaded.ok());
    CHECK(tls::check_https_files(*loaded.config->https, std::time(nullptr), reader).empty());
    CHECK(asked == std::vector<std::string>{"/parent/a.pem", "/parent/a.key", "/parent/ca.pem"});

    // The store reads each file once however many checks look at it.
    asked.clear();
    auto store = tls::build_certificate_store(*loaded.config->https, reader);
    REQUIRE(store.has_value());
    CHECK(store->server != nullptr);
    REQUIRE(store->upstreams.size() == 1);
    CHECK(store->upstreams[0]->verifies());
    CHECK(asked == std::vector<std::string>{"/parent/a.pem", "/parent/a.key", "/parent/ca.pem"});

    // Not yet valid (the certificates are made valid from now): an error naming the line.
    const auto early = formatted_diagnostics(
        tls::check_https_files(*loaded.config->https, std::time(nullptr) - 86400 * 10, reader));
    REQUIRE(early.size() == 1);
    CHECK(early[0].rfind("splicer.conf:5: error: https.certificates.[0].certificate: "
                         "certificate \"/parent/a.pem\" is not valid before 20",
                         0) == 0);

    const auto refused =
        config::load_string(https_config({"/parent/a.pem", "/parent/other.key", "/parent/ca.pem"}));
    REQUIRE(refused.ok());
    CHECK(formatted_diagnostics(
              tls::check_https_files(*refused.config->https, std::time(nullptr), reader)) ==
          std::vector<std::string>{
              "splicer.conf:6: error: https.certificates.[0].key: parent refuses "
              "/parent/other.key"});
}

}  // namespace splicer::test
