// Hostile clients against a terminating listener (issue 14): a garbage record right after a
// valid ClientHello, a client that completes the handshake and then sends nothing, a client
// that leaves mid-handshake. Each is closed, logged and counted, and a keep-alive client
// connected before them, and a new one after, are served meanwhile.

#include <sys/socket.h>

#include "support/client_hello.h"
#include "support/raw_client.h"
#include "support/sockets.h"
#include "support/tls_test_client.h"
#include "tls_termination_common.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

constexpr int kHeaderTimeout = 2;

// The server's answer to whatever was sent, read until it closes: how it ended and after how
// long.
struct Ending {
    std::string how;  // wait_for_close's "eof" / "reset" / "open"
    std::chrono::milliseconds after{0};
};

Ending wait_ended(int fd, std::chrono::milliseconds timeout) {
    const auto start = Clock::now();
    Ending ending;
    ending.how = wait_for_close(fd, timeout);
    ending.after = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    return ending;
}

void check_served(TlsTestClient& client, const std::string& path) {
    const HttpResponse answer =
        client.exchange("GET " + path + " HTTP/1.1\r\nHost: chat.example.com\r\n\r\n");
    CAPTURE(path, answer.raw_head);
    CHECK(answer.complete);
    CHECK(answer.status == 200);
    CHECK(answer.body == "web GET " + path);
}

}  // namespace

TEST_CASE(
    "tls termination: garbage after a ClientHello, a silent client and a client leaving "
    "mid-handshake are closed, logged and counted, others served",
    "[daemon][tls_termination][hostile]") {
    require_root();
    TerminatingSite site;
    auto daemon = start_daemon(
        "copy", terminating_config(site, {.header_timeout = kHeaderTimeout, .idle_timeout = 30}));
    INFO(daemon->log_tail());
    TlsTestClient bystander({.port = site.listen, .servername = "chat.example.com"});
    check_served(bystander, "/bystander-before");

    // 1. A whole, valid ClientHello for a terminated name, then a record of no known type.
    const std::string garbage_record =
        std::string("\x63\x03\x03\x00\x10", 5) + std::string(16, 'Z');
    UniqueFd garbage =
        send_client_hello(site.listen, {.server_name = "chat.example.com"}, garbage_record);
    const Ending garbage_end = wait_ended(garbage.get(), 5s);
    CHECK(garbage_end.how != "open");

    // 2. The handshake, then not a byte: closed once header_timeout has passed.
    TlsTestClient silent({.port = site.listen, .servername = "chat.example.com"});
    const auto silent_start = Clock::now();
    std::string silent_end = "data";
    // An answer (a 408) may come before the close: read past it, a bounded number of times.
    for (int reads = 0; reads < 4 && silent_end == "data"; ++reads) {
        silent_end = silent.wait_for_close(std::chrono::seconds(kHeaderTimeout + 4));
    }
    const auto silent_after = Clock::now() - silent_start;
    CHECK(silent_end != "open");
    CHECK(silent_end != "data");
    CHECK(silent_after >= std::chrono::milliseconds(kHeaderTimeout * 1000 - 300));
    CHECK(silent_after < std::chrono::seconds(kHeaderTimeout + 4));

    // 3. A ClientHello, the server's first flight read, then the client is gone (a RST).
    UniqueFd leaving = send_client_hello(site.listen, {.server_name = "chat.example.com"});
    const std::string flight = read_exactly(leaving.get(), 5, 5000);
    CHECK(flight.size() == 5);
    CHECK(flight.front() == '\x16');  // the server's handshake record: it was terminating
    close_with_reset(std::move(leaving));

    // Others unaffected: the keep-alive client from before, and a new one.
    check_served(bystander, "/bystander-after");
    TlsTestClient newcomer({.port = site.listen, .servername = "chat.example.com"});
    check_served(newcomer, "/newcomer");
    stop_daemon(*daemon);
}
