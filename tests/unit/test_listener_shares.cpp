// The new process's side of an upgrade with `workers`, on real sockets: an offer of every
// old worker's listeners read in records and each socket claimed once (upgrade/adoption.h),
// then shared out over the new process's workers, joining the old group when it has more
// of them (upgrade/listener_shares.h). Every received socket must stay accepted from.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "net/listen_group.h"
#include "net/sockets.h"
#include "support/scoped_environment.h"
#include "upgrade/adoption.h"
#include "upgrade/fd_passing.h"
#include "upgrade/handover_protocol.h"
#include "upgrade/launcher.h"
#include "upgrade/listener_shares.h"

using splicer::UniqueFd;
namespace net = splicer::net;
namespace upgrade = splicer::upgrade;

namespace {

net::SocketAddress loopback(std::uint16_t port) {
    auto address = net::resolve({"127.0.0.1", port});
    REQUIRE(address.has_value());
    return *address;
}

std::uint16_t port_of(int fd) {
    const net::SocketAddress bound = net::local_address(fd);
    return ntohs(reinterpret_cast<const sockaddr_in*>(&bound.storage)->sin_port);
}

std::pair<ino_t, dev_t> identity(int fd) {
    struct stat status {};
    REQUIRE(::fstat(fd, &status) == 0);
    return {status.st_ino, status.st_dev};
}

// `count` clients connected to `port` (from distinct source ports, so a group spreads them).
std::vector<UniqueFd> connect_clients(std::uint16_t port, int count) {
    std::vector<UniqueFd> clients;
    for (int i = 0; i < count; ++i) {
        UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        const net::SocketAddress address = loopback(port);
        REQUIRE(::connect(client.get(), address.get(), address.length) == 0);
        clients.push_back(std::move(client));
    }
    return clients;
}

// Everything queued on a non-blocking listener now (bounded).
int accept_queued(int listener) {
    int taken = 0;
    for (int n = 0; n < 1000; ++n) {
        UniqueFd client(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
        if (!client) {
            break;
        }
        ++taken;
    }
    return taken;
}

std::vector<upgrade::AdoptedListener> adopted(std::vector<UniqueFd>& group) {
    std::vector<upgrade::AdoptedListener> handed;
    for (UniqueFd& fd : group) {
        handed.push_back({std::move(fd), false});
    }
    return handed;
}

// The offer's records sent on `sender` as the old process sends them (upgrade/handover.cpp):
// `fds` in order, kListenersPerRecord at most per record.
void send_offer(int sender, const std::vector<int>& fds,
                const std::vector<upgrade::OfferedListener>& what) {
    const std::vector<std::string> records = upgrade::encode_offer(what);
    for (std::size_t i = 0; i < records.size(); ++i) {
        const std::size_t first = i * upgrade::kListenersPerRecord;
        const std::size_t count = std::min(upgrade::kListenersPerRecord, fds.size() - first);
        REQUIRE(upgrade::send_record(sender, records[i],
                                     std::span<const int>(fds).subspan(first, count)));
    }
}

// An Adoption reading from a fresh socketpair (SPLICER_UPGRADE_FD names its end), after
// `send` wrote the old process's side and closed it.
template <typename Send>
splicer::Result<upgrade::Adoption> adopt_after(Send send) {
    int ends[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) == 0);
    UniqueFd ours(ends[0]);
    UniqueFd theirs(ends[1]);
    send(ours.get());
    // What was sent stays readable; after it the adoption reads the old process's exit.
    ours.reset();
    const std::string number = std::to_string(theirs.get());
    const splicer::test::ScopedEnvironment variable(upgrade::kUpgradeFdVariable, number.c_str());
    [[maybe_unused]] const int given = theirs.release();  // Adoption::take owns it now
    return upgrade::Adoption::take();
}

}  // namespace

TEST_CASE("an offer in several records is adopted, each socket claimed once", "[upgrade]") {
    auto group = net::listen_group(loopback(0), 64, 3);
    REQUIRE(group);
    const net::SocketAddress address = net::local_address(group->front().get());
    // 300 fds naming the 3 sockets over and over (as duplicated fds would): two records.
    std::vector<int> fds;
    for (int i = 0; i < 300; ++i) {
        fds.push_back((*group)[static_cast<std::size_t>(i % 3)].get());
    }
    const std::vector<upgrade::OfferedListener> what(fds.size());
    auto adoption = adopt_after([&](int sender) { send_offer(sender, fds, what); });
    REQUIRE(adoption);
    CHECK(adoption->active());
    std::vector<upgrade::AdoptedListener> claimed = adoption->claim(address, false);
    REQUIRE(claimed.size() == 3);
    std::set<std::pair<ino_t, dev_t>> sockets;
    for (const upgrade::AdoptedListener& listener : claimed) {
        sockets.insert(identity(listener.fd.get()));
    }
    CHECK(sockets.size() == 3);
    for (const UniqueFd& ours : *group) {
        CHECK(sockets.count(identity(ours.get())) == 1);
    }
    CHECK(adoption->claim(address, false).empty());  // handed out once
    CHECK(adoption->check_all_claimed());
}

