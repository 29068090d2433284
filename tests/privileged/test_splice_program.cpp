// The BPF object loads, its verdict attaches to the sockhash, and paired sockets really have
// their bytes moved by the kernel: real program, real TCP sockets on loopback.

#include <bpf/bpf.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>

#include "splicer/splice_program.h"
#include "support/privileged.h"
#include "support/sockets.h"

using splicer::bpf::SpliceProgram;
namespace test = splicer::test;

TEST_CASE("splice.bpf.o loads and its verdict attaches to the sockhash", "[bpf]") {
    test::require_root();
    auto program = SpliceProgram::load();
    INFO((program ? "" : program.error().message));
    REQUIRE(program.has_value());
    CHECK(program->sockets_map_fd() >= 0);
    CHECK(program->peers_map_fd() >= 0);

    bpf_prog_info info{};
    __u32 length = sizeof(info);
    REQUIRE(bpf_obj_get_info_by_fd(program->verdict_program_fd(), &info, &length) == 0);
    CHECK(info.type == BPF_PROG_TYPE_SK_SKB);

    // The attachment is visible from the map's side.
    __u32 attached_ids[4] = {};
    __u32 count = 4;
    __u32 flags = 0;
    REQUIRE(bpf_prog_query(program->sockets_map_fd(), BPF_SK_SKB_STREAM_VERDICT, 0, &flags,
                           attached_ids, &count) == 0);
    REQUIRE(count == 1);
    CHECK(attached_ids[0] == info.id);
}

