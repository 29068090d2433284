#include "support/syscall_count.h"

#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace splicer::test {
namespace {

// The tracepoint's id, from tracefs where it is mounted (or under debugfs on older set-ups).
std::uint64_t tracepoint_id(const std::string& name) {
    for (const char* root : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}) {
        std::ifstream file(std::string(root) + "/events/syscalls/sys_enter_" + name + "/id");
        std::uint64_t id = 0;
        if (file >> id) {
            return id;
        }
    }
    throw std::runtime_error("syscall count: no tracepoint syscalls:sys_enter_" + name +
                             " in tracefs (is it mounted, CONFIG_FTRACE_SYSCALLS?)");
}

}  // namespace

SyscallCount::SyscallCount(pid_t pid, const std::string& name) : name_(name) {
    perf_event_attr attr{};
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_TRACEPOINT;
    attr.config = tracepoint_id(name);
    attr.inherit = 1;  // threads the counted ones start later are counted too
    const std::filesystem::path tasks = "/proc/" + std::to_string(pid) + "/task";
    std::error_code error;
    for (const auto& task : std::filesystem::directory_iterator(tasks, error)) {
        const auto tid = static_cast<pid_t>(std::stol(task.path().filename().string()));
        const long fd =
            ::syscall(SYS_perf_event_open, &attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
        if (fd < 0) {
            if (errno == ESRCH) {
                continue;  // the thread ended meanwhile
            }
            throw std::runtime_error("syscall count: perf_event_open for thread " +
                                     std::to_string(tid) + ": " + std::strerror(errno));
        }
        counters_.emplace_back(static_cast<int>(fd));
    }
    if (error || counters_.empty()) {
        throw std::runtime_error("syscall count: no thread of pid " + std::to_string(pid) +
                                 " to count");
    }
}

std::uint64_t SyscallCount::total() const {
    std::uint64_t sum = 0;
    for (const UniqueFd& counter : counters_) {
        std::uint64_t value = 0;
        if (::read(counter.get(), &value, sizeof(value)) != static_cast<ssize_t>(sizeof(value))) {
            throw std::runtime_error("syscall count: reading a counter: " +
                                     std::string(std::strerror(errno)));
        }
        sum += value;
    }
    return sum;
}

}  // namespace splicer::test
