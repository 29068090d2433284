// splicer under systemd (dist/systemd), without a PID 1 systemd: the test stands in for it.
// - Readiness: a unix datagram socket named by NOTIFY_SOCKET gets READY=1 once the ports
//   accept, RELOADING=1 then READY=1 around each SIGHUP (good file and broken file), and
//   STOPPING=1 at SIGTERM, each sent by the daemon's own pid (NotifyAccess=main).
// - Socket activation: listening sockets passed as fds 3.. with LISTEN_FDS/LISTEN_PID are
//   taken for the listen entries with the same address, on every plane, byte-exact; the
//   entries with no socket are bound as usual; systemd's sockets still listen after the
//   daemon exits; a passed socket no entry names stops the start.
// - Capabilities: with exactly splicer.service's CapabilityBoundingSet (setpriv) the daemon
//   starts on the sockmap plane and serves 443 and 80 in a network namespace of its own,
//   twice (the second start finds the pin dir it handed to `splicer`); without any one of
//   them the start fails.

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon_test_common.h"
#include "http_test_common.h"
#include "support/file_modes.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

// systemd's side of sd_notify(3): an abstract unix datagram socket (the daemon drops to
// `splicer`; an abstract name needs no file permission) that reads each message with the
// sender's credentials.
class NotifySocket {
public:
    NotifySocket()
        : name_("splicer-test-notify-" + std::to_string(::getpid()) + "-" +
                std::to_string(counter_++)) {
        fd_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        REQUIRE(fd_);
        const int on = 1;
        REQUIRE(::setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::memcpy(address.sun_path + 1, name_.data(), name_.size());  // [0] = 0: abstract
        const auto length =
            static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name_.size());
        REQUIRE(::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&address), length) == 0);
    }

    // NOTIFY_SOCKET's value ('@': abstract).
    [[nodiscard]] std::string env() const { return "NOTIFY_SOCKET=@" + name_; }

    struct Message {
        std::string text;
        pid_t sender = -1;
    };
    // The next message, or none within `timeout`.
    std::optional<Message> next(std::chrono::milliseconds timeout) const {
        pollfd waiting{fd_.get(), POLLIN, 0};
        if (::poll(&waiting, 1, static_cast<int>(timeout.count())) != 1) {
            return std::nullopt;
        }
        char text[4096];
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
        iovec io{text, sizeof(text)};
        msghdr header{};
        header.msg_iov = &io;
        header.msg_iovlen = 1;
        header.msg_control = control;
        header.msg_controllen = sizeof(control);
        const ssize_t got = ::recvmsg(fd_.get(), &header, MSG_DONTWAIT);
        if (got < 0) {
            return std::nullopt;
        }
        Message message{std::string(text, static_cast<std::size_t>(got)), -1};
        for (cmsghdr* c = CMSG_FIRSTHDR(&header); c != nullptr; c = CMSG_NXTHDR(&header, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                ucred credentials{};
                std::memcpy(&credentials, CMSG_DATA(c), sizeof(credentials));
                message.sender = credentials.pid;
            }
        }
        return message;
    }

private:
    static inline int counter_ = 0;
    std::string name_;
    UniqueFd fd_;
};

bool has_line(const std::string& message, const std::string& line) {
    std::istringstream lines(message);
    for (std::string each; std::getline(lines, each);) {
        if (each == line) {
            return true;
        }
    }
    return false;
}

// The value of `KEY=` in a notify message (empty when absent).
std::string field(const std::string& message, const std::string& key) {
    std::istringstream lines(message);
    for (std::string each; std::getline(lines, each);) {
        if (each.rfind(key + "=", 0) == 0) {
            return each.substr(key.size() + 1);
        }
    }
    return "";
}

std::uint64_t monotonic_microseconds() {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000U +
           static_cast<std::uint64_t>(now.tv_nsec) / 1'000U;
}

