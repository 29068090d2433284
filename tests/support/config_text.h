#pragma once
// Config text and diagnostics for the config loader's unit tests: the loader's messages as
// `splicer check` prints them, and one small config with a slot in each place a PROXY
// protocol setting goes (tests/unit/test_config_proxy_*.cpp).

#include <string>
#include <string_view>
#include <vector>

#include "splicer/config.h"

namespace splicer::test {

// Every diagnostic of `result`, formatted as `splicer check` prints it, one a line.
std::string all_diagnostics(const config::LoadResult& result, std::string_view source = "<config>");

// Each diagnostic as `splicer check` prints it for a file named splicer.conf, one an entry.
std::vector<std::string> formatted_diagnostics(const std::vector<config::Diagnostic>& diagnostics);

// Settings put verbatim into one place each of proxy_config's text ("" leaves it plain).
struct ProxyConfigSlots {
    std::string listen;       // the 443 `listen` entry (line 1)
    std::string rule;         // the tls `protocols` entry (line 3; an xmpp rule follows, line 4)
    std::string http_listen;  // the `http.listen` entry (line 6)
    std::string route;        // the `http.routes` entry (line 8)
};

// A listener on 443 with a tls and an xmpp rule, and port 80 with one route, the slots'
// settings in their places, on the lines named above (tests check diagnostics' lines).
std::string proxy_config(const ProxyConfigSlots& slots);

}  // namespace splicer::test
