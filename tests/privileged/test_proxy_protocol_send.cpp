// PROXY protocol towards backends (`proxyprotocol: 1|2` on a rule or an http route): the
// backend reads the exact header, then the stream byte-exact both ways, on every data plane,
// from IPv4 and IPv6 clients, behind a libssl ClientHello with SNI and ALPN and behind plain
// protocols, with data pipelined behind the first message; on port 80 each backend
// connection starts with its own header; and a real PROXY reader (HAProxy's accept-proxy)
// accepts splicer's v1 and v2 headers and sees the client's address and SNI.
//
// The expected headers are built here from the spec (HAProxy's doc/proxy-protocol.txt), not
// by the encoder under test.

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>

#include "daemon_test_common.h"
#include "support/haproxy_process.h"
#include "support/net_address.h"
#include "support/openssl_client.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;
using splicer::test::u16;

namespace {

std::string tlv(char type, const std::string& value) {
    if (value.empty()) {
        return {};
    }
    return std::string(1, type) + u16(static_cast<std::uint16_t>(value.size())) + value;
}

// The header a loopback client (127.0.0.1 or ::1, both ends) must produce.
std::string expected_header(int version, bool ipv6, std::uint16_t client_port,
                            std::uint16_t listen_port, const std::string& alpn = {},
                            const std::string& authority = {}) {
    if (version == 1) {
        const std::string ip = ipv6 ? "::1" : "127.0.0.1";
        return std::string("PROXY ") + (ipv6 ? "TCP6 " : "TCP4 ") + ip + " " + ip + " " +
               std::to_string(client_port) + " " + std::to_string(listen_port) + "\r\n";
    }
    const std::string v4(std::string("\x7f\x00\x00\x01", 4));
    const std::string v6 = std::string(15, '\0') + "\x01";
    const std::string addresses = (ipv6 ? v6 + v6 : v4 + v4) + u16(client_port) + u16(listen_port);
    const std::string tlvs = tlv('\x01', alpn) + tlv('\x02', authority);
    return std::string("\r\n\r\n\0\r\nQUIT\n", 12) + "\x21" + (ipv6 ? "\x21" : "\x11") +
           u16(static_cast<std::uint16_t>(addresses.size() + tlvs.size())) + addresses + tlvs;
}

std::string printable(const std::string& bytes) {
    std::ostringstream out;
    for (const char c : bytes) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte >= 0x20 && byte < 0x7f && byte != '\\') {
            out << c;
        } else {
            static constexpr char kDigits[] = "0123456789abcdef";
            out << "\\x" << kDigits[byte >> 4] << kDigits[byte & 0xf];
        }
    }
    return out.str();
}

struct PpPorts {
    std::uint16_t listen = 0;
    std::uint16_t tls_v1 = 0;
    std::uint16_t tls_v2 = 0;
    std::uint16_t xmpp_v1 = 0;
    std::uint16_t ssh_v2 = 0;
};

std::string proxy_config(const PpPorts& ports) {
    std::ostringstream text;
    text << "listen: ( { host: \"127.0.0.1\"; port: \"" << ports.listen << "\"; },\n"
         << "          { host: \"::1\"; port: \"" << ports.listen << "\"; } );\n"
         << "protocols: (\n"
         << "  { name: \"tls\"; host: \"127.0.0.1\"; port: \"" << ports.tls_v1
         << "\"; sni_hostnames: [\"v1.example.com\"]; alpn_protocols: [\"h2\", \"http/1.1\"];"
            " proxyprotocol: 1; },\n"
         << "  { name: \"tls\"; host: \"127.0.0.1\"; port: \"" << ports.tls_v2
         << "\"; sni_hostnames: [\"v2.example.com\"]; alpn_protocols: [\"h2\", \"http/1.1\"];"
            " proxyprotocol: 2; },\n"
         << "  { name: \"xmpp\"; host: \"127.0.0.1\"; port: \"" << ports.xmpp_v1
         << "\"; proxyprotocol: 1; },\n"
         << "  { name: \"ssh\"; host: \"127.0.0.1\"; port: \"" << ports.ssh_v2
         << "\"; proxyprotocol: 2; },\n"
         << ");\n"
         << "timeout: 2;\nconnect_timeout: 2;\n";
    return text.str();
}

