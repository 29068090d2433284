#pragma once
// Socket set-up and the few socket queries the daemon makes outside io_uring (all
// non-blocking).

#include <cstddef>
#include <cstdint>
#include <optional>

#include "net/address.h"
#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::net {

// A non-blocking listening TCP socket with TCP_NODELAY, which the sockets it accepts inherit.
// IPv6 listeners are IPv6-only, so "::" and "0.0.0.0" on one port can both be configured.
// `shared`: with SO_REUSEPORT, one of a group of listeners on one address, each with its own
// accept queue (net/listen_group.h).
Result<UniqueFd> listen_on(const SocketAddress& address, int backlog, bool shared = false);

// A non-blocking TCP socket of the address's family with TCP_NODELAY, not yet connected.
Result<UniqueFd> stream_socket_for(const SocketAddress& address);

SocketAddress local_address(int fd);
SocketAddress peer_address(int fd);

// The peer of a socket just accepted on a TCP listener, from the address the accept itself
// wrote (`written`, its length as the kernel set it): no getpeername per connection. Only an
// IPv4 or IPv6 address of exactly its family's length is taken; anything else (a listener
// of another kind, a truncated write) is asked of the socket instead (peer_address(fd)).
SocketAddress accepted_peer(const SocketAddress& written, int fd);

// Bytes waiting to be read (SIOCINQ); 0 on error.
std::size_t bytes_readable(int fd);

// Bytes written and not yet acknowledged by the peer (SIOCOUTQ); 0 on error.
std::size_t bytes_unacknowledged(int fd);

// The socket's TCP state as TCP_INFO reports it (TCP_ESTABLISHED, TCP_CLOSE_WAIT, TCP_CLOSE,
// ... as <netinet/tcp.h> numbers them); nullopt when it cannot be read (not a TCP socket).
std::optional<std::uint8_t> tcp_state(int fd);

// poll(POLLIN) on the socket reports readable only once this many bytes are queued.
void set_receive_low_water(int fd, int bytes);

// TCP_NODELAY: a relay must not let Nagle hold a small write for the peer's delayed ACK.
void set_no_delay(int fd);

// O_NONBLOCK on the open file (shared by every fd of it, in every process that holds one).
Result<void> set_nonblocking(int fd);

// A connection waiting in a non-blocking listener's accept queue, accepted (non-blocking,
// close-on-exec) with its peer's address; nullopt when none waits, the accept failed, or
// the listener is blocking (an accept there could wait for the next client).
struct AcceptedClient {
    UniqueFd socket;
    SocketAddress peer;
};
std::optional<AcceptedClient> accept_waiting(int listener);

// Aborts the connection: the peer gets a RST and never a FIN, so it cannot take a stream that
// lost bytes for a complete one. Every operation waiting on the socket wakes with an error.
// (connect(AF_UNSPEC) is tcp_disconnect(): RST, state CLOSE, sk_err ECONNRESET; a later
// shutdown() finds nothing to shut and sends nothing. A plain close is not enough for a
// sockmap socket: its unread bytes may sit in the psock's queue, which tcp_close() does not
// look at, so it sends a FIN, not a RST.)
// True when the disconnect took: the socket is closed, its waiters were woken (with POLLERR,
// checked on 6.18) and its close sends nothing, so the caller needs no shutdown() to wake
// them. False: SO_LINGER 0 was set instead, so the close sends a RST; shut it down to wake.
bool reset_connection(int fd);

}  // namespace splicer::net
