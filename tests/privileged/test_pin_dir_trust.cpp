// Hostile pin dirs (issue 12, point 1). The daemon starts as root and, before its privilege
// drop, clears stale pins out of its pin dir and hands the dir to its run user. A bpffs
// mounted without `mode=` is drwxrwxrwt, so any local user can put something at the pin dir's
// path first: a symlink to a directory of their choosing, a directory of their own, a
// world-writable one, a pin, a mount of another file system. Each must be refused before
// anything in it is touched: nothing followed, removed or chowned; the daemon serves on
// without pins (auto takes the splice plane) and says why, and `splicer stats` refuses the
// same dir with an error. Everything happens in a bpffs the test mounts itself.

#include <bpf/bpf.h>
#include <sys/stat.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "daemon_test_common.h"
#include "support/as_user.h"
#include "support/command.h"
#include "support/scoped_mount.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

// A local user that is not the daemon's run user (`splicer`, else `nobody` when that user is
// absent: then this test's "other user" would be the run user, which it REQUIREs is not so).
constexpr uid_t kOtherUid = 65534;
constexpr gid_t kOtherGid = 65534;

// What a path is, for "untouched" comparisons: type, owner and mode, or absent.
struct Snapshot {
    bool exists = false;
    uid_t uid = 0;
    gid_t gid = 0;
    mode_t mode = 0;  // st_mode: type and permission bits
    bool operator==(const Snapshot&) const = default;
};

Snapshot snapshot(const std::string& path) {
    struct stat info {};
    if (::lstat(path.c_str(), &info) != 0) {
        return {};
    }
    return {true, info.st_uid, info.st_gid, info.st_mode};
}

std::ostream& operator<<(std::ostream& out, const Snapshot& s) {
    if (!s.exists) {
        return out << "absent";
    }
    return out << "uid " << s.uid << " gid " << s.gid << " mode 0" << std::oct << s.mode
               << std::dec;
}

// Every object pinned below `dir` (a fresh bpffs may hold the kernel's own iterators).
std::set<std::string> pinned_paths(const std::string& dir) {
    std::set<std::string> paths;
    for (const PinnedObject& object : pinned_objects(dir)) {
        paths.insert(object.path);
    }
    return paths;
}

// One hostile thing at the pin dir's path, and what the daemon and stats must answer.
struct Plant {
    const char* name;
    const char* refusal;            // in the daemon's no_pins reason and stats' error
    const char* stats_refusal;      // in stats' error
    const char* where = "splicer";  // the pin dir, inside the test's bpffs
};

// Plants row `name` at `pin_dir`; returns the paths that must come out of the run untouched.
// `keep` holds what must live as long as the plant (a mount, a pinned map's fd).
struct Kept {
    std::optional<ScopedMount> tmpfs;
    UniqueFd map;
};

std::vector<std::string> plant(const std::string& name, const std::string& pin_dir,
                               const std::string& victim, Kept& keep) {
    const std::string marker = pin_dir + "/marker";
    const char* pin_dir_c = pin_dir.c_str();
    const char* victim_c = victim.c_str();
    const char* marker_c = marker.c_str();
    if (name == "symlink to a victim dir") {
        // Planted by another local user: the bpffs root is world-writable and sticky.
        REQUIRE(run_as(kOtherUid, kOtherGid,
                       [&] { return errno_of(::symlink(victim_c, pin_dir_c)); }) == 0);
        return {pin_dir, victim, victim + "/precious"};
    }
    if (name == "another user's dir") {
        REQUIRE(run_as(kOtherUid, kOtherGid, [&] {
                    if (::mkdir(pin_dir_c, 0755) != 0) {
                        return errno;
                    }
                    return errno_of(::symlink("anything", marker_c));
                }) == 0);
        return {pin_dir, marker};
    }
    if (name == "a world-writable dir") {
        REQUIRE(::mkdir(pin_dir_c, 0700) == 0);
        REQUIRE(::chmod(pin_dir_c, 0777) == 0);
        // Anyone could have pinned anything in it: here another user plants an entry.
        REQUIRE(run_as(kOtherUid, kOtherGid, [&] { return errno_of(::symlink("x", marker_c)); }) ==
                0);
        return {pin_dir, marker};
    }
    if (name == "a pinned map") {
        // A regular file of bpffs: what bpf_obj_pin creates.
        keep.map.reset(bpf_map_create(BPF_MAP_TYPE_ARRAY, "squatter", 4, 8, 1, nullptr));
        REQUIRE(keep.map.valid());
        REQUIRE(bpf_obj_pin(keep.map.get(), pin_dir_c) == 0);
        return {pin_dir};
    }
    if (name == "a tmpfs dir") {
        // Not bpffs: nothing could be pinned in it, and its files are not stale pins.
        REQUIRE(::mkdir(pin_dir_c, 0755) == 0);
        keep.tmpfs.emplace("tmpfs", pin_dir, "mode=0755");
        std::ofstream(pin_dir + "/precious") << "keep me";
        return {pin_dir, pin_dir + "/precious"};
    }
    if (name == "a dir in a world-writable parent") {
        // Anyone could rename the pin dir away and put theirs in its place (no sticky bit).
        const std::string parent = std::filesystem::path(pin_dir).parent_path().string();
        REQUIRE(::mkdir(parent.c_str(), 0700) == 0);
        REQUIRE(::chmod(parent.c_str(), 0777) == 0);
        return {parent, pin_dir};
    }
    FAIL("unknown plant " << name);
    return {};
}

}  // namespace

