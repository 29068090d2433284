#include "cli/options.h"

namespace splicer::cli {

std::string usage_text() {
    return R"(usage:
  splicer run   [--config FILE] [--splice-mode auto|sockmap|splice|copy] [--pin-dir DIR]
  splicer check --config FILE
  splicer stats [--pin-dir DIR] [--json]
  splicer selftest
  splicer upgrade --pid PID
  splicer --version | --help

run    serve the configured listeners. Without --config: /etc/splicer/splicer.conf, or the
       embedded default (Snikket behind splicer) where that file does not exist.
check  validate a configuration; print the effective listeners and rules; exit 1 on error.
stats  print the counters of the running daemon, read from the pinned BPF maps; with
       --json, the counters the metrics endpoint serves, as one JSON object.
selftest  run the sockmap self-test on this kernel (the one `auto` runs at start) and print
       each step with ok or FAILED and its time; exit 0 when all pass, 1 otherwise. Root.

upgrade  ask the daemon PID (the main process: `systemctl show -p MainPID splicer`) to
       start the binary installed at its path now and hand it the listening sockets
       (SIGUSR2); the daemon logs upgraded or upgrade_failed. README "Upgrading".

--config FILE        libconfig file, a superset of sslh's configuration format
--splice-mode MODE   data plane, overriding the config's splice_mode
--pin-dir DIR        where BPF objects are pinned (default /sys/fs/bpf/splicer)
)";
}

Result<Options> parse_options(const std::vector<std::string>& args) {
    Options options;
    if (args.empty()) {
        return Error{"no command given"};
    }
    const std::string& command = args[0];
    if (command == "--version" || command == "version") {
        options.command = Command::version;
        return options;
    }
    if (command == "--help" || command == "-h" || command == "help") {
        options.command = Command::help;
        return options;
    }
    if (command == "run") {
        options.command = Command::run;
    } else if (command == "check") {
        options.command = Command::check;
    } else if (command == "stats") {
        options.command = Command::stats;
    } else if (command == "selftest") {
        options.command = Command::selftest;
    } else if (command == "upgrade") {
        options.command = Command::upgrade;
    } else {
        return Error{"unknown command \"" + command + "\""};
    }
    for (std::size_t i = 1; i < args.size(); ++i) {
        const std::string& arg = args[i];
        auto take_value = [&]() -> std::optional<std::string> {
            if (i + 1 >= args.size()) {
                return std::nullopt;
            }
            return args[++i];
        };
        if (arg == "--help" || arg == "-h") {
            options.command = Command::help;
            return options;
        }
        if (options.command == Command::upgrade) {
            const auto value = arg == "--pid" ? take_value() : std::nullopt;
            if (arg != "--pid") {
                return Error{"unknown option \"" + arg + "\" for " + command};
            }
            // Digits only, a real pid: never 0 or -1 (kill(2) would signal a group or all).
            if (!value || value->empty() || value->size() > 9 ||
                value->find_first_not_of("0123456789") != std::string::npos ||
                std::stoi(*value) <= 1) {
                return Error{"--pid needs a process id above 1"};
            }
            options.pid = std::stoi(*value);
            continue;
        }
        if (options.command == Command::selftest) {
            return Error{"unknown option \"" + arg + "\" for " + command};
        }
        const bool takes_config = options.command != Command::stats;
        const bool takes_mode = options.command == Command::run;
        const bool takes_pin_dir = options.command != Command::check;
        if (arg == "--config" && takes_config) {
            options.config_path = take_value();
            if (!options.config_path) {
                return Error{"--config needs a file"};
            }
        } else if (arg == "--splice-mode" && takes_mode) {
            const auto value = take_value();
            options.splice_mode = value ? config::splice_mode_from_string(*value) : std::nullopt;
            if (!options.splice_mode) {
                return Error{"--splice-mode needs one of auto, sockmap, splice, copy"};
            }
        } else if (arg == "--json" && options.command == Command::stats) {
            options.json = true;
        } else if (arg == "--pin-dir" && takes_pin_dir) {
            const auto value = take_value();
            if (!value || value->empty()) {
                return Error{"--pin-dir needs a directory"};
            }
            options.pin_dir = *value;
        } else {
            return Error{"unknown option \"" + arg + "\" for " + command};
        }
    }
    if (options.command == Command::upgrade && !options.pid) {
        return Error{"upgrade needs --pid PID"};
    }
    if (options.command == Command::check && !options.config_path) {
        return Error{"check needs --config FILE"};
    }
    return options;
}

}  // namespace splicer::cli
