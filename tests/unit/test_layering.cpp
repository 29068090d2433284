// The layers of userspace/: the daemon (event loop, connection records) sits on top of the
// planes, the HTTP and probing logic, the ring and the rest, and none of those imports it
// back (STYLE.md "No lower layer imports the daemon"). A plane sees a connection through
// plane::Flow, not through daemon::Connection. An include of "daemon/..." added to a lower
// folder fails here, naming the file and line.

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

const std::string kSource = SPLICER_SOURCE_DIR;

// Every `#include "daemon/...` line under userspace/<folder>, as "file:line: text".
std::vector<std::string> daemon_includes(const std::string& folder) {
    std::vector<std::string> found;
    const std::filesystem::path root = kSource + "/userspace/" + folder;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
        if (!entry.is_regular_file()) {
            continue;
        }
        std::ifstream in(entry.path());
        std::string line;
        for (int number = 1; std::getline(in, line); ++number) {
            if (line.rfind("#include \"daemon/", 0) == 0) {
                found.push_back(entry.path().lexically_relative(kSource).string() + ":" +
                                std::to_string(number) + ": " + line);
            }
        }
    }
    return found;
}

}  // namespace

TEST_CASE("no folder below the daemon includes daemon headers", "[layering]") {
    const std::string folder =
        GENERATE(as<std::string>{}, "plane", "http", "probe", "uring", "net", "route", "limits",
                 "config", "bpf", "selftest", "log", "metrics", "security", "service", "tls",
                 "privsep", "handoff", "upgrade");
    CAPTURE(folder);
    REQUIRE(std::filesystem::is_directory(kSource + "/userspace/" + folder));
    const std::vector<std::string> found = daemon_includes(folder);
    for (const std::string& include : found) {
        UNSCOPED_INFO(include);
    }
    CHECK(found.empty());
}
