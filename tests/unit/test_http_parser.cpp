// The request framer on raw bytes: valid requests give the same head, body bytes and end
// whether fed whole or byte by byte; malformed and smuggling-shaped ones get their status.

#include <catch2/catch.hpp>

#include <string>

#include "http/message_parser.h"

using splicer::http::Event;
using splicer::http::MessageHead;
using splicer::http::MessageParser;

namespace {

struct ParseOutcome {
    int status = 0;  // 0: no error
    MessageHead head;
    std::string body;      // body bytes as consumed (chunk framing included)
    std::size_t used = 0;  // bytes of the input the message took
    bool complete = false;
};

// Feeds `input` in pieces of `chunk` bytes until the first message ends or fails.
ParseOutcome frame(MessageParser& parser, const std::string& input, std::size_t chunk) {
    ParseOutcome out;
    bool in_body = false;
    std::size_t pos = 0;
    while (true) {
        const std::size_t end = std::min(input.size(), pos + chunk);
        const auto step = parser.feed({input.data() + pos, end - pos});
        if (in_body) {
            out.body += input.substr(pos, step.consumed);
        }
        pos += step.consumed;
        if (step.event == Event::error) {
            out.status = parser.error_status();
            break;
        }
        if (step.event == Event::head_complete) {
            out.head = parser.head();
            in_body = true;
            continue;
        }
        if (step.event == Event::message_complete) {
            out.complete = true;
            break;
        }
        if (pos >= input.size()) {
            break;
        }
    }
    out.used = pos;
    return out;
}

ParseOutcome frame_request(const std::string& input, std::size_t chunk,
                      std::uint64_t max_body = 1024) {
    MessageParser parser(MessageParser::Kind::request);
    parser.set_max_body(max_body);
    return frame(parser, input, chunk);
}

}  // namespace

TEST_CASE("http requests: head, body and end are the same for every split", "[http]") {
    auto [input, method, target, body, used_all] =
        GENERATE(table<std::string, std::string, std::string, std::string, bool>({
            {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", "", true},
            {"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\nGET / HTTP/1.1\r\n", "GET",
             "/x?y=1", "", false},
            {"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", "POST", "/up",
             "hello", true},
            {"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nTrailer-A: b\r\n\r\n",
             "POST", "/up",
             "5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nTrailer-A: b\r\n\r\n", true},
            {"GET / HTTP/1.0\r\n\r\n", "GET", "/", "", true},
        }));
    CAPTURE(input);
    const ParseOutcome whole = frame_request(input, input.size());
    REQUIRE(whole.status == 0);
    REQUIRE(whole.complete);
    CHECK(whole.head.method == method);
    CHECK(whole.head.target == target);
    CHECK(whole.body == body);
    CHECK((whole.used == input.size()) == used_all);
    const ParseOutcome bytewise = frame_request(input, 1);
    REQUIRE(bytewise.status == 0);
    REQUIRE(bytewise.complete);
    CHECK(bytewise.head.method == method);
    CHECK(bytewise.head.target == target);
    CHECK(bytewise.head.headers.size() == whole.head.headers.size());
    CHECK(bytewise.body == body);
    CHECK(bytewise.used == whole.used);
}

TEST_CASE("http requests: headers as received, framing and keep-alive", "[http]") {
    const std::string input =
        "GET / HTTP/1.1\r\nHost: Chat.Example.com:80\r\nX-A:  spaced value \r\n"
        "Connection: keep-alive\r\n\r\n";
    const ParseOutcome out = frame_request(input, 3);
    REQUIRE(out.complete);
    REQUIRE(out.head.headers.size() == 3);
    CHECK(out.head.headers[0].name == "Host");
    CHECK(out.head.headers[0].value == "Chat.Example.com:80");
    CHECK(out.head.headers[1].value == "spaced value ");  // llhttp drops leading OWS only
    CHECK(out.head.keep_alive);
    CHECK_FALSE(frame_request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 7)
                    .head.keep_alive);
    CHECK_FALSE(frame_request("GET / HTTP/1.0\r\n\r\n", 7).head.keep_alive);
    const ParseOutcome upgrade = frame_request(
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 5);
    CHECK(upgrade.head.upgrade);
    CHECK(upgrade.complete);
}

