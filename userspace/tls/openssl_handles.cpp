#include "tls/openssl_handles.h"

#include <openssl/err.h>

namespace splicer::tls {

std::string take_openssl_error(const std::string& fallback) {
    const unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) {
        return fallback;
    }
    const char* reason = ERR_reason_error_string(code);
    return reason != nullptr ? std::string(reason) : fallback;
}

}  // namespace splicer::tls