constexpr std::uint64_t kSendPipelined = 64 * 1024;
constexpr std::uint64_t kSendUp = 256 * 1024;    // client -> backend after the first send
constexpr std::uint64_t kSendDown = 256 * 1024;  // backend -> client

}  // namespace

TEST_CASE("proxyprotocol: the backend reads the exact header, then the stream byte-exact both "
          "ways, on every plane, v1 and v2, IPv4 and IPv6, TLS and plain",
          "[daemon][proxy]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    auto script = test::BackendScript::exchange(kSendDown, 500);
    script.keep_received = 4096;
    test::TcpBackend tls_v1(script);
    test::TcpBackend tls_v2(script);
    test::TcpBackend xmpp_v1(script);
    test::TcpBackend ssh_v2(script);
    const PpPorts ports{.listen = test::free_port(),
                        .tls_v1 = tls_v1.port(),
                        .tls_v2 = tls_v2.port(),
                        .xmpp_v1 = xmpp_v1.port(),
                        .ssh_v2 = ssh_v2.port()};
    auto daemon = test::start_daemon(plane, proxy_config(ports));

    struct Case {
        std::string name;
        test::TcpBackend* backend;
        int version;
        std::string sni;  // TLS: the SNI (the client offers ALPN http/1.1, h2); empty: plain
        std::string plain_first;
        std::string alpn_tlv;  // what v2 must carry
    };
    const std::vector<Case> cases = {
        {"tls v1", &tls_v1, 1, "v1.example.com", "", ""},
        {"tls v2", &tls_v2, 2, "v2.example.com", "", "http/1.1"},
        {"xmpp v1", &xmpp_v1, 1, "", test::xmpp_stream_header(), ""},
        {"ssh v2", &ssh_v2, 2, "", "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", ""},
    };
    std::uint64_t seed = 10;
    for (const bool ipv6 : {false, true}) {
        for (const Case& c : cases) {
            CAPTURE(c.name, ipv6);
            const std::string pipelined = test::ByteGenerator(seed++).take(kSendPipelined);
            std::string first = c.plain_first;
            UniqueFd client =
                c.sni.empty()
                    ? test::connect_and_send(ports.listen, first, pipelined, ipv6)
                    : test::send_client_hello(ports.listen,
                                              {.server_name = c.sni, .alpn = {"http/1.1", "h2"}},
                                              pipelined, ipv6, &first);
            const std::uint16_t client_port = test::local_port(client.get());
            const std::size_t finished_before = c.backend->finished().size();

            test::TransferOptions options;
            options.sent_before = first + pipelined;
            options.send = {.generated = kSendUp, .seed = seed++};
            options.timeout = 20s;
            const test::TransferResult result = test::transfer_both_ways(client.get(), options);
            INFO(daemon->log_tail(20));
            CHECK(result.complete(options));
            REQUIRE(c.backend->wait_for_finished(finished_before + 1, 10s));
            const test::BackendConnection record = c.backend->finished().back();

            const std::string header =
                expected_header(c.version, ipv6, client_port, ports.listen, c.alpn_tlv,
                                c.version == 2 ? c.sni : std::string());
            CAPTURE(printable(header), printable(record.received_head.substr(0, header.size())));
            CHECK(record.received_head.substr(0, header.size()) == header);
            // Once, then exactly what the client sent: nothing duplicated, nothing lost.
            CHECK(record.received_head.substr(header.size(), first.size()) == first);
            CHECK(record.received == header.size() + first.size() + kSendPipelined + kSendUp);
            CHECK(record.received_sha256 == test::sha256_of_generated(header + first + pipelined,
                                                                      options.send.seed, kSendUp));
            CHECK(result.received == kSendDown);
            CHECK(result.received_sha256 == record.sent_sha256);
            CHECK(record.eof);
        }
    }
    CHECK(daemon->logs("backend_failed").empty());
    test::stop_daemon(*daemon);
}

