// Probes on real protocol openings: every probe must give the same answer however the bytes
// were split, so each row is also checked on every prefix.

#include <catch2/catch.hpp>

#include <string>

#include "splicer/probe.h"
#include "support/client_hello.h"

using splicer::probe::Verdict;
using splicer::test::as_bytes;
using ProbeFunction = Verdict (*)(splicer::probe::Bytes);

namespace {

// The verdict on each growing prefix may go need_more... -> final, and never changes after.
void check_prefixes_settle(ProbeFunction probe, const std::string& input, Verdict expected) {
    bool settled = false;
    for (std::size_t length = 0; length <= input.size(); ++length) {
        const Verdict verdict = probe(as_bytes(input.substr(0, length)));
        CAPTURE(length);
        if (settled) {
            REQUIRE(verdict == expected);
        } else if (verdict != Verdict::need_more) {
            REQUIRE(verdict == expected);
            settled = true;
        }
    }
    CHECK(probe(as_bytes(input)) == expected);
}

const std::string kStreamNs = "xmlns:stream='http://etherx.jabber.org/streams'";

}  // namespace

TEST_CASE("xmpp probe recognises client stream headers", "[probe][xmpp]") {
    auto [description, input, expected] = GENERATE_REF(table<std::string, std::string, Verdict>({
        {"minimal header", "<stream:stream xmlns='jabber:client'>", Verdict::match},
        {"with XML declaration",
         "<?xml version='1.0'?><stream:stream to='example.com' xmlns='jabber:client' " +
             kStreamNs + " version='1.0'>",
         Verdict::match},
        // RFC 6120 example 4.8: the namespace comes well past byte 50, where sslh gives up.
        {"namespace after byte 50",
         "<?xml version='1.0' encoding='UTF-8'?>\n<stream:stream from='juliet@im.example.com' "
         "to='im.example.com' version='1.0' xml:lang='en' xmlns='jabber:client' " +
             kStreamNs + ">",
         Verdict::match},
        {"double quotes", "<stream:stream to=\"a.example\" xmlns=\"jabber:client\">",
         Verdict::match},
        {"server to server", "<stream:stream xmlns='jabber:server' " + kStreamNs + ">",
         Verdict::match},
        {"leading whitespace and BOM", "\xEF\xBB\xBF \n<stream:stream xmlns='jabber:client'>",
         Verdict::match},
        {"component namespace is not a client",
         "<stream:stream xmlns='jabber:component:accept' " + kStreamNs + ">", Verdict::no_match},
        {"other element", "<html><body>", Verdict::no_match},
        {"HTTP request", "GET / HTTP/1.1\r\n", Verdict::no_match},
        {"TLS record", std::string("\x16\x03\x01\x02\x00", 5), Verdict::no_match},
        {"SSH banner", "SSH-2.0-OpenSSH_9.2\r\n", Verdict::no_match},
    }));
    CAPTURE(description);
    check_prefixes_settle(splicer::probe::probe_xmpp, input, expected);
}

TEST_CASE("xmpp probe gives up on a header that never ends", "[probe][xmpp]") {
    std::string endless = "<stream:stream to='" + std::string(splicer::probe::kMaxXmppHeader, 'a');
    CHECK(splicer::probe::probe_xmpp(as_bytes(endless.substr(0, 1000))) == Verdict::need_more);
    CHECK(splicer::probe::probe_xmpp(as_bytes(endless)) == Verdict::no_match);
    std::string endless_declaration = "<?xml " + std::string(5000, ' ');
    CHECK(splicer::probe::probe_xmpp(as_bytes(endless_declaration)) == Verdict::no_match);
}

TEST_CASE("ssh probe", "[probe][ssh]") {
    auto [input, expected] = GENERATE(table<std::string, Verdict>({
        {"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", Verdict::match},
        {"SSH-1.99-old\r\n", Verdict::match},
        {"SSH ", Verdict::no_match},
        {"ssh-2.0", Verdict::no_match},
        {"GET / HTTP/1.1\r\n", Verdict::no_match},
    }));
    check_prefixes_settle(splicer::probe::probe_ssh, input, expected);
    CHECK(splicer::probe::probe_ssh(as_bytes("")) == Verdict::need_more);
}

TEST_CASE("http probe", "[probe][http]") {
    auto [input, expected] = GENERATE(table<std::string, Verdict>({
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Verdict::match},
        {"POST /upload HTTP/1.1\r\n", Verdict::match},
        {"OPTIONS * HTTP/1.1\r\n", Verdict::match},
        {"CONNECT a:443 HTTP/1.1\r\n", Verdict::match},
        {"PATCH /x HTTP/1.1\r\n", Verdict::match},
        {"GETX / HTTP/1.1\r\n", Verdict::no_match},
        {"get / HTTP/1.1\r\n", Verdict::no_match},
        {"PRI * HTTP/2.0\r\n", Verdict::no_match},
        {"<stream:stream>", Verdict::no_match},
    }));
    check_prefixes_settle(splicer::probe::probe_http, input, expected);
}

TEST_CASE("openvpn probe", "[probe][openvpn]") {
    // A P_CONTROL_HARD_RESET_CLIENT_V2 as a TCP client sends it: length 14, opcode 7 key 0,
    // session id, empty ack array, packet id 0.
    const std::string hard_reset_v2("\x00\x0e\x38" "ABCDEFGH" "\x00" "\x00\x00\x00\x00", 16);
    const std::string hard_reset_v3("\x00\x0e\x50" "ABCDEFGH" "\x00" "\x00\x00\x00\x00", 16);
    const std::string wrong_key_id("\x00\x0e\x39" "ABCDEFGH" "\x00" "\x00\x00\x00\x00", 16);
    const std::string data_opcode("\x00\x0e\x30" "ABCDEFGH" "\x00" "\x00\x00\x00\x00", 16);
    const std::string too_short("\x00\x05\x38" "ABCDE", 8);
    auto [input, expected] = GENERATE_REF(table<std::string, Verdict>({
        {hard_reset_v2, Verdict::match},
        {hard_reset_v3, Verdict::match},
        {wrong_key_id, Verdict::no_match},
        {data_opcode, Verdict::no_match},
        {too_short, Verdict::no_match},
        {"GET / HTTP/1.1\r\n", Verdict::no_match},
    }));
    check_prefixes_settle(splicer::probe::probe_openvpn, input, expected);
}

TEST_CASE("anyprot matches anything once a byte arrived", "[probe][anyprot]") {
    CHECK(splicer::probe::probe_anyprot(as_bytes("")) == Verdict::need_more);
    CHECK(splicer::probe::probe_anyprot(as_bytes("x")) == Verdict::match);
    const std::string hello = splicer::test::make_client_hello({.server_name = "a.example"});
    CHECK(splicer::probe::probe_anyprot(as_bytes(hello)) == Verdict::match);
}

TEST_CASE("the non-TLS probes refuse a real ClientHello", "[probe]") {
    const std::string hello = splicer::test::make_client_hello({.server_name = "a.example"});
    for (const ProbeFunction probe :
         {splicer::probe::probe_xmpp, splicer::probe::probe_ssh, splicer::probe::probe_http}) {
        check_prefixes_settle(probe, hello, Verdict::no_match);
    }
    // 0x1603 read as a length is 5635: larger than any OpenVPN control packet.
    CHECK(splicer::probe::probe_openvpn(as_bytes(hello)) == Verdict::no_match);
}
