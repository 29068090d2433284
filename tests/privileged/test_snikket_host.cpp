// End to end: a Snikket-like host with real software behind splicer, in network namespaces
// (support/edge_netns.h), on every data plane.
//
//   client ns 198.18.0.1  ->  splicer on 198.18.0.2:443 and :80  ->  backend ns 198.18.1.1
//
// - Debian's Prosody (support/prosody_server.h), reached through 443 by a real XMPP client
//   (Debian's python3-slixmpp, tests/scripts/xmpp_client.py): with STARTTLS inside the plain
//   XMPP stream (splicer's xmpp probe) and with direct TLS offering ALPN xmpp-client (the
//   ALPN rule). The client verifies Prosody's certificate, authenticates (SCRAM/PLAIN) as a
//   user made with prosodyctl, binds, pings the server and sends itself messages that must
//   come back unchanged: bytes checked both ways.
// - Debian's nginx (support/nginx_server.h) reached by SNI with `listen ... ssl
//   proxy_protocol` behind `proxyprotocol: 2;`: its log shows the client's netns address and
//   port from splicer's header (not splicer's address), and curl gets its file byte-exact.
// - Port 80 to nginx: its log shows the client's address in X-Forwarded-For.
// - Transparent mode to a backend that reads no PROXY header: an ssh rule with
//   `transparent: true;` to a recording TCP server in the backend namespace (no sshd on the
//   test machines), the routing made in splicer's namespace by scripts/transparent-setup for
//   the backend's address (README "Transparent mode", step 3: a backend on another host). The
//   server's getpeername() must be the client's own 198.18.0.1:PORT (its getsockname()), and
//   the stream byte-exact both ways across the client's half-close.
//
// The backends are started once; the daemon once per plane.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "daemon_test_common.h"
#include "support/edge_netns.h"
#include "support/nginx_server.h"
#include "support/prosody_server.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using Side = test::EdgeNetns::Side;

