#pragma once
// Shared by the privileged tests that pin BPF objects themselves, as a daemon's sockmap plane
// does (test_handoff, test_reused_maps), and those that look at a sockhash's verdict or at
// what is pinned (test_reused_maps, test_upgrade).

#include <bpf/bpf.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "bpf/pins.h"
#include "splicer/unique_fd.h"
#include "support/daemon.h"

namespace splicer::test {

// A fresh pin dir of the test's own (test::unique_pin_dir, bpffs mounted where absent),
// opened as a daemon's start opens its own: owned by root, who runs these tests.
inline bpf::PinDir open_root_test_pin_dir() {
    const std::string dir = unique_pin_dir();
    REQUIRE(bpf::ensure_bpffs_mounted(dir));
    auto opened = bpf::PinDir::open(dir, bpf::PinDirOwners{.uids = {0}, .text = "root"});
    INFO((opened ? std::string() : opened.error().message));
    REQUIRE(opened);
    return std::move(opened).value();
}

// The id of the stream verdict attached to the sockhash `sockets_fd` (0: none).
inline std::uint32_t attached_verdict_id(int sockets_fd) {
    __u32 ids[1] = {0};
    __u32 count = 1;
    __u32 flags = 0;
    REQUIRE(bpf_prog_query(sockets_fd, BPF_SK_SKB_STREAM_VERDICT, 0, &flags, ids, &count) == 0);
    return count == 0 ? 0 : ids[0];
}

// The id of the map pinned at `path`, 0 when nothing is pinned there.
inline std::uint32_t pinned_map_id(const std::string& path) {
    const UniqueFd map(bpf_obj_get(path.c_str()));
    if (!map) {
        return 0;
    }
    bpf_map_info info{};
    __u32 length = sizeof(info);
    REQUIRE(bpf_obj_get_info_by_fd(map.get(), &info, &length) == 0);
    return info.id;
}

// The names in the pin dir `dir`, sorted.
inline std::vector<std::string> pin_names(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace splicer::test
