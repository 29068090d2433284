#pragma once
// Whether a backend connection may serve another request once an exchange on it ended
// (daemon/backend_pool.h): nginx's upstream `keepalive` and HAProxy's `http-reuse safe` keep
// a connection only when both ends agree on where the next message starts. A pure function
// of what the exchange saw, so the rule is one table (tests/unit/test_backend_reuse.cpp).

#include <string_view>

namespace splicer::http {

struct ExchangeEnd {
    bool failed = false;             // any operation on the backend failed or timed out
    bool request_complete = false;   // every byte of the request went to the backend
    bool request_aborted = false;    // the client's body was cut short (response relayed, then close)
    bool response_complete = false;  // the final response was read to its last byte
    bool framed_by_eof = false;      // the response had no length: its end was the backend's FIN
    bool backend_keep_alive = false;  // its head allows another message (HTTP/1.1 without
                                      // `Connection: close`, or 1.0 with keep-alive)
    bool upgraded = false;            // a 101: the connection is no longer HTTP
    bool unread_bytes = false;        // the backend sent bytes past the response
};

// "" when the connection may be reused, else why not (for the debug log and the tests).
std::string_view why_not_reusable(const ExchangeEnd& end);

// RFC 9110 s. 9.2.2: GET, HEAD, PUT, DELETE, OPTIONS, TRACE (case-sensitive, as methods are).
// Only such a request may be sent again after a reused connection failed once the whole
// request was out (nginx's proxy_next_upstream rule for non-idempotent requests).
bool is_idempotent(std::string_view method);

}  // namespace splicer::http
