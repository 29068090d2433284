#include "support/metrics_scrape.h"

#include <sstream>
#include <stdexcept>

#include "support/command.h"

namespace splicer::test {

std::map<std::string, std::uint64_t> metric_samples(const std::string& text) {
    std::map<std::string, std::uint64_t> samples;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        const std::size_t space = line.rfind(' ');
        if (line.empty() || line[0] == '#' || space == std::string::npos) {
            continue;
        }
        samples[line.substr(0, space)] = std::stoull(line.substr(space + 1));
    }
    return samples;
}

std::map<std::string, std::uint64_t> scrape_metrics(std::uint16_t port) {
    const CommandResult result =
        run_command("curl -sS -m 5 http://127.0.0.1:" + std::to_string(port) + "/metrics");
    if (result.exit_code != 0) {
        throw std::runtime_error("scraping port " + std::to_string(port) + ": curl exited " +
                                 std::to_string(result.exit_code) + ": " + result.output);
    }
    return metric_samples(result.output);
}

}  // namespace splicer::test