namespace {

constexpr std::uint16_t kXmppPort = 5222;     // Prosody c2s, STARTTLS required
constexpr std::uint16_t kXmppTlsPort = 5223;  // Prosody c2s_direct_tls
constexpr std::uint16_t kHttpsPort = 5443;    // nginx ssl proxy_protocol
constexpr std::uint16_t kHttpPort = 5280;     // nginx plain, behind splicer's port 80
constexpr std::uint16_t kSshPort = 22;        // the recording server, reached transparently
constexpr const char* kDomain = "chat.example.com";

std::string backend(std::uint16_t port) {
    return std::string(test::EdgeNetns::kBackendAddress) + ":" + std::to_string(port);
}

// The Snikket sslh snippet's three rules (README "Client address"), pointed at the backend
// namespace, nginx's with proxyprotocol 2, a transparent ssh rule, and port 80 to nginx.
std::string edge_config() {
    const std::string front = test::EdgeNetns::kEdgeFrontAddress;
    const std::string to = test::EdgeNetns::kBackendAddress;
    std::ostringstream text;
    text << "listen: ( { host: \"" << front << "\"; port: \"443\"; } );\n"
         << "protocols: (\n"
         << "  { name: \"tls\"; host: \"" << to << "\"; port: \"" << kXmppTlsPort
         << "\"; alpn_protocols: [ \"xmpp-client\" ]; },\n"
         << "  { name: \"tls\"; host: \"" << to << "\"; port: \"" << kHttpsPort
         << "\"; sni_hostnames: [ \"chat.example.com\", \"groups.chat.example.com\","
            " \"share.chat.example.com\" ]; proxyprotocol: 2; },\n"
         << "  { name: \"xmpp\"; host: \"" << to << "\"; port: \"" << kXmppPort << "\"; },\n"
         << "  { name: \"ssh\"; host: \"" << to << "\"; port: \"" << kSshPort
         << "\"; transparent: true; },\n"
         << ");\n"
         << "http: {\n  listen: ( { host: \"" << front << "\"; port: \"80\"; } );\n"
         << "  routes: ( { hosts: [ \"chat.example.com\" ]; backend: \"" << backend(kHttpPort)
         << "\"; } );\n};\n"
         << "timeout: 2;\nconnect_timeout: 2;\n";
    return text.str();
}

struct Edge {
    const test::EdgeNetns& netns;
    const test::ProsodyServer& prosody;
    const test::NginxServer& nginx;
    const test::TcpBackend& ssh;
    test::DaemonProcess& daemon;
    std::string plane;
};

// `key=value` facts of one line (xmpp_client.py's output, curl's -w).
std::string fact(const std::string& line, const std::string& key) {
    std::istringstream words(line);
    std::string word;
    while (words >> word) {
        if (word.starts_with(key + "=")) {
            return word.substr(key.size() + 1);
        }
    }
    return {};
}

// splicer's routed line for the client connection from `client` (ADDR:PORT).
std::optional<test::LogLine> routed_from(const test::DaemonProcess& daemon,
                                         const std::string& client) {
    return daemon.wait_for_log(
        "routed", [&](const test::LogLine& line) { return line.get("client") == client; }, 5s);
}

// One client process, two sessions (starting Python costs more than a session on a loaded
// machine): STARTTLS, then direct TLS offering ALPN xmpp-client.
test::CommandResult run_xmpp_client(const Edge& edge) {
    std::ostringstream command;
    command << "timeout 40 " << edge.netns.shell_prefix(Side::client)
            << "/usr/bin/python3 " SPLICER_SOURCE_DIR "/tests/scripts/xmpp_client.py"
            << " --host " << kDomain << " --port 443 --jid " << edge.prosody.jid()
            << " --password '" << edge.prosody.options().password << "'"
            << " --cafile " << edge.prosody.ca_file()
            << " --sessions starttls direct-tls --alpn xmpp-client"
            << " --messages 4 --message-bytes 32768 --timeout 15 2>&1";
    return test::run_command(command.str());
}

// The facts line of one session ("" when the client printed none).
std::string session_facts(const std::string& output, const std::string& session) {
    const std::size_t at = output.find("session=" + session + " ");
    return at == std::string::npos ? std::string() : output.substr(at, output.find('\n', at) - at);
}

void check_xmpp_session(const Edge& edge, const std::string& facts, bool direct_tls) {
    CAPTURE(facts);
    CHECK(fact(facts, "result") == "ok");
    CHECK(fact(facts, "bound").starts_with(edge.prosody.jid() + "/"));
    CHECK(fact(facts, "ping") == "ok");
    CHECK(fact(facts, "messages_ok") == "4");         // 4 x 32 KiB up and back down, unchanged
    CHECK(fact(facts, "tls").starts_with("TLSv1."));  // STARTTLS happened, or direct TLS
    const std::string client = fact(facts, "local");
    REQUIRE(client.starts_with(std::string(test::EdgeNetns::kClientAddress) + ":"));
    const auto routed = routed_from(edge.daemon, client);
    REQUIRE(routed.has_value());
    CHECK(routed->get("plane") == edge.plane);
    if (direct_tls) {
        // The ALPN rule, listed first, wins over the SNI rule the name also matches.
        CHECK(routed->get("protocol") == "tls");
        CHECK(routed->get("alpn") == "xmpp-client");
        CHECK(routed->get("sni") == kDomain);  // XEP-0368 clients send the domain too
        CHECK(routed->get("backend") == backend(kXmppTlsPort));
    } else {
        CHECK(routed->get("protocol") == "xmpp");
        CHECK(routed->get("backend") == backend(kXmppPort));
    }
}

void check_xmpp(const Edge& edge) {
    const test::CommandResult result = run_xmpp_client(edge);
    INFO("xmpp client: " << result.output << "\nprosody:\n"
                         << edge.prosody.log() << "\nsplicer:\n"
                         << edge.daemon.log_tail(20));
    CHECK(result.exit_code == 0);
    {
        INFO("session: STARTTLS through the plain XMPP probe");
        check_xmpp_session(edge, session_facts(result.output, "starttls"), false);
    }
    {
        INFO("session: direct TLS with ALPN xmpp-client");
        check_xmpp_session(edge, session_facts(result.output, "direct-tls"), true);
    }
}

// curl in the client namespace: GET /blob from `url` (its name resolves to splicer's front
// address there); the body must be nginx's file byte for byte. Returns curl's
// `local_ip:local_port`.
std::string fetch_blob(const Edge& edge, const std::string& url) {
    const test::TempDir dir("splicer-curl");
    const std::string out = (dir.path() / "blob").string();
    const test::CommandResult result = test::run_command(
        "timeout 30 " + edge.netns.shell_prefix(Side::client) + "curl -sS --http1.1" +
        " --max-time 20 --cacert " + edge.nginx.ca_file() + " -o " + out +
        " -w 'local=%{local_ip}:%{local_port} code=%{http_code}' " + url + " 2>&1");
    INFO("curl: " << result.output << "\nnginx:\n"
                  << edge.nginx.error_log() << "\nsplicer:\n"
                  << edge.daemon.log_tail(20));
    CHECK(result.exit_code == 0);
    CHECK(fact(result.output, "code") == "200");
    const std::string body = test::read_file(out);
    CHECK(body.size() == edge.nginx.options().blob_bytes);
    CHECK(body == test::read_file(edge.nginx.blob_path()));
    return fact(result.output, "local");
}

// The log line nginx wrote for the request from `client`, waiting for it (nginx writes it
// once the response is sent, which may be just after curl has read it).
std::string nginx_line(const std::function<std::string()>& read_log, const std::string& needle) {
    const auto deadline = test::Clock::now() + 5s;
    std::string log;
    while (test::Clock::now() < deadline) {
        log = read_log();
        const std::size_t at = log.find(needle);
        if (at != std::string::npos) {
            const std::size_t start = log.rfind('\n', at);
            const std::size_t end = log.find('\n', at);
            return log.substr(start == std::string::npos ? 0 : start + 1,
                              end == std::string::npos ? std::string::npos : end - start - 1);
        }
        std::this_thread::sleep_for(50ms);
    }
    INFO("nginx log:\n" << log);
    FAIL("no nginx log line with " << needle);
    return {};
}

void check_https_proxy_v2(const Edge& edge) {
    const std::string client = fetch_blob(edge, std::string("https://") + kDomain + "/blob");
    REQUIRE(client.starts_with(std::string(test::EdgeNetns::kClientAddress) + ":"));
    const auto routed = routed_from(edge.daemon, client);
    REQUIRE(routed.has_value());
    CHECK(routed->get("plane") == edge.plane);
    CHECK(routed->get("sni") == kDomain);
    CHECK(routed->get("backend") == backend(kHttpsPort));
    // nginx read the client's address and port from splicer's v2 header; the TCP peer it
    // saw ($remote_addr) is splicer's backend side.
    const std::string line =
        nginx_line([&] { return edge.nginx.https_log(); }, "pp=" + client + " ");
    CHECK(line == "pp=" + client + " remote=" + test::EdgeNetns::kEdgeBackAddress +
                      " sni=" + kDomain + " \"GET /blob HTTP/1.1\" 200 " +
                      std::to_string(edge.nginx.options().blob_bytes));
}

void check_http_forwarded_for(const Edge& edge) {
    const std::size_t log_bytes_before = edge.nginx.http_log().size();
    const std::string client = fetch_blob(edge, std::string("http://") + kDomain + "/blob");
    CHECK(client.starts_with(std::string(test::EdgeNetns::kClientAddress) + ":"));
    // Requests are serial: the first line written after log_bytes_before is this request's.
    const std::string line =
        nginx_line([&] { return edge.nginx.http_log().substr(log_bytes_before); }, "xff=");
    CHECK(line == std::string("xff=") + test::EdgeNetns::kClientAddress + " remote=" +
                      test::EdgeNetns::kEdgeBackAddress + " \"GET /blob HTTP/1.1\" 200 " +
                      std::to_string(edge.nginx.options().blob_bytes));
}

// A TCP client in the client namespace, connected to splicer's port 443 (5 s bound).
splicer::UniqueFd connect_from_client(const test::EdgeNetns& netns) {
    splicer::UniqueFd fd;
    netns.run_inside(Side::client,
                     [&] { fd = test::socket_bound_to(test::EdgeNetns::kClientAddress); });
    sockaddr_in front{};
    front.sin_family = AF_INET;
    front.sin_port = htons(443);
    REQUIRE(::inet_pton(AF_INET, test::EdgeNetns::kEdgeFrontAddress, &front.sin_addr) == 1);
    const timeval bound{.tv_sec = 5, .tv_usec = 0};
    REQUIRE(::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof(bound)) == 0);
    REQUIRE(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&front), sizeof(front)) == 0);
    return fd;
}