TEST_CASE("paired sockets have their bytes redirected by the verdict, both ways", "[bpf]") {
    test::require_root();
    auto program = SpliceProgram::load();
    REQUIRE(program.has_value());

    // client <-> front (one TCP connection), back <-> server (another); pair front and back.
    auto [client, front] = test::tcp_pair();
    auto [back, server] = test::tcp_pair();
    auto paired = program->pair(front.get(), back.get());
    INFO((paired ? "" : paired.error().message));
    REQUIRE(paired.has_value());

    const std::string upstream = "client to server through the kernel";
    test::write_all(client.get(), upstream);
    CHECK(test::read_exactly(server.get(), upstream.size()) == upstream);

    const std::string downstream(200'000, 'x');
    test::write_all(server.get(), downstream);
    CHECK(test::read_exactly(client.get(), downstream.size()) == downstream);

    auto counters = program->read_counters();
    REQUIRE(counters.has_value());
    CHECK(counters->redirected_bytes[SPLICER_DIR_CLIENT_TO_BACKEND] == upstream.size());
    CHECK(counters->redirected_bytes[SPLICER_DIR_BACKEND_TO_CLIENT] == downstream.size());
    // Nothing near the flow limit: no byte took the pass/copy path.
    CHECK(counters->passed_bytes[SPLICER_DIR_CLIENT_TO_BACKEND] == 0);
    CHECK(counters->passed_bytes[SPLICER_DIR_BACKEND_TO_CLIENT] == 0);
    CHECK(counters->redirect_failed[SPLICER_DIR_CLIENT_TO_BACKEND] == 0);
    CHECK(counters->redirect_failed[SPLICER_DIR_BACKEND_TO_CLIENT] == 0);
    CHECK(counters->peer_missing[SPLICER_DIR_CLIENT_TO_BACKEND] == 0);
    CHECK(counters->peer_missing[SPLICER_DIR_BACKEND_TO_CLIENT] == 0);

    // Each socket's link tells its partner, its direction and its own byte counts.
    auto front_cookie = splicer::bpf::socket_cookie(front.get());
    auto back_cookie = splicer::bpf::socket_cookie(back.get());
    REQUIRE(front_cookie.has_value());
    REQUIRE(back_cookie.has_value());
    auto front_link = program->link_state(*front_cookie);
    auto back_link = program->link_state(*back_cookie);
    REQUIRE(front_link.has_value());
    REQUIRE(back_link.has_value());
    CHECK(front_link->peer_cookie == *back_cookie);
    CHECK(back_link->peer_cookie == *front_cookie);
    CHECK(front_link->direction == SPLICER_DIR_CLIENT_TO_BACKEND);
    CHECK(back_link->direction == SPLICER_DIR_BACKEND_TO_CLIENT);
    CHECK(front_link->redirected == upstream.size());
    CHECK(back_link->redirected == downstream.size());
    CHECK(front_link->passed == 0);
    CHECK(front_link->copied == 0);
    CHECK(front_link->peer_baseline_set);
    CHECK_FALSE(front_link->passing());

    // Unpaired, the entries are gone: the maps hold nothing for these sockets.
    program->unpair(front.get(), back.get());
    for (const splicer_cookie cookie : {*front_cookie, *back_cookie}) {
        splicer_link link{};
        splicer_copied copied{};
        CHECK(bpf_map_lookup_elem(program->peers_map_fd(), &cookie, &link) != 0);
        CHECK(bpf_map_lookup_elem(program->copied_map_fd(), &cookie, &copied) != 0);
        CHECK_FALSE(program->link_state(cookie).has_value());
        CHECK_FALSE(program->set_copied(cookie, 1).has_value());
    }
}

TEST_CASE("pair creates zeroed copied entries that set_copied updates", "[bpf]") {
    test::require_root();
    auto program = SpliceProgram::load();
    REQUIRE(program.has_value());
    auto [client, front] = test::tcp_pair();
    auto [back, server] = test::tcp_pair();
    REQUIRE(program->pair(front.get(), back.get()).has_value());
    auto cookie = splicer::bpf::socket_cookie(back.get());
    REQUIRE(cookie.has_value());

    auto fresh = program->link_state(*cookie);
    REQUIRE(fresh.has_value());
    CHECK(fresh->copied == 0);
    CHECK(fresh->redirected == 0);
    CHECK_FALSE(fresh->peer_baseline_set);

    REQUIRE(program->set_copied(*cookie, 12345).has_value());
    auto updated = program->link_state(*cookie);
    REQUIRE(updated.has_value());
    CHECK(updated->copied == 12345);

    // A socket pair() never saw has no entry, and set_copied does not invent one.
    auto stranger = splicer::bpf::socket_cookie(client.get());
    REQUIRE(stranger.has_value());
    CHECK_FALSE(program->set_copied(*stranger, 1).has_value());
    program->unpair(front.get(), back.get());
}

TEST_CASE("the flow limit is set before load and checked", "[bpf]") {
    test::require_root();
    auto standard = SpliceProgram::load();
    REQUIRE(standard.has_value());
    CHECK(standard->flow_limit_bytes() == SPLICER_DEFAULT_FLOW_LIMIT_BYTES);
    CHECK(standard->flow_control());
    auto unlimited = SpliceProgram::load({.flow_control = false});
    REQUIRE(unlimited.has_value());
    CHECK_FALSE(unlimited->flow_control());

    auto custom = SpliceProgram::load({.flow_limit_bytes = 4u << 20});
    REQUIRE(custom.has_value());
    CHECK(custom->flow_limit_bytes() == 4u << 20);

    auto zero = SpliceProgram::load({.flow_limit_bytes = 0});
    REQUIRE_FALSE(zero.has_value());
    CHECK(zero.error().message.find("flow limit") != std::string::npos);
    auto huge = SpliceProgram::load({.flow_limit_bytes = SPLICER_MAX_FLOW_LIMIT_BYTES + 1});
    CHECK_FALSE(huge.has_value());
}

TEST_CASE("the maps hold the sockets they were sized for and refuse the pair past them", "[bpf]") {
    test::require_root();
    auto program = SpliceProgram::load({.max_sockets = 4});
    INFO((program ? "" : program.error().message));
    REQUIRE(program.has_value());
    CHECK(program->max_sockets() == 4);
    for (const int fd :
         {program->sockets_map_fd(), program->peers_map_fd(), program->copied_map_fd()}) {
        bpf_map_info info{};
        __u32 length = sizeof(info);
        REQUIRE(bpf_obj_get_info_by_fd(fd, &info, &length) == 0);
        CHECK(info.max_entries == 4);
    }
    // Two pairs fill four sockets; the third pair is refused whole (nothing half-inserted).
    auto [client1, front1] = test::tcp_pair();
    auto [back1, server1] = test::tcp_pair();
    auto [client2, front2] = test::tcp_pair();
    auto [back2, server2] = test::tcp_pair();
    auto [client3, front3] = test::tcp_pair();
    auto [back3, server3] = test::tcp_pair();
    REQUIRE(program->pair(front1.get(), back1.get()).has_value());
    REQUIRE(program->pair(front2.get(), back2.get()).has_value());
    const auto refused = program->pair(front3.get(), back3.get());
    REQUIRE_FALSE(refused.has_value());
    CHECK_THAT(refused.error().message, Catch::Contains("Argument list too long"));
    // The first pairs still move bytes; unpairing one makes room again.
    test::write_all(client2.get(), "two");
    CHECK(test::read_exactly(server2.get(), 3) == "two");
    program->unpair(front1.get(), back1.get());
    CHECK(program->pair(front3.get(), back3.get()).has_value());
    // Sizes outside SPLICER_MIN_SOCKETS..SPLICER_SOCKETS_LIMIT are an error, not a clamp.
    for (const std::uint32_t bad : {0U, 1U, SPLICER_SOCKETS_LIMIT + 1U}) {
        CAPTURE(bad);
        const auto loaded = SpliceProgram::load({.max_sockets = bad});
        REQUIRE_FALSE(loaded.has_value());
        CHECK_THAT(loaded.error().message, Catch::Contains("sockets out of range"));
    }
}
