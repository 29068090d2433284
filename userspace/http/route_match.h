#pragma once
// Which http route serves a request. Like nginx's server_name then location: the Host picks
// the most specific host pattern present (an exact name, then the longest "*.suffix", then
// "*"); among the routes naming that pattern the longest matching path_prefix wins, the first
// listed on a tie. A plain string prefix, as nginx's prefix locations: "/api" also matches
// "/apix"; write "/api/" to mean the folder.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "splicer/config.h"

namespace splicer::http {

// The Host header's name: port and trailing dot removed, lowercase; "[::1]:80" -> "[::1]".
std::string host_without_port(std::string_view host);

// The authority of an absolute-form request-target ("http://host:port/path" -> "host:port"),
// "" for origin-form. RFC 9112 s. 3.2.2: when present it overrides the Host header.
std::string_view target_authority(std::string_view target);

// A request-target in origin-form: "http://h/a?b" -> "/a?b", "http://h" -> "/"; an
// origin-form target unchanged.
std::string origin_form(std::string_view target);

// The path of a request-target (before '?'), for origin-form and absolute-form alike.
std::string target_path(std::string_view target);

std::optional<std::size_t> match_route(const std::vector<config::HttpRoute>& routes,
                                       std::string_view host, std::string_view target);

}  // namespace splicer::http
