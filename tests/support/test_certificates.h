#pragma once
// A throw-away PKI made with the openssl CLI for the TLS termination tests: a CA, leaf
// certificates with their full-chain files, and the odd cases the checks must name (an
// expired certificate, a key that matches nothing, a chain in the wrong order, an OCSP
// response for one leaf). EC P-256 keys throughout: a few milliseconds each, unlike RSA.

#include <filesystem>
#include <string>
#include <vector>

#include "support/process.h"

namespace splicer::test {

struct IssuedCertificate {
    std::filesystem::path chain;  // leaf then CA
    std::filesystem::path key;
};

struct TestCertificates {
    // Makes them all; throws std::runtime_error with openssl's output when a step fails.
    TestCertificates();

    // One more leaf signed by the CA, for `dns_names` (its CN the first name), as NAME.pem and
    // NAME.key in dir. Each gets a new serial (the CA's serial file counts up): a renewal of
    // the same names is told apart from the first by it. Throws as the constructor does.
    [[nodiscard]] IssuedCertificate issue(const std::string& name,
                                          const std::vector<std::string>& dns_names) const;

    TempDir dir{"splicer-tls-pki"};
    std::filesystem::path ca;  // the CA certificate (also the OCSP responder)
    std::filesystem::path ca_key;
    // Full-chain files (leaf then CA) and keys. a: SAN a.test; b: SANs b.test and
    // *.wild.test; expired: SAN old.test, its validity ended a day before it began.
    std::filesystem::path a_chain, a_key;
    std::filesystem::path b_chain, b_key;
    std::filesystem::path expired_chain, expired_key;
    std::filesystem::path stray_key;        // matches no certificate
    std::filesystem::path reversed_chain;   // a's chain with the CA first
    std::filesystem::path a_ocsp_response;  // DER, "good", signed by the CA
    std::filesystem::path not_pem;          // a text file that is neither
};

// One PKI per test process, made on first use: Catch2 runs a test case again from its start
// for every GENERATE row and section, and the tests only read it.
const TestCertificates& shared_pki();

}  // namespace splicer::test
