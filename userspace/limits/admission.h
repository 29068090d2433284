#pragma once
// Admission: whether a just-accepted connection may be held, under the per-listener,
// per-client-address and probing limits (the global max_connections is the slab's capacity).
// Pure bookkeeping, no I/O: the event loop asks at accept, and reports when a connection
// stops probing and when it is released. Refusing the newest keeps everything already held.

#include <cstddef>
#include <cstdint>
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
    // Limits from `config`: one per listener (none = unlimited), per client, probing.
    // Listeners are numbered as the daemon opens them: config.listeners, then the http ones.
    explicit Admission(const config::Config& config);

    // Admits a connection on `listener` from `client` (an address key, see client_key), or
    // says which limit refuses it (nothing counted then). On a probing listener it counts as
    // probing; an http listener's connection neither counts nor is refused by max_probing
    // (its header_timeout bounds a slow client), so a flood on one port cannot refuse the other.
    Refusal admit(std::size_t listener, std::string_view client);
    // Whether connections on `listener` are probed (and so counted by max_probing).
    [[nodiscard]] bool probes(std::size_t listener) const;
    // A probing connection was routed or closed: it no longer counts as probing. Call once.
    void end_probing();
    // The connection is gone. Call once per admitted connection.
    void release(std::size_t listener, std::string_view client);

    [[nodiscard]] std::uint32_t probing() const { return probing_; }
    [[nodiscard]] std::uint32_t on_listener(std::size_t listener) const;
    [[nodiscard]] std::uint32_t from_client(std::string_view client) const;

private:
    std::vector<std::optional<std::uint32_t>> listener_limits_;
    std::vector<std::uint32_t> listener_counts_;
    std::size_t probing_listeners_ = 0;  // the first ones; the http listeners follow
    std::uint32_t client_limit_;
    std::uint32_t probing_limit_;
    std::uint32_t probing_ = 0;
    std::unordered_map<std::string, std::uint32_t> client_counts_;
};

}  // namespace splicer::limits