TEST_CASE("http requests: malformed and smuggling shapes get their status", "[http]") {
    auto [input, status] = GENERATE(table<std::string, int>({
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
         400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
         "fffffffffffffffffff\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n", 400},
        {"GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\n\n", 400},
        {"GET / HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n", 400},
        {"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/2.7\r\nHost: a\r\n\r\n", 400},
        {"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 400},
        {"\x16\x03\x01\x00\x05hello", 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n", 413},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
         "400\r\n" + std::string(1024, 'x') + "\r\n1\r\ny\r\n0\r\n\r\n",
         413},
        {"GET /" + std::string(8 * 1024, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
        {"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(33 * 1024, 'a') + "\r\n\r\n", 431},
    }));
    CAPTURE(input.substr(0, 120));
    for (const std::size_t chunk : {input.size(), std::size_t{1}, std::size_t{7}}) {
        CAPTURE(chunk);
        const ParseOutcome out = frame_request(input, chunk);
        CHECK(out.status == status);
        CHECK_FALSE(out.complete);
    }
}

TEST_CASE("http requests: pipelined messages are framed one after another", "[http]") {
    const std::string input =
        "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
        "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n";
    for (const std::size_t chunk : {input.size(), std::size_t{1}}) {
        MessageParser parser(MessageParser::Kind::request);
        std::string rest = input;
        std::vector<std::string> targets;
        while (!rest.empty()) {
            const ParseOutcome out = frame(parser, rest, chunk);
            REQUIRE(out.complete);
            targets.push_back(out.head.target);
            rest = rest.substr(out.used);
            parser.next_message();
        }
        CHECK(targets == std::vector<std::string>{"/a", "/b", "/c"});
    }
}

TEST_CASE("http responses: framing, no body for HEAD, body until EOF", "[http]") {
    MessageParser parser(MessageParser::Kind::response);
    const std::string fixed = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    ParseOutcome out = frame(parser, fixed, 1);
    REQUIRE(out.complete);
    CHECK(out.head.status == 200);
    CHECK(out.head.reason == "OK");
    CHECK(out.body == "abc");

    parser.next_message();
    parser.set_no_body(true);
    out = frame(parser, fixed, fixed.size());
    REQUIRE(out.complete);
    CHECK(out.body.empty());
    CHECK(out.used == fixed.size() - 3);

    MessageParser eof_parser(MessageParser::Kind::response);
    out = frame(eof_parser, "HTTP/1.1 200 OK\r\n\r\nuntil the end", 4);
    CHECK_FALSE(out.complete);
    CHECK(eof_parser.body_until_eof());
    CHECK(eof_parser.finish().event == Event::message_complete);

    MessageParser garbage(MessageParser::Kind::response);
    CHECK(frame(garbage, "SSH-2.0-OpenSSH\r\n\r\n", 3).status == 502);

    MessageParser switching(MessageParser::Kind::response);
    out = frame(switching, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\n\r\nframes",
                5);
    CHECK(out.head.status == 101);
    CHECK(out.head.upgrade);
    CHECK(out.complete);
    CHECK(out.body.empty());
}

TEST_CASE("http requests: over 100 header fields get 431 before the head ends", "[http]") {
    // HAProxy's tune.http.maxhdr (101) and nginx's header buffers stop a head near 100
    // fields; past kMaxHeaderFields splicer answers 431 at the first field too many.
    const auto head_with = [](std::size_t fields) {
        std::string head = "GET / HTTP/1.1\r\nHost: a\r\n";
        for (std::size_t i = 1; i < fields; ++i) {
            head += "X-" + std::to_string(i) + ": v\r\n";
        }
        return head + "\r\n";
    };
    const std::string at_limit = head_with(100);
    for (const std::size_t chunk : {at_limit.size(), std::size_t{1}}) {
        const ParseOutcome out = frame_request(at_limit, chunk);
        CHECK(out.status == 0);
        CHECK(out.complete);
        CHECK(out.head.headers.size() == 100);
    }
    // 4,000 one-letter fields in 20 KiB: refused at field 101, the rest never parsed.
    std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < 4000; ++i) {
        many += "x:y\r\n";
    }
    many += "\r\n";
    for (const std::string& input : {head_with(101), many}) {
        CAPTURE(input.size());
        for (const std::size_t chunk : {input.size(), std::size_t{1}, std::size_t{7}}) {
            CAPTURE(chunk);
            const ParseOutcome out = frame_request(input, chunk);
            CHECK(out.status == 431);
            CHECK_FALSE(out.complete);
            CHECK(out.used < input.size());
        }
    }
}

TEST_CASE("http requests: Host must be one valid authority, else 400", "[http]") {
    // RFC 9112 s. 3.2: 400 for more than one Host or an invalid one; RFC 3986 s. 3.2.2 for
    // its syntax (reg-name or IP literal, optional port).
    auto [input, status] = GENERATE(table<std::string, int>({
        {"GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a.example.com\r\nhost: a.example.com\r\n\r\n", 400},
        {"GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: evil.com?.example.com\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: evil.com/.example.com\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: evil.com#.example.com\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: user@www.example.com\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: evil.com\\.example.com\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: www.example.com x\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: \r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: www.example.com:80a\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: www.example.com:99999\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: www.example.com:80:80\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: [::1\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: [not:an:address]\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: a%2F.example.com\r\n\r\n", 400},
        {"GET http://evil@www.example.com/x HTTP/1.1\r\nHost: www.example.com\r\n\r\n", 400},
        {"GET http:///x HTTP/1.1\r\nHost: www.example.com\r\n\r\n", 400},
        {"GET http://a b/x HTTP/1.1\r\nHost: www.example.com\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: WWW.Example.COM.\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: www.example.com:8080\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: www.example.com  \r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: 198.18.0.1:80\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: xn--bcher-kva.example_1\r\n\r\n", 0},
        {"GET http://a.example.com:8080/x?y HTTP/1.1\r\nHost: b.example.com\r\n\r\n", 0},
        {"GET http://[::1]/x HTTP/1.1\r\nHost: [::1]\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\n\r\n", 0},
    }));
    CAPTURE(input);
    for (const std::size_t chunk : {input.size(), std::size_t{1}}) {
        CAPTURE(chunk);
        const ParseOutcome out = frame_request(input, chunk);
        CHECK(out.status == status);
        CHECK(out.complete == (status == 0));
    }
}
