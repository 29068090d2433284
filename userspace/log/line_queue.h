#pragma once
// The log's way out: a bounded buffer of finished lines that one writer thread empties into
// stderr, so no log call ever waits on the reader (DESIGN.md: no blocking call on the loop,
// logs included). A journal or a pipe that stops reading fills the buffer; lines that do not
// fit are dropped and counted, and once writing goes on again the writer adds one
// `event=log_dropped dropped=N total=M` line (at most once a second) saying how many.
//
// Why a thread and not O_NONBLOCK on fd 2: fd 2 is usually shared with the parent (a shell,
// systemd's journal stream), and O_NONBLOCK is a property of that shared open file
// description, so setting it would make the parent's own writes fail with EAGAIN; a pipe's
// description cannot be reopened for a socket (journald's stream). The thread keeps plain
// blocking writes, each batch of whole lines written to the end (a partial write continues
// where it stopped), so lines never interleave or break. Lines go out in batches: the writer,
// woken by the first line after a quiet spell, gathers for up to 20 ms (less once 64 KiB or
// a quarter of the buffer wait) and writes them at once, and keeps gathering on its own
// 20 ms timer while lines keep coming, so a busy daemon pays no thread wake, futex call or
// write(2) per line; a line is at most that late, and the stop writes whatever waits.
//
// The thread starts after the privilege drop (capabilities are per thread: one started
// before would keep root's) and stops with a bounded wait at exit: a reader that never comes
// back costs the last lines, never the exit.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace splicer::log {

// The writer thread's name (/proc/PID/task/TID/comm, at most 15 characters).
inline constexpr const char* kWriterThreadName = "splicer-log";

// 1 MiB: about 5,000 lines, several seconds of a busy daemon's log.
inline constexpr std::size_t kDefaultBufferBytes = 1024 * 1024;

// Starts the writer thread (once; later calls do nothing): from now on write() queues.
// `buffer_bytes`: the most bytes of lines waiting at once.
void start_writer(std::size_t buffer_bytes = kDefaultBufferBytes);

// Writes what is queued for up to `flush_within`, then stops the thread. A writer still
// blocked then (nobody reads) is left behind, its lines lost, and later lines are dropped
// too: the process is about to exit. Without a writer, does nothing.
void stop_writer(std::chrono::milliseconds flush_within = std::chrono::milliseconds(1000));

// Lines dropped because the buffer was full (a daemon counter), since the process started.
std::uint64_t dropped_lines();

// Queues `line` (with its newline) when a writer runs, else writes it at once. Used by
// log::write; returns false when the line was dropped.
bool emit(std::string line);

}  // namespace splicer::log
