// The sockmap maps a running splicer pinned, reused by the new process of `splicer upgrade`
// (bpf/reused_maps.h, SpliceProgram::load_reusing): only the very maps splicer pins are
// taken (each pin's type, sizes, flags, name and owner checked, a wrong one refused by
// name), and a program loaded onto them swaps the sockhash's verdict for sockets inserted
// afterwards, putting the one it replaced back when it goes before the old process handed
// over (the old process serves on under its own verdict).

#include <bpf/bpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bpf/pins.h"
#include "bpf/reused_maps.h"
#include "bpf_test_pins.h"
#include "splicer/splice_program.h"
#include "support/daemon.h"
#include "support/privileged.h"
#include "support/sockets.h"

using namespace std::chrono_literals;

// In namespace splicer rather than under a using-directive: the test binary is a unity build,
// and a directive would reach the files compiled after this one.
namespace splicer {
namespace {

constexpr std::uint32_t kReusedMapSockets = 64;

// A program of its own with its four maps pinned in a fresh pin dir, as a daemon's sockmap
// plane pins them.
struct PinnedSpliceProgram {
    std::optional<bpf::PinDir> pins;
    std::optional<bpf::SpliceProgram> program;

    PinnedSpliceProgram() : pins(test::open_root_test_pin_dir()) {
        // Fails (never skips) where BPF is unavailable: these tests run as root in CI.
        auto loaded = bpf::SpliceProgram::load({.max_sockets = kReusedMapSockets});
        INFO((loaded ? std::string() : loaded.error().message));
        REQUIRE(loaded);
        program.emplace(std::move(loaded).value());
        for (const auto& [fd, name] : {std::pair{program->sockets_map_fd(), "sockets"},
                                       std::pair{program->peers_map_fd(), "peers"},
                                       std::pair{program->copied_map_fd(), "copied"},
                                       std::pair{program->counters_map_fd(), "counters"}}) {
            REQUIRE(pins->pin(fd, name));
        }
    }

