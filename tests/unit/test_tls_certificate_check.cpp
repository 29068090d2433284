// tls::check_certificate_files: every problem `splicer check` will report about a
// certificate entry, each with its exact message as config diagnostics print it, on files
// made by a throw-away CA (support/test_certificates).

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "splicer/config.h"
#include "support/config_text.h"
#include "support/test_certificates.h"
#include "tls/certificate_check.h"

namespace splicer::test {
namespace {

const tls::CertificatePlaces kPlaces{{"https.certificates.[0].certificate", 12},
                                     {"https.certificates.[0].key", 13},
                                     {"https.certificates.[0].ocsp_response", 14}};

// While alive, the effective uid is nobody's when the test runs as root (root reads any
// file), so a mode-0000 file is unreadable for real; restored however the scope ends.
class AsNobody {
public:
    AsNobody() : root_(::geteuid() == 0) {
        if (root_ && ::seteuid(65534) != 0) {
            throw std::runtime_error("seteuid(65534) failed");
        }
    }
    ~AsNobody() {
        if (root_) {
            static_cast<void>(::seteuid(0));
        }
    }
    AsNobody(const AsNobody&) = delete;
    AsNobody& operator=(const AsNobody&) = delete;

private:
    bool root_;
};

}  // namespace

TEST_CASE("TLS certificate check: each problem is named with its setting, line and file",
          "[tls_termination]") {
    const TestCertificates pki;
    const std::string dir = pki.dir.path().string();
    const std::string a = pki.a_chain.string();
    const std::string a_key = pki.a_key.string();
    const std::string missing = dir + "/missing.pem";
    const std::string cert_at = "splicer.conf:12: error: https.certificates.[0].certificate: ";
    const std::string key_at = "splicer.conf:13: error: https.certificates.[0].key: ";
    const std::string notice_at = "splicer.conf:12: notice: https.certificates.[0].certificate: ";

    struct Case {
        std::string label;
        tls::CertificateFiles files;
        std::vector<std::string> expected;
    };
    const std::vector<Case> cases = {
        {"a good entry", {pki.a_chain, pki.a_key, pki.a_ocsp_response}, {}},
        {"missing certificate",
         {missing, pki.a_key, {}},
         {cert_at + "cannot read \"" + missing + "\": No such file or directory"}},
        {"missing key",
         {pki.a_chain, missing, {}},
         {key_at + "cannot read \"" + missing + "\": No such file or directory"}},
        {"a directory for the certificate",
         {pki.dir.path(), pki.a_key, {}},
         {cert_at + "cannot read \"" + dir + "\": Is a directory"}},
        {"not a PEM certificate",
         {pki.not_pem, pki.a_key, {}},
         {cert_at + "\"" + pki.not_pem.string() + "\" holds no PEM certificate"}},
        {"a key where the certificate should be",
         {pki.a_key, pki.a_key, {}},
         {cert_at + "\"" + a_key + "\" holds no PEM certificate"}},
        {"a certificate where the key should be",
         {pki.a_chain, pki.a_chain, {}},
         {key_at + "\"" + a + "\" holds no PEM private key (or an encrypted one)"}},
        {"a key that does not match",
         {pki.a_chain, pki.stray_key, {}},
         {key_at + "key \"" + pki.stray_key.string() + "\" does not match certificate \"" + a +
          "\""}},
        {"an expired certificate (a notice: it still loads)",
         {pki.expired_chain, pki.expired_key, {}},
         {}},  // expected filled in below: the date is the test's own
        {"a chain in the wrong order",
         {pki.reversed_chain, pki.a_key, {}},
         {notice_at + "certificate \"" + pki.reversed_chain.string() +
              "\": certificate 2 (CN=a.test) did not issue certificate 1 (CN=splicer test CA):"
              " the chain is out of order or has a stranger in it",
          key_at + "key \"" + a_key + "\" does not match certificate \"" +
              pki.reversed_chain.string() + "\""}},
        {"an OCSP response file that is not one",
         {pki.a_chain, pki.a_key, pki.not_pem},
         {"splicer.conf:14: error: https.certificates.[0].ocsp_response: \"" +
          pki.not_pem.string() + "\" holds no DER OCSP response"}},
    };
    for (const Case& row : cases) {
        CAPTURE(row.label);
        const auto lines = formatted_diagnostics(tls::check_certificate_files(row.files, kPlaces));
        if (row.files.certificate == pki.expired_chain) {
            REQUIRE(lines.size() == 1);
            CHECK(lines[0].rfind(notice_at + "certificate \"" + pki.expired_chain.string() +
                                     "\" expired on 20",
                                 0) == 0);
            CHECK(lines[0].find(" UTC: clients will refuse it") != std::string::npos);
            continue;
        }
        CHECK(lines == row.expected);
    }
}

TEST_CASE("TLS certificate check: validity dates against the clock", "[tls_termination]") {
    const TestCertificates pki;
    const tls::CertificateFiles files{pki.a_chain, pki.a_key, {}};
    const std::time_t now = std::time(nullptr);
    CHECK(tls::check_certificate_files(files, kPlaces, now).empty());
    // The certificate is valid for two days from its making.
    const auto early =
        formatted_diagnostics(tls::check_certificate_files(files, kPlaces, now - 86400 * 10));
    REQUIRE(early.size() == 1);
    CHECK(early[0].rfind(
              "splicer.conf:12: error: https.certificates.[0].certificate: certificate \"" +
                  pki.a_chain.string() + "\" is not valid before 20",
              0) == 0);
    const auto late =
        formatted_diagnostics(tls::check_certificate_files(files, kPlaces, now + 86400 * 10));
    REQUIRE(late.size() == 1);
    CHECK(late[0].rfind(
              "splicer.conf:12: notice: https.certificates.[0].certificate: certificate \"" +
                  pki.a_chain.string() + "\" expired on 20",
              0) == 0);
}

TEST_CASE("TLS certificate check: an unreadable key file says Permission denied",
          "[tls_termination]") {
    const TestCertificates pki;
    // World-traversable directory, the key itself mode 0000.
    REQUIRE(::chmod(pki.dir.path().c_str(), 0755) == 0);
    REQUIRE(::chmod(pki.a_chain.c_str(), 0644) == 0);
    REQUIRE(::chmod(pki.a_key.c_str(), 0000) == 0);
    std::vector<std::string> lines;
    {
        const AsNobody nobody;
        lines = formatted_diagnostics(
            tls::check_certificate_files({pki.a_chain, pki.a_key, {}}, kPlaces));
    }
    CHECK(lines == std::vector<std::string>{"splicer.conf:13: error: https.certificates.[0].key: "
                                            "cannot read \"" +
                                            pki.a_key.string() + "\": Permission denied"});
}

}  // namespace splicer::test
