#include "support/balancer_netns.h"

#include <unistd.h>

#include <sstream>

#include "support/command.h"

namespace splicer::test {

std::unique_ptr<BalancerNetns> BalancerNetns::create(std::size_t hosts, std::string& why) {
    if (hosts == 0 || hosts > 9) {
        why = "BalancerNetns: 1 to 9 hosts";
        return nullptr;
    }
    std::unique_ptr<BalancerNetns> netns(new BalancerNetns());
    netns->prefix_ = "splsl" + std::to_string(::getpid());
    netns->hosts_ = hosts;
    const std::string c = netns->client_name();
    const std::string l = netns->balancer_name();
    // veth ends are created directly inside their namespaces: no name ever exists in the
    // namespace the tests run in, so concurrent runs cannot collide.
    std::ostringstream script;
    script << "set -e; ip netns add " << c << "; ip netns add " << l << ";"
           << " ip link add c0 netns " << c << " type veth peer name f0 netns " << l << ";"
           << " ip -n " << c << " addr add " << kClientAddress << "/24 dev c0;"
           << " ip -n " << l << " addr add " << kBalancerFrontAddress << "/24 dev f0;"
           << " ip -n " << c << " link set c0 up; ip -n " << l << " link set f0 up;";
    for (std::size_t host = 0; host < hosts; ++host) {
        const std::string h = netns->host_name(host);
        const std::string towards = "h" + std::to_string(host);
        script << " ip netns add " << h << ";"
               << " ip link add e0 netns " << h << " type veth peer name " << towards << " netns "
               << l << ";"
               << " ip -n " << h << " addr add " << host_address(host) << "/24 dev e0;"
               << " ip -n " << l << " addr add " << balancer_address_towards(host) << "/24 dev "
               << towards << ";"
               << " ip -n " << h << " link set e0 up; ip -n " << l << " link set " << towards
               << " up;";
    }
    script << " for n in " << c << " " << l;
    for (std::size_t host = 0; host < hosts; ++host) {
        script << " " << netns->host_name(host);
    }
    script << "; do ip -n $n link set lo up; done";
    const CommandResult made = run_command(script.str() + " 2>&1");
    if (made.exit_code != 0) {
        why = "netns setup failed: " + made.output;
        return nullptr;  // the destructor removes whatever was made
    }
    return netns;
}

BalancerNetns::~BalancerNetns() {
    // A process left in a namespace keeps it (and its addresses) alive after `ip netns del`:
    // kill them first (the tests' own children are stopped by pid before this; this is for a
    // failed test's leftovers). Deleting a namespace deletes its veth ends and their peers.
    std::string all;
    for (const std::string& name : names()) {
        all += " " + name;
    }
    (void)run_command("for n in" + all +
                      "; do ip netns pids $n 2>/dev/null | xargs -r kill -9; "
                      "ip netns del $n 2>/dev/null; done; true");
}

std::string BalancerNetns::host_address(std::size_t host) {
    return "198.18." + std::to_string(host + 1) + ".2";
}

std::string BalancerNetns::balancer_address_towards(std::size_t host) {
    return "198.18." + std::to_string(host + 1) + ".1";
}

std::string BalancerNetns::host_name(std::size_t host) const {
    return prefix_ + "h" + std::to_string(host);
}

std::vector<std::string> BalancerNetns::command_prefix(const std::string& netns) {
    return {"nsenter", "--net=/run/netns/" + netns, "--"};
}

std::vector<std::string> BalancerNetns::names() const {
    std::vector<std::string> all = {client_name(), balancer_name()};
    for (std::size_t host = 0; host < hosts_; ++host) {
        all.push_back(host_name(host));
    }
    return all;
}

}  // namespace splicer::test
