#include "tls/certificate_check.h"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <array>
#include <cstdio>

#include "tls/pem_files.h"

namespace splicer::tls {
namespace {

using Severity = config::Diagnostic::Severity;

// "2026-12-04 18:22:29 UTC" (the certificate's own time, always UTC).
std::string time_text(const ASN1_TIME* time) {
    std::tm parts{};
    if (ASN1_TIME_to_tm(time, &parts) != 1) {
        return "an unreadable date";
    }
    std::array<char, 32> text{};
    std::strftime(text.data(), text.size(), "%Y-%m-%d %H:%M:%S UTC", &parts);
    return text.data();
}

// "CN=name" of the subject (the whole one-line subject when it has no CN).
std::string subject_text(X509* certificate) {
    std::array<char, 256> name{};
    X509_NAME* subject = X509_get_subject_name(certificate);
    if (X509_NAME_get_text_by_NID(subject, NID_commonName, name.data(),
                                  static_cast<int>(name.size())) > 0) {
        return std::string("CN=") + name.data();
    }
    X509_NAME_oneline(subject, name.data(), static_cast<int>(name.size()));
    return name.data();
}

class Collector {
public:
    void add(Severity severity, const SettingPlace& place, std::string message) {
        diagnostics_.push_back(
            config::Diagnostic{severity, place.line, place.setting, std::move(message)});
    }
    std::vector<config::Diagnostic> take() { return std::move(diagnostics_); }

private:
    std::vector<config::Diagnostic> diagnostics_;
};

void check_validity(X509* leaf, const std::string& name, std::time_t now, const SettingPlace& place,
                    Collector& out) {
    const ASN1_TIME* not_before = X509_get0_notBefore(leaf);
    const ASN1_TIME* not_after = X509_get0_notAfter(leaf);
    if (X509_cmp_time(not_before, &now) > 0) {
        out.add(Severity::error, place,
                "certificate " + name + " is not valid before " + time_text(not_before));
    }
    if (X509_cmp_time(not_after, &now) < 0) {
        out.add(Severity::notice, place,
                "certificate " + name + " expired on " + time_text(not_after) +
                    ": clients will refuse it");
    }
}

// Each certificate should be issued by the next one in the file (RFC 8446 4.4.2 allows
// another order in TLS 1.3, but TLS 1.2 clients and many libraries expect this one).
void check_chain_order(const CertificateChain& chain, const std::string& name,
                       const SettingPlace& place, Collector& out) {
    X509* previous = chain.leaf.get();
    const int count = sk_X509_num(chain.intermediates.get());
    for (int i = 0; i < count; ++i) {
        X509* next = sk_X509_value(chain.intermediates.get(), i);
        if (X509_check_issued(next, previous) != X509_V_OK) {
            out.add(Severity::notice, place,
                    "certificate " + name + ": certificate " + std::to_string(i + 2) + " (" +
                        subject_text(next) + ") did not issue certificate " +
                        std::to_string(i + 1) + " (" + subject_text(previous) +
                        "): the chain is out of order or has a stranger in it");
            return;
        }
        previous = next;
    }
}

}  // namespace

std::vector<config::Diagnostic> check_certificate_files(const CertificateFiles& files,
                                                        const CertificatePlaces& places,
                                                        std::time_t now,
                                                        const FileReader& read_file) {
    Collector out;
    const std::string certificate_name = quoted_path(files.certificate);
    std::optional<CertificateChain> chain;
    if (auto pem = read_file(files.certificate); !pem) {
        out.add(Severity::error, places.certificate, pem.error().message);
    } else if (auto parsed = parse_certificate_chain(*pem); !parsed) {
        out.add(Severity::error, places.certificate,
                certificate_name + " " + parsed.error().message);
    } else {
        chain = std::move(*parsed);
        check_validity(chain->leaf.get(), certificate_name, now, places.certificate, out);
        check_chain_order(*chain, certificate_name, places.certificate, out);
    }

    const std::string key_name = quoted_path(files.key);
    if (auto pem = read_file(files.key); !pem) {
        out.add(Severity::error, places.key, pem.error().message);
    } else if (auto key = parse_private_key(*pem); !key) {
        out.add(Severity::error, places.key, key_name + " " + key.error().message);
    } else if (chain && X509_check_private_key(chain->leaf.get(), key->get()) != 1) {
        ERR_clear_error();
        out.add(Severity::error, places.key,
                "key " + key_name + " does not match certificate " + certificate_name);
    }

    if (!files.ocsp_response.empty()) {
        if (auto response = read_file(files.ocsp_response); !response) {
            out.add(Severity::error, places.ocsp_response, response.error().message);
        } else {
            const auto* bytes = reinterpret_cast<const unsigned char*>(response->data());
            OCSP_RESPONSE* parsed =
                d2i_OCSP_RESPONSE(nullptr, &bytes, static_cast<long>(response->size()));
            if (parsed == nullptr) {
                ERR_clear_error();
                out.add(Severity::error, places.ocsp_response,
                        quoted_path(files.ocsp_response) + " holds no DER OCSP response");
            }
            OCSP_RESPONSE_free(parsed);
        }
    }
    return out.take();
}

}  // namespace splicer::tls
