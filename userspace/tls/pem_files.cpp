#include "tls/pem_files.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>

#include "splicer/unique_fd.h"

namespace splicer::tls {
namespace {

// A read-only memory BIO over `text` (no copy; `text` outlives it).
BioPtr memory_bio(std::string_view text) {
    // BIO_new_mem_buf takes an int length; PEM files are far below 2 GiB, and larger input
    // is cut to INT_MAX bytes, which then fails to parse rather than overflowing.
    const int length = static_cast<int>(std::min<std::size_t>(text.size(), INT_MAX));
    return BioPtr(BIO_new_mem_buf(text.data(), length));
}

}  // namespace

std::string quoted_path(const std::filesystem::path& path) {
    return "\"" + path.string() + "\"";
}

Result<std::string> read_file_bytes(const std::filesystem::path& path) {
    const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        return errno_error("cannot read " + quoted_path(path));
    }
    std::string bytes;
    std::array<char, 16384> chunk{};
    for (;;) {
        const ssize_t got = ::read(fd.get(), chunk.data(), chunk.size());
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            // EISDIR lands here: open() of a directory O_RDONLY succeeds, read() fails.
            return errno_error("cannot read " + quoted_path(path));
        }
        if (got == 0) {
            return bytes;
        }
        bytes.append(chunk.data(), static_cast<std::size_t>(got));
    }
}

Result<CertificateChain> parse_certificate_chain(std::string_view pem) {
    const BioPtr bio = memory_bio(pem);
    CertificateChain chain{X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)),
                           X509StackPtr(sk_X509_new_null())};
    if (!chain.leaf) {
        ERR_clear_error();
        return Error{"holds no PEM certificate"};
    }
    if (!chain.intermediates) {
        return Error{"out of memory"};
    }
    for (;;) {
        X509Ptr next(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
        if (!next) {
            // The end of the input is reported as "no start line"; anything else is a
            // damaged block after the leaf.
            const unsigned long code = ERR_peek_last_error();
            ERR_clear_error();
            if (ERR_GET_REASON(code) == PEM_R_NO_START_LINE) {
                return chain;
            }
            return Error{"certificate " +
                         std::to_string(sk_X509_num(chain.intermediates.get()) + 2) +
                         " in the file is not a valid PEM certificate"};
        }
        if (sk_X509_push(chain.intermediates.get(), next.get()) == 0) {
            return Error{"out of memory"};
        }
        static_cast<void>(next.release());  // the stack owns it now
    }
}

Result<EvpPkeyPtr> parse_private_key(std::string_view pem) {
    const BioPtr bio = memory_bio(pem);
    // No password callback: an encrypted key fails here rather than prompting on a terminal.
    EvpPkeyPtr key(PEM_read_bio_PrivateKey(
        bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
    if (!key) {
        ERR_clear_error();
        return Error{"holds no PEM private key (or an encrypted one)"};
    }
    return key;
}

}  // namespace splicer::tls
