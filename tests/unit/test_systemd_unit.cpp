// dist/systemd/splicer.service against the code it starts: its LimitNOFILE holds what the
// default max_connections needs (limits/fd_limit.h) on every plane, so the daemon starts
// with its default without CAP_SYS_RESOURCE (which the unit's bounding set leaves out).

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "limits/fd_limit.h"
#include "splicer/config.h"

namespace {

std::string service_setting(const std::string& key) {
    std::ifstream file(std::string(SPLICER_SOURCE_DIR) + "/dist/systemd/splicer.service");
    for (std::string line; std::getline(file, line);) {
        if (line.rfind(key + "=", 0) == 0) {
            return line.substr(key.size() + 1);
        }
    }
    return "";
}

}  // namespace

TEST_CASE("splicer.service: LimitNOFILE holds the default max_connections on every plane",
          "[systemd]") {
    const std::string limit_text = service_setting("LimitNOFILE");
    CAPTURE(limit_text);
    REQUIRE_FALSE(limit_text.empty());
    const std::uint64_t limit = std::stoull(limit_text);  // one value: soft and hard
    const std::uint32_t connections = splicer::config::kDefaultMaxConnections;
    // The splice plane needs the most: two fds per pipe on top of the connections.
    const std::uint64_t needed =
        splicer::limits::fds_needed(connections, splicer::limits::default_pipes(connections));
    CAPTURE(needed);
    CHECK(limit >= needed);
    // Sized for it, not a blanket "infinity": a runaway leak still meets the limit.
    CHECK(limit <= 2 * needed);
}
