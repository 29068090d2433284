// The port 80 exchange's endings (http/exchange_table.h): how each phase ends when a recv,
// send or connect does not deliver. The expected rows are what the proxy answered before the
// exchange had a table (the http_*.cpp branches of the event loop), so a change shows here.

#include <catch2/catch.hpp>

#include <set>
#include <tuple>

#include "http/exchange_table.h"

using splicer::http::Action;
using splicer::http::Ending;
using splicer::http::ending_for;
using splicer::http::ending_table;
using splicer::http::EndingRow;
using splicer::http::Outcome;
using splicer::http::Phase;
using splicer::http::Side;

namespace {

const char* phase_name(Phase phase) {
    switch (phase) {
        case Phase::idle: return "idle";
        case Phase::read_head: return "read_head";
        case Phase::connecting: return "connecting";
        case Phase::request: return "request";
        case Phase::response: return "response";
        case Phase::relaying: return "relaying";
        case Phase::upgrading: return "upgrading";
        case Phase::answering: return "answering";
        case Phase::lingering: return "lingering";
    }
    return "?";
}

}  // namespace

TEST_CASE("unit: http exchange endings answer the client until the final head is sent",
          "[http][exchange]") {
    using enum Phase;
    using enum Outcome;
    const Ending kParser{Action::answer, 0, {}};  // the parser's status and reason
    const auto [phase, side, outcome, expected] =
        GENERATE_COPY(table<Phase, Side, Outcome, Ending>({
            {idle, Side::client, recv_eof, {Action::close, 0, "done"}},
            {idle, Side::client, recv_error, {Action::close, 0, "done"}},
            {idle, Side::client, recv_timeout, {Action::close, 0, "idle"}},
            {read_head, Side::client, recv_timeout, {Action::answer, 408, "header timeout"}},
            {read_head, Side::client, recv_eof, {Action::close, 0, "client_closed"}},
            {read_head, Side::client, recv_error, {Action::close, 0, "client_error"}},
            {read_head, Side::client, malformed, kParser},
            {connecting, Side::backend, connect_error, {Action::answer, 502, {}}},
            {connecting, Side::backend, connect_timeout,
             {Action::answer, 504, "backend connect timeout"}},
            {request, Side::client, recv_timeout, {Action::answer, 408, "body timeout"}},
            {request, Side::client, recv_eof, {Action::close, 0, "client_closed"}},
            {request, Side::client, malformed, kParser},
            {request, Side::client, send_timeout, {Action::close, 0, "send_timeout"}},
            {request, Side::backend, send_error, {Action::relay_response, 0, {}}},
            {request, Side::backend, send_timeout, {Action::answer, 504, "backend send timeout"}},
            {response, Side::backend, recv_eof, {Action::answer, 502, "backend closed"}},
            {response, Side::backend, recv_error, {Action::answer, 502, "backend recv failed"}},
            {response, Side::backend, recv_timeout,
             {Action::answer, 504, "backend response timeout"}},
            {response, Side::backend, malformed, {Action::answer, 502, {}}},
            {relaying, Side::backend, recv_eof, {Action::close, 0, "backend_closed"}},
            {relaying, Side::backend, recv_error, {Action::close, 0, "backend_closed"}},
            {relaying, Side::backend, recv_timeout, {Action::close, 0, "backend_timeout"}},
            {relaying, Side::backend, malformed, {Action::close, 0, "backend_garbage"}},
            {relaying, Side::client, send_error, {Action::close, 0, "send_error"}},
            {upgrading, Side::backend, send_error, {Action::close, 0, "send_error"}},
            {answering, Side::client, send_timeout, {Action::close, 0, "send_timeout"}},
            {lingering, Side::client, recv_eof, {Action::close, 0, "answered"}},
            {lingering, Side::client, recv_timeout, {Action::close, 0, "answered"}},
        }));
    CAPTURE(phase_name(phase), static_cast<int>(side), static_cast<int>(outcome));
    const Ending got = ending_for(phase, side, outcome);
    CHECK(static_cast<int>(got.action) == static_cast<int>(expected.action));
    CHECK(got.status == expected.status);
    CHECK(got.reason == expected.reason);
}

TEST_CASE("unit: http exchange table has one row per key and rows that can be carried out",
          "[http][exchange]") {
    std::set<std::tuple<Phase, Side, Outcome>> keys;
    for (const EndingRow& row : ending_table()) {
        CAPTURE(phase_name(row.phase), static_cast<int>(row.side), static_cast<int>(row.outcome));
        CHECK(keys.insert({row.phase, row.side, row.outcome}).second);
        const Ending& ending = row.ending;
        switch (ending.action) {
            case Action::close: CHECK_FALSE(ending.reason.empty()); break;
            case Action::answer:
                // 0: the parser's own status; otherwise splicer's 4xx/5xx.
                CHECK((ending.status == 0 || (ending.status >= 400 && ending.status < 600)));
                break;
            case Action::relay_response:
                CHECK(row.phase == Phase::request);
                CHECK(row.side == Side::backend);
                break;
        }
        // Once the final head went out, or after splicer answered, the client cannot be
        // answered again: those phases only close.
        if (row.phase == Phase::relaying || row.phase == Phase::upgrading ||
            row.phase == Phase::answering || row.phase == Phase::lingering ||
            row.phase == Phase::idle) {
            CHECK(ending.action == Action::close);
        }
        // Each row is what ending_for finds.
        CHECK(ending_for(row.phase, row.side, row.outcome) == ending);
    }
}

TEST_CASE("unit: http exchange ending with no row closes as http_state", "[http][exchange]") {
    // No operation on the backend is in flight while idle or lingering.
    const Ending idle = ending_for(Phase::idle, Side::backend, Outcome::recv_eof);
    CHECK(idle.action == Action::close);
    CHECK(idle.reason == splicer::http::kUnexpectedEnding);
    CHECK(ending_for(Phase::lingering, Side::backend, Outcome::send_error).reason ==
          splicer::http::kUnexpectedEnding);
}
