// A TLS client that sends its request and then a bare FIN (shutdown(SHUT_WR), no
// close_notify) still gets the whole response, as nginx gives it: the FIN ends the client's
// input, not the TLS session, so the response goes out encrypted afterwards. Checked on a
// fresh connection (the request and the FIN right after the handshake) and on a keep-alive
// connection that served a request first, with a response of many records compared byte for
// byte, and a client connected before and after served throughout.

#include <sys/socket.h>

#include "http_test_common.h"
#include "support/raw_client.h"
#include "support/streams.h"
#include "support/tls_test_client.h"
#include "tls_termination_common.h"

using namespace splicer::test;

namespace {

// Many TLS records (16 KiB each at most), so a session that stops writing after the FIN
// fails the comparison wherever it stops.
constexpr std::size_t kBodyBytes = 1 << 20;

}  // namespace

TEST_CASE(
    "tls termination: a request followed by a bare FIN without close_notify gets the whole "
    "response byte-exact",
    "[daemon][tls_termination]") {
    require_root();
    TerminatingSite site;
    auto daemon = start_daemon("copy", terminating_config(site));
    INFO(daemon->log_tail(30));
    TlsTestClient bystander({.port = site.listen, .servername = "chat.example.com"});
    check_served(bystander, "/bystander-before");

    const bool request_before = GENERATE(false, true);
    CAPTURE(request_before);
    TlsTestClient client({.port = site.listen, .servername = "chat.example.com"});
    if (request_before) {
        check_served(client, "/first");  // the keep-alive connection works before the FIN
    }
    const std::string path = "/huge/" + std::to_string(kBodyBytes);
    REQUIRE(client.write(keep_alive_get(path)));
    REQUIRE(::shutdown(client.fd(), SHUT_WR) == 0);  // a FIN, no close_notify

    const HttpResponse answer = client.read_response();
    CAPTURE(answer.raw_head);
    REQUIRE(answer.complete);
    CHECK(answer.status == 200);
    REQUIRE(answer.body.size() == kBodyBytes);
    CHECK(answer.body == ByteGenerator(kHugeSeed).take(kBodyBytes));
    // Then the daemon ends the connection in order, no reset. Read below TLS: the client's
    // own libssl would answer a FIN with an alert, a write after its shutdown (SIGPIPE).
    const std::string ending = wait_for_close(client.fd(), std::chrono::seconds(5));
    CHECK(ending == "eof");

    const auto served = access_line(*daemon, path, 200);
    REQUIRE(served.has_value());
    // The connection opened before is still served, and so is a new one.
    check_served(bystander, "/bystander-after");
    TlsTestClient after({.port = site.listen, .servername = "chat.example.com"});
    check_served(after, "/after");
    stop_daemon(*daemon);
}
