// The `end=` spelling every plane uses when a call on a pair's socket fails
// (plane/end_reason.h): a peer's RST names the peer, anything else the call and errno name.

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>

#include "daemon/connection.h"
#include "plane/end_reason.h"

using splicer::daemon::kBackendToClient;
using splicer::daemon::kClientToBackend;

TEST_CASE("end reason: a reset names the peer, other errors the call and the errno name",
          "[end_reason]") {
    const auto [call, error, socket, expected] =
        GENERATE(table<const char*, int, std::size_t, std::string>({
            {"recv", ECONNRESET, kClientToBackend, "client_reset"},
            {"recv", ECONNRESET, kBackendToClient, "backend_reset"},
            {"send", EPIPE, kBackendToClient, "backend_reset"},
            {"splice", EPIPE, kClientToBackend, "client_reset"},
            {"recv", ETIMEDOUT, kClientToBackend, "recv_error:ETIMEDOUT"},
            {"send", ENOBUFS, kBackendToClient, "send_error:ENOBUFS"},
            {"splice", EIO, kClientToBackend, "splice_error:EIO"},
            {"send", 0, kClientToBackend, "send_error:0"},        // send() that wrote nothing
            {"recv", 4095, kClientToBackend, "recv_error:4095"},  // no name for it: the number
        }));
    CAPTURE(call, error, socket);
    CHECK(splicer::plane::failed_call(call, error, socket) == expected);
}