constexpr std::uint64_t kSshUp = 256 * 1024;    // client -> backend, after the banner
constexpr std::uint64_t kSshDown = 256 * 1024;  // backend -> client, after the client's FIN

// An SSH client's banner then bytes, a half-close, and the backend's reply after it: the
// backend, which reads no header, sees the client's own address and port as its peer.
void check_ssh_transparent(const Edge& edge) {
    const std::string banner = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
    const std::size_t finished_before = edge.ssh.finished().size();
    const splicer::UniqueFd client = connect_from_client(edge.netns);
    const std::string client_address = test::local_address(client.get());
    test::write_all(client.get(), banner);
    test::TransferOptions options;
    options.sent_before = banner;
    options.send = {.generated = kSshUp, .seed = 1300};
    options.timeout = 20s;
    const test::TransferResult result = test::transfer_both_ways(client.get(), options);
    INFO("client: " << test::describe_stream(result) << "\nsplicer:\n" << edge.daemon.log_tail(20));
    CHECK(result.complete(options));
    CHECK(result.received == kSshDown);  // 0 when the backend's replies are not routed back
    REQUIRE(edge.ssh.wait_for_finished(finished_before + 1, 10s));
    const test::BackendConnection record = edge.ssh.finished().back();
    CAPTURE(client_address, record.peer, record.error);
    CHECK(client_address.starts_with(std::string(test::EdgeNetns::kClientAddress) + ":"));
    CHECK(record.peer == client_address);  // getpeername() on the backend's accepted socket
    CHECK(record.eof);                     // the client's FIN came through before the reply
    CHECK(record.received == banner.size() + kSshUp);
    CHECK(record.received_sha256 == result.sent_sha256);
    CHECK(record.sent == kSshDown);
    CHECK(result.received_sha256 == record.sent_sha256);
    const auto routed = routed_from(edge.daemon, client_address);
    REQUIRE(routed.has_value());
    CHECK(routed->get("plane") == edge.plane);
    CHECK(routed->get("protocol") == "ssh");
    CHECK(routed->get("backend") == backend(kSshPort));
}

