#pragma once
// The calling thread in a named network namespace (`ip netns add NAME`, /run/netns/NAME) for
// as long as a socket takes to be made there, and what listens in one. Shared by the
// namespace topologies of the tests (edge_netns.h, balancer_netns.h).

#include <cstdint>
#include <functional>
#include <string>

namespace splicer::test {

// Calls `make` with the calling thread in namespace `name`, then moves it back (also when
// `make` throws): the sockets `make` creates stay there, as a socket belongs to the namespace
// it was created in. Throws std::runtime_error when the namespace cannot be entered.
void run_in_netns(const std::string& name, const std::function<void()>& make);

// True when something listens on TCP `port` in namespace `name` (`ss -tln` there).
bool listening_in_netns(const std::string& name, std::uint16_t port);

}  // namespace splicer::test
