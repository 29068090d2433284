// Transparent mode (`transparent: true;`, README "Transparent mode"): the backend connection
// leaves from the client's own address and port, so the backend's getpeername() is the
// client, on every data plane, IPv4 and IPv6, byte-exact both ways; the routing comes from
// scripts/transparent-setup. Two namespaces the test makes:
//
//   client ns  198.18.0.2, 2001:db8:13::2 --veth-- 198.18.0.1, 2001:db8:13::1  host ns
//
// The host ns runs splicer on 443 and the backends on 127.0.0.1 / ::1, as an sshd on the
// same host would (the case sslh users name). Also: the failures (no route back for the
// replies, the client's address:port already connected to the backend) and the privilege
// drop keeping exactly CAP_NET_RAW, which splicer.service gets only from its drop-in.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "daemon_test_common.h"
#include "support/http_backend.h"
#include "support/http_wire.h"
#include "support/proc_stats.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;

namespace {

constexpr char kHostV4[] = "198.18.0.1";
constexpr char kClientV4[] = "198.18.0.2";
constexpr char kHostV6[] = "2001:db8:13::1";
constexpr char kClientV6[] = "2001:db8:13::2";
constexpr std::uint16_t kListenPort = 443;  // a fresh namespace: nothing else holds it

// The two namespaces, deleted (with their veth, rules and routes) on destruction, also when
// a REQUIRE fails.
class TransparentNetns {
public:
    TransparentNetns() : prefix_("spltp" + std::to_string(::getpid())) {
        const std::string h = host(), c = client();
        const test::CommandResult made = test::run_command(
            "set -e; ip netns add " + h + "; ip netns add " + c + ";" + " ip link add t0 netns " +
            h + " type veth peer name t1 netns " + c + ";" + " ip -n " + h +
            " link set lo up; ip -n " + c + " link set lo up;" + " ip -n " + h + " addr add " +
            kHostV4 + "/24 dev t0;" + " ip -n " + h + " addr add " + kHostV6 + "/64 dev t0 nodad;" +
            " ip -n " + c + " addr add " + kClientV4 + "/24 dev t1;" + " ip -n " + c +
            " addr add " + kClientV6 + "/64 dev t1 nodad;" + " ip -n " + h +
            " link set t0 up; ip -n " + c + " link set t1 up;" + " ip -n " + c +
            " route add default via " + kHostV4 + ";" + " ip -n " + c +
            " -6 route add default via " + kHostV6 + " 2>&1");
        INFO(made.output);
        REQUIRE(made.exit_code == 0);
        host_ns_ = open_ns(h);
        client_ns_ = open_ns(c);
    }
    ~TransparentNetns() {
        (void)test::run_command("ip netns del " + host() + " 2>/dev/null; ip netns del " +
                                client() + " 2>/dev/null; true");
    }
    TransparentNetns(const TransparentNetns&) = delete;
    TransparentNetns& operator=(const TransparentNetns&) = delete;

    [[nodiscard]] std::string host() const { return prefix_ + "h"; }
    [[nodiscard]] std::string client() const { return prefix_ + "c"; }
    [[nodiscard]] int host_fd() const { return host_ns_.get(); }
    [[nodiscard]] int client_fd() const { return client_ns_.get(); }

    // The routing for loopback backends, made by the script users run.
    void route_replies_back() const {
        const test::CommandResult up = in_host(script() + " up 127.0.0.1 ::1");
        INFO(up.output);
        REQUIRE(up.exit_code == 0);
    }
    [[nodiscard]] test::CommandResult in_host(const std::string& command) const {
        return test::run_command("ip netns exec " + host() + " " + command + " 2>&1");
    }
    [[nodiscard]] static std::string script() {
        return std::string(SPLICER_SOURCE_DIR) + "/scripts/transparent-setup";
    }

