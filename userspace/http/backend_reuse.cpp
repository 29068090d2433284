#include "http/backend_reuse.h"

namespace splicer::http {

std::string_view why_not_reusable(const ExchangeEnd& end) {
    // In order of what makes the connection's state unknown first: after an error nobody
    // knows what the backend read or still sends.
    if (end.failed) {
        return "error";
    }
    if (end.upgraded) {
        return "upgraded";
    }
    if (end.request_aborted || !end.request_complete) {
        return "request body not all sent";
    }
    if (!end.response_complete) {
        return "response not all read";
    }
    if (end.framed_by_eof) {
        return "response framed by EOF";
    }
    if (!end.backend_keep_alive) {
        return "backend closes";
    }
    if (end.unread_bytes) {
        return "bytes past the response";
    }
    return {};
}

bool is_idempotent(std::string_view method) {
    return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
           method == "OPTIONS" || method == "TRACE";
}

}  // namespace splicer::http