    Result<std::optional<bpf::ReusedMaps>> reuse() const {
        return bpf::open_maps_to_reuse(pins->dir_fd(), pins->path(), ::geteuid());
    }
};

std::uint32_t verdict_id_of(int program_fd) {
    bpf_prog_info info{};
    __u32 length = sizeof(info);
    REQUIRE(bpf_obj_get_info_by_fd(program_fd, &info, &length) == 0);
    return info.id;
}

}  // namespace

TEST_CASE("reused maps: the four maps a running program pinned are taken with their size",
          "[bpf][upgrade][privileged]") {
    test::require_root();
    const PinnedSpliceProgram old;
    auto maps = old.reuse();
    INFO((maps ? std::string() : maps.error().message));
    REQUIRE(maps);
    REQUIRE(maps->has_value());
    CHECK((*maps)->max_sockets == kReusedMapSockets);
    // The same map objects, not copies: an entry written through one is read through the
    // other.
    const splicer_cookie key = 12345;
    const splicer_link link{.peer_cookie = 678, .direction = SPLICER_DIR_BACKEND_TO_CLIENT};
    REQUIRE(bpf_map_update_elem((*maps)->peers.get(), &key, &link, BPF_NOEXIST) == 0);
    splicer_link seen{};
    REQUIRE(bpf_map_lookup_elem(old.program->peers_map_fd(), &key, &seen) == 0);
    CHECK(seen.peer_cookie == 678);
}

TEST_CASE("reused maps: a pin dir without the sockhash pin reuses nothing",
          "[bpf][upgrade][privileged]") {
    test::require_root();
    const PinnedSpliceProgram old;
    REQUIRE(::unlinkat(old.pins->dir_fd(), "sockets", 0) == 0);
    auto maps = old.reuse();
    REQUIRE(maps);
    CHECK_FALSE(maps->has_value());
}

TEST_CASE("reused maps: a pin that is not the map splicer pins there is refused by name",
          "[bpf][upgrade][privileged]") {
    test::require_root();
    // Which pin is replaced, and by what: another type, another value size, another size
    // than the sockhash's, another name.
    const auto [name, type, value_size, max_entries, map_name] =
        GENERATE(table<const char*, bpf_map_type, std::uint32_t, std::uint32_t, const char*>({
            {"sockets", BPF_MAP_TYPE_HASH, 8, kReusedMapSockets, "sockets"},
            {"peers", BPF_MAP_TYPE_HASH, 8, kReusedMapSockets, "peers"},
            {"copied", BPF_MAP_TYPE_HASH, sizeof(splicer_copied) + 8, kReusedMapSockets, "copied"},
            {"peers", BPF_MAP_TYPE_HASH, sizeof(splicer_link), kReusedMapSockets * 2, "peers"},
            {"counters", BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(splicer_counters), 1, "daemon"},
        }));
    CAPTURE(name, value_size, max_entries);
    const PinnedSpliceProgram old;
    bpf_map_create_opts options{};
    options.sz = sizeof(options);
    const std::uint32_t key_size = type == BPF_MAP_TYPE_PERCPU_ARRAY ? 4 : 8;
    UniqueFd wrong(bpf_map_create(type, map_name, key_size, value_size, max_entries, &options));
    REQUIRE(wrong);
    REQUIRE(::unlinkat(old.pins->dir_fd(), name, 0) == 0);
    REQUIRE(bpf_obj_pin(wrong.get(), (old.pins->path() + "/" + name).c_str()) == 0);
    auto maps = old.reuse();
    REQUIRE_FALSE(maps);
    INFO(maps.error().message);
    CHECK_THAT(maps.error().message,
               Catch::StartsWith(old.pins->path() + "/" + name + " is not the map splicer pins"));
}

TEST_CASE("reused maps: a pin another user made is refused", "[bpf][upgrade][privileged]") {
    test::require_root();
    const PinnedSpliceProgram old;
    // The run user owns the pin dir after the privilege drop and may pin there: anything it
    // pinned is its own, never root's, whatever map it is.
    REQUIRE(::fchownat(old.pins->dir_fd(), "copied", 65534, 65534, AT_SYMLINK_NOFOLLOW) == 0);
    auto maps = old.reuse();
    REQUIRE_FALSE(maps);
    CHECK_THAT(maps.error().message,
               Catch::Contains("/copied was pinned by uid 65534, not uid 0: refused"));
}

TEST_CASE(
    "reused maps: a program loaded onto them takes over the verdict and puts the old one back "
    "when it goes before taking over",
    "[bpf][upgrade][privileged]") {
    test::require_root();
    PinnedSpliceProgram old;
    const std::uint32_t old_verdict = verdict_id_of(old.program->verdict_program_fd());
    const int sockets = old.program->sockets_map_fd();
    REQUIRE(test::attached_verdict_id(sockets) == old_verdict);
    {
        auto maps = old.reuse();
        REQUIRE(maps);
        REQUIRE(maps->has_value());
        auto failing = bpf::SpliceProgram::load_reusing(std::move(**maps), {});
        INFO((failing ? std::string() : failing.error().message));
        REQUIRE(failing);
        CHECK(failing->reuses_maps());
        CHECK(failing->max_sockets() == kReusedMapSockets);
        CHECK(test::attached_verdict_id(sockets) == verdict_id_of(failing->verdict_program_fd()));
        // Never empties maps another process serves from.
        CHECK_FALSE(failing->clear());
    }  // gone without took_over(): a start that failed
    CHECK(test::attached_verdict_id(sockets) == old_verdict);

    auto maps = old.reuse();
    REQUIRE(maps);
    REQUIRE(maps->has_value());
    auto serving = bpf::SpliceProgram::load_reusing(std::move(**maps), {});
    REQUIRE(serving);
    const std::uint32_t new_verdict = verdict_id_of(serving->verdict_program_fd());
    serving->took_over();
    CHECK(test::attached_verdict_id(serving->sockets_map_fd()) == new_verdict);
    // The old program going (the old process exits) leaves the new verdict attached.
    old.program.reset();
    CHECK(test::attached_verdict_id(serving->sockets_map_fd()) == new_verdict);
}

TEST_CASE(
    "reused maps: a pair in the sockhash keeps the verdict it was paired under while new pairs "
    "run the new one",
    "[bpf][upgrade][privileged]") {
    test::require_root();
    // Told apart by what each verdict does: the new one is loaded with every overlap trim
    // failing (LoadOptions::fail_trims), so it passes each skb and marks its link aborted;
    // the old one redirects. Each pair: client <-> [a  b] <-> backend, a and b paired.
    struct Pair {
        std::pair<UniqueFd, UniqueFd> client_side = test::tcp_pair();   // client, a
        std::pair<UniqueFd, UniqueFd> backend_side = test::tcp_pair();  // b, backend
        [[nodiscard]] int client() const { return client_side.first.get(); }
        [[nodiscard]] int a() const { return client_side.second.get(); }
        [[nodiscard]] int b() const { return backend_side.first.get(); }
        [[nodiscard]] int backend() const { return backend_side.second.get(); }
    };
    PinnedSpliceProgram old;
    const Pair before;
    REQUIRE(old.program->pair(before.a(), before.b()));
    auto maps = old.reuse();
    REQUIRE(maps);
    REQUIRE(maps->has_value());
    auto failing_trims = bpf::SpliceProgram::load_reusing(std::move(**maps), {.fail_trims = true});
    INFO((failing_trims ? std::string() : failing_trims.error().message));
    REQUIRE(failing_trims);
    failing_trims->took_over();
    const Pair after;
    REQUIRE(failing_trims->pair(after.a(), after.b()));

    const std::string bytes(1000, 'x');
    test::write_all(before.client(), bytes);
    CHECK(test::read_exactly(before.backend(), bytes.size(), 5000) == bytes);
    const auto redirected = old.program->link_state(*bpf::socket_cookie(before.a()));
    REQUIRE(redirected);
    CHECK(redirected->redirected == bytes.size());
    CHECK_FALSE(redirected->abort);

    test::write_all(after.client(), bytes);
    // Passed, not redirected: they wait on `a` for userspace, and the link says abort.
    bool aborted = false;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!aborted && std::chrono::steady_clock::now() < deadline) {
        const auto link = failing_trims->link_state(*bpf::socket_cookie(after.a()));
        REQUIRE(link);
        aborted = link->abort;
        std::this_thread::sleep_for(10ms);
    }
    CHECK(aborted);
    old.program->unpair(before.a(), before.b());
    failing_trims->unpair(after.a(), after.b());
}

