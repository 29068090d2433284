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

#include "http/request_target.h"
#include "splicer/config.h"

namespace splicer::http {

// The Host header's name: port and trailing dot removed, lowercase; "[::1]:80" -> "[::1]".
std::string host_without_port(std::string_view host);

// `host` is the request's Host; an absolute-form `target`'s authority overrides it (RFC 9112
// s. 3.2.2), as request_authority() does.
std::optional<std::size_t> match_route(const std::vector<config::HttpRoute>& routes,
                                       std::string_view host, std::string_view target);

}  // namespace splicer::http
