#include "support/proc_stats.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <system_error>

#include "splicer/unique_fd.h"

namespace splicer::test {

namespace {

// A "Key:   123 kB" line of a /proc file, in bytes.
std::optional<std::uint64_t> kilobyte_field(const std::string& path, std::string_view wanted) {
    std::ifstream in(path);
    std::string key;
    std::string rest;
    while (in >> key) {
        std::uint64_t value = 0;
        if (key == wanted && in >> value) {
            return value * 1024;
        }
        std::getline(in, rest);
    }
    return std::nullopt;
}

std::uint64_t third_field(const char* path) {
    std::ifstream in(path);
    std::uint64_t min = 0;
    std::uint64_t initial = 0;
    std::uint64_t max = 0;
    if (in >> min >> initial >> max) {
        return max;
    }
    return 0;
}

}  // namespace

std::string proc_status_field(pid_t pid, const std::string& name) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind(name + ":", 0) == 0) {
            const std::size_t value = line.find_first_not_of(" \t", name.size() + 1);
            return value == std::string::npos ? "" : line.substr(value);
        }
    }
    return "";
}

std::optional<std::uint64_t> mem_available() {
    return kilobyte_field("/proc/meminfo", "MemAvailable:");
}

std::optional<std::uint64_t> resident_bytes(pid_t pid) {
    return kilobyte_field("/proc/" + std::to_string(pid) + "/status", "VmRSS:");
}

std::optional<std::uint64_t> resident_anonymous_bytes(pid_t pid) {
    return kilobyte_field("/proc/" + std::to_string(pid) + "/status", "RssAnon:");
}

TcpBufferLimits tcp_buffer_limits() {
    return {third_field("/proc/sys/net/ipv4/tcp_wmem"), third_field("/proc/sys/net/ipv4/tcp_rmem")};
}

std::optional<std::chrono::milliseconds> cpu_time(pid_t pid) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!std::getline(file, text)) {
        return std::nullopt;
    }
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string field;
    unsigned long long utime = 0;
    unsigned long long stime = 0;
    for (int index = 3; index <= 15 && fields >> field; ++index) {
        if (index == 14) {
            utime = std::stoull(field);
        } else if (index == 15) {
            stime = std::stoull(field);
        }
    }
    const long ticks = ::sysconf(_SC_CLK_TCK);
    return std::chrono::milliseconds((utime + stime) * 1000 / static_cast<unsigned long long>(ticks));
}

std::optional<std::chrono::milliseconds> run_queue_wait(pid_t pid) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/schedstat");
    unsigned long long running_ns = 0;
    unsigned long long waiting_ns = 0;
    if (!(file >> running_ns >> waiting_ns)) {
        return std::nullopt;
    }
    return std::chrono::milliseconds(waiting_ns / 1'000'000);
}

int open_fd_count(pid_t pid) {
    std::error_code error;
    std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", error);
    if (error) {
        return -1;
    }
    int count = 0;
    for (const auto& entry : it) {
        (void)entry;
        ++count;
    }
    return count;
}

std::size_t io_wq_workers(pid_t pid) {
    std::size_t count = 0;
    std::error_code error;
    std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/task", error);
    if (error) {
        return 0;
    }
    for (const auto& task : it) {
        std::ifstream comm(task.path() / "comm");
        std::string name;
        std::getline(comm, name);
        count += name.rfind("iou-wrk", 0) == 0 ? 1 : 0;
    }
    return count;
}

std::vector<std::string> open_fd_targets(pid_t pid) {
    std::vector<std::string> targets;
    std::error_code error;
    std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", error);
    if (error) {
        return targets;
    }
    for (const auto& entry : it) {
        std::error_code link_error;
        const auto target = std::filesystem::read_symlink(entry.path(), link_error);
        targets.push_back(entry.path().filename().string() + " -> " +
                          (link_error ? std::string("?") : target.string()));
    }
    return targets;
}

bool map_type_has_keys(std::uint32_t map_type) {
    switch (map_type) {
        case BPF_MAP_TYPE_HASH:
        case BPF_MAP_TYPE_PERCPU_HASH:
        case BPF_MAP_TYPE_LRU_HASH:
        case BPF_MAP_TYPE_LRU_PERCPU_HASH:
        case BPF_MAP_TYPE_SOCKHASH:
            return true;
        default:
            return false;
    }
}

namespace {

// /proc/self/fdinfo/FD of a BPF object: "map_type:\t18", "key_size:\t8", "prog_type:..." lines.
struct FdInfo {
    std::string kind = "other";
    std::uint32_t map_type = 0;
    std::uint32_t key_size = 0;
    std::uint32_t max_entries = 0;
};

FdInfo read_fdinfo(int fd) {
    FdInfo info;
    std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string key;
        std::uint64_t value = 0;
        fields >> key >> value;
        if (key == "map_type:") {
            info.kind = "map";
            info.map_type = static_cast<std::uint32_t>(value);
        } else if (key == "key_size:") {
            info.key_size = static_cast<std::uint32_t>(value);
        } else if (key == "max_entries:") {
            info.max_entries = static_cast<std::uint32_t>(value);
        } else if (key == "prog_type:") {
            info.kind = "prog";
        } else if (key == "link_type:") {
            info.kind = "link";
        }
    }
    return info;
}

std::uint64_t count_keys(int map_fd, std::uint32_t key_size, std::uint32_t max_entries) {
    std::vector<unsigned char> key(key_size);
    std::vector<unsigned char> next(key_size);
    std::uint64_t count = 0;
    const void* previous = nullptr;  // nullptr asks for the first key
    // Bounded: a map cannot hold more than max_entries keys (plus slack for concurrent churn).
    const std::uint64_t bound = static_cast<std::uint64_t>(max_entries) * 2 + 16;
    while (count < bound && bpf_map_get_next_key(map_fd, previous, next.data()) == 0) {
        ++count;
        key.swap(next);
        previous = key.data();
    }
    return count;
}

}  // namespace

std::vector<PinnedObject> pinned_objects(const std::string& dir) {
    std::vector<PinnedObject> objects;
    std::error_code error;
    std::filesystem::recursive_directory_iterator it(dir, error);
    if (error) {
        return objects;
    }
    for (const auto& entry : it) {
        std::error_code type_error;
        if (entry.is_directory(type_error)) {
            continue;
        }
        PinnedObject object;
        object.path = entry.path().string();
        const UniqueFd fd(bpf_obj_get(object.path.c_str()));
        if (fd) {
            const FdInfo info = read_fdinfo(fd.get());
            object.kind = info.kind;
            object.map_type = info.map_type;
            object.max_entries = info.max_entries;
            if (info.kind == "map" && map_type_has_keys(info.map_type)) {
                object.entries = count_keys(fd.get(), info.key_size, info.max_entries);
            }
        }
        objects.push_back(std::move(object));
    }
    return objects;
}

std::uint64_t raise_fd_limit(std::uint64_t wanted) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return 0;
    }
    if (limit.rlim_cur < wanted) {
        limit.rlim_cur =
            limit.rlim_max == RLIM_INFINITY ? wanted : std::min<rlim_t>(wanted, limit.rlim_max);
        ::setrlimit(RLIMIT_NOFILE, &limit);
        ::getrlimit(RLIMIT_NOFILE, &limit);
    }
    return limit.rlim_cur;
}

}  // namespace splicer::test