    // Runs the daemon in the host namespace (nsenter execs it: the pid stays the daemon's).
    [[nodiscard]] std::unique_ptr<test::DaemonProcess> start_daemon(
        const std::string& plane, const std::string& config,
        std::vector<std::string> setpriv = {}) const {
        test::DaemonOptions options;
        options.binary = SPLICER_BINARY;
        options.config_text = config;
        options.splice_mode = plane;
        options.command_prefix = {"nsenter", "--net=/run/netns/" + host(), "--"};
        options.command_prefix.insert(options.command_prefix.end(), setpriv.begin(), setpriv.end());
        return std::make_unique<test::DaemonProcess>(options);
    }

private:
    static UniqueFd open_ns(const std::string& name) {
        UniqueFd fd(::open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(fd);
        return fd;
    }

    std::string prefix_;
    UniqueFd host_ns_;
    UniqueFd client_ns_;
};

// While it lives, the calling thread makes its sockets in `ns`.
class EnteredNetns {
public:
    explicit EnteredNetns(int ns)
        : home_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {
        REQUIRE(home_);
        REQUIRE(::setns(ns, CLONE_NEWNET) == 0);
    }
    ~EnteredNetns() { ::setns(home_.get(), CLONE_NEWNET); }
    EnteredNetns(const EnteredNetns&) = delete;
    EnteredNetns& operator=(const EnteredNetns&) = delete;

private:
    UniqueFd home_;
};

test::SocketAddress ip_address(const std::string& ip, std::uint16_t port) {
    test::SocketAddress address;
    if (ip.find(':') != std::string::npos) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        REQUIRE(::inet_pton(AF_INET6, ip.c_str(), &in6->sin6_addr) == 1);
        address.length = sizeof(sockaddr_in6);
    } else {
        auto* in4 = reinterpret_cast<sockaddr_in*>(&address.storage);
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        REQUIRE(::inet_pton(AF_INET, ip.c_str(), &in4->sin_addr) == 1);
        address.length = sizeof(sockaddr_in);
    }
    return address;
}

// A socket in `ns`, bound to `source`:`source_port` (0: any port) and, with `transparent`,
// IP_TRANSPARENT first (as splicer's own backend sockets are), then connected to `to` with a
// 5 s bound. Blocking.
UniqueFd connect_in(int ns, const std::string& source, std::uint16_t source_port,
                    const test::SocketAddress& to, bool transparent = false) {
    const EnteredNetns inside(ns);
    const bool ipv6 = source.find(':') != std::string::npos;
    UniqueFd fd(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    const int on = 1;
    if (transparent) {
        REQUIRE(::setsockopt(fd.get(), ipv6 ? SOL_IPV6 : SOL_IP,
                             ipv6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, &on, sizeof(on)) == 0);
    }
    REQUIRE(::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == 0);
    const test::SocketAddress from = ip_address(source, source_port);
    REQUIRE(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&from.storage), from.length) == 0);
    timeval bound{.tv_sec = 5, .tv_usec = 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof(bound));
    REQUIRE(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to.storage), to.length) == 0);
    return fd;
}

// A TcpBackend listening on 127.0.0.1 / ::1 of the host namespace.
std::unique_ptr<test::TcpBackend> backend_in(int ns, const test::BackendScript& script, bool ipv6) {
    const EnteredNetns inside(ns);
    return std::make_unique<test::TcpBackend>(script, ipv6);
}

std::string transparent_config(bool ipv6, std::uint16_t ssh_port, std::uint16_t xmpp_port,
                               int connect_timeout = 2) {
    const std::string loopback = ipv6 ? "::1" : "127.0.0.1";
    std::ostringstream text;
    text << "transparent: true;\n"
         << "listen: ( { host: \"" << (ipv6 ? kHostV6 : kHostV4) << "\"; port: \"" << kListenPort
         << "\"; } );\n"
         << "protocols: (\n"
         << "  { name: \"ssh\"; host: \"" << loopback << "\"; port: \"" << ssh_port << "\"; },\n"
         << "  { name: \"xmpp\"; host: \"" << loopback << "\"; port: \"" << xmpp_port
         << "\"; transparent: false; }\n"
         << ");\n"
         << "timeout: 2;\nconnect_timeout: " << connect_timeout << ";\n";
    return text.str();
}