// One TLS-routed stream through an already connected client socket: hello plus 64 KiB to the
// HTTPS backend, its reply back, both byte-exact.
void stream_through(UniqueFd client, TcpBackend& https_backend, const std::string& what) {
    CAPTURE(what);
    const std::size_t before = https_backend.finished().size();
    TransferOptions options;
    options.send =
        Outgoing{make_client_hello({.server_name = "chat.example.com"}), 64 * 1024, 4242};
    options.expect = https_backend.script().reply.generated;
    options.timeout = 15s;
    const TransferResult result = transfer_both_ways(client.get(), options);
    INFO(describe_stream(result));
    REQUIRE(result.complete(options));
    REQUIRE(https_backend.wait_for_finished(before + 1, 10s));
    const auto records = https_backend.finished();
    CHECK(records.back().received == options.send.total());
    CHECK(records.back().received_sha256 == result.sent_sha256);
    CHECK(records.back().sent_sha256 == result.received_sha256);
}

// A listening socket the test holds as systemd holds a ListenStream= socket.
UniqueFd systemd_listener(std::uint16_t port, bool ipv6 = false) {
    Listener bound = bind_loopback(port, ipv6);
    REQUIRE(bound.fd);
    REQUIRE(::listen(bound.fd.get(), 128) == 0);
    return std::move(bound.fd);
}

// Runs the daemon as systemd starts a socket-activated service: the passed fds become 3, 4,
// ..., and LISTEN_PID is the daemon's own pid (the shell execs it, keeping its pid).
DaemonOptions activated_options(const std::string& plane, const std::string& config,
                                const std::vector<int>& fds) {
    DaemonOptions options;
    options.binary = SPLICER_BINARY;
    options.config_text = config;
    options.splice_mode = plane;
    options.pass_fds = fds;
    // As the shipped unit runs it: one worker per CPU, every one accepting on the passed fds.
    options.workers = std::nullopt;
    options.command_prefix = {
        "sh", "-c",
        "export LISTEN_PID=$$ LISTEN_FDS=" + std::to_string(fds.size()) + "; exec \"$0\" \"$@\""};
    return options;
}

std::string http_section(std::uint16_t port, const HttpBackend& backend) {
    return "http: {\n  listen: ( { host: \"127.0.0.1\"; port: \"" + std::to_string(port) +
           "\"; } );\n  routes: ( { hosts: [ \"*\" ]; backend: \"" + backend.address() +
           "\"; } );\n};\n";
}

}  // namespace

TEST_CASE(
    "systemd notify: READY=1 once the ports accept, RELOADING=1 then READY=1 around "
    "SIGHUP with a good and a broken file, STOPPING=1 at SIGTERM",
    "[daemon][systemd]") {
    require_root();
    const SnikketPorts ports = unserved_snikket_ports();
    TcpBackend https(BackendScript::exchange(64 * 1024, 77));
    SnikketPorts served = ports;
    served.https = https.port();
    const std::string config = snikket_config(served);
    NotifySocket notify;

    DaemonOptions options;
    options.binary = SPLICER_BINARY;
    options.config_text = config;
    options.splice_mode = "copy";
    options.command_prefix = {"env", notify.env()};  // env execs: the pid is the daemon's
    options.workers = std::nullopt;  // the last worker to apply a reload says READY=1
    DaemonProcess daemon(options);
    make_readable_by_all(daemon.config_path());

    // Start: the first message is READY=1, and by then both listeners accept.
    const auto ready = notify.next(15s);
    INFO("daemon log:\n" << daemon.log_tail());
    REQUIRE(ready.has_value());
    CAPTURE(ready->text);
    CHECK(has_line(ready->text, "READY=1"));
    CHECK(ready->sender == daemon.pid());
    stream_through(connect_to(served.listen), https, "IPv4 listener at READY=1");
    stream_through(connect_to(served.listen, true), https, "IPv6 listener at READY=1");
    REQUIRE(daemon.wait_ready(5s));

    // A good file: RELOADING=1 (with the monotonic time of the reload) then READY=1, and the
    // reload was applied by then.
    daemon.rewrite_config(config + "# reloaded\n");
    const std::uint64_t before = monotonic_microseconds();
    std::size_t from = daemon.log_count();
    ::kill(daemon.pid(), SIGHUP);
    const auto reloading = notify.next(10s);
    REQUIRE(reloading.has_value());
    CAPTURE(reloading->text);
    CHECK(has_line(reloading->text, "RELOADING=1"));
    CHECK(reloading->sender == daemon.pid());
    const std::string usec = field(reloading->text, "MONOTONIC_USEC");
    REQUIRE_FALSE(usec.empty());
    CHECK(std::stoull(usec) >= before);
    CHECK(std::stoull(usec) <= monotonic_microseconds());
    const auto reloaded = notify.next(10s);
    REQUIRE(reloaded.has_value());
    CAPTURE(reloaded->text);
    CHECK(has_line(reloaded->text, "READY=1"));
    CHECK(daemon.wait_for_log("reloaded", {}, 5s, from).has_value());

    // A broken file: refused, the old rules stay, and the daemon says READY=1 all the same.
    daemon.rewrite_config("listen: ( { host: ; } );\n");
    from = daemon.log_count();
    ::kill(daemon.pid(), SIGHUP);
    const auto reloading_bad = notify.next(10s);
    REQUIRE(reloading_bad.has_value());
    CHECK(has_line(reloading_bad->text, "RELOADING=1"));
    const auto ready_after_bad = notify.next(10s);
    REQUIRE(ready_after_bad.has_value());
    CAPTURE(ready_after_bad->text);
    CHECK(has_line(ready_after_bad->text, "READY=1"));
    CHECK(daemon.wait_for_log("reload_failed", {}, 5s, from).has_value());
    stream_through(connect_to(served.listen), https, "after the refused reload");

    // SIGTERM: STOPPING=1, then a clean exit; nothing else was sent.
    ::kill(daemon.pid(), SIGTERM);
    const auto stopping = notify.next(10s);
    REQUIRE(stopping.has_value());
    CAPTURE(stopping->text);
    CHECK(has_line(stopping->text, "STOPPING=1"));
    stop_daemon(daemon);
    CHECK_FALSE(notify.next(200ms).has_value());
}