// `splicer upgrade`'s pins (bpf/pins.h): the new process pins under provisional names until it
// took over, so a failed start leaves every name naming the old process's objects.
TEST_CASE(
    "pin dir: a successor's pins take the old names only once it took over and a failed one "
    "leaves the old pins",
    "[bpf][upgrade][privileged]") {
    test::require_root();
    bpf::PinDir old = test::open_root_test_pin_dir();
    const std::string dir = old.path();
    const auto map = [] {
        UniqueFd fd(bpf_map_create(BPF_MAP_TYPE_ARRAY, "upgrade_pin", 4, 8, 1, nullptr));
        REQUIRE(fd);
        return fd;
    };
    const UniqueFd old_counters = map();
    const UniqueFd old_only = map();
    REQUIRE(old.pin(old_counters.get(), "daemon"));
    REQUIRE(old.pin(old_only.get(), "sockets"));
    const std::uint32_t old_id = test::pinned_map_id(dir + "/daemon");
    const UniqueFd new_counters = map();
    const bpf::PinDirOwners root{.uids = {0}, .text = "root"};
    auto opened = bpf::PinDir::open(dir, root, bpf::PinDir::Start::successor);
    REQUIRE(opened);
    std::optional<bpf::PinDir> successor(std::move(opened).value());
    REQUIRE(successor->pin(new_counters.get(), "daemon"));
    const std::vector<std::string> during{"daemon", "incoming_daemon", "sockets"};
    CHECK(test::pin_names(dir) == during);
    CHECK(test::pinned_map_id(dir + "/daemon") == old_id);

    SECTION("failed: the successor goes before it took over") {
        successor.reset();
        CHECK(test::pin_names(dir) == std::vector<std::string>{"daemon", "sockets"});
        CHECK(test::pinned_map_id(dir + "/daemon") == old_id);
    }
    SECTION("crashed: the old process and the next successor remove what it left") {
        old.remove_dead_incoming();
        CHECK(test::pin_names(dir) == std::vector<std::string>{"daemon", "sockets"});
        // Left again, as by a new process killed before it took over: the next one's open
        // removes it.
        REQUIRE(successor->pin(new_counters.get(), "daemon"));
        auto next = bpf::PinDir::open(dir, root, bpf::PinDir::Start::successor);
        REQUIRE(next);
        CHECK(test::pin_names(dir) == std::vector<std::string>{"daemon", "sockets"});
        CHECK(test::pinned_map_id(dir + "/daemon") == old_id);
    }
    SECTION("took over: its pins replace the old ones, the old one's others go") {
        old.leave_to_successor();
        successor->took_over();
        CHECK(test::pin_names(dir) == std::vector<std::string>{"daemon"});
        const std::uint32_t new_id = test::pinned_map_id(dir + "/daemon");
        CHECK(new_id != 0);
        CHECK(new_id != old_id);
        // Its pins are its own to remove from now on.
        successor.reset();
        CHECK_FALSE(std::filesystem::exists(dir));
    }
}

}  // namespace splicer
