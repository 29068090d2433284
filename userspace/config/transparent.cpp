// Which backend connections are transparent (README "Transparent mode"): sslh's top-level
// `transparent` and its per-protocol `transparent`. sslh ORs the two; here a rule's own
// setting wins, so `transparent: false;` on one rule keeps that backend on splicer's address
// under a global `transparent: true;` (sslh would still connect it transparently). An sslh
// file that sets only one of them means the same in both.

#include "splicer/config.h"

namespace splicer::config {

bool transparent_for(const Config& config, const Rule& rule) {
    return rule.transparent.value_or(config.transparent);
}

bool uses_transparent(const Config& config) {
    for (const Rule& rule : config.rules) {
        if (transparent_for(config, rule)) {
            return true;
        }
    }
    if (config.http) {
        for (const HttpRoute& route : config.http->routes) {
            if (route.transparent) {
                return true;
            }
        }
    }
    return false;
}

}  // namespace splicer::config