const std::string kSshBanner = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";

// The capability names of `setting=` lines in a unit file, lowercased without "cap_", as
// setpriv takes them.
std::vector<std::string> bounding_set_in(const std::string& file) {
    std::ifstream unit(std::string(SPLICER_SOURCE_DIR) + "/dist/" + file);
    std::vector<std::string> names;
    for (std::string line; std::getline(unit, line);) {
        if (line.rfind("CapabilityBoundingSet=", 0) != 0) {
            continue;
        }
        std::istringstream words(line.substr(line.find('=') + 1));
        for (std::string word; words >> word;) {
            std::string name = word.substr(word.rfind("CAP_", 0) == 0 ? 4 : 0);
            for (char& c : name) {
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            }
            names.push_back(name);
        }
    }
    return names;
}

std::string setpriv_set(const std::vector<std::string>& names) {
    std::string text = "-all";
    for (const std::string& name : names) {
        text += ",+" + name;
    }
    return text;
}

constexpr std::uint64_t kTransparentPipelined = 64 * 1024;
constexpr std::uint64_t kTransparentUp = 512 * 1024;
constexpr std::uint64_t kTransparentDown = 512 * 1024;

}  // namespace

TEST_CASE(
    "transparent: the backend's getpeername() is the client's address and port, the "
    "stream byte-exact both ways, on every plane, IPv4 and IPv6, and a rule with "
    "transparent: false keeps splicer's address",
    "[daemon][transparent]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    const TransparentNetns net;
    net.route_replies_back();
    std::uint64_t seed = 300;
    for (const bool ipv6 : {false, true}) {
        CAPTURE(ipv6);
        auto ssh =
            backend_in(net.host_fd(), test::BackendScript::exchange(kTransparentDown, 700), ipv6);
        auto xmpp = backend_in(net.host_fd(), test::BackendScript::exchange(4096, 800), ipv6);
        auto daemon = net.start_daemon(plane, transparent_config(ipv6, ssh->port(), xmpp->port()));
        REQUIRE(daemon->wait_ready(15s));
        const test::SocketAddress listen = ip_address(ipv6 ? kHostV6 : kHostV4, kListenPort);
        const std::string client_ip = ipv6 ? kClientV6 : kClientV4;

        // SSH (OpenSSH reads no PROXY header): the banner, data pipelined behind it, then
        // both directions at once.
        const std::string pipelined = test::ByteGenerator(seed++).take(kTransparentPipelined);
        UniqueFd client = connect_in(net.client_fd(), client_ip, 0, listen);
        const std::string client_address = test::local_address(client.get());
        test::write_all(client.get(), kSshBanner + pipelined);
        test::TransferOptions options;
        options.sent_before = kSshBanner + pipelined;
        options.send = {.generated = kTransparentUp, .seed = seed++};
        options.timeout = 20s;
        const test::TransferResult result = test::transfer_both_ways(client.get(), options);
        INFO(test::describe_stream(result));
        CHECK(result.complete(options));
        REQUIRE(ssh->wait_for_finished(1, 10s));
        const test::BackendConnection record = ssh->finished().back();
        CAPTURE(client_address, record.peer);
        CHECK(record.peer == client_address);
        CHECK(record.received == kSshBanner.size() + kTransparentPipelined + kTransparentUp);
        CHECK(record.received_sha256 == result.sent_sha256);
        CHECK(record.eof);
        CHECK(result.received == kTransparentDown);
        CHECK(result.received_sha256 == record.sent_sha256);
        const auto routed = daemon->wait_for_log("routed", {}, 2s);
        REQUIRE(routed.has_value());
        CHECK(routed->get("plane") == plane);

        // The rule that opts out: the backend sees splicer's loopback address.
        UniqueFd plain = connect_in(net.client_fd(), client_ip, 0, listen);
        const std::string plain_address = test::local_address(plain.get());
        test::TransferOptions plain_options;
        plain_options.sent_before = test::xmpp_stream_header();
        test::write_all(plain.get(), plain_options.sent_before);
        plain_options.send = {.generated = 4096, .seed = seed++};
        plain_options.timeout = 10s;
        CHECK(test::transfer_both_ways(plain.get(), plain_options).complete(plain_options));
        REQUIRE(xmpp->wait_for_finished(1, 10s));
        const std::string xmpp_peer = xmpp->finished().back().peer;
        CAPTURE(plain_address, xmpp_peer);
        CHECK_THAT(xmpp_peer, Catch::StartsWith(ipv6 ? "[::1]:" : "127.0.0.1:"));

        CHECK(daemon->logs("backend_failed").empty());
        const auto dropped = daemon->wait_for_log("privileges_dropped", {}, 1s);
        REQUIRE(dropped.has_value());
        CHECK(dropped->get("kept") == "CAP_NET_RAW");
        test::stop_daemon(*daemon);
    }
}

