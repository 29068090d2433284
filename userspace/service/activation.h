#pragma once
// Socket activation (systemd.socket(5), as sslh ships splicer.socket's counterpart): systemd
// binds the listen addresses itself, keeps the sockets across restarts, and passes them to the
// daemon as fds 3.. with LISTEN_FDS / LISTEN_PID. The daemon takes each passed socket for the
// listen entry (443-style or http) with the same address and port; a listen entry no socket
// was passed for is bound as usual, and a passed socket that no listen entry names stops the
// start (a unit and a config that disagree would otherwise leave a port nobody serves).

#include <optional>
#include <string>
#include <vector>

#include "net/address.h"
#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::service {

class ActivatedListeners {
public:
    // Takes the sockets systemd passed (none when not socket-activated) and clears LISTEN_*
    // from the environment. An fd that is not a listening TCP socket is an error.
    static Result<ActivatedListeners> take();

    // The passed socket bound to exactly `address` (family, address, port), handed over; none
    // when systemd passed no such socket.
    std::optional<UniqueFd> claim(const net::SocketAddress& address);
    // An error naming every passed socket no listen entry claimed.
    [[nodiscard]] Result<void> check_all_claimed() const;
    [[nodiscard]] bool empty() const { return sockets_.empty(); }

private:
    struct Passed {
        UniqueFd fd;
        net::SocketAddress address;
        int number = 0;  // the fd number systemd passed it as, for messages
    };
    std::vector<Passed> sockets_;
};

// True when both name the same family, address and port.
bool same_endpoint(const net::SocketAddress& a, const net::SocketAddress& b);

}  // namespace splicer::service
