// The rows of exchange_table.h. Read a row as: in this phase, when the operation on this side
// reports this, the connection ends like so.

#include "http/exchange_table.h"

#include <array>

namespace splicer::http {

namespace {

using enum Phase;
using enum Outcome;
using Side::backend;
using Side::client;

constexpr Ending close_with(std::string_view reason) { return {Action::close, 0, reason}; }
constexpr Ending answer(int status, std::string_view reason = {}) {
    return {Action::answer, status, reason};
}

constexpr std::array kRows{
    // Waiting for a keep-alive request: nothing is owed, whatever happens.
    EndingRow{idle, client, recv_eof, close_with("done")},
    EndingRow{idle, client, recv_error, close_with("done")},
    EndingRow{idle, client, recv_timeout, close_with("idle")},
    // A request under way: a client too slow gets 408; one that left gets nothing.
    EndingRow{read_head, client, recv_eof, close_with("client_closed")},
    EndingRow{read_head, client, recv_error, close_with("client_error")},
    EndingRow{read_head, client, recv_timeout, answer(408, "header timeout")},
    EndingRow{read_head, client, malformed, answer(0)},
    EndingRow{connecting, backend, connect_error, answer(502)},
    EndingRow{connecting, backend, connect_timeout, answer(504, "backend connect timeout")},
    EndingRow{request, client, recv_eof, close_with("client_closed")},
    EndingRow{request, client, recv_error, close_with("client_error")},
    EndingRow{request, client, recv_timeout, answer(408, "body timeout")},
    EndingRow{request, client, malformed, answer(0)},
    EndingRow{request, client, send_error, close_with("send_error")},  // the 100 Continue
    EndingRow{request, client, send_timeout, close_with("send_timeout")},
    // The backend may have answered before the body (a 401, a 413): relay that.
    EndingRow{request, backend, send_error, {Action::relay_response, 0, {}}},
    EndingRow{request, backend, send_timeout, answer(504, "backend send timeout")},
    // No final head sent yet: the client can still be told.
    EndingRow{response, backend, recv_eof, answer(502, "backend closed")},
    EndingRow{response, backend, recv_error, answer(502, "backend recv failed")},
    EndingRow{response, backend, recv_timeout, answer(504, "backend response timeout")},
    EndingRow{response, backend, malformed, answer(502)},
    EndingRow{response, client, send_error, close_with("send_error")},  // an interim 1xx
    EndingRow{response, client, send_timeout, close_with("send_timeout")},
    // The final head went out: a cut body can only be signalled by closing.
    EndingRow{relaying, backend, recv_eof, close_with("backend_closed")},
    EndingRow{relaying, backend, recv_error, close_with("backend_closed")},
    EndingRow{relaying, backend, recv_timeout, close_with("backend_timeout")},
    EndingRow{relaying, backend, malformed, close_with("backend_garbage")},
    EndingRow{relaying, client, send_error, close_with("send_error")},
    EndingRow{relaying, client, send_timeout, close_with("send_timeout")},
    EndingRow{upgrading, client, send_error, close_with("send_error")},
    EndingRow{upgrading, client, send_timeout, close_with("send_timeout")},
    EndingRow{upgrading, backend, send_error, close_with("send_error")},
    EndingRow{upgrading, backend, send_timeout, close_with("send_timeout")},
    EndingRow{answering, client, send_error, close_with("send_error")},
    EndingRow{answering, client, send_timeout, close_with("send_timeout")},
    // Lingering after an answer: whatever the client does, the answer was given.
    EndingRow{lingering, client, recv_eof, close_with("answered")},
    EndingRow{lingering, client, recv_error, close_with("answered")},
    EndingRow{lingering, client, recv_timeout, close_with("answered")},
};

}  // namespace

std::span<const EndingRow> ending_table() { return kRows; }

Ending ending_for(Phase phase, Side side, Outcome outcome) {
    for (const EndingRow& row : kRows) {
        if (row.phase == phase && row.side == side && row.outcome == outcome) {
            return row.ending;
        }
    }
    return close_with(kUnexpectedEnding);
}

}  // namespace splicer::http
