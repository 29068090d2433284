// The splicer binary's command line, run as a user would run it.

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>

#include "support/command.h"

using splicer::test::run_command;

namespace {

const std::string kSplicer = SPLICER_BINARY;
const std::string kFixtures = SPLICER_FIXTURES_DIR;

// A config file in /tmp, removed when the test ends.
class TempConfig {
public:
    explicit TempConfig(const std::string& text) {
        char name[] = "/tmp/splicer-test-XXXXXX.conf";
        const int fd = ::mkstemps(name, 5);
        REQUIRE(fd >= 0);
        ::close(fd);
        path_ = name;
        std::ofstream(path_) << text;
    }
    ~TempConfig() { std::remove(path_.c_str()); }
    [[nodiscard]] const std::string& path() const { return path_; }

private:
    std::string path_;
};

}  // namespace

TEST_CASE("splicer --version and --help", "[cli]") {
    const auto version = run_command(kSplicer + " --version");
    CHECK(version.exit_code == 0);
    CHECK_THAT(version.output, Catch::StartsWith("splicer " SPLICER_VERSION));
    const auto help = run_command(kSplicer + " --help");
    CHECK(help.exit_code == 0);
    for (const char* command :
         {"splicer run", "splicer check --config FILE", "splicer stats", "splicer selftest",
          "splicer upgrade --pid PID"}) {
        CHECK_THAT(help.output, Catch::Contains(command));
    }
}

TEST_CASE("splicer check prints the Snikket sslh config's listeners and rules in order",
          "[cli]") {
    const auto result = run_command(kSplicer + " check --config " + kFixtures +
                                    "/config/snikket-sslh.conf");
    CHECK(result.exit_code == 0);
    const std::string& out = result.output;
    const auto listen = out.find("listen 0.0.0.0:443");
    const auto rule0 = out.find("rule 0: tls alpn=[xmpp-client] -> 127.0.0.1:5223");
    const auto rule1 = out.find("rule 1: tls sni=[chat.example.com, groups.chat.example.com, "
                                "share.chat.example.com] -> 127.0.0.1:5443");
    const auto rule2 = out.find("rule 2: xmpp -> 127.0.0.1:5222");
    CAPTURE(out);
    REQUIRE(listen != std::string::npos);
    REQUIRE(rule0 != std::string::npos);
    REQUIRE(rule1 != std::string::npos);
    REQUIRE(rule2 != std::string::npos);
    CHECK(listen < rule0);
    CHECK(rule0 < rule1);
    CHECK(rule1 < rule2);
}

TEST_CASE("splicer check names each error's setting and line and exits 1", "[cli]") {
    const TempConfig config(R"(listen: ( { host: "0.0.0.0"; port: "443"; } );
protocols: (
  { name: "tls"; host: "127.0.0.1"; port: "99999"; },
  { name: "smtp"; host: "127.0.0.1"; port: 25; }
);
colour: "blue";
)");
    const auto result = run_command(kSplicer + " check --config " + config.path());
    CAPTURE(result.output);
    CHECK(result.exit_code == 1);
    CHECK_THAT(result.output, Catch::Contains(config.path() + ":3: error: protocols.[0].port"));
    CHECK_THAT(result.output, Catch::Contains(config.path() + ":4: error: protocols.[1].name"));
    CHECK_THAT(result.output, Catch::Contains(config.path() + ":6: error: colour"));
    CHECK_THAT(result.output, !Catch::Contains("configuration ok"));
}

TEST_CASE("splicer check refuses a regex that does not compile", "[cli]") {
    const TempConfig config(R"(listen: ( { host: "0.0.0.0"; port: "443"; } );
protocols: ( { name: "regex"; host: "127.0.0.1"; port: 9; regex_patterns: [ "(open" ]; } );
)");
    const auto result = run_command(kSplicer + " check --config " + config.path());
    CHECK(result.exit_code == 1);
    CHECK_THAT(result.output, Catch::Contains("(open"));
}

TEST_CASE("splicer check on a missing file", "[cli]") {
    const auto result = run_command(kSplicer + " check --config /nonexistent/splicer.conf");
    CHECK(result.exit_code == 1);
    CHECK_THAT(result.output, Catch::Contains("/nonexistent/splicer.conf"));
}

TEST_CASE("splicer rejects unknown commands and options with usage", "[cli]") {
    for (const char* args : {"frobnicate", "check", "run --splice-mode warp", "stats --config x",
                             "selftest --splice-mode sockmap", "upgrade", "upgrade --pid x",
                             "upgrade --pid -1", "upgrade --pid 1", "upgrade --config y"}) {
        CAPTURE(args);
        const auto result = run_command(kSplicer + " " + args);
        CHECK(result.exit_code == 2);
        CHECK_THAT(result.output, Catch::Contains("usage:"));
    }
}
