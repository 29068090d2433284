// splicer's entry point: the only place that turns errors into exit codes.

#include <iostream>
#include <string>
#include <vector>

#include "cli/check_command.h"
#include "cli/options.h"
#include "cli/selftest_command.h"
#include "cli/stats_command.h"
#include "cli/upgrade_command.h"
#include "daemon/daemon.h"
#include "splicer/log.h"

int main(int argc, char** argv) {
    using splicer::cli::Command;
    const std::vector<std::string> args(argv + 1, argv + argc);
    auto options = splicer::cli::parse_options(args);
    if (!options) {
        std::cerr << "splicer: " << options.error().message << "\n\n" << splicer::cli::usage_text();
        return 2;
    }
    switch (options->command) {
        case Command::version: std::cout << "splicer " << SPLICER_VERSION << '\n'; return 0;
        case Command::help: std::cout << splicer::cli::usage_text(); return 0;
        case Command::check:
            return splicer::cli::check_command(*options->config_path, std::cout, std::cerr);
        case Command::run: {
            auto ran = splicer::daemon::run(
                {options->config_path, options->splice_mode, options->pin_dir});
            if (!ran) {
                splicer::log::error("fatal", {{"error", ran.error().message}});
                return 1;
            }
            return 0;
        }
        case Command::selftest: return splicer::cli::selftest_command(std::cout);
        case Command::upgrade:
            return splicer::cli::upgrade_command(*options->pid, std::cout, std::cerr);
        case Command::stats:
            return splicer::cli::stats_command(options->pin_dir, options->json, std::cout,
                                               std::cerr);
    }
    return 2;
}
