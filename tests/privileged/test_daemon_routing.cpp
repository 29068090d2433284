// The daemon routes like sslh with the Snikket snippet, on every data plane: ALPN
// xmpp-client to the 5223 backend, each of the three SNI names to the 5443 backend, a plain
// XMPP stream header to the 5222 backend, over IPv4 and IPv6. The TLS backends are real
// `openssl s_server`s and the clients real `openssl s_client`s, so a full TLS handshake runs
// through splicer and the certificate's CN says which backend answered.

#include <catch2/catch.hpp>
#include <set>

#include "daemon_test_common.h"
#include "support/command.h"
#include "support/openssl_client.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;

namespace {

const std::string kRoutingXmppGreeting =
    "<?xml version='1.0'?><stream:stream from='chat.example.com' id='t1' version='1.0' "
    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

// The routed line for a connection we cannot name by port (s_client picks its own): the
// first one at or after `from` with this backend and, when given, this SNI.
std::optional<test::LogLine> routed_to(const test::DaemonProcess& daemon,
                                       const std::string& backend, const std::string& sni,
                                       std::size_t from) {
    return daemon.wait_for_log(
        "routed",
        [&](const test::LogLine& line) {
            return line.get("backend") == backend && (sni.empty() || line.get("sni") == sni);
        },
        5s, from);
}

}  // namespace

TEST_CASE("daemon routes ALPN, SNI and plain XMPP like the Snikket sslh snippet", "[daemon]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);

    test::OpensslServer xmpp_tls({.common_name = "xmpp-tls.backend.test", .alpn = {"xmpp-client"}});
    test::OpensslServer https({.common_name = "https.backend.test", .alpn = {"h2", "http/1.1"}});
    test::TcpBackend xmpp(test::BackendScript::greet_then_record(kRoutingXmppGreeting));
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = xmpp_tls.port(),
                                   .https = https.port(),
                                   .xmpp = xmpp.port()};
    auto daemon = test::start_daemon(plane, test::snikket_config(ports));

    // Every listener the config names is announced.
    CHECK(daemon->logs("listening").size() >= 2);

    const auto through_splicer = [&](bool ipv6, const std::string& sni,
                                     std::vector<std::string> alpn) {
        return test::run_s_client(
            {.port = ports.listen, .ipv6 = ipv6, .servername = sni, .alpn = std::move(alpn)});
    };

    SECTION("ALPN xmpp-client goes to the 5223 backend, before the SNI rule") {
        for (const bool ipv6 : {false, true}) {
            CAPTURE(ipv6);
            const std::size_t mark = daemon->log_count();
            const auto result = through_splicer(ipv6, "chat.example.com", {"xmpp-client"});
            INFO(result.output);
            CHECK(result.handshake_done);
            CHECK(result.subject_cn == "xmpp-tls.backend.test");
            CHECK(result.alpn == "xmpp-client");
            CHECK(result.output.find("s_server") != std::string::npos);  // the -www page came back
            const auto routed = routed_to(*daemon, xmpp_tls.address(), "", mark);
            INFO(daemon->log_tail());
            REQUIRE(routed.has_value());
            CHECK(routed->get("protocol") == "tls");
            CHECK(routed->get("plane") == plane);
            CHECK(routed->get("alpn").find("xmpp-client") != std::string_view::npos);
            CHECK(routed->get("sni") == "chat.example.com");
            if (ipv6) {
                CHECK(routed->get("client").find("::1") != std::string_view::npos);
            }
        }
    }

    SECTION("each of the three SNI names goes to the 5443 backend") {
        for (const bool ipv6 : {false, true}) {
            for (const std::string& name : test::kSnikketNames) {
                CAPTURE(ipv6, name);
                const std::size_t mark = daemon->log_count();
                const auto result = through_splicer(ipv6, name, {});
                INFO(result.output);
                CHECK(result.handshake_done);
                CHECK(result.subject_cn == "https.backend.test");
                const auto routed = routed_to(*daemon, https.address(), name, mark);
                INFO(daemon->log_tail());
                REQUIRE(routed.has_value());
                CHECK(routed->get("protocol") == "tls");
                CHECK(routed->get("plane") == plane);
            }
        }
        // A browser's ALPN (h2) with a Snikket name is HTTPS, not XMPP.
        const auto result = through_splicer(false, "share.chat.example.com", {"h2", "http/1.1"});
        INFO(result.output);
        CHECK(result.subject_cn == "https.backend.test");
        CHECK(result.alpn == "h2");
        // SNI matching ignores case (DNS names are case-insensitive).
        const auto upper = through_splicer(false, "Chat.Example.COM", {});
        INFO(upper.output);
        CHECK(upper.subject_cn == "https.backend.test");
    }

    SECTION("an unknown SNI without xmpp-client reaches neither TLS backend") {
        const auto result = through_splicer(false, "www.example.org", {});
        INFO(result.output);
        CHECK_FALSE(result.timed_out);
        CHECK(result.subject_cn != "xmpp-tls.backend.test");
        CHECK(result.subject_cn != "https.backend.test");
    }

    SECTION("a plain XMPP stream header goes to the 5222 backend, both ways") {
        for (const bool ipv6 : {false, true}) {
            CAPTURE(ipv6);
            const std::size_t finished_before = xmpp.finished().size();
            const std::string header = test::xmpp_stream_header();
            UniqueFd client = test::connect_and_send(ports.listen, header, "", ipv6);
            const std::uint16_t client_port = test::local_port(client.get());
            CHECK(test::read_exactly(client.get(), kRoutingXmppGreeting.size(), 5000) ==
                  kRoutingXmppGreeting);
            const auto routed = test::routed_line(*daemon, client_port);
            INFO(daemon->log_tail());
            REQUIRE(routed.has_value());
            CHECK(routed->get("protocol") == "xmpp");
            CHECK(routed->get("backend") == xmpp.address());
            CHECK(routed->get("plane") == plane);
            CHECK(routed->has("conn"));
            CHECK(routed->has("rule"));

            ::shutdown(client.get(), SHUT_WR);
            REQUIRE(xmpp.wait_for_finished(finished_before + 1, 5s));
            const auto record = xmpp.finished().back();
            CHECK(record.received == header.size());
            CHECK(record.received_head == header);
            CHECK(record.eof);
            CHECK(test::wait_for_close(client.get(), 5s) == "eof");

            // The closed line counts the bytes each way (match the pair, whatever the names
            // of the directions).
            const std::string conn(routed->get("conn"));
            const auto closed = daemon->wait_for_log(
                "closed", [&](const test::LogLine& line) { return line.get("conn") == conn; }, 5s);
            INFO(daemon->log_tail());
            REQUIRE(closed.has_value());
            const std::multiset<unsigned long long> counted = {
                closed->number("bytes_in").value_or(0), closed->number("bytes_out").value_or(0)};
            const std::multiset<unsigned long long> moved = {header.size(),
                                                             kRoutingXmppGreeting.size()};
            CHECK(counted == moved);
            CHECK(closed->has("duration_ms"));
            CHECK(closed->has("end"));
        }
    }

    SECTION("splicer stats reads the counters while the daemon runs") {
        if (plane == "sockmap") {
            // Move a few bytes so there is something to count.
            UniqueFd client = test::connect_and_send(ports.listen, test::xmpp_stream_header(), "");
            CHECK(test::read_exactly(client.get(), kRoutingXmppGreeting.size(), 5000) ==
                  kRoutingXmppGreeting);
            const auto stats = test::run_command(std::string(SPLICER_BINARY) + " stats --pin-dir " +
                                                 daemon->pin_dir());
            INFO(stats.output);
            CHECK(stats.exit_code == 0);
            CHECK_FALSE(stats.output.empty());
        }
    }

    test::stop_daemon(*daemon);
}

