#pragma once
// Counts the system calls of one kind a running process makes, on all its threads: one perf
// counter on the syscalls:sys_enter_NAME tracepoint per thread (Linux tracefs), read on
// demand. For tests that bound what an operation costs the daemon in calls, a figure the load
// of the machine does not move (unlike its CPU time).

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "splicer/unique_fd.h"

namespace splicer::test {

class SyscallCount {
public:
    // Starts counting `name` (e.g. "bpf", "getsockopt") on every thread `pid` has now, and
    // on threads those start later (inherited). Throws when tracefs or perf cannot count it:
    // a test that needs the figure must fail then, not pass without it.
    SyscallCount(pid_t pid, const std::string& name);
    SyscallCount(const SyscallCount&) = delete;
    SyscallCount& operator=(const SyscallCount&) = delete;
    SyscallCount(SyscallCount&&) noexcept = default;
    SyscallCount& operator=(SyscallCount&&) noexcept = default;
    ~SyscallCount() = default;

    // Calls made since construction, summed over the threads.
    [[nodiscard]] std::uint64_t total() const;
    [[nodiscard]] const std::string& name() const { return name_; }

private:
    std::string name_;
    std::vector<UniqueFd> counters_;  // one per thread
};

}  // namespace splicer::test
