#pragma once
// The answers splicer writes itself: errors and the https redirect. Each carries
// Content-Length and "Connection: close": after an error the connection's framing can no
// longer be trusted, so it ends.

#include <string>
#include <string_view>

namespace splicer::http {

std::string_view status_reason(int status);

// "HTTP/1.1 404 Not Found" with a one-line text body.
std::string error_response(int status);

// 301 to https://HOST/target (the Host header's name without its port).
std::string redirect_to_https(std::string_view host, std::string_view target);

// ACME http-01 challenges are always proxied, never redirected: the backend that owns the
// certificate must answer them over plain HTTP.
bool is_acme_challenge(std::string_view target);

}  // namespace splicer::http
