// `splicer stats` runs as root and reads what the running daemon pinned (issue 12, point 5).
// The pin dir belongs to the daemon's run user after the privilege drop, so that user (the
// daemon itself, if subverted) can rename, replace or relink every pin in it. Renaming the
// `counters` pin (a per-CPU array of 208-byte values then) to `daemon` (a 112-byte array) made
// root's stats copy 208 B x CPUs into a 112-byte struct and crash. Each swap below is done as
// the run user on a running daemon; stats must refuse it with an error naming the pin and
// exit 1, never crash and never print numbers read from the wrong object.

#include <bpf/bpf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

#include "daemon_test_common.h"
#include "splicer/bpf_abi.h"
#include "splicer/daemon_counters.h"
#include "support/as_user.h"
#include "support/command.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

const char* const kPins[] = {"daemon", "counters", "sockets", "peers", "copied"};

struct Swap {
    const char* name;
    const char* from;      // the pin the run user moves (or links to)
    const char* onto;      // the name it ends up under: the pin stats must name
    const char* how;       // "rename", "symlink", "mkdir", "pin" (`from`'s map again)
    std::string refusal;   // in stats' error, after the pin's path
};

// The value sizes follow the ABI structs (they grow as counters are added).
std::string map_shape(int type, std::size_t key_size, std::size_t value_size) {
    return "has type " + std::to_string(type) + ", key size " + std::to_string(key_size) +
           ", value size " + std::to_string(value_size);
}

// Puts the daemon's pins back as they were: every entry removed, each map pinned again from
// the fds the test took at the start.
void restore(const std::string& pin_dir, const std::map<std::string, UniqueFd>& maps) {
    for (const char* name : kPins) {
        const std::string path = pin_dir + "/" + name;
        if (::unlink(path.c_str()) != 0) {
            ::rmdir(path.c_str());
        }
        REQUIRE(bpf_obj_pin(maps.at(name).get(), path.c_str()) == 0);
    }
}

// An fd of the daemon's verdict program: the daemon holds one (its prog_id is in
// /proc/PID/fdinfo), so its user could pin it under any name. Invalid when none is found.
UniqueFd daemon_program(pid_t pid) {
    const std::string fds = "/proc/" + std::to_string(pid) + "/fd";
    for (const auto& entry : std::filesystem::directory_iterator(fds)) {
        std::error_code error;
        if (std::filesystem::read_symlink(entry.path(), error).string() != "anon_inode:bpf-prog") {
            continue;
        }
        std::istringstream info(read_file("/proc/" + std::to_string(pid) + "/fdinfo/" +
                                          entry.path().filename().string()));
        for (std::string line; std::getline(info, line);) {
            if (line.rfind("prog_id:", 0) == 0) {
                return UniqueFd(bpf_prog_get_fd_by_id(
                    static_cast<__u32>(std::stoul(line.substr(std::strlen("prog_id:"))))));
            }
        }
    }
    return UniqueFd();
}

CommandResult stats(const std::string& pin_dir) {
    return run_command(std::string(SPLICER_BINARY) + " stats --pin-dir " + pin_dir);
}

}  // namespace

TEST_CASE("splicer stats refuses a pin the daemon's user swapped, naming it, never crashing",
          "[daemon][privileges][stats]") {
    require_root();
    auto daemon = start_daemon("sockmap", snikket_config(unserved_snikket_ports()));
    const auto dropped = daemon->wait_for_log("privileges_dropped", {}, 2s);
    REQUIRE(dropped.has_value());
    const auto uid = static_cast<uid_t>(*dropped->number("uid"));
    const auto gid = static_cast<gid_t>(*dropped->number("gid"));
    const std::string& pin_dir = daemon->pin_dir();
    std::map<std::string, UniqueFd> maps;
    for (const char* name : kPins) {
        maps[name] = UniqueFd(bpf_obj_get((pin_dir + "/" + name).c_str()));
        REQUIRE(maps[name].valid());
    }

    maps["verdict"] = daemon_program(daemon->pid());
    REQUIRE(maps["verdict"].valid());
    const UniqueFd dir_fd(::open(pin_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(dir_fd.valid());

    const Swap swaps[] = {
        // The reported crash: a per-CPU array read into the daemon counters' struct.
        {"counters renamed over daemon", "counters", "daemon", "rename",
         map_shape(BPF_MAP_TYPE_PERCPU_ARRAY, 4, sizeof(splicer_counters))},
        // The daemon holds every map's fd and may pin any of them under any name.
        {"the daemon map pinned again as counters", "daemon", "counters", "pin",
         map_shape(BPF_MAP_TYPE_ARRAY, 4, sizeof(splicer::DaemonCounters))},
        {"the sockhash renamed over daemon", "sockets", "daemon", "rename",
         "has type 18, key size 8"},
        {"the peer map renamed over counters", "peers", "counters", "rename",
         "has type 1, key size 8"},
        {"the verdict program pinned as daemon", "verdict", "daemon", "pin", "is not a BPF map"},
        {"daemon relinked to counters", "counters", "daemon", "symlink", "symbolic link"},
        {"daemon replaced by a directory", "", "daemon", "mkdir", "not a pinned object"},
    };
    for (const Swap& swap : swaps) {
        CAPTURE(swap.name);
        restore(pin_dir, maps);
        const auto control = stats(pin_dir);
        CAPTURE(control.output);
        REQUIRE(control.exit_code == 0);

        // The swap, done by the daemon's user through a directory fd, as the daemon holds
        // one: /sys/fs/bpf itself (mode 0700) keeps it from walking there by path.
        const char* from = swap.from;
        const char* onto = swap.onto;
        const std::string how = swap.how;
        const int dir = dir_fd.get();
        const int map = how == "pin" ? maps.at(swap.from).get() : -1;
        const std::string pin_path = "/proc/self/fd/" + std::to_string(dir) + "/" + onto;
        const int swapped = run_as(uid, gid, [&] {
            if (how == "rename") {
                return errno_of(::renameat(dir, from, dir, onto));
            }
            if (::unlinkat(dir, onto, 0) != 0) {
                return errno;
            }
            if (how == "pin") {
                return errno_of(bpf_obj_pin(map, pin_path.c_str()));
            }
            return errno_of(how == "symlink" ? ::symlinkat(from, dir, onto)
                                             : ::mkdirat(dir, onto, 0700));
        });
        REQUIRE(swapped == 0);

        const auto refused = stats(pin_dir);
        CAPTURE(refused.output);
        CHECK(refused.exit_code == 1);  // not 128 + SIGSEGV, not 0 with numbers from elsewhere
        CHECK_THAT(refused.output,
                   Catch::StartsWith("splicer stats: " + pin_dir + "/" + swap.onto) &&
                       Catch::Contains(swap.refusal));
        CHECK(refused.output.find("accepted") == std::string::npos);
    }
    restore(pin_dir, maps);
    maps.clear();
    stop_daemon(*daemon);
}
