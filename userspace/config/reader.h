#pragma once
// Helpers the config sections share: a diagnostics collector and typed reads of libconfig
// settings. Every read reports a problem as a diagnostic naming the setting's path and line
// and returns nullopt, so a section goes on and the user sees every error in one pass.
//
// Setting paths are libconfig's own (Setting::getPath): group members by name, list and array
// elements by 0-based index in brackets, e.g. "protocols.[1].port" for the port of the second
// protocol. Rule and route numbers in describe() use the same 0-based indices.

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <libconfig.h++>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "splicer/config.h"

namespace splicer::config::detail {

class Diagnostics {
public:
    void error(const libconfig::Setting& setting, std::string message);
    void notice(const libconfig::Setting& setting, std::string message);
    void error_at(std::string setting, int line, std::string message);
    void notice_at(std::string setting, int line, std::string message);

    [[nodiscard]] std::size_t error_count() const { return error_count_; }
    std::vector<Diagnostic> take() { return std::move(diagnostics_); }

private:
    std::vector<Diagnostic> diagnostics_;
    std::size_t error_count_ = 0;
};

int line_of(const libconfig::Setting& setting);
std::string path_of(const libconfig::Setting& setting);
// The path a member `name` of `group` has, or would have if it were there.
std::string member_path(const libconfig::Setting& group, std::string_view name);
// "a string", "a list ( )", ... for messages.
std::string_view type_name(const libconfig::Setting& setting);

// The member, or nullptr.
const libconfig::Setting* find_member(const libconfig::Setting& group, const char* name);
// The member, or nullptr after an error "missing required setting" at the group's line.
const libconfig::Setting* require_member(const libconfig::Setting& group, const char* name,
                                         Diagnostics& diagnostics);

// Reports a member of `group` that is none of `known` as an unknown setting; returns false then.
bool check_known(const libconfig::Setting& member, std::initializer_list<std::string_view> known,
                 Diagnostics& diagnostics);

std::optional<std::string> read_string(const libconfig::Setting& setting, Diagnostics& diagnostics);
std::optional<bool> read_bool(const libconfig::Setting& setting, Diagnostics& diagnostics);
// An integer of either libconfig width.
std::optional<long long> read_integer(const libconfig::Setting& setting, Diagnostics& diagnostics);
// A connection-count limit (max_connections and the like): an integer 1..1000000.
std::optional<std::uint32_t> read_connection_limit(const libconfig::Setting& setting,
                                                   Diagnostics& diagnostics);
// A string ("443") or an integer.
// A prefix length in bits, 1..`max_bits` (32 for IPv4, 128 for IPv6).
std::optional<std::uint32_t> read_prefix_length(const libconfig::Setting& setting,
                                                std::uint32_t max_bits, Diagnostics& diagnostics);
// sslh's `proxyprotocol` on a rule or an http route: the PROXY protocol version, 1 or 2.
std::optional<std::uint8_t> read_proxy_protocol(const libconfig::Setting& setting,
                                                Diagnostics& diagnostics);
std::optional<std::uint16_t> read_port(const libconfig::Setting& setting, Diagnostics& diagnostics);
std::optional<std::string> read_host(const libconfig::Setting& setting, Diagnostics& diagnostics);
// A whole number of seconds, 1..kMaxSeconds.
std::optional<std::chrono::seconds> read_seconds(const libconfig::Setting& setting,
                                                 Diagnostics& diagnostics);
// "20M" or an integer number of bytes.
std::optional<std::uint64_t> read_size(const libconfig::Setting& setting, Diagnostics& diagnostics);
// An array [ ] or list ( ) of strings; each element that is not a string is an error of its own.
std::optional<std::vector<std::string>> read_string_list(const libconfig::Setting& setting,
                                                         Diagnostics& diagnostics);

// An array of networks ("198.18.0.0/15", "::1/128", a bare address: its host), each parsed
// by parse_network (splicer/config.h); each bad one is an error of its own.
std::optional<std::vector<Network>> read_network_list(const libconfig::Setting& setting,
                                                      Diagnostics& diagnostics);

// The groups of a list such as `listen` or `protocols`, each checked to be a group. An empty
// array `[]` reads as an empty list (libconfig cannot tell them apart without elements).
// nullopt when the setting is not a list at all.
std::optional<std::vector<const libconfig::Setting*>> read_group_list(
    const libconfig::Setting& setting, Diagnostics& diagnostics);
// read_group_list for a list that must hold at least one group (`listen`, `protocols`,
// `certificates`): an empty one is an error "empty list: at least one `what` is needed"
// (what: "listener", "rule", ...). nullopt when not a list or empty.
std::optional<std::vector<const libconfig::Setting*>> read_nonempty_groups(
    const libconfig::Setting& setting, std::string_view what, Diagnostics& diagnostics);

// One listener group { host; port; }. With `sslh_options`, also sslh's listen options
// (is_udp, keepalive, transparent, max_connections). nullopt if anything was wrong.
std::optional<Listener> read_listener(const libconfig::Setting& group, bool sslh_options,
                                      Diagnostics& diagnostics);

// Reports a second listener on an address already listened on (binding would fail later with
// EADDRINUSE, far from the config line that caused it). `setting` labels the diagnostic.
void check_duplicate_listeners(const std::vector<Listener>& earlier, const Listener& added,
                               const std::string& setting, Diagnostics& diagnostics);

// Which section an http route is in: port 80's `http` (plain backends only) or `https` (TLS
// termination: also https:// backends, verify and ca_file).
enum class RouteKind { http, https };

// The `routes` list of either section (http_section.cpp), appended to `routes`.
void read_http_routes(const libconfig::Setting& setting, RouteKind kind,
                      std::vector<HttpRoute>& routes, Diagnostics& diagnostics);

// A setting of HttpLimits (max_body_size, header_timeout, idle_timeout, backend_timeout,
// keepalive_connections, keepalive_timeout), as
// both the `http` and the `https` group take them (http_section.cpp): reads it into `limits`
// and returns true, or returns false when `member` is no such setting.
bool read_http_limit(const libconfig::Setting& member, HttpLimits& limits,
                     Diagnostics& diagnostics);

// Loads the `http` group (http_section.cpp).
std::optional<HttpConfig> read_http_section(const libconfig::Setting& http,
                                            Diagnostics& diagnostics);

// Loads the `https` group (https_section.cpp).
std::optional<HttpsConfig> read_https_section(const libconfig::Setting& https,
                                              Diagnostics& diagnostics);

// Loads the `metrics` group (metrics_section.cpp).
std::optional<MetricsConfig> read_metrics_section(const libconfig::Setting& metrics,
                                                  Diagnostics& diagnostics);

}  // namespace splicer::config::detail