namespace {

// A port-80 origin that reads a PROXY header and a request head on each connection, keeps
// both, and answers "ok" with Connection: close.
class RecordingOrigin {
public:
    RecordingOrigin() : listener_(test::listen_loopback()) {
        thread_ = std::thread([this] { serve(); });
    }
    ~RecordingOrigin() {
        stopping_ = true;
        ::shutdown(listener_.fd.get(), SHUT_RDWR);
        thread_.join();
    }
    RecordingOrigin(const RecordingOrigin&) = delete;
    RecordingOrigin& operator=(const RecordingOrigin&) = delete;

    [[nodiscard]] std::uint16_t port() const { return listener_.port; }
    bool wait_for(std::size_t count, std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] { return received_.size() >= count; });
    }
    std::vector<std::string> received() {
        const std::lock_guard lock(mutex_);
        return received_;
    }

private:
    void serve() {
        while (!stopping_) {
            pollfd ready{listener_.fd.get(), POLLIN, 0};
            if (::poll(&ready, 1, 100) <= 0) {
                continue;
            }
            const UniqueFd fd(::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!fd) {
                continue;
            }
            timeval timeout{.tv_sec = 5, .tv_usec = 0};
            ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
            std::string bytes;
            char buffer[4096];
            // The v2 signature holds a CRLF CRLF: the head ends at the first one after "GET ".
            const auto head_complete = [&bytes] {
                const std::size_t get = bytes.find("GET ");
                return get != std::string::npos &&
                       bytes.find("\r\n\r\n", get) != std::string::npos;
            };
            while (!head_complete()) {
                const ssize_t n = ::recv(fd.get(), buffer, sizeof(buffer), 0);
                if (n <= 0) {
                    break;
                }
                bytes.append(buffer, static_cast<std::size_t>(n));
            }
            const std::string answer =
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
            (void)::send(fd.get(), answer.data(), answer.size(), MSG_NOSIGNAL);
            const std::lock_guard lock(mutex_);
            received_.push_back(bytes);
            changed_.notify_all();
        }
    }

    test::Listener listener_;
    std::atomic<bool> stopping_{false};
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<std::string> received_;
    std::thread thread_;
};

// Sends `request` on a keep-alive connection and reads one "ok" answer (Content-Length 2).
std::string http_round_trip(int fd, const std::string& request) {
    REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(request.size()));
    std::string answer;
    char buffer[4096];
    const auto deadline = test::Clock::now() + 5s;
    while (answer.find("\r\n\r\nok") == std::string::npos && test::Clock::now() < deadline) {
        pollfd ready{fd, POLLIN, 0};
        if (::poll(&ready, 1, 100) <= 0) {
            continue;
        }
        const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) {
            break;
        }
        answer.append(buffer, static_cast<std::size_t>(n));
    }
    return answer;
}

}  // namespace

TEST_CASE("proxyprotocol on an http route: every backend connection starts with its own "
          "header, IPv4 and IPv6 clients",
          "[daemon][proxy][http]") {
    test::require_root();
    RecordingOrigin v1_origin;
    RecordingOrigin v2_origin;
    const std::uint16_t http_port = test::free_port();
    std::ostringstream config;
    config << "listen: ( { host: \"127.0.0.1\"; port: \"" << test::free_port() << "\"; } );\n"
           << "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: \"" << test::free_port()
           << "\"; } );\n"
           << "http: {\n  listen: ( { host: \"127.0.0.1\"; port: \"" << http_port << "\"; },\n"
           << "            { host: \"::1\"; port: \"" << http_port << "\"; } );\n"
           << "  routes: (\n"
           << "    { hosts: [\"v1.example.com\"]; backend: \"127.0.0.1:" << v1_origin.port()
           << "\"; proxyprotocol: 1; },\n"
           << "    { hosts: [\"v2.example.com\"]; backend: \"127.0.0.1:" << v2_origin.port()
           << "\"; proxyprotocol: 2; }\n  );\n};\n";
    auto daemon = test::start_daemon("copy", config.str());

    std::size_t v1_count = 0;
    std::size_t v2_count = 0;
    for (const bool ipv6 : {false, true}) {
        CAPTURE(ipv6);
        UniqueFd client = test::connect_to(http_port, ipv6);
        const std::uint16_t client_port = test::local_port(client.get());
        // Two requests on one client connection: two backend connections, a header on each.
        for (const int version : {1, 2, 2, 1}) {
            CAPTURE(version);
            RecordingOrigin& origin = version == 1 ? v1_origin : v2_origin;
            std::size_t& count = version == 1 ? v1_count : v2_count;
            const std::string host = "v" + std::to_string(version) + ".example.com";
            const std::string answer = http_round_trip(
                client.get(), "GET /x HTTP/1.1\r\nHost: " + host + "\r\n\r\n");
            INFO(daemon->log_tail(20));
            CHECK_THAT(answer, Catch::StartsWith("HTTP/1.1 200"));
            REQUIRE(origin.wait_for(++count, 5s));
            const std::string received = origin.received().back();
            const std::string header = expected_header(version, ipv6, client_port, http_port);
            CAPTURE(printable(received));
            CHECK(received.substr(0, header.size()) == header);
            // Then the request head, with no second header anywhere.
            CHECK(received.compare(header.size(), 7, "GET /x ") == 0);
            CHECK(received.find(version == 1 ? "PROXY " : std::string("\r\n\r\n\0\r\nQUIT", 10),
                                1) == std::string::npos);
        }
    }
    test::stop_daemon(*daemon);
}

