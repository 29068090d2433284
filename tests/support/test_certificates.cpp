#include "support/test_certificates.h"

#include <stdexcept>

#include "support/command.h"

namespace splicer::test {
namespace {

void run(const std::string& command_line) {
    const CommandResult result = run_command(command_line);
    if (result.exit_code != 0) {
        throw std::runtime_error("test PKI: `" + command_line + "` failed: " + result.output);
    }
}

// A leaf for `names` (comma-separated subjectAltName entries) signed by the CA, as
// NAME.key, NAME.leaf.pem and NAME.pem (leaf + CA).
void make_leaf(const std::filesystem::path& dir, const std::string& name,
               const std::string& common_name, const std::string& names, int days) {
    const std::string d = dir.string() + "/";
    run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + d +
        name + ".key -subj /CN=" + common_name + " -out " + d + name + ".csr");
    run("printf 'subjectAltName=" + names +
        "\\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1/\\n'" + " > " + d + name + ".ext");
    run("openssl x509 -req -in " + d + name + ".csr -CA " + d + "ca.pem -CAkey " + d +
        "ca.key -CAcreateserial -days " + std::to_string(days) + " -extfile " + d + name +
        ".ext -out " + d + name + ".leaf.pem");
    run("cat " + d + name + ".leaf.pem " + d + "ca.pem > " + d + name + ".pem");
}

}  // namespace

TestCertificates::TestCertificates() {
    TestCertificates& pki = *this;
    const auto& root = pki.dir.path();
    const std::string d = root.string() + "/";
    run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + d +
        "ca.key -out " + d + "ca.pem -subj '/CN=splicer test CA' -days 2" +
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
    make_leaf(root, "a", "a.test", "DNS:a.test", 2);
    make_leaf(root, "b", "b.test", "DNS:b.test,DNS:*.wild.test", 2);
    // -days -1: notAfter one day before notBefore, so it is expired from the start.
    make_leaf(root, "expired", "old.test", "DNS:old.test", -1);
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out " + d +
        "stray.key");
    run("cat " + d + "ca.pem " + d + "a.leaf.pem > " + d + "reversed.pem");
    run("printf 'hello\\n' > " + d + "not_pem.txt");
    // An OCSP response from the CA saying a's leaf is good: a request, then the responder
    // answering it from an index file (openssl ca's format: status, expiry, revocation,
    // serial, file, subject).
    const CommandResult serial = run_command("openssl x509 -in " + d + "a.leaf.pem -noout -serial");
    const std::size_t equals = serial.output.find('=');
    if (serial.exit_code != 0 || equals == std::string::npos) {
        throw std::runtime_error("test PKI: no serial: " + serial.output);
    }
    std::string serial_hex = serial.output.substr(equals + 1);
    while (!serial_hex.empty() && (serial_hex.back() == '\n' || serial_hex.back() == '\r')) {
        serial_hex.pop_back();
    }
    run("printf 'V\\t301231235959Z\\t\\t" + serial_hex + "\\tunknown\\t/CN=a.test\\n' > " + d +
        "index.txt");
    run("openssl ocsp -issuer " + d + "ca.pem -cert " + d + "a.leaf.pem -no_nonce -reqout " + d +
        "a.ocsp_request");
    run("openssl ocsp -index " + d + "index.txt -rsigner " + d + "ca.pem -rkey " + d +
        "ca.key -CA " + d + "ca.pem -reqin " + d + "a.ocsp_request -respout " + d +
        "a.ocsp -ndays 1");

    pki.ca = root / "ca.pem";
    pki.ca_key = root / "ca.key";
    pki.a_chain = root / "a.pem";
    pki.a_key = root / "a.key";
    pki.b_chain = root / "b.pem";
    pki.b_key = root / "b.key";
    pki.expired_chain = root / "expired.pem";
    pki.expired_key = root / "expired.key";
    pki.stray_key = root / "stray.key";
    pki.reversed_chain = root / "reversed.pem";
    pki.a_ocsp_response = root / "a.ocsp";
    pki.not_pem = root / "not_pem.txt";
}

IssuedCertificate TestCertificates::issue(const std::string& name,
                                          const std::vector<std::string>& dns_names) const {
    if (dns_names.empty()) {
        throw std::runtime_error("test PKI: a certificate for no name");
    }
    std::string names;
    for (const std::string& dns_name : dns_names) {
        names += (names.empty() ? "DNS:" : ",DNS:") + dns_name;
    }
    make_leaf(dir.path(), name, dns_names.front(), names, 2);
    return {.chain = dir.path() / (name + ".pem"), .key = dir.path() / (name + ".key")};
}

const TestCertificates& shared_pki() {
    static const TestCertificates pki;
    return pki;
}

}  // namespace splicer::test
