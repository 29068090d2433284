#pragma once
// Several splicer hosts behind one L4 balancer, in network namespaces (tests/privileged/
// test_scale_out.cpp, docs/scaling-out.md):
//
//   client ns                balancer ns                        host ns 1..N
//   198.18.0.1 --veth-- 198.18.0.2 (the address clients reach)
//                       198.18.1.1 --veth------------------- 198.18.1.2   (host 1)
//                       198.18.2.1 --veth------------------- 198.18.2.2   (host 2) ...
//
// The balancer is a full proxy (HAProxy mode tcp): it opens its own connection to a host and
// names the client in a PROXY header, so nothing forwards IP packets (ip_forward stays 0
// everywhere) and neither the client nor a host has a route to the other: a host sees the
// client's address only through the header. A host's backend runs inside the host's own
// namespace. Everything is made with `ip netns add` under names unique to this process and
// deleted, with every process still inside killed, by the destructor, also when a test fails
// halfway. Nothing routes out of the namespaces.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace splicer::test {

class BalancerNetns {
public:
    static constexpr const char* kClientAddress = "198.18.0.1";
    static constexpr const char* kBalancerFrontAddress = "198.18.0.2";

    // `hosts` host namespaces (1..9). nullptr with the reason in `why` when the namespaces or
    // veths cannot be made.
    static std::unique_ptr<BalancerNetns> create(std::size_t hosts, std::string& why);
    ~BalancerNetns();
    BalancerNetns(const BalancerNetns&) = delete;
    BalancerNetns& operator=(const BalancerNetns&) = delete;

    [[nodiscard]] std::size_t hosts() const { return hosts_; }
    // Host i (0-based) has 198.18.<i+1>.2; the balancer reaches it from 198.18.<i+1>.1.
    [[nodiscard]] static std::string host_address(std::size_t host);
    [[nodiscard]] static std::string balancer_address_towards(std::size_t host);

    // Namespace names, and `nsenter --net=/run/netns/NAME --` for a child's argv (nsenter
    // execs it, so the child's pid stays the program's).
    [[nodiscard]] std::string client_name() const { return prefix_ + "c"; }
    [[nodiscard]] std::string balancer_name() const { return prefix_ + "l"; }
    [[nodiscard]] std::string host_name(std::size_t host) const;
    [[nodiscard]] static std::vector<std::string> command_prefix(const std::string& netns);

    // Sockets are made in a namespace with run_in_netns (support/netns_thread.h).

private:
    BalancerNetns() = default;
    [[nodiscard]] std::vector<std::string> names() const;
    std::string prefix_;
    std::size_t hosts_ = 0;
};

}  // namespace splicer::test
