#pragma once
// How a port 80 exchange ends when an operation does not deliver: one table from (phase,
// side, outcome) to splicer's own answer (a status the client is sent) or a close reason (the
// connection ends without one). Pure: the exchange (daemon/http_exchange.h) looks the row up
// and carries it out; what a row means is tested on its own
// (tests/unit/test_http_exchange_table.cpp).

#include <cstdint>
#include <span>
#include <string_view>

namespace splicer::http {

// The phases run strictly one after another, one operation (and its linked timeout) in flight.
enum class Phase : std::uint8_t {
    idle,        // keep-alive: waiting for the first byte of the next request
    read_head,   // reading (and framing) the request head from the client
    connecting,  // connecting to the route's backend
    request,     // sending the upstream head, 100 Continue, then the body
    response,    // reading the response head (and relaying interim 1xx heads)
    relaying,    // the final response head went to the client: relaying its body
    upgrading,   // flushing bytes read past a 101 to the other side, then the data plane
    answering,   // sending splicer's own answer (error or redirect)
    lingering,   // answered and shut: reading what the client still sends, then close
};

enum class Side : std::uint8_t { client = 0, backend = 1 };

// What an operation reported instead of progress. A timeout is the linked timeout firing
// (the operation completes with -ECANCELED); malformed is the parser refusing the bytes.
enum class Outcome : std::uint8_t {
    recv_eof,
    recv_error,
    recv_timeout,
    send_error,  // includes a send of 0 bytes
    send_timeout,
    connect_error,
    connect_timeout,
    malformed,
};

enum class Action : std::uint8_t {
    close,           // end the connection, logging `reason` as how it ended
    answer,          // send splicer's answer `status` (then linger), logging `reason`
    relay_response,  // the backend stopped taking the request: relay what it answered, close
};

// A status of 0 on an answer: the parser's own (400, 413, 431, ...). An empty reason on an
// answer: the caller's detail (the parser's reason, the connect's errno text).
struct Ending {
    Action action = Action::close;
    int status = 0;
    std::string_view reason;

    bool operator==(const Ending&) const = default;
};

struct EndingRow {
    Phase phase;
    Side side;
    Outcome outcome;
    Ending ending;
};

// The rows, for the tests and the docs: each (phase, side, outcome) at most once.
std::span<const EndingRow> ending_table();

// The row for (phase, side, outcome); a combination no operation can produce (none is
// submitted in that phase) closes with "http_state".
Ending ending_for(Phase phase, Side side, Outcome outcome);

inline constexpr std::string_view kUnexpectedEnding = "http_state";

}  // namespace splicer::http
