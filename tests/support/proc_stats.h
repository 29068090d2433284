#pragma once
// What /proc says about the machine and a process: memory available, open fds, and the
// pinned BPF maps under a pin dir with their entry counts (to prove nothing is left over).

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace splicer::test {

// "Name:\tvalue" from /proc/PID/status: the value ("" when absent or unreadable).
std::string proc_status_field(pid_t pid, const std::string& name);

// MemAvailable from /proc/meminfo, in bytes (nullopt if unreadable).
std::optional<std::uint64_t> mem_available();

// The third (maximum) field of net.ipv4.tcp_wmem / tcp_rmem: how far autotuning may grow one
// socket's send / receive buffer. 0 when unreadable.
struct TcpBufferLimits {
    std::uint64_t send_max = 0;
    std::uint64_t receive_max = 0;
};
TcpBufferLimits tcp_buffer_limits();

// VmRSS from /proc/PID/status, in bytes (nullopt if unreadable).
std::optional<std::uint64_t> resident_bytes(pid_t pid);
// RssAnon: the part of VmRSS that is the process's own memory (heap, stacks, anonymous
// maps), without the pages of its binary and libraries that running new code paths maps in.
std::optional<std::uint64_t> resident_anonymous_bytes(pid_t pid);

// Entries of /proc/PID/fd (-1 when unreadable), and what they point to (for failure messages).
int open_fd_count(pid_t pid);
std::vector<std::string> open_fd_targets(pid_t pid);

// The process's io-wq worker threads (`iou-wrk-PID` in /proc/PID/task/*/comm): the kernel makes
// one when it hands a ring's request to a blocking worker, and an idle one exits after ~5 s.
// 0 when unreadable.
std::size_t io_wq_workers(pid_t pid);

struct PinnedObject {
    std::string path;
    std::string kind;            // "map", "prog", "link" or "other"
    std::uint32_t map_type = 0;  // BPF_MAP_TYPE_* for maps
    std::uint32_t max_entries = 0;
    // Keys present, counted with BPF_MAP_GET_NEXT_KEY (maps with keys only: hash, sockhash,
    // sockmap, lru; nullopt for arrays, whose entries always exist).
    std::optional<std::uint64_t> entries;
};

// Every pinned object below `dir` (recursively). Empty when the dir does not exist.
std::vector<PinnedObject> pinned_objects(const std::string& dir);

// True for map types whose entries come and go (hash, lru hash, sockhash, sockmap).
bool map_type_has_keys(std::uint32_t map_type);

// CPU time (user + system) a process has used so far, from /proc/PID/stat; nullopt when
// unreadable. A daemon that spins shows it here, whatever the machine's load.
std::optional<std::chrono::milliseconds> cpu_time(pid_t pid);

// How long a process's main thread waited, runnable, for a CPU so far (the second field of
// /proc/PID/schedstat); nullopt when unreadable. Tells a slow daemon from a busy machine.
std::optional<std::chrono::milliseconds> run_queue_wait(pid_t pid);

// RLIMIT_NOFILE soft limit raised to at least `wanted` (up to the hard limit); returns the
// soft limit now in force.
std::uint64_t raise_fd_limit(std::uint64_t wanted);

}  // namespace splicer::test
