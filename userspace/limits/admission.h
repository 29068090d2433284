#pragma once
// Admission: whether a just-accepted connection may be held, under max_connections and the
// per-listener, per-client and probing limits. Pure bookkeeping, no I/O: the event loops ask
// at accept, and report when a connection stops probing and when it is released. Refusing
// the newest keeps everything already held.
//
// One Admission serves every worker (`workers`, daemon/daemon.cpp), so the limits are the
// daemon's, not a loop's: each call takes a mutex for a few map operations. Uncontended
// (one worker) that is two atomic instructions; with several, accepts are what contends,
// and an accept costs far more system calls than this lock.
//
// max_connections_per_client applies only under pressure (under_pressure()): while at least
// half of max_connections are held, or at least half of max_probing are probing. A lone busy
// client on an idle daemon (a NAT, a load test: 2,000 connections from one address) is then
// served in full, as nginx, HAProxy and sslh serve it; once the daemon fills up, the clients
// over their limit, the heaviest, are refused first, while every other client is refused
// only by the hard limits (max_connections, a listener's, max_probing). Like nginx's
// limit_conn and HAProxy's `tcp-request connection reject if { sc_conn_cur gt N }`, the limit
// refuses newcomers and never sheds connections already held: those are served clients
// whose bytes would be cut mid-stream.

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "splicer/config.h"

namespace splicer::limits {

// Which limit refused a connection; `all_full` is the global max_connections (the slab).
enum class Refusal { none, all_full, listener_full, client_full, probing_full };
inline constexpr std::size_t kRefusalKinds = 4;  // all but none

// "max_connections", "max_connections_per_listener", "max_connections_per_client",
// "max_probing": the setting that refused.
std::string_view to_string(Refusal refusal);

class Admission {
public:
    // Limits from `config`: one per listener (none = unlimited), per client, probing;
    // `max_connections` is what the loop holds at most (its fd plan), against which pressure
    // is measured. Listeners are numbered as the daemon opens them: config.listeners, then
    // the http ones.
    Admission(const config::Config& config, std::uint32_t max_connections);

    // Admits a connection on `listener` from `client` (a client key, net::host_key), or says
    // which limit refuses it (nothing counted then): max_connections first. On a probing listener it counts as
    // probing; an http listener's connection neither counts nor is refused by max_probing
    // (its header_timeout bounds a slow client), so a flood on one port cannot refuse the other.
    Refusal admit(std::size_t listener, std::string_view client);
    // A PROXY-accepting listener's connection is admitted at accept with an empty `client`
    // (its peer is the balancer, whose every client would count as one), then per client
    // once its header named the client: admit_client. Until then it is no client's.
    Refusal admit_client(std::string_view client);
    // Whether connections on `listener` are probed (and so counted by max_probing).
    [[nodiscard]] bool probes(std::size_t listener) const;
    // A probing connection was routed or closed: it no longer counts as probing. Call once.
    void end_probing();
    // The connection is gone. Call once per admitted connection, with the client it was
    // last admitted as (empty: none).
    void release(std::size_t listener, std::string_view client);

    // At least half of max_connections held, or half of max_probing probing: the per-client
    // limit applies.
    [[nodiscard]] bool under_pressure() const;

    [[nodiscard]] std::uint32_t held() const;
    [[nodiscard]] std::uint32_t probing() const;
    [[nodiscard]] std::uint32_t on_listener(std::size_t listener) const;
    [[nodiscard]] std::uint32_t from_client(std::string_view client) const;

private:
    // The same, with mutex_ held.
    [[nodiscard]] bool under_pressure_locked() const;
    [[nodiscard]] std::uint32_t from_client_locked(std::string_view client) const;

    mutable std::mutex mutex_;
    std::vector<std::optional<std::uint32_t>> listener_limits_;
    std::vector<std::uint32_t> listener_counts_;
    std::size_t probing_listeners_ = 0;  // the first ones; the http listeners follow
    std::uint32_t max_connections_;
    std::uint32_t client_limit_;
    std::uint32_t probing_limit_;
    std::uint32_t held_ = 0;
    std::uint32_t probing_ = 0;
    std::unordered_map<std::string, std::uint32_t> client_counts_;
};

}  // namespace splicer::limits
