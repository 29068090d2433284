#pragma once
// The self-test's steps (sockmap_selftest.h), one function each. Each makes its own loopback
// pair, pairs it through the program, and answers ok or what went wrong by `deadline`.

#include "selftest/exchange.h"
#include "splicer/result.h"
#include "splicer/splice_program.h"

namespace splicer::selftest {

// Bytes already queued on both sockets when they enter the sockhash reach the far ends once
// kicked (kernel fact 1: they are stuck until a wake-up).
Result<void> step_queued_before_insertion(bpf::SpliceProgram& program, Clock::time_point deadline);
// A hello-sized first write, peeked, then more bytes written while the pair is made: all of
// it arrives, in order (bytes before, during and after insertion).
Result<void> step_pipelined_behind_hello(bpf::SpliceProgram& program, Clock::time_point deadline);
// A few hundred KiB each way at once arrive byte-exact.
Result<void> step_byte_exact_both_ways(bpf::SpliceProgram& program, Clock::time_point deadline);
// The client's shutdown(SHUT_WR) reaches the server as EOF after every byte before it, and
// the server's reply still flows back whole.
Result<void> step_half_close(bpf::SpliceProgram& program, Clock::time_point deadline);
// A sink that reads nothing until its buffer is full makes the verdict pass bytes up (flow
// control, kernel fact 2); once it reads, it gets every byte, in order, through the copy.
Result<void> step_flow_control_pass(bpf::SpliceProgram& program, Clock::time_point deadline);
// poll() wakes up for bytes arriving on a socket while it waits, and FIONREAD counts them:
// on the far end for redirected bytes, and on the paired socket itself for passed ones.
Result<void> step_readiness_and_fionread(bpf::SpliceProgram& program, Clock::time_point deadline);

}  // namespace splicer::selftest
