#pragma once
// Raw clients for routing and pipelining: a libssl ClientHello (or an XMPP stream header)
// followed by arbitrary bytes, written in ONE send() so they reach the listener together,
// plus helpers to match the daemon's log lines to a client (connect_to, local_address and
// local_port live in sockets.h).

#include <chrono>
#include <cstdint>
#include <string>

#include "splicer/unique_fd.h"
#include "support/client_hello.h"
#include "support/log_lines.h"
#include "support/sockets.h"

namespace splicer::test {

// A plain XMPP client's opening: XML declaration and <stream:stream> start tag.
std::string xmpp_stream_header(const std::string& to = "chat.example.com");

// Connects and writes `first` followed by `then` with a single send() (looping only if the
// kernel takes part of it). The whole buffer is handed to the kernel in one call.
UniqueFd connect_and_send(std::uint16_t port, const std::string& first, const std::string& then,
                          bool ipv6 = false);

// Connects and sends make_client_hello(hello) followed by `pipelined`, in one send().
// libssl makes a different hello each time (random, key shares): `sent_hello` gets this one.
UniqueFd send_client_hello(std::uint16_t port, const HelloOptions& hello,
                           const std::string& pipelined = "", bool ipv6 = false,
                           std::string* sent_hello = nullptr);

// True when the line's `client` field names this local port (matched on the ":PORT" suffix,
// so "[::1]:P", "::1:P" and "127.0.0.1:P" all match).
bool log_line_is_client(const LogLine& line, std::uint16_t client_port);

// Waits up to `timeout` for the peer to end the connection: "eof", "reset", or "open" if it
// did not (bytes that arrive meanwhile are counted into `received`, if given).
std::string wait_for_close(int fd, std::chrono::milliseconds timeout,
                           std::uint64_t* received = nullptr);

}  // namespace splicer::test
