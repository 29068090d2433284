#include "support/edge_netns.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "support/command.h"
#include "support/netns_thread.h"

namespace splicer::test {

std::unique_ptr<EdgeNetns> EdgeNetns::create(std::string& why) {
    std::unique_ptr<EdgeNetns> netns(new EdgeNetns());
    netns->prefix_ = "splsk" + std::to_string(::getpid());
    const std::string c = netns->name(Side::client);
    const std::string e = netns->name(Side::edge);
    const std::string b = netns->name(Side::backend);
    // veth ends are created directly inside their namespaces: no name ever exists in the
    // namespace the tests run in, so concurrent runs cannot collide.
    std::ostringstream script;
    script << "set -e; ip netns add " << c << "; ip netns add " << e << "; ip netns add " << b
           << ";"
           << " ip link add c0 netns " << c << " type veth peer name e0 netns " << e << ";"
           << " ip link add b0 netns " << b << " type veth peer name e1 netns " << e << ";"
           << " ip -n " << c << " addr add " << kClientAddress << "/24 dev c0;"
           << " ip -n " << e << " addr add " << kEdgeFrontAddress << "/24 dev e0;"
           << " ip -n " << e << " addr add " << kEdgeBackAddress << "/24 dev e1;"
           << " ip -n " << b << " addr add " << kBackendAddress << "/24 dev b0;"
           << " for n in " << c << " " << e << " " << b << "; do ip -n $n link set lo up; done;"
           << " ip -n " << c << " link set c0 up; ip -n " << e << " link set e0 up;"
           << " ip -n " << e << " link set e1 up; ip -n " << b << " link set b0 up;"
           << " ip -n " << b << " route add default via " << kEdgeBackAddress;
    const CommandResult made = run_command(script.str());
    if (made.exit_code != 0) {
        why = "netns setup failed: " + made.output;
        return nullptr;  // the destructor removes whatever was made
    }
    return netns;
}

EdgeNetns::~EdgeNetns() {
    // A process left in a namespace keeps it (and its addresses) alive after `ip netns del`:
    // kill them first (the tests' own children are killed by pid before this; this is for a
    // failed test's leftovers). Deleting a namespace deletes its veth ends and their peers.
    (void)run_command("for n in " + name(Side::client) + " " + name(Side::edge) + " " +
                      name(Side::backend) +
                      "; do ip netns pids $n 2>/dev/null | xargs -r kill -9; "
                      "ip netns del $n 2>/dev/null; done; rm -rf /etc/netns/" +
                      name(Side::client) + "; true");
}

std::string EdgeNetns::name(Side side) const {
    switch (side) {
        case Side::client:
            return prefix_ + "c";
        case Side::edge:
            return prefix_ + "e";
        case Side::backend:
            return prefix_ + "b";
    }
    return prefix_;
}

std::vector<std::string> EdgeNetns::command_prefix(Side side) const {
    return {"nsenter", "--net=/run/netns/" + name(side), "--"};
}

std::string EdgeNetns::shell_prefix(Side side) const {
    return "ip netns exec " + name(side) + " ";
}

void EdgeNetns::add_client_host(const std::string& name, const std::string& address) {
    const std::filesystem::path dir = "/etc/netns/" + this->name(Side::client);
    std::filesystem::create_directories(dir);
    std::ofstream hosts(dir / "hosts", std::ios::app);
    hosts << address << " " << name << "\n";
    if (!hosts.flush()) {
        throw std::runtime_error("cannot write " + (dir / "hosts").string());
    }
}

bool EdgeNetns::listening(Side side, std::uint16_t port) const {
    return listening_in_netns(name(side), port);
}

void EdgeNetns::run_inside(Side side, const std::function<void()>& make) const {
    run_in_netns(name(side), make);
}

}  // namespace splicer::test
