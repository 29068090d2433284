// daemon/proxy_header_send: what a connection's PROXY header carries (the ALPN the rule chose,
// the SNI when it is a host name) and the send that must take the header whole or fail.

#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "daemon/proxy_header_send.h"
#include "support/sockets.h"

using splicer::config::Rule;
using splicer::tls::ClientHello;

TEST_CASE("proxy_alpn: the client's first protocol the rule allows, else none", "[proxy]") {
    const auto [offered, allowed, expected] =
        GENERATE(table<std::vector<std::string>, std::vector<std::string>, std::string>({
            {{"h2", "http/1.1"}, {"http/1.1", "h2"}, "h2"},
            {{"http/1.1", "h2"}, {"h2", "http/1.1"}, "http/1.1"},
            {{"xmpp-client"}, {"xmpp-client"}, "xmpp-client"},
            {{"h2", "xmpp-client"}, {"xmpp-client"}, "xmpp-client"},
            // A rule without alpn_protocols chose by something else: the backend will
            // negotiate, splicer cannot know what.
            {{"h2"}, {}, ""},
            {{}, {"h2"}, ""},
        }));
    ClientHello hello;
    hello.alpn_protocols = offered;
    Rule rule;
    rule.alpn_protocols = allowed;
    CHECK(splicer::daemon::proxy_alpn(hello, rule) == expected);
}

TEST_CASE("proxy_authority: the SNI up to 255 bytes, nothing past", "[proxy]") {
    CHECK(splicer::daemon::proxy_authority("") == "");
    CHECK(splicer::daemon::proxy_authority("Chat.Example.com") == "Chat.Example.com");
    const std::string longest(255, 'a');
    CHECK(splicer::daemon::proxy_authority(longest) == longest);
    CHECK(splicer::daemon::proxy_authority(longest + "a") == "");
}

TEST_CASE("send_proxy_header: whole on a fresh socket, an error when it cannot go whole",
          "[proxy]") {
    auto [sender, receiver] = splicer::test::tcp_pair();
    const std::string header(568, 'h');  // kMaxProxyV2Bytes
    REQUIRE(splicer::daemon::send_proxy_header(sender.get(), header));
    std::string got(header.size(), '\0');
    REQUIRE(::recv(receiver.get(), got.data(), got.size(), MSG_WAITALL) ==
            static_cast<ssize_t>(header.size()));
    CHECK(got == header);

    // A send buffer with no room (the peer never reads): never blocks, never half a header.
    const int small = 4096;
    REQUIRE(::setsockopt(sender.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);
    REQUIRE(::setsockopt(receiver.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
    const std::string filler(4096, 'f');
    for (int i = 0; i < 10'000; ++i) {
        if (::send(sender.get(), filler.data(), filler.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
            break;
        }
    }
    const auto full = splicer::daemon::send_proxy_header(sender.get(), header);
    REQUIRE_FALSE(full);
    CHECK_THAT(full.error().message, Catch::StartsWith("PROXY header: "));
}
