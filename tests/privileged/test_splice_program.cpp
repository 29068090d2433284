// The BPF object loads, its verdict attaches to the sockhash, and paired sockets really have
// their bytes moved by the kernel: real program, real TCP sockets on loopback.

#include <bpf/bpf.h>

#include <catch2/catch.hpp>

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
    CHECK(counters->redirect_failed == 0);

    // Unpaired, the entries are gone: the maps hold nothing for these sockets.
    program->unpair(front.get(), back.get());
    auto cookie = splicer::bpf::socket_cookie(front.get());
    REQUIRE(cookie.has_value());
    splicer_peer peer{};
    CHECK(bpf_map_lookup_elem(program->peers_map_fd(), &*cookie, &peer) != 0);
}
