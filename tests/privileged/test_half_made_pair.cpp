// The sockmap plane inserts the client, then the backend, into the sockhash. Once the client
// is in, any segment it receives runs the verdict over its whole receive queue (the peeked
// ClientHello included); if the backend's insert is then refused, taking the client out
// again purges whatever the verdict had passed to its psock, so a copy fallback would relay
// a stream missing its start. So a refused second insert ends the pair with RSTs, never
// with the fallback. A pair refused on the first insert (a client that half-closed) still
// goes to the copy plane: tests/privileged/test_daemon_lifecycle.cpp.
//
// Making the second insert fail for real: the kernel refuses a socket that is not
// established, so the backend must half-close after the daemon's connect completed and
// before the daemon pairs. The backend's accept queue is kept full, so the daemon's SYN is
// dropped; the daemon is stopped (SIGSTOP), room is made, the SYN retransmission completes
// the handshake in the kernel, the backend half-closes and the client sends more bytes;
// then the daemon resumes and finds an established client and a closing backend.

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon_test_common.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;

namespace {

// Is there an IPv4 socket in SYN_SENT towards 127.0.0.1:`port` (/proc/net/tcp, state 02)?
bool syn_sent_to(std::uint16_t port) {
    std::ifstream table("/proc/net/tcp");
    std::string line;
    std::getline(table, line);  // header
    char wanted[16];
    std::snprintf(wanted, sizeof(wanted), "0100007F:%04X", port);
    while (std::getline(table, line)) {
        std::istringstream fields(line);
        std::string slot;
        std::string local;
        std::string remote;
        std::string state;
        fields >> slot >> local >> remote >> state;
        if (remote == wanted && state == "02") {
            return true;
        }
    }
    return false;
}

// The process state letter from /proc/PID/stat ('T' once stopped).
char process_state(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto paren = text.rfind(')');
    return paren == std::string::npos || paren + 2 >= text.size() ? '?' : text[paren + 2];
}

template <typename Predicate>
bool wait_until(Predicate done, std::chrono::milliseconds timeout) {
    const auto deadline = test::Clock::now() + timeout;
    while (!done()) {
        if (test::Clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

// Resumes a stopped process when the test leaves, whatever happened.
struct ResumeOnExit {
    pid_t pid;
    ~ResumeOnExit() { ::kill(pid, SIGCONT); }
};

}  // namespace

TEST_CASE("sockmap: a backend closing before its insert ends the pair with RSTs, no fallback",
          "[daemon]") {
    test::require_root();
    // Backlog 0: one queued connection fills the accept queue; later SYNs are dropped.
    test::Listener backend_listener = test::listen_loopback(false, 0);
    const test::SocketAddress backend_address = test::loopback_address(backend_listener.port);
    std::vector<UniqueFd> queued;
    for (int i = 0; i < 8; ++i) {
        UniqueFd filler(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        ::connect(filler.get(), backend_address.get(), backend_address.length);
        pollfd waiting{filler.get(), POLLOUT, 0};
        if (::poll(&waiting, 1, 300) <= 0) {
            break;  // dropped: the queue is full; closing it stops its SYN retransmissions
        }
        queued.push_back(std::move(filler));
    }
    REQUIRE_FALSE(queued.empty());
    REQUIRE_FALSE(syn_sent_to(backend_listener.port));

    const std::uint16_t unused = test::free_port();
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = unused,
                                   .https = unused,
                                   .xmpp = backend_listener.port};
    test::SnikketConfigOptions config;
    config.connect_timeout_seconds = 20;  // the stopped daemon must not time its connect out
    auto daemon = test::start_daemon("sockmap", test::snikket_config(ports, config));

    const std::string header = test::xmpp_stream_header();
    UniqueFd client = test::connect_and_send(ports.listen, header, "");
    REQUIRE(test::routed_line(*daemon, test::local_port(client.get())).has_value());
    // The daemon's SYN went out and was dropped: its connect waits for the retransmission.
    REQUIRE(wait_until([&] { return syn_sent_to(backend_listener.port); }, 5s));
    REQUIRE(::kill(daemon->pid(), SIGSTOP) == 0);
    const ResumeOnExit resume{daemon->pid()};
    REQUIRE(wait_until([&] { return process_state(daemon->pid()) == 'T'; }, 5s));

    // Make room: take the queued fillers. The retransmitted SYN (1 s) then completes the
    // handshake in the kernel while the daemon is stopped.
    test::set_nonblocking(backend_listener.fd.get());
    while (true) {
        UniqueFd filler(::accept4(backend_listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!filler) {
            break;
        }
    }
    queued.clear();
    pollfd incoming{backend_listener.fd.get(), POLLIN, 0};
    REQUIRE(::poll(&incoming, 1, 5000) == 1);
    UniqueFd backend(::accept4(backend_listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(backend.valid());
    test::set_nonblocking(backend.get(), false);
    // The backend is closing: its FIN leaves the daemon's socket in CLOSE_WAIT, which the
    // sockhash refuses. It still reads: a relayed stream would show up here.
    REQUIRE(::shutdown(backend.get(), SHUT_WR) == 0);
    // The client keeps talking meanwhile: these bytes queue up behind its first ones.
    test::write_all(client.get(), std::string(20'000, 'c'));
    std::this_thread::sleep_for(100ms);
    REQUIRE(::kill(daemon->pid(), SIGCONT) == 0);

    // Both sides see a reset; the backend got not one byte of a stream that may lack its start.
    std::uint64_t backend_received = 0;
    const std::string backend_end = test::wait_for_close(backend.get(), 3s, &backend_received);
    std::uint64_t client_received = 0;
    const std::string client_end = test::wait_for_close(client.get(), 3s, &client_received);
    INFO("daemon log:\n" << daemon->log_tail(20));
    CHECK(backend_end == "reset");
    CHECK(backend_received == 0);
    CHECK(client_end == "reset");
    CHECK(client_received == 0);
    const auto closed = daemon->wait_for_log("closed", {}, 5s);
    REQUIRE(closed.has_value());
    CHECK(closed->get("end") == "pair_refused");
    // The fallback was not used: no line, no count.
    CHECK(daemon->logs("sockmap_fallback").empty());
    std::this_thread::sleep_for(1500ms);  // counters are published once a second
    CHECK(test::daemon_counter(*daemon, "sockmap_fallbacks") == 0);
    test::stop_daemon(*daemon);
}