TEST_CASE(
    "socket activation: the sockets systemd passes serve byte-exact on every plane, "
    "listen entries with none are bound, and systemd's sockets still listen after the "
    "stop",
    "[daemon][systemd]") {
    require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    const SnikketPorts ports = unserved_snikket_ports();
    TcpBackend https(BackendScript::exchange(64 * 1024, 91));
    HttpBackend web("web");
    SnikketPorts served = ports;
    served.https = https.port();
    const std::uint16_t http_port = free_port();
    const std::string config = snikket_config(served) + http_section(http_port, web);

    // systemd's sockets: 127.0.0.1 for the 443-style entry and the http entry; ::1 (the
    // config's second listen entry) is left to the daemon.
    const UniqueFd tls_socket = systemd_listener(served.listen);
    const UniqueFd http_socket = systemd_listener(http_port);
    // A client that connects before the daemon runs waits in systemd's backlog.
    UniqueFd early = connect_to(served.listen);
    // Blocking, as systemd passes them unless NonBlocking=yes.
    const auto nonblocking = [](int fd) { return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; };
    REQUIRE_FALSE(nonblocking(tls_socket.get()));

    DaemonProcess daemon(activated_options(plane, config, {tls_socket.get(), http_socket.get()}));
    INFO("daemon log:\n" << daemon.log_tail());
    REQUIRE(daemon.wait_ready(15s));
    // Made non-blocking (the same open file as ours), as the daemon's own listeners are: an
    // upgrade's old process takes what is left waiting there without waiting for more
    // (EventLoop::accept_left_after_handover).
    CHECK(nonblocking(tls_socket.get()));
    CHECK(nonblocking(http_socket.get()));
    const auto from_systemd = [](const LogLine& line) { return line.get("from") == "systemd"; };
    CHECK(daemon.logs("listening", from_systemd).size() == 2);
    CHECK(daemon
              .logs("listening",
                    [&](const LogLine& line) {
                        return line.get("addr") == loopback_text(served.listen, true) &&
                               !line.has("from");
                    })
              .size() == 1);

    stream_through(std::move(early), https, "a client queued before the start");
    stream_through(connect_to(served.listen), https, "passed 127.0.0.1 socket");
    stream_through(connect_to(served.listen, true), https, "::1 bound by the daemon");
    const HttpResponse response = http_exchange(http_port, get_request("chat.example.com", "/a"));
    CHECK(response.status == 200);
    CHECK(response.body == "web GET /a");

    stop_daemon(daemon);
    // Still systemd's, still listening: the next connection waits for the next start.
    for (const auto& [held, port] :
         {std::pair{tls_socket.get(), served.listen}, std::pair{http_socket.get(), http_port}}) {
        CAPTURE(port);
        UniqueFd next;
        CHECK_NOTHROW(next = connect_to(port, false, 2s));
        pollfd waiting{held, POLLIN, 0};
        CHECK(::poll(&waiting, 1, 2000) == 1);
        const UniqueFd accepted(::accept4(held, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        CHECK(accepted);
    }
}

TEST_CASE(
    "socket activation: a passed socket no listen entry names, or one that is no TCP "
    "listener, stops the start",
    "[daemon][systemd]") {
    require_root();
    const SnikketPorts ports = unserved_snikket_ports();
    const std::string config = snikket_config(ports);
    const std::uint16_t stray_port = free_port();
    const UniqueFd stray = systemd_listener(stray_port);
    const UniqueFd datagram(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(datagram);

    struct Case {
        const char* name;
        int fd;
        std::string expected;
    };
    for (const Case& each : {Case{"stray listener", stray.get(),
                                  "systemd passed " + loopback_text(stray_port) +
                                      " (fd 3), which no listen entry names"},
                             Case{"datagram socket", datagram.get(),
                                  "systemd passed fd 3, which is not a listening TCP socket"}}) {
        CAPTURE(each.name);
        DaemonProcess daemon(activated_options("copy", config, {each.fd}));
        const std::optional<int> status = daemon.stop(10s, 0);  // signal 0: wait only
        INFO("daemon log:\n" << daemon.log_tail());
        REQUIRE(status.has_value());
        CHECK(*status == 1);
        const auto fatal = daemon.wait_for_log("fatal", {}, 1s);
        REQUIRE(fatal.has_value());
        CHECK(fatal->get("error").find(each.expected) != std::string::npos);
        CHECK(daemon.logs("ready").empty());
    }
}

namespace {

// The value of the first `key=` line of a unit file in dist/systemd.
std::string unit_setting(const std::string& unit, const std::string& key) {
    std::ifstream file(std::string(SPLICER_SOURCE_DIR) + "/dist/systemd/" + unit);
    for (std::string line; std::getline(file, line);) {
        if (line.rfind(key + "=", 0) == 0) {
            return line.substr(key.size() + 1);
        }
    }
    return "";
}

// "CAP_NET_BIND_SERVICE CAP_BPF" -> {"net_bind_service", "bpf"} (setpriv's spelling).
std::vector<std::string> capability_names(const std::string& setting) {
    std::vector<std::string> names;
    std::istringstream words(setting);
    for (std::string word; words >> word;) {
        std::string name = word.rfind("CAP_", 0) == 0 ? word.substr(4) : word;
        for (char& c : name) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        names.push_back(name);
    }
    return names;
}

// A network namespace with lo up, deleted on destruction; while an InNetns lives, the calling
// thread makes its sockets there (the backends' and clients'), so the daemon can have 443 and
// 80 without meeting anything on the host.
class ServiceNetns {
public:
    ServiceNetns() : name_("splsd" + std::to_string(::getpid())) {
        const CommandResult made =
            run_command("set -e; ip netns add " + name_ + "; ip -n " + name_ + " link set lo up");
        INFO(made.output);
        REQUIRE(made.exit_code == 0);
        ns_ = UniqueFd(::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(ns_);
    }
    ~ServiceNetns() { (void)run_command("ip netns del " + name_ + " 2>/dev/null; true"); }
    ServiceNetns(const ServiceNetns&) = delete;
    ServiceNetns& operator=(const ServiceNetns&) = delete;
    [[nodiscard]] std::string path() const { return "/run/netns/" + name_; }
    [[nodiscard]] int fd() const { return ns_.get(); }

private:
    std::string name_;
    UniqueFd ns_;
};

class InNetns {
public:
    explicit InNetns(const ServiceNetns& netns)
        : home_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {
        REQUIRE(home_);
        REQUIRE(::setns(netns.fd(), CLONE_NEWNET) == 0);
    }
    ~InNetns() { ::setns(home_.get(), CLONE_NEWNET); }
    InNetns(const InNetns&) = delete;
    InNetns& operator=(const InNetns&) = delete;

private:
    UniqueFd home_;
};

std::string join(const std::vector<std::string>& names, const std::string& skip) {
    std::string text = "-all";
    for (const std::string& name : names) {
        if (name != skip) {
            text += ",+" + name;
        }
    }
    return text;
}

// Connects to 127.0.0.1:port from the calling thread's namespace.
UniqueFd connect_v4(std::uint16_t port) {
    return connect_to(port, false, 5s);
}

}  // namespace

TEST_CASE(
    "splicer.service's CapabilityBoundingSet is what start-up needs: with it the sockmap "
    "plane serves 443 and 80 twice, and without any one of them the start fails",
    "[daemon][systemd]") {
    require_root();
    const std::vector<std::string> capabilities =
        capability_names(unit_setting("splicer.service", "CapabilityBoundingSet"));
    CAPTURE(unit_setting("splicer.service", "CapabilityBoundingSet"));
    REQUIRE_FALSE(capabilities.empty());

    ServiceNetns netns;
    const InNetns inside(netns);
    TcpBackend https(BackendScript::exchange(64 * 1024, 33));
    HttpBackend web("web");
    const std::string config =
        "listen: ( { host: \"0.0.0.0\"; port: \"443\"; } );\n"
        "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: \"" +
        std::to_string(https.port()) + "\"; } );\n" +
        "http: {\n  listen: ( { host: \"0.0.0.0\"; port: \"80\"; } );\n"
        "  routes: ( { hosts: [ \"*\" ]; backend: \"" +
        web.address() + "\"; } );\n};\n";
    // One pin dir for every start: after the first, it belongs to `splicer`.
    const PinDir pins;
    const auto options_without = [&](const std::string& missing) {
        DaemonOptions options;
        options.binary = SPLICER_BINARY;
        options.config_text = config;
        options.splice_mode = "sockmap";  // a BPF failure must fail the start, not fall back
        options.pin_dir = pins.path();
        options.workers = std::nullopt;  // every worker's thread under the same bounding set
        options.command_prefix = {"nsenter",        "--net=" + netns.path(),     "--", "setpriv",
                                  "--bounding-set", join(capabilities, missing), "--"};
        return options;
    };

    for (int start = 1; start <= 2; ++start) {
        CAPTURE(start);
        DaemonProcess daemon(options_without(""));
        INFO("daemon log:\n" << daemon.log_tail());
        REQUIRE(daemon.wait_ready(15s));
        const auto ready = daemon.wait_for_log("ready", {}, 1s);
        REQUIRE(ready.has_value());
        CHECK(ready->get("plane") == "sockmap");
        CHECK(daemon.wait_for_log("privileges_dropped", {}, 1s).has_value());
        stream_through(connect_v4(443), https, "443 with the unit's capabilities");
        const HttpResponse response = http_exchange(80, get_request("example.com", "/cap"));
        CHECK(response.status == 200);
        CHECK(response.body == "web GET /cap");
        stop_daemon(daemon);
    }

    const passwd* run_user = ::getpwnam("splicer");
    REQUIRE(run_user != nullptr);
    for (const std::string& missing : capabilities) {
        CAPTURE(missing);
        // Each start meets the pin dir as a previous run leaves it (a start that failed as
        // root may have removed it): owned by `splicer`, mode 0700.
        ::mkdir(pins.path().c_str(), 0700);
        REQUIRE(::chown(pins.path().c_str(), run_user->pw_uid, run_user->pw_gid) == 0);
        REQUIRE(::chmod(pins.path().c_str(), 0700) == 0);
        DaemonProcess daemon(options_without(missing));
        const std::optional<int> status = daemon.stop(15s, 0);  // signal 0: wait only
        INFO("daemon log:\n" << daemon.log_tail());
        REQUIRE(status.has_value());
        CHECK(*status == 1);
        CHECK(daemon.logs("ready").empty());
        const auto fatal = daemon.wait_for_log("fatal", {}, 1s);
        CHECK(fatal.has_value());
        if (fatal) {
            UNSCOPED_INFO("without " << missing << ": " << fatal->get("error"));
        }
    }
}
