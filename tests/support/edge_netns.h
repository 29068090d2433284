#pragma once
// An edge host in three network namespaces, for end-to-end tests of real software behind
// splicer (tests/privileged/test_snikket_host.cpp):
//
//   client ns              edge ns (splicer)                 backend ns
//   198.18.0.1 --veth-- 198.18.0.2 | 198.18.1.2 --veth-- 198.18.1.1
//
// The client has no route but its own /24: it reaches the backends only through splicer on
// 198.18.0.2. The backend ns routes everything it does not know back via 198.18.1.2, as a
// host behind a transparent proxy must (its replies to a client's address go to the edge);
// the edge forwards nothing (ip_forward stays 0 there). Everything is made with `ip netns add`
// under names unique to this process and deleted, with every process still inside it
// killed, by the destructor. Nothing routes out of the three namespaces.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace splicer::test {

class EdgeNetns {
public:
    enum class Side { client, edge, backend };
    static constexpr const char* kClientAddress = "198.18.0.1";
    static constexpr const char* kEdgeFrontAddress = "198.18.0.2";  // splicer listens here
    static constexpr const char* kEdgeBackAddress = "198.18.1.2";   // splicer connects from here
    static constexpr const char* kBackendAddress = "198.18.1.1";

    // nullptr with the reason in `why` when the namespaces or veths cannot be made.
    static std::unique_ptr<EdgeNetns> create(std::string& why);
    ~EdgeNetns();
    EdgeNetns(const EdgeNetns&) = delete;
    EdgeNetns& operator=(const EdgeNetns&) = delete;

    [[nodiscard]] std::string name(Side side) const;
    // {"nsenter", "--net=/run/netns/NAME", "--"}: put before an argv (nsenter execs it, so a
    // ChildProcess's pid stays the program's).
    [[nodiscard]] std::vector<std::string> command_prefix(Side side) const;
    // `ip netns exec NAME ` for a shell command line given to run_command.
    [[nodiscard]] std::string shell_prefix(Side side) const;
    // Writes /etc/netns/CLIENT/hosts, which `ip netns exec` (shell_prefix) bind-mounts over
    // /etc/hosts: clients there resolve `name` to `address` as a real client resolves the
    // host's name (SNI and certificate checks use the name). Removed by the destructor.
    void add_client_host(const std::string& name, const std::string& address);
    // True when something listens on TCP `port` in that namespace (`ss -tln`).
    [[nodiscard]] bool listening(Side side, std::uint16_t port) const;
    // Calls `make` with the calling thread in that namespace, then moves it back (also when
    // `make` throws): the sockets `make` creates stay there, as a socket belongs to the
    // namespace it was created in. Throws when the namespace cannot be entered.
    void run_inside(Side side, const std::function<void()>& make) const;

private:
    EdgeNetns() = default;
    std::string prefix_;
};

}  // namespace splicer::test
