#include "support/netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "support/command.h"

namespace splicer::test {
namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

// Runs `make` with the calling thread in `ns`, then returns the thread to where it was.
template <typename Make>
auto in_netns(int ns, Make make) {
    UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!home || ::setns(ns, CLONE_NEWNET) != 0) {
        fail("setns");
    }
    auto result = make();
    if (::setns(home.get(), CLONE_NEWNET) != 0) {
        fail("setns back");
    }
    return result;
}

UniqueFd tcp_socket_in(int ns) {
    return in_netns(ns, [] {
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd) {
            fail("socket");
        }
        return fd;
    });
}

sockaddr_in address(const char* ip, std::uint16_t port) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    ::inet_pton(AF_INET, ip, &in.sin_addr);
    return in;
}

struct Listening {
    UniqueFd fd;
    std::uint16_t port = 0;
};

Listening listen_in(int ns, const char* ip) {
    Listening listening{tcp_socket_in(ns), 0};
    sockaddr_in in = address(ip, 0);
    socklen_t length = sizeof(in);
    if (::bind(listening.fd.get(), reinterpret_cast<sockaddr*>(&in), length) != 0 ||
        ::listen(listening.fd.get(), 16) != 0 ||
        ::getsockname(listening.fd.get(), reinterpret_cast<sockaddr*>(&in), &length) != 0) {
        fail("bind/listen");
    }
    listening.port = ntohs(in.sin_port);
    return listening;
}

UniqueFd connect_in_ns(int ns, const char* ip, std::uint16_t port) {
    UniqueFd fd = tcp_socket_in(ns);
    sockaddr_in in = address(ip, port);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&in), sizeof(in)) != 0) {
        fail("connect");
    }
    return fd;
}

UniqueFd accept_from(const Listening& listening) {
    UniqueFd fd(::accept4(listening.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) {
        fail("accept");
    }
    return fd;
}

UniqueFd open_ns(const std::string& name) {
    UniqueFd fd(::open(("/var/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        fail("open netns " + name);
    }
    return fd;
}

}  // namespace

std::unique_ptr<NetnsTopology> NetnsTopology::create(std::string& why) {
    std::unique_ptr<NetnsTopology> topology(new NetnsTopology());
    const std::string p = "splf" + std::to_string(::getpid());
    topology->prefix_ = p;
    const std::string c = p + "c", s = p + "s", v = p + "v";
    // veth ends are created directly inside their namespaces: no name ever exists in the
    // namespace the tests run in, so concurrent runs cannot collide.
    const std::string script =
        "set -e; ip netns add " + c + "; ip netns add " + s + "; ip netns add " + v + ";" +
        " ip link add a0 netns " + c + " type veth peer name a1 netns " + s + ";" +
        " ip link add b0 netns " + v + " type veth peer name b1 netns " + s + ";" + " ip -n " + c +
        " addr add 198.18.0.1/24 dev a0;" + " ip -n " + s + " addr add 198.18.0.2/24 dev a1;" +
        " ip -n " + s + " addr add 198.18.1.2/24 dev b1;" + " ip -n " + v +
        " addr add 198.18.1.1/24 dev b0;" + " for n in " + c + " " + s + " " + v +
        "; do ip -n $n link set lo up; done;" + " ip -n " + c + " link set a0 up; ip -n " + s +
        " link set a1 up;" + " ip -n " + s + " link set b1 up; ip -n " + v + " link set b0 up;" +
        " ip -n " + c + " route add default via 198.18.0.2;" + " ip -n " + v +
        " route add default via 198.18.1.2;" + " ip netns exec " + s +
        " sysctl -qw net.ipv4.ip_forward=1";
    const CommandResult made = run_command(script);
    if (made.exit_code != 0) {
        why = "netns setup failed: " + made.output;
        return nullptr;  // the destructor removes whatever was made
    }
    topology->client_ns_ = open_ns(c);
    topology->splicer_ns_ = open_ns(s);
    topology->server_ns_ = open_ns(v);
    return topology;
}

NetnsTopology::~NetnsTopology() {
    // Deleting a namespace deletes its veth ends; the peers go with them.
    (void)run_command("for n in " + prefix_ + "c " + prefix_ + "s " + prefix_ +
                      "v; do ip netns del $n 2>/dev/null; done; true");
}

NetnsTopology::Pair NetnsTopology::connect_through() {
    Pair pair;
    Listening front_listener = listen_in(splicer_ns_.get(), "198.18.0.2");
    pair.client = connect_in_ns(client_ns_.get(), "198.18.0.2", front_listener.port);
    pair.front = accept_from(front_listener);
    Listening server_listener = listen_in(server_ns_.get(), "198.18.1.1");
    pair.back = connect_in_ns(splicer_ns_.get(), "198.18.1.1", server_listener.port);
    pair.server = accept_from(server_listener);
    return pair;
}

std::pair<UniqueFd, UniqueFd> NetnsTopology::connect_direct() {
    Listening server_listener = listen_in(server_ns_.get(), "198.18.1.1");
    UniqueFd client = connect_in_ns(client_ns_.get(), "198.18.1.1", server_listener.port);
    UniqueFd server = accept_from(server_listener);
    return {std::move(client), std::move(server)};
}

}  // namespace splicer::test
