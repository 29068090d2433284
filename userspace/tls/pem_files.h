#pragma once
// Certificate and key files read into OpenSSL objects. The reading and the parsing are apart:
// the privileged parent of issue 14 point 3 will read the files and hand their bytes to the
// worker, which parses them with the same functions.

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "splicer/result.h"
#include "tls/openssl_handles.h"

namespace splicer::tls {

// The whole file, or an error "cannot read "PATH": REASON" (REASON is strerror's text).
Result<std::string> read_file_bytes(const std::filesystem::path& path);

// How every certificate, key, OCSP response and CA file is read: read_file_bytes in one
// process; the privileged parent (issue 14 point 3) will pass a reader that asks it for the
// bytes, since after the privilege drop the worker cannot open root-only files (Let's
// Encrypt's live/ is 0700). Errors as read_file_bytes words them.
using FileReader = std::function<Result<std::string>(const std::filesystem::path&)>;

// A leaf certificate and the chain the file holds after it, in file order.
struct CertificateChain {
    X509Ptr leaf;
    X509StackPtr intermediates;
};

// Every PEM "CERTIFICATE" block of `pem`, the first one the leaf. Errors say "holds no PEM
// certificate" when there is none.
Result<CertificateChain> parse_certificate_chain(std::string_view pem);
// The first PEM private key of `pem` (PKCS#8, or the traditional RSA / EC forms), unencrypted.
Result<EvpPkeyPtr> parse_private_key(std::string_view pem);

// "\"PATH\"" as config messages quote a file.
std::string quoted_path(const std::filesystem::path& path);

}  // namespace splicer::tls