TEST_CASE("an offer whose records come out of order or short of fds is refused", "[upgrade]") {
    auto listener = net::listen_on(loopback(0), 16);
    REQUIRE(listener);
    const std::vector<int> fds(260, listener->get());
    const std::vector<upgrade::OfferedListener> what(fds.size());
    const std::vector<std::string> records = upgrade::encode_offer(what);
    REQUIRE(records.size() == 2);
    // Each row: the one record the old process sends before it is gone, with how many of
    // the fds, and why the offer is refused.
    const auto row = GENERATE(table<std::size_t, std::size_t, std::string>({
        {1, 10, "out of order"},                 // the second record first
        {0, 249, "250 listeners with 249 fds"},  // fewer fds than listeners
        {0, 250, "closed"},                      // gone after the first record
    }));
    const std::size_t record = std::get<0>(row);
    const std::size_t fd_count = std::get<1>(row);
    CAPTURE(record, fd_count);
    auto adoption = adopt_after([&](int sender) {
        REQUIRE(upgrade::send_record(sender, records[record],
                                     std::span<const int>(fds).subspan(0, fd_count)));
    });
    REQUIRE_FALSE(adoption);
    CHECK_THAT(adoption.error().message, Catch::Contains(std::get<2>(row)));
}

TEST_CASE("an offered fd that is not a listening socket is refused", "[upgrade]") {
    UniqueFd unbound(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int one[1] = {unbound.get()};
    const std::vector<upgrade::OfferedListener> single(1);
    auto adoption = adopt_after([&](int sender) {
        REQUIRE(upgrade::send_record(sender, upgrade::encode_offer(single).front(), one));
    });
    REQUIRE_FALSE(adoption);
    CHECK_THAT(adoption.error().message, Catch::Contains("not a listening TCP socket"));
}

TEST_CASE("share_listeners: as many received as workers, one each, the same sockets", "[upgrade]") {
    auto group = net::listen_group(loopback(0), 64, 2);
    REQUIRE(group);
    const auto first = identity((*group)[0].get());
    const auto second = identity((*group)[1].get());
    const net::SocketAddress address = net::local_address((*group)[0].get());
    auto shares = upgrade::share_listeners(adopted(*group), address, 2, 64);
    REQUIRE(shares);
    REQUIRE(shares->size() == 2);
    REQUIRE((*shares)[0].size() == 1);
    REQUIRE((*shares)[1].size() == 1);
    CHECK(identity((*shares)[0][0].fd.get()) == first);
    CHECK(identity((*shares)[1][0].fd.get()) == second);
}

TEST_CASE("share_listeners: more received than workers, every socket still accepted from",
          "[upgrade]") {
    auto group = net::listen_group(loopback(0), 64, 3);
    REQUIRE(group);
    const std::uint16_t port = port_of(group->front().get());
    // Connections queued on every old socket before the handover.
    std::vector<UniqueFd> clients = connect_clients(port, 48);
    const net::SocketAddress address = net::local_address((*group)[0].get());
    auto shares = upgrade::share_listeners(adopted(*group), address, 2, 64);
    REQUIRE(shares);
    REQUIRE(shares->size() == 2);
    CHECK((*shares)[0].size() == 2);  // sockets 0 and 2
    CHECK((*shares)[1].size() == 1);
    int taken = 0;
    for (const auto& share : *shares) {
        for (const upgrade::AdoptedListener& listener : share) {
            taken += accept_queued(listener.fd.get());
        }
    }
    CHECK(taken == 48);
}

TEST_CASE("share_listeners: fewer received than workers, the rest join the group", "[upgrade]") {
    // Received from a one-worker old process: a plain listener, no SO_REUSEPORT.
    const std::uint32_t received = GENERATE(1U, 2U);
    CAPTURE(received);
    auto group = net::listen_group(loopback(0), 64, received);
    REQUIRE(group);
    const std::uint16_t port = port_of(group->front().get());
    const net::SocketAddress address = net::local_address(group->front().get());
    std::vector<UniqueFd> queued = connect_clients(port, 8);  // before: on the old ones
    auto shares = upgrade::share_listeners(adopted(*group), address, 4, 64);
    REQUIRE(shares);
    REQUIRE(shares->size() == 4);
    for (const auto& share : *shares) {
        REQUIRE(share.size() == 1);
        CHECK(port_of(share.front().fd.get()) == port);
    }
    int taken = 0;
    for (std::size_t i = 0; i < received; ++i) {
        taken += accept_queued((*shares)[i].front().fd.get());
    }
    CHECK(taken == 8);
    // After: the kernel spreads new connections over the whole group, the joined sockets
    // included.
    std::vector<UniqueFd> clients = connect_clients(port, 128);
    int per_worker[4] = {0, 0, 0, 0};
    for (std::size_t i = 0; i < 4; ++i) {
        per_worker[i] = accept_queued((*shares)[i].front().fd.get());
    }
    INFO(per_worker[0] << " " << per_worker[1] << " " << per_worker[2] << " " << per_worker[3]);
    CHECK(per_worker[0] + per_worker[1] + per_worker[2] + per_worker[3] == 128);
    for (const int count : per_worker) {
        CHECK(count > 0);
    }
}

TEST_CASE("share_listeners: systemd's one socket goes to every worker", "[upgrade]") {
    auto listener = net::listen_on(loopback(0), 16);
    REQUIRE(listener);
    const auto socket = identity(listener->get());
    const net::SocketAddress address = net::local_address(listener->get());
    std::vector<upgrade::AdoptedListener> handed;
    handed.push_back({std::move(listener).value(), true});
    auto shares = upgrade::share_listeners(std::move(handed), address, 3, 16);
    REQUIRE(shares);
    REQUIRE(shares->size() == 3);
    for (const auto& share : *shares) {
        REQUIRE(share.size() == 1);
        CHECK(share.front().from_systemd);
        CHECK(identity(share.front().fd.get()) == socket);  // the same socket, duplicated
    }
}