TEST_CASE(
    "transparent failures: replies not routed back (connect timeout) and the client's "
    "address:port already connected to the backend are backend failures with their "
    "reason, and the daemon serves on",
    "[daemon][transparent]") {
    test::require_root();
    const TransparentNetns net;  // no routing yet: the backend's replies go nowhere
    auto ssh = backend_in(net.host_fd(), test::BackendScript::exchange(4096, 900), false);
    auto unused = backend_in(net.host_fd(), test::BackendScript::record(), false);
    auto daemon =
        net.start_daemon("copy", transparent_config(false, ssh->port(), unused->port(), 1));
    INFO("daemon log:\n" << daemon->log_tail());
    REQUIRE(daemon->wait_ready(15s));
    const test::SocketAddress listen = ip_address(kHostV4, kListenPort);

    // Closed after the connect timeout, with the likely cause named.
    UniqueFd lost = connect_in(net.client_fd(), kClientV4, 0, listen);
    test::write_all(lost.get(), kSshBanner);
    CHECK(test::read_exactly(lost.get(), 1, 5000).empty());  // EOF, nothing from a backend
    const auto timed_out = daemon->wait_for_log("backend_failed", {}, 5s);
    REQUIRE(timed_out.has_value());
    CHECK_THAT(std::string(timed_out->get("error")),
               Catch::Contains("timeout") && Catch::Contains("routed back"));
    CHECK(ssh->accepted() == 0);  // the SYN reached it, the handshake never completed

    // With the routing: a socket of the test's own already holds 198.18.0.2:40443 -> the
    // backend, so splicer cannot make the same 4-tuple.
    net.route_replies_back();
    constexpr std::uint16_t kTakenPort = 40443;
    const UniqueFd holder = connect_in(net.host_fd(), kClientV4, kTakenPort,
                                       ip_address("127.0.0.1", ssh->port()), true);
    REQUIRE(ssh->wait_for_accepted(1, 5s));
    const std::size_t from = daemon->log_count();
    UniqueFd taken = connect_in(net.client_fd(), kClientV4, kTakenPort, listen);
    test::write_all(taken.get(), kSshBanner);
    CHECK(test::read_exactly(taken.get(), 1, 5000).empty());
    const auto in_use = daemon->wait_for_log("backend_failed", {}, 5s, from);
    REQUIRE(in_use.has_value());
    CHECK_THAT(std::string(in_use->get("error")),
               Catch::Contains("already have a connection to this backend"));
    CHECK(ssh->accepted() == 1);

    // Serving on: the next client, from a free port, reaches the backend as itself.
    UniqueFd next = connect_in(net.client_fd(), kClientV4, 0, listen);
    const std::string next_address = test::local_address(next.get());
    test::TransferOptions options;
    options.sent_before = kSshBanner;
    test::write_all(next.get(), kSshBanner);
    options.send = {.generated = 64 * 1024, .seed = 901};
    options.timeout = 10s;
    CHECK(test::transfer_both_ways(next.get(), options).complete(options));
    REQUIRE(ssh->wait_for_accepted(2, 5s));
    bool seen = false;
    for (int i = 0; i < 50 && !seen; ++i) {
        for (const test::BackendConnection& record : ssh->finished()) {
            seen = seen || record.peer == next_address;
        }
        std::this_thread::sleep_for(100ms);
    }
    CHECK(seen);
    CHECK(test::wait_for_counter(*daemon, "backend_failures", 2) == 2);
    CHECK(daemon->running());
    test::stop_daemon(*daemon);
}

