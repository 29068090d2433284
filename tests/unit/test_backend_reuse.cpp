// The backend connection reuse rule (http/backend_reuse.h), one row per way an exchange can
// end, and the upstream head a pooled connection is sent.

#include <catch2/catch.hpp>

#include <string>
#include <string_view>

#include "http/backend_reuse.h"
#include "http/head_rewrite.h"

using splicer::http::ExchangeEnd;

namespace {

// A request sent whole and a keep-alive response read whole with its length known.
ExchangeEnd clean() {
    return ExchangeEnd{.request_complete = true,
                       .response_complete = true,
                       .backend_keep_alive = true};
}

struct Row {
    const char* name;
    ExchangeEnd end;
    std::string_view why;  // "" reusable
};

}  // namespace

TEST_CASE("backend reuse: only a cleanly ended exchange keeps its connection", "[http][pool]") {
    ExchangeEnd failed = clean();
    failed.failed = true;
    ExchangeEnd upgraded = clean();
    upgraded.upgraded = true;
    ExchangeEnd body_unsent = clean();
    body_unsent.request_complete = false;
    ExchangeEnd aborted = clean();
    aborted.request_aborted = true;
    ExchangeEnd unread = clean();
    unread.response_complete = false;
    ExchangeEnd eof_framed = clean();
    eof_framed.framed_by_eof = true;
    ExchangeEnd closing = clean();
    closing.backend_keep_alive = false;  // Connection: close, or HTTP/1.0 without keep-alive
    ExchangeEnd extra = clean();
    extra.unread_bytes = true;
    ExchangeEnd everything_wrong{.failed = true, .request_aborted = true, .framed_by_eof = true,
                                 .upgraded = true, .unread_bytes = true};

    const Row rows[] = {
        {"clean", clean(), ""},
        {"error", failed, "error"},
        {"101", upgraded, "upgraded"},
        {"body not all sent", body_unsent, "request body not all sent"},
        {"client aborted mid-body", aborted, "request body not all sent"},
        {"response body unread", unread, "response not all read"},
        {"EOF-framed response", eof_framed, "response framed by EOF"},
        {"backend says close", closing, "backend closes"},
        {"bytes past the response", extra, "bytes past the response"},
        {"an error outranks the rest", everything_wrong, "error"},
    };
    for (const Row& row : rows) {
        CAPTURE(row.name);
        CHECK(splicer::http::why_not_reusable(row.end) == row.why);
    }
}

TEST_CASE("backend reuse: only idempotent methods are sent twice", "[http][pool]") {
    for (const char* method : {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"}) {
        CAPTURE(method);
        CHECK(splicer::http::is_idempotent(method));
    }
    for (const char* method : {"POST", "PATCH", "CONNECT", "get", "", "GETX"}) {
        CAPTURE(method);
        CHECK_FALSE(splicer::http::is_idempotent(method));
    }
}

TEST_CASE("backend reuse: a pooled request goes up without the client's Connection close",
          "[http][pool]") {
    splicer::http::MessageHead head;
    head.method = "GET";
    head.target = "/";
    head.headers = {{"Host", "a"}, {"Connection", "close, X-Hop"}, {"X-Hop", "1"},
                    {"Keep-Alive", "timeout=5"}};
    splicer::http::UpstreamOptions options;
    options.client_address = "127.0.0.1";
    options.keep_alive = true;
    CHECK(splicer::http::upstream_request_head(head, options) ==
          "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 127.0.0.1\r\n"
          "X-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\n\r\n");
    options.keep_alive = false;
    CHECK(splicer::http::upstream_request_head(head, options).ends_with("Connection: close\r\n\r\n"));
    head.upgrade = true;
    options.keep_alive = true;
    CHECK(splicer::http::upstream_request_head(head, options).ends_with(
        "Connection: upgrade\r\n\r\n"));
}