TEST_CASE(
    "daemon stops on SIGTERM or SIGINT with connections open: exit 0, clients closed, "
    "no pins",
    "[daemon]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    const int signal_number = GENERATE(SIGTERM, SIGINT);
    CAPTURE(signal_number);
    test::TcpBackend xmpp(test::BackendScript::greet_then_record(kRoutingXmppGreeting));
    test::TcpBackend unused(test::BackendScript::record());
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = unused.port(),
                                   .https = unused.port(),
                                   .xmpp = xmpp.port()};
    auto daemon = test::start_daemon(plane, test::snikket_config(ports));
    std::vector<UniqueFd> clients;
    for (int i = 0; i < 5; ++i) {
        clients.push_back(test::connect_and_send(ports.listen, test::xmpp_stream_header(), ""));
        CHECK(test::read_exactly(clients.back().get(), kRoutingXmppGreeting.size(), 5000) ==
              kRoutingXmppGreeting);
    }
    REQUIRE(xmpp.wait_for_accepted(5, 5s));
    if (plane == "sockmap") {
        CHECK_FALSE(test::pinned_objects(daemon->pin_dir()).empty());
    }
    test::stop_daemon(*daemon, signal_number);
    for (auto& client : clients) {
        const std::string how = test::wait_for_close(client.get(), 2s);
        CHECK((how == "eof" || how == "reset"));
    }
    // Nothing accepts on the port any more.
    CHECK_THROWS(test::connect_to(ports.listen));
}
