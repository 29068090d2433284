#include "cli/selftest_command.h"

#include <sys/utsname.h>

#include <cstdio>
#include <string>

#include "plane/sockmap_plane.h"
#include "selftest/sockmap_selftest.h"
#include "splicer/config.h"

namespace splicer::cli {
namespace {

std::string step_line(const std::string& name, bool ok, std::chrono::microseconds took) {
    char line[128];
    std::snprintf(line, sizeof(line), "%-26s %-7s %8.1f ms", name.c_str(), ok ? "ok" : "FAILED",
                  static_cast<double>(took.count()) / 1000.0);
    return line;
}

}  // namespace

int selftest_command(std::ostream& out) {
    utsname system{};
    ::uname(&system);
    out << "sockmap self-test on Linux " << system.release << '\n';
    auto report =
        selftest::run_sockmap_selftest(plane::sockmap_load_options(config::kDefaultMaxConnections),
                                       selftest::StopAfter::all_steps);
    if (!report) {
        out << step_line("load", false, {}) << '\n' << "  " << report.error().message << '\n';
        return 1;
    }
    out << step_line("load", true, report->load_took) << '\n';
    for (const auto& step : report->steps) {
        out << step_line(step.name, step.ok, step.took) << '\n';
        if (!step.ok) {
            out << "  " << step.detail << '\n';
        }
    }
    out << (report->ok() ? "all steps ok" : "sockmap is not to be trusted on this kernel") << '\n';
    return report->ok() ? 0 : 1;
}

}  // namespace splicer::cli
