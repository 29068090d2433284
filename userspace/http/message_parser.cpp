#include "http/message_parser.h"

#include <charconv>

#include "http/request_target.h"

namespace splicer::http {

struct ParserCallbacks {
    static MessageParser& self(llhttp_t* parser) {
        return *static_cast<MessageParser*>(parser->data);
    }

    static int on_method(llhttp_t* parser, const char* at, std::size_t length) {
        self(parser).head_.method.append(at, length);
        return HPE_OK;
    }

    static int on_url(llhttp_t* parser, const char* at, std::size_t length) {
        MessageParser& p = self(parser);
        if (p.head_.target.size() + length > kMaxRequestTarget) {
            return p.fail(414, "request-target over " + std::to_string(kMaxRequestTarget) +
                                   " bytes");
        }
        p.head_.target.append(at, length);
        return HPE_OK;
    }

    static int on_status(llhttp_t* parser, const char* at, std::size_t length) {
        self(parser).head_.reason.append(at, length);
        return HPE_OK;
    }

    static int on_header_field(llhttp_t* parser, const char* at, std::size_t length) {
        self(parser).field_.append(at, length);
        return HPE_OK;
    }

    static int on_header_value(llhttp_t* parser, const char* at, std::size_t length) {
        self(parser).value_.append(at, length);
        return HPE_OK;
    }

    static int on_header_value_complete(llhttp_t* parser) {
        MessageParser& p = self(parser);
        if (p.kind_ == MessageParser::Kind::request &&
            p.head_.headers.size() >= kMaxHeaderFields) {
            return p.fail(431, "more than " + std::to_string(kMaxHeaderFields) +
                                   " header fields");
        }
        if (equals_ignoring_case(p.field_, "content-length")) {
            ++p.content_length_fields_;
        } else if (equals_ignoring_case(p.field_, "transfer-encoding")) {
            ++p.transfer_encoding_fields_;
        } else if (equals_ignoring_case(p.field_, "host")) {
            ++p.host_fields_;
        }
        p.head_.headers.push_back({std::move(p.field_), std::move(p.value_)});
        p.field_.clear();
        p.value_.clear();
        return HPE_OK;
    }

    static int on_headers_complete(llhttp_t* parser) {
        MessageParser& p = self(parser);
        if (const int rc = p.validate_head(); rc != HPE_OK) {
            return rc;
        }
        p.head_done_ = true;
        // Pausing makes llhttp_execute stop right after the head, so the caller learns
        // where the body starts. A response to HEAD has no body (llhttp: return 1 skips it;
        // the pause is then requested separately).
        if (p.kind_ == MessageParser::Kind::response && p.no_body_) {
            llhttp_pause(parser);
            return 1;
        }
        return HPE_PAUSED;
    }

    static int on_body(llhttp_t* parser, const char* /*at*/, std::size_t length) {
        MessageParser& p = self(parser);
        p.body_bytes_ += length;
        if (p.body_bytes_ > p.max_body_) {
            return p.fail(413, "body over " + std::to_string(p.max_body_) + " bytes");
        }
        return HPE_OK;
    }

