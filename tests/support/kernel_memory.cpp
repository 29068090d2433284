#include "support/kernel_memory.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace splicer::test {

namespace {

std::uint64_t page_size() {
    const long size = ::sysconf(_SC_PAGESIZE);
    return size > 0 ? static_cast<std::uint64_t>(size) : 4096;
}

// slabinfo 2.1: "name active_objs num_objs objsize objperslab pagesperslab : tunables l b s
// : slabdata active_slabs num_slabs sharedavail".
void read_slabinfo(KernelMemory& memory) {
    std::ifstream file("/proc/slabinfo");
    std::string line;
    if (!std::getline(file, line) || line.rfind("slabinfo - version: 2.", 0) != 0) {
        throw std::runtime_error("/proc/slabinfo: unreadable or not version 2.x");
    }
    while (std::getline(file, line)) {
        if (line.empty() || line[0] == '#') {
            continue;
        }
        std::istringstream fields(line);
        std::string name;
        std::uint64_t active_objects = 0;
        std::uint64_t objects = 0;
        std::uint64_t object_size = 0;
        std::uint64_t per_slab = 0;
        std::uint64_t pages_per_slab = 0;
        std::string word;
        fields >> name >> active_objects >> objects >> object_size >> per_slab >> pages_per_slab;
        // Skip to the slabdata group: "slabdata active_slabs num_slabs".
        while (fields >> word && word != "slabdata") {
        }
        std::uint64_t active_slabs = 0;
        std::uint64_t slabs = 0;
        if (!(fields >> active_slabs >> slabs)) {
            throw std::runtime_error("/proc/slabinfo: cannot parse: " + line);
        }
        const std::uint64_t bytes = slabs * pages_per_slab * page_size();
        memory.slab_caches[name] += bytes;
        memory.slab += bytes;
    }
}

void read_sockstat(KernelMemory& memory) {
    std::ifstream file("/proc/net/sockstat");
    std::string line;
    while (std::getline(file, line)) {
        if (line.rfind("TCP:", 0) != 0) {
            continue;
        }
        std::istringstream fields(line.substr(4));
        std::string key;
        std::uint64_t value = 0;
        while (fields >> key >> value) {
            if (key == "mem") {
                memory.tcp = value * page_size();
                return;
            }
        }
    }
    throw std::runtime_error("/proc/net/sockstat: no TCP mem");
}

}  // namespace

KernelMemory kernel_memory() {
    KernelMemory memory;
    read_slabinfo(memory);
    read_sockstat(memory);
    return memory;
}

std::string largest_slab_growth(const KernelMemory& before, const KernelMemory& after,
                                std::size_t count) {
    std::vector<std::pair<std::int64_t, std::string>> growth;
    for (const auto& [name, bytes] : after.slab_caches) {
        const auto found = before.slab_caches.find(name);
        const std::uint64_t was = found == before.slab_caches.end() ? 0 : found->second;
        growth.emplace_back(static_cast<std::int64_t>(bytes) - static_cast<std::int64_t>(was),
                            name);
    }
    std::sort(growth.begin(), growth.end(), [](const auto& a, const auto& b) { return a > b; });
    std::string text;
    for (std::size_t i = 0; i < std::min(count, growth.size()); ++i) {
        text += (i == 0 ? "" : ", ") + growth[i].second + " " + (growth[i].first >= 0 ? "+" : "") +
                std::to_string(growth[i].first / 1024) + " KiB";
    }
    return text;
}

}  // namespace splicer::test