TEST_CASE("proxyprotocol: HAProxy's accept-proxy takes splicer's v1 and v2 headers and sees "
          "the client's address and, in v2, its SNI",
          "[daemon][proxy]") {
    test::require_root();
    const std::string plane = GENERATE(as<std::string>{}, "sockmap", "splice");
    CAPTURE(plane);
    test::TempDir dir("splicer-haproxy");
    const test::Certificate certificate = test::make_self_signed_certificate(dir, "reader.test");
    const std::string pem = dir.write_file("reader.pem", test::read_file(certificate.cert_path) +
                                                             test::read_file(certificate.key_path))
                                .string();
    const std::uint16_t haproxy_v1 = test::free_port();
    const std::uint16_t haproxy_v2 = test::free_port();
    // HAProxy terminates TLS behind its accept-proxy and answers with what it learnt.
    // Debian 12 has HAProxy 2.6: fc_pp_authority is there; fc_pp_tlv (for the ALPN TLV)
    // came in 2.9, so the ALPN TLV is checked byte for byte by the test above instead.
    const std::string answer =
        "src=%[src] src_port=%[src_port] dst=%[dst] dst_port=%[dst_port] "
        "authority=%[fc_pp_authority] sni=%[ssl_fc_sni] alpn=%[ssl_fc_alpn]";
    std::ostringstream haproxy_config;
    haproxy_config << "global\n  maxconn 100\n"
                   << "defaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n"
                   << "  timeout server 5s\n"
                   << "frontend reader_v1\n  bind 127.0.0.1:" << haproxy_v1
                   << " accept-proxy ssl crt " << pem << " alpn http/1.1\n"
                   << "  http-request return status 200 content-type text/plain lf-string \""
                   << answer << "\"\n"
                   << "frontend reader_v2\n  bind 127.0.0.1:" << haproxy_v2
                   << " accept-proxy ssl crt " << pem << " alpn http/1.1\n"
                   << "  http-request return status 200 content-type text/plain lf-string \""
                   << answer << "\"\n";
    const test::HaproxyProcess haproxy(haproxy_config.str(), {haproxy_v1, haproxy_v2});

    const std::uint16_t listen_port = test::free_port();
    std::ostringstream config;
    config << "listen: ( { host: \"127.0.0.1\"; port: \"" << listen_port << "\"; },\n"
           << "          { host: \"::1\"; port: \"" << listen_port << "\"; } );\n"
           << "protocols: (\n"
           << "  { name: \"tls\"; host: \"127.0.0.1\"; port: \"" << haproxy_v1
           << "\"; sni_hostnames: [\"v1.example.com\"]; proxyprotocol: 1; },\n"
           << "  { name: \"tls\"; host: \"127.0.0.1\"; port: \"" << haproxy_v2
           << "\"; sni_hostnames: [\"v2.example.com\"]; proxyprotocol: 2; }\n);\n";
    auto daemon = test::start_daemon(plane, config.str());

    for (const bool ipv6 : {false, true}) {
        for (const int version : {1, 2}) {
            CAPTURE(ipv6, version);
            const std::string sni = "v" + std::to_string(version) + ".example.com";
            const test::SClientResult result = test::run_s_client(
                {.port = listen_port,
                 .ipv6 = ipv6,
                 .servername = sni,
                 .alpn = {"http/1.1"},
                 .input = "GET / HTTP/1.1\r\nHost: " + sni + "\r\nConnection: close\r\n\r\n"});
            INFO(result.output << "\nhaproxy: " << haproxy.log() << "\nsplicer:\n"
                               << daemon->log_tail(20));
            REQUIRE(result.handshake_done);
            CHECK(result.subject_cn == "reader.test");
            const std::string client_ip = ipv6 ? "::1" : "127.0.0.1";
            // The address HAProxy reports is the client's (the header's), not splicer's
            // backend socket, whose port differs from the client's.
            const auto routed = daemon->wait_for_log("routed", [&](const test::LogLine& line) {
                return line.get("sni") == sni &&
                       line.get("client").starts_with(ipv6 ? "[::1]:" : "127.0.0.1:");
            });
            REQUIRE(routed.has_value());
            const std::string client(routed->get("client"));
            const std::string client_port = client.substr(client.rfind(':') + 1);
            CHECK_THAT(result.output, Catch::Contains("src=" + client_ip +
                                                      " src_port=" + client_port + " dst=" +
                                                      client_ip + " dst_port=" +
                                                      std::to_string(listen_port) + " "));
            // v1 has no TLVs: HAProxy prints an absent sample as "-" (or nothing).
            CHECK_THAT(result.output, Catch::Contains(" sni=" + sni + " alpn=http/1.1"));
            if (version == 2) {
                CHECK_THAT(result.output, Catch::Contains("authority=" + sni + " sni="));
            } else {
                CHECK_THAT(result.output, !Catch::Contains("authority=" + sni));
            }
        }
    }
    test::stop_daemon(*daemon);
}