    static int on_message_complete(llhttp_t* parser) {
        self(parser).message_done_ = true;
        return HPE_PAUSED;
    }
};

namespace {

// The callbacks are the same for every parser (each finds its MessageParser through
// llhttp_t::data): one table for the process, read-only after it is made, instead of ~200
// bytes in each of the two parsers every HTTP connection holds.
const llhttp_settings_t* shared_settings() {
    static const llhttp_settings_t settings = [] {
        llhttp_settings_t made{};
        llhttp_settings_init(&made);
        made.on_method = ParserCallbacks::on_method;
        made.on_url = ParserCallbacks::on_url;
        made.on_status = ParserCallbacks::on_status;
        made.on_header_field = ParserCallbacks::on_header_field;
        made.on_header_value = ParserCallbacks::on_header_value;
        made.on_header_value_complete = ParserCallbacks::on_header_value_complete;
        made.on_headers_complete = ParserCallbacks::on_headers_complete;
        made.on_body = ParserCallbacks::on_body;
        made.on_message_complete = ParserCallbacks::on_message_complete;
        return made;
    }();
    return &settings;
}

}  // namespace

MessageParser::MessageParser(Kind kind) : kind_(kind) {
    // llhttp takes the settings as non-const but only reads them.
    llhttp_init(&parser_, kind == Kind::request ? HTTP_REQUEST : HTTP_RESPONSE,
                const_cast<llhttp_settings_t*>(shared_settings()));
    parser_.data = this;
}

int MessageParser::fail(int status, std::string reason) {
    if (error_status_ == 0) {
        error_status_ = status;
        error_reason_ = std::move(reason);
    }
    return HPE_USER;
}

int MessageParser::validate_head() {
    head_.major = llhttp_get_http_major(&parser_);
    head_.minor = llhttp_get_http_minor(&parser_);
    head_.status = kind_ == Kind::response ? llhttp_get_status_code(&parser_) : 0;
    head_.keep_alive = llhttp_should_keep_alive(&parser_) != 0;
    head_.upgrade = llhttp_get_upgrade(&parser_) != 0;
    head_.chunked = (parser_.flags & F_CHUNKED) != 0;
    if ((parser_.flags & F_CONTENT_LENGTH) != 0) {
        head_.content_length = parser_.content_length;
    }
    const int bad = kind_ == Kind::request ? 400 : 502;
    if (content_length_fields_ > 1) {
        return fail(bad, "more than one Content-Length");
    }
    if (content_length_fields_ > 0 && transfer_encoding_fields_ > 0) {
        return fail(bad, "Content-Length with Transfer-Encoding");
    }
    if (kind_ == Kind::request) {
        if (transfer_encoding_fields_ > 1 ||
            (transfer_encoding_fields_ == 1 &&
             !equals_ignoring_case(head_.find("transfer-encoding")->value, "chunked"))) {
            return fail(400, "Transfer-Encoding other than chunked");
        }
        if (head_.method == "CONNECT") {
            return fail(400, "CONNECT is not proxied");
        }
        if (const int rc = validate_authority(); rc != HPE_OK) {
            return rc;
        }
        if (head_.content_length && *head_.content_length > max_body_) {
            return fail(413, "Content-Length over " + std::to_string(max_body_) + " bytes");
        }
    }
    return HPE_OK;
}

// RFC 9112 s. 3.2: 400 for an HTTP/1.1 request without Host, any request with more than one,
// or one whose value is not an authority. An absolute-form target's authority is what the
// request is for (s. 3.2.2): it must be valid too, and Host may then be empty. Routing, the
// upstream Host and X-Forwarded-Host, and a redirect's Location all take request_authority(),
// so nothing downstream sees a value that was not checked here.
int MessageParser::validate_authority() {
    if (host_fields_ > 1) {
        return fail(400, "more than one Host");
    }
    if (head_.major == 1 && head_.minor >= 1 && host_fields_ == 0) {
        return fail(400, "HTTP/1.1 request without Host");
    }
    const bool absolute = is_absolute_form(head_.target);
    if (absolute) {
        const std::string_view authority = target_authority(head_.target);
        if (authority.empty() || !is_valid_authority(authority)) {
            return fail(400, "invalid authority in the request-target");
        }
    }
    if (const Header* host = head_.find("host"); host != nullptr) {
        const std::string_view value = trim_whitespace(host->value);
        if (!is_valid_authority(value)) {
            return fail(400, "invalid Host");
        }
        if (value.empty() && !absolute) {
            return fail(400, "empty Host");
        }
    }
    return HPE_OK;
}

// llhttp (strict) already wants CRLF; this keeps the two shapes that split proxies from
// backends out whatever llhttp version is installed: a bare LF and an obs-fold line.
bool MessageParser::scan_head_bytes(std::span<const char> data) {
    for (const char c : data) {
        if (c == '\n' && previous_ != '\r') {
            fail(400, "bare LF in the head");
            return false;
        }
        if (previous_ == '\n' && !first_line_ && (c == ' ' || c == '\t')) {
            fail(kind_ == Kind::request ? 400 : 502, "obs-fold line in the head");
            return false;
        }
        if (c == '\n') {
            first_line_ = false;
        }
        previous_ = c;
    }
    return true;
}

Step MessageParser::feed(std::span<const char> data) {
    if (error_status_ != 0) {
        return {0, Event::error};
    }
    if (message_done_) {
        return {0, Event::message_complete};
    }
    const bool in_head = !head_done_;
    const llhttp_errno_t rc = llhttp_execute(&parser_, data.data(), data.size());
    std::size_t consumed = data.size();
    if (rc != HPE_OK) {
        const char* position = llhttp_get_error_pos(&parser_);
        if (position != nullptr && position >= data.data() &&
            position <= data.data() + data.size()) {
            consumed = static_cast<std::size_t>(position - data.data());
        }
    }
    if (in_head) {
        const std::span<const char> head_part = data.first(consumed);
        const bool clean = scan_head_bytes(head_part);
        head_bytes_ += consumed;
        if (clean && head_bytes_ > kMaxHeadBytes) {
            fail(kind_ == Kind::request ? 431 : 502,
                 "head over " + std::to_string(kMaxHeadBytes) + " bytes");
        }
        if (!clean || error_status_ != 0) {
            return {consumed, Event::error};
        }
    }
    if (rc == HPE_PAUSED || rc == HPE_PAUSED_UPGRADE) {
        llhttp_resume(&parser_);
        if (rc == HPE_PAUSED_UPGRADE) {
            // An upgrade request (or CONNECT) ends at its head: llhttp parses no further.
            message_done_ = true;
        }
        if (in_head && head_done_) {
            return {consumed, Event::head_complete};
        }
        return {consumed, message_done_ ? Event::message_complete : Event::need_more};
    }
    if (rc != HPE_OK) {
        fail(kind_ == Kind::request ? 400 : 502,
             std::string(llhttp_errno_name(rc)) + ": " + llhttp_get_error_reason(&parser_));
        return {consumed, Event::error};
    }
    return {consumed, Event::need_more};
}

Step MessageParser::finish() {
    if (error_status_ != 0) {
        return {0, Event::error};
    }
    const llhttp_errno_t rc = llhttp_finish(&parser_);
    if (message_done_) {
        return {0, Event::message_complete};
    }
    fail(kind_ == Kind::request ? 400 : 502,
         rc == HPE_OK ? "connection closed mid-message" : llhttp_errno_name(rc));
    return {0, Event::error};
}

void MessageParser::reset() {
    llhttp_init(&parser_, kind_ == Kind::request ? HTTP_REQUEST : HTTP_RESPONSE,
                const_cast<llhttp_settings_t*>(shared_settings()));
    parser_.data = this;
    next_message();
    error_status_ = 0;
    error_reason_.clear();
    max_body_ = UINT64_MAX;
}

bool MessageParser::body_until_eof() const {
    return llhttp_message_needs_eof(&parser_) != 0;
}

void MessageParser::next_message() {
    head_ = MessageHead{};
    field_.clear();
    value_.clear();
    head_done_ = false;
    message_done_ = false;
    no_body_ = false;
    head_bytes_ = 0;
    body_bytes_ = 0;
    content_length_fields_ = 0;
    transfer_encoding_fields_ = 0;
    host_fields_ = 0;
    previous_ = '\n';
    first_line_ = true;
}

}  // namespace splicer::http