struct EdgeCase {
    std::string name;
    std::function<void(const Edge&)> check;
};

std::vector<EdgeCase> edge_cases() {
    return {
        {"xmpp: STARTTLS through the plain XMPP probe, then direct TLS with ALPN xmpp-client",
         check_xmpp},
        {"https by SNI to nginx reading PROXY v2", check_https_proxy_v2},
        {"port 80 to nginx with X-Forwarded-For", check_http_forwarded_for},
        {"ssh with transparent: true to a backend that reads no PROXY header",
         check_ssh_transparent},
    };
}

}  // namespace

TEST_CASE(
    "snikket host: Prosody by STARTTLS and by direct TLS with ALPN xmpp-client, nginx "
    "by SNI reading splicer's PROXY v2, port 80 with X-Forwarded-For, ssh transparent to "
    "a backend that reads no header, in network namespaces, on every plane",
    "[daemon][snikket]") {
    test::require_root();
    {
        // Missing software is a failure, not a skip (scripts/install-deps installs it).
        const test::CommandResult tools = test::run_command(
            "for p in prosody prosodyctl nginx curl /usr/bin/python3; do command -v $p >/dev/null"
            " || echo missing $p; done; /usr/bin/python3 -c 'import slixmpp' >/dev/null 2>&1"
            " || echo missing python3-slixmpp");
        INFO("run scripts/install-deps: " << tools.output);
        REQUIRE(tools.output.empty());
    }

    std::string why;
    const auto netns = test::EdgeNetns::create(why);
    INFO(why);
    REQUIRE(netns != nullptr);
    netns->add_client_host(kDomain, test::EdgeNetns::kEdgeFrontAddress);
    const auto listening = [&](std::uint16_t port) {
        return netns->listening(Side::backend, port);
    };
    const test::ProsodyServer prosody({.command_prefix = netns->command_prefix(Side::backend),
                                       .address = test::EdgeNetns::kBackendAddress,
                                       .starttls_port = kXmppPort,
                                       .direct_tls_port = kXmppTlsPort,
                                       .domain = kDomain},
                                      listening);
    const test::NginxServer nginx({.command_prefix = netns->command_prefix(Side::backend),
                                   .address = test::EdgeNetns::kBackendAddress,
                                   .https_port = kHttpsPort,
                                   .http_port = kHttpPort,
                                   .server_name = kDomain},
                                  listening);
    // The backend the ssh rule reaches: it reads no header and records getpeername().
    std::unique_ptr<test::TcpBackend> ssh;
    netns->run_inside(Side::backend, [&] {
        ssh = std::make_unique<test::TcpBackend>(
            test::BackendScript::read_to_eof_then_reply("", kSshDown),
            test::listen_on(test::EdgeNetns::kBackendAddress, kSshPort));
    });
    // Its replies go to the client's address via splicer's namespace (EdgeNetns routes the
    // backend namespace's default there); this makes splicer's namespace deliver them to
    // splicer's transparent socket instead of dropping them (it forwards nothing). Removed
    // with `down` at the end; deleting the namespace would remove them anyway.
    const std::string setup = std::string(SPLICER_SOURCE_DIR) + "/scripts/transparent-setup ";
    {
        const test::CommandResult up =
            test::run_command(netns->shell_prefix(Side::edge) + setup + "up " +
                              test::EdgeNetns::kBackendAddress + " 2>&1");
        INFO(up.output);
        REQUIRE(up.exit_code == 0);
    }

    for (const std::string plane : {"sockmap", "splice", "copy"}) {
        CAPTURE(plane);
        test::DaemonOptions options;
        options.binary = SPLICER_BINARY;
        options.config_text = edge_config();
        options.splice_mode = plane;
        options.command_prefix = netns->command_prefix(Side::edge);
        options.workers = std::nullopt;  // the deployment as shipped: one worker per CPU
        test::DaemonProcess daemon(options);
        const bool ready = daemon.wait_ready(15s);
        INFO("daemon log:\n" << daemon.log_tail());
        REQUIRE(ready);
        const Edge edge{*netns, prosody, nginx, *ssh, daemon, plane};
        for (const EdgeCase& edge_case : edge_cases()) {
            CAPTURE(edge_case.name);
            edge_case.check(edge);
        }
        CHECK(daemon.logs("backend_failed").empty());
        test::stop_daemon(daemon);
    }
    ssh->stop();
    const test::CommandResult down =
        test::run_command(netns->shell_prefix(Side::edge) + setup + "down " +
                          test::EdgeNetns::kBackendAddress + " 2>&1");
    INFO(down.output);
    CHECK(down.exit_code == 0);
}