TEST_CASE("a hostile pin dir is refused: nothing in it followed, removed or chowned",
          "[daemon][privileges][pins]") {
    require_root();
    const Plant row =
        GENERATE(Plant{"symlink to a victim dir", "is a symbolic link", "is a symbolic link"},
                 Plant{"another user's dir", "is owned by uid 65534", "daemon"},
                 Plant{"a world-writable dir", "is writable by group or others",
                       "is writable by group or others"},
                 Plant{"a pinned map", "is not a directory", "is not a directory"},
                 Plant{"a tmpfs dir", "is not on bpffs", "is not on bpffs"},
                 Plant{"a dir in a world-writable parent", "is writable by others and not sticky",
                       "is writable by others and not sticky", "shared/splicer"});
    CAPTURE(row.name);

    BpffsMount bpffs;
    // The premise: a plain `mount -t bpf` lets every local user create entries at its root.
    REQUIRE((snapshot(bpffs.path()).mode & 07777) == 01777);
    TempDir victim_dir("splicer-victim");
    const std::string victim = victim_dir.path().string();
    victim_dir.write_file("precious", "the victim's data");
    const std::string pin_dir = bpffs.path() + "/" + row.where;
    Kept keep;
    const std::vector<std::string> guarded = plant(row.name, pin_dir, victim, keep);
    std::map<std::string, Snapshot> before;
    for (const std::string& path : guarded) {
        before[path] = snapshot(path);  // absent ones must stay absent
    }
    const std::set<std::string> pinned_before = pinned_paths(bpffs.path());

    TcpBackend https(BackendScript::exchange(64 * 1024));
    SnikketPorts ports = unserved_snikket_ports();
    ports.https = https.port();
    DaemonOptions options;
    options.binary = SPLICER_BINARY;
    options.config_text = snikket_config(ports);
    options.splice_mode = "auto";
    options.pin_dir = pin_dir;
    DaemonProcess daemon(options);
    const bool ready = daemon.wait_ready(15s);
    INFO(daemon.log_tail());
    REQUIRE(ready);
    const auto dropped = daemon.wait_for_log("privileges_dropped", {}, 1s);
    REQUIRE(dropped.has_value());
    REQUIRE(dropped->get("uid") != std::to_string(kOtherUid));

    // Refused, saying why; served on without pins (auto: splice).
    const auto refused = daemon.wait_for_log("no_pins", {}, 1s);
    CHECK(refused.has_value());
    CHECK_THAT(std::string(refused ? refused->get("reason") : ""),
               Catch::Contains(pin_dir) && Catch::Contains(row.refusal));
    CHECK(daemon.wait_for_log("ready", {}, 1s)->get("plane") == "splice");
    check_still_serving(ports, https);

    // Root's stats refuses the same dir: an error naming it, exit 1, no crash.
    const auto stats = run_command(std::string(SPLICER_BINARY) + " stats --pin-dir " + pin_dir);
    CAPTURE(stats.output);
    CHECK(stats.exit_code == 1);
    CHECK_THAT(stats.output, Catch::StartsWith("splicer stats: ") && Catch::Contains(pin_dir) &&
                                 Catch::Contains(row.stats_refusal));

    const auto status = daemon.stop(10s);
    REQUIRE(status.has_value());
    CHECK(*status == 0);
    for (const auto& [path, was] : before) {
        CAPTURE(path);
        CHECK(snapshot(path) == was);
    }
    // Nothing pinned anywhere in the mount but what was there before.
    CHECK(pinned_paths(bpffs.path()) == pinned_before);
    keep.tmpfs.reset();
    std::error_code ignored;
    std::filesystem::remove_all(pin_dir, ignored);
}

TEST_CASE("a fresh pin dir in a world-writable bpffs is created private and handed over",
          "[daemon][privileges][pins]") {
    require_root();
    BpffsMount bpffs;
    const std::string pin_dir = bpffs.path() + "/splicer";
    TcpBackend https(BackendScript::exchange(64 * 1024));
    SnikketPorts ports = unserved_snikket_ports();
    ports.https = https.port();
    DaemonOptions options;
    options.binary = SPLICER_BINARY;
    options.config_text = snikket_config(ports);
    options.splice_mode = "sockmap";
    options.pin_dir = pin_dir;
    DaemonProcess daemon(options);
    const bool ready = daemon.wait_ready(15s);
    INFO(daemon.log_tail());
    REQUIRE(ready);
    const auto dropped = daemon.wait_for_log("privileges_dropped", {}, 1s);
    REQUIRE(dropped.has_value());
    const Snapshot dir = snapshot(pin_dir);
    CAPTURE(dir);
    CHECK(S_ISDIR(dir.mode));
    CHECK(std::to_string(dir.uid) == dropped->get("uid"));
    CHECK((dir.mode & 077) == 0);
    CHECK(pinned_objects(pin_dir).size() == 5);
    check_still_serving(ports, https);
    // `splicer stats --pin-dir` (as root) reads the counters the dropped daemon pinned.
    CHECK(wait_for_counter(daemon, "routed", 1) == 1);
    stop_daemon(daemon);
}