TEST_CASE(
    "transparent keeps exactly CAP_NET_RAW after the drop, off keeps nothing, and under "
    "splicer.service's bounding set alone a transparent start fails with the reason, "
    "with its transparent.conf drop-in it serves",
    "[daemon][transparent][privileges]") {
    test::require_root();
    const TransparentNetns net;
    const std::vector<std::string> unit = bounding_set_in("systemd/splicer.service");
    const std::vector<std::string> drop_in = bounding_set_in("examples/transparent.conf");
    REQUIRE_FALSE(unit.empty());
    CHECK(drop_in == std::vector<std::string>{"net_raw"});
    std::vector<std::string> with_drop_in = unit;
    with_drop_in.insert(with_drop_in.end(), drop_in.begin(), drop_in.end());
    const std::string listen = std::string("listen: ( { host: \"") + kHostV4 +
                               "\"; port: \"443\"; } );\n"
                               "protocols: ( { name: \"ssh\"; host: \"127.0.0.1\"; port: "
                               "\"22\"; } );\n";

    for (const bool transparent : {true, false}) {
        CAPTURE(transparent);
        auto daemon = net.start_daemon(
            "copy",
            std::string("transparent: ") + (transparent ? "true" : "false") + ";\n" + listen,
            {"setpriv", "--bounding-set", setpriv_set(with_drop_in), "--"});
        INFO("daemon log:\n" << daemon->log_tail());
        REQUIRE(daemon->wait_ready(15s));
        REQUIRE(daemon->wait_for_log("privileges_dropped", {}, 1s).has_value());
        // CAP_NET_RAW is bit 13.
        const std::string kept = transparent ? "0000000000002000" : "0000000000000000";
        CHECK(test::proc_status_field(daemon->pid(), "CapEff") == kept);
        CHECK(test::proc_status_field(daemon->pid(), "CapPrm") == kept);
        CHECK(test::proc_status_field(daemon->pid(), "CapInh") == "0000000000000000");
        CHECK(test::proc_status_field(daemon->pid(), "CapAmb") == "0000000000000000");
        CHECK(test::proc_status_field(daemon->pid(), "CapBnd") == "0000000000000000");
        CHECK(test::proc_status_field(daemon->pid(), "NoNewPrivs") == "1");
        CHECK(test::proc_status_field(daemon->pid(), "Uid").rfind("0\t", 0) != 0);
        test::stop_daemon(*daemon);
    }

    auto refused = net.start_daemon("copy", "transparent: true;\n" + listen,
                                    {"setpriv", "--bounding-set", setpriv_set(unit), "--"});
    const std::optional<int> status = refused->stop(15s, 0);  // signal 0: wait only
    INFO("daemon log:\n" << refused->log_tail());
    REQUIRE(status.has_value());
    CHECK(*status == 1);
    CHECK(refused->logs("ready").empty());
    const auto fatal = refused->wait_for_log("fatal", {}, 1s);
    REQUIRE(fatal.has_value());
    CHECK_THAT(std::string(fatal->get("error")),
               Catch::Contains("CAP_NET_RAW") && Catch::Contains("transparent.conf"));
}

