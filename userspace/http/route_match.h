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

// The path of an origin-form request-target (before '?').
std::string_view target_path(std::string_view target);

std::optional<std::size_t> match_route(const std::vector<config::HttpRoute>& routes,
                                       std::string_view host, std::string_view target);

}  // namespace splicer::http