TEST_CASE("proxyprotocol: 32 MiB each way behind the header stay byte-exact through the "
          "sockmap plane's flow control",
          "[daemon][proxy]") {
    // Past the verdict's 1 MiB limit the plane passes and copies bytes, checking first that
    // the backend socket absorbed every redirected byte, counted from a baseline that must
    // include the header written before insertion: a miscount reorders, truncates or hangs.
    test::require_root();
    constexpr std::uint64_t kBulk = 32ULL << 20;
    auto script = test::BackendScript::exchange(kBulk, 900);
    test::TcpBackend backend(script);
    const PpPorts ports{.listen = test::free_port(),
                        .tls_v1 = test::free_port(),
                        .tls_v2 = backend.port(),
                        .xmpp_v1 = test::free_port(),
                        .ssh_v2 = test::free_port()};
    auto daemon = test::start_daemon("sockmap", proxy_config(ports));
    std::string hello;
    UniqueFd client = test::send_client_hello(
        ports.listen, {.server_name = "v2.example.com", .alpn = {"h2"}}, "", false, &hello);
    const std::uint16_t client_port = test::local_port(client.get());
    test::TransferOptions options;
    options.sent_before = hello;
    options.send = {.generated = kBulk, .seed = 901};
    options.timeout = 60s;
    const test::TransferResult result = test::transfer_both_ways(client.get(), options);
    INFO(daemon->log_tail(20));
    CHECK(result.complete(options));
    REQUIRE(backend.wait_for_finished(1, 20s));
    const test::BackendConnection record = backend.finished().back();
    const std::string header =
        expected_header(2, false, client_port, ports.listen, "h2", "v2.example.com");
    CHECK(record.received_head.substr(0, header.size()) == header);
    CHECK(record.received == header.size() + hello.size() + kBulk);
    CHECK(record.received_sha256 == test::sha256_of_generated(header + hello, 901, kBulk));
    CHECK(result.received == kBulk);
    CHECK(result.received_sha256 == record.sent_sha256);
    CHECK(record.eof);
    test::stop_daemon(*daemon);
}