TEST_CASE(
    "transparent on port 80: a route with transparent: true reaches its backend from the "
    "client's address and port, one without from splicer's, and the global setting leaves "
    "port 80 alone",
    "[daemon][transparent][http]") {
    test::require_root();
    const TransparentNetns net;
    net.route_replies_back();
    std::unique_ptr<test::HttpBackend> web;
    {
        const EnteredNetns inside(net.host_fd());
        web = std::make_unique<test::HttpBackend>("web");
    }
    const std::string config =
        std::string("transparent: true;\n") + "listen: ( { host: \"" + kHostV4 +
        "\"; port: \"443\"; } );\n" +
        "protocols: ( { name: \"ssh\"; host: \"127.0.0.1\"; port: \"22\"; } );\n" +
        "http: {\n  listen: ( { host: \"" + kHostV4 + "\"; port: \"80\"; } );\n" +
        "  routes: ( { hosts: [ \"own.example\" ]; backend: \"" + web->address() +
        "\"; transparent: true; },\n" + "            { hosts: [ \"*\" ]; backend: \"" +
        web->address() + "\"; } );\n};\n";
    auto daemon = net.start_daemon("copy", config);
    REQUIRE(daemon->wait_ready(15s));
    const test::SocketAddress listen = ip_address(kHostV4, 80);
    std::size_t served = 0;
    for (const std::string host : {"own.example", "other.example"}) {
        CAPTURE(host);
        UniqueFd client = connect_in(net.client_fd(), kClientV4, 0, listen);
        const std::string client_address = test::local_address(client.get());
        test::write_all(client.get(),
                        "GET /peer HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
        test::BufferedReader reader(client.get());
        const test::HttpResponse response = test::read_response(reader);
        CHECK(response.status == 200);
        CHECK(response.body == "web GET /peer");
        REQUIRE(web->wait_for_requests(++served, 5s));
        const std::vector<test::RecordedRequest> requests = web->requests();
        CAPTURE(client_address, requests.back().peer);
        if (host == "own.example") {
            CHECK(requests.back().peer == client_address);
        } else {
            CHECK_THAT(requests.back().peer, Catch::StartsWith("127.0.0.1:"));
        }
        // X-Forwarded-For carries the client either way.
        CHECK(requests.back().head.header("x-forwarded-for") == kClientV4);
    }
    CHECK(daemon->logs("backend_failed").empty());
    test::stop_daemon(*daemon);
}

TEST_CASE(
    "scripts/transparent-setup: up twice adds its rules and routes once, down removes "
    "exactly them, down again changes nothing",
    "[transparent]") {
    test::require_root();
    const TransparentNetns net;
    // IPv6 link-local routes come and go on their own once the link is up: left out.
    const std::string snapshot =
        "{ ip rule; ip -6 rule; ip -4 route show table all; ip -6 route show table all; } | "
        "grep -v fe80";
    const std::string before = net.in_host("sh -c '" + snapshot + "'").output;
    const std::string script = TransparentNetns::script();
    const std::string addresses = " 127.0.0.1 ::1 198.18.5.0/24";

    CHECK(net.in_host(script + " show" + addresses).exit_code == 1);
    REQUIRE(net.in_host(script + " up" + addresses).exit_code == 0);
    const std::string once = net.in_host("sh -c '" + snapshot + "'").output;
    REQUIRE(net.in_host(script + " up" + addresses).exit_code == 0);
    CHECK(net.in_host("sh -c '" + snapshot + "'").output == once);
    CAPTURE(once);
    CHECK(net.in_host("sh -c 'ip rule | grep -c \"from 127.0.0.1 lookup 4430\"'").output == "1\n");
    CHECK(net.in_host("sh -c 'ip rule | grep -c \"from 198.18.5.0/24 lookup 4430\"'").output ==
          "1\n");
    CHECK(net.in_host("sh -c 'ip -6 rule | grep -c \"from ::1 lookup 4430\"'").output == "1\n");
    CHECK(net.in_host("ip route show table 4430").output == "local default dev lo scope host \n");
    CHECK(net.in_host(script + " show" + addresses).exit_code == 0);

    REQUIRE(net.in_host(script + " down" + addresses).exit_code == 0);
    CHECK(net.in_host("sh -c '" + snapshot + "'").output == before);
    REQUIRE(net.in_host(script + " down" + addresses).exit_code == 0);
    CHECK(net.in_host("sh -c '" + snapshot + "'").output == before);
}
