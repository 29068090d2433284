#pragma once
// What serves a connection once the loop is done deciding where it goes: its data plane
// (daemon/plane_handler.h) or, on port 80, its HTTP exchange (daemon/http_exchange.h). The
// connection record holds exactly one, as opaque state; the loop only starts it, hands it the
// completions of the operations it submitted (uring::Owner::handler, its own operation codes
// inside) and tears it down. A new kind of connection (TLS termination) is a new handler, not
// a new io_uring owner nor new fields in the record.

#include <cstddef>
#include <cstdint>

namespace splicer::daemon {

struct Connection;

// What a handler asks of the loop beyond its own operations (each kind adds its own context:
// plane::PlaneContext, HttpContext).
class HandlerContext {
public:
    // Removes the pending timeout this connection's handler submitted as operation `op`
    // (with arg 0); the removal itself is the connection's own operation.
    virtual void remove_handler_timeout(Connection& connection, std::uint8_t op) = 0;

protected:
    ~HandlerContext() = default;
};

class ConnectionHandler {
public:
    ConnectionHandler() = default;
    ConnectionHandler(const ConnectionHandler&) = delete;
    ConnectionHandler& operator=(const ConnectionHandler&) = delete;
    virtual ~ConnectionHandler() = default;

    // Installed on its connection: submit the first operations.
    virtual void start() = 0;
    // A completion of an operation this handler submitted: its own operation code (its enum's
    // value) and the argument it tagged it with. Also while the connection is closing: each
    // handler decides what a late completion may still do.
    virtual void on_completion(std::uint8_t op, std::uint8_t arg, int result,
                               std::uint32_t flags) = 0;
    // The connection is closing (closed or aborted, by the handler or by the daemon): its
    // sockets are shut down, which ends every pending recv, send and poll, but not a timeout:
    // remove those here, so the slot is freed without waiting for them.
    virtual void on_closing(HandlerContext& /*context*/) {}
    // Payload bytes delivered in `direction` (plane::kClientToBackend or kBackendToClient),
    // for the close log; after teardown, which may still count some (the sockmap plane).
    // An HTTP exchange counts its own on its access lines: 0 here.
    [[nodiscard]] virtual std::uint64_t bytes(std::size_t /*direction*/) const { return 0; }
    // The connection is closing and no operation is in flight any more; called once, before
    // its sockets are closed.
    virtual void teardown() {}
};

}  // namespace splicer::daemon
