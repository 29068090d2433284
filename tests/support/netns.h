#pragma once
// Three network namespaces joined by two veth pairs, for data-plane tests that want a real
// link instead of loopback (1500-byte MTU, a device queue, transmit completions):
//
//   client ns  198.18.0.1 --veth-- 198.18.0.2  splicer ns  198.18.1.2 --veth-- 198.18.1.1  server ns
//
// Namespaces are made with `ip netns add` under names unique to this process and deleted by
// the destructor. Sockets are created in a namespace by switching only the calling thread
// there for the socket() call; a socket stays in the namespace it was created in.

#include <memory>
#include <string>
#include <utility>

#include "splicer/unique_fd.h"

namespace splicer::test {

class NetnsTopology {
public:
    // nullptr (with a reason in `why`) when namespaces or veths cannot be made here.
    static std::unique_ptr<NetnsTopology> create(std::string& why);
    ~NetnsTopology();
    NetnsTopology(const NetnsTopology&) = delete;
    NetnsTopology& operator=(const NetnsTopology&) = delete;

    // client <-> front over the first veth (front accepted in the splicer namespace), and
    // back <-> server over the second (back connected from the splicer namespace).
    struct Pair {
        UniqueFd client;
        UniqueFd front;
        UniqueFd back;
        UniqueFd server;
    };
    Pair connect_through();

    // A plain client <-> server connection across both links, routed through the splicer
    // namespace by the kernel (IP forwarding): the "direct" baseline on the same wires.
    std::pair<UniqueFd, UniqueFd> connect_direct();

private:
    NetnsTopology() = default;
    std::string prefix_;
    UniqueFd client_ns_;
    UniqueFd splicer_ns_;
    UniqueFd server_ns_;
};

}  // namespace splicer::test
