#include "support/haproxy_process.h"

#include <fcntl.h>

#include <utility>

#include "splicer/unique_fd.h"
#include "support/listening_child.h"

namespace splicer::test {

HaproxyProcess::HaproxyProcess(const std::string& config_text,
                               const std::vector<std::uint16_t>& ports,
                               std::vector<std::string> command_prefix,
                               std::function<bool(std::uint16_t)> listening)
    : dir_("splicer-haproxy") {
    const auto config_path = dir_.write_file("haproxy.cfg", config_text);
    const auto log_path = dir_.path() / "haproxy.log";
    const UniqueFd log_fd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    SpawnOptions spawn;
    spawn.argv = std::move(command_prefix);
    spawn.argv.insert(spawn.argv.end(), {"haproxy", "-db", "-f", config_path.string()});
    spawn.stdout_fd = log_fd.get();
    spawn.stderr_fd = log_fd.get();
    process_ = ChildProcess(spawn);
    wait_until_listening(process_, {.name = "haproxy",
                                    .ports = ports,
                                    .listening = std::move(listening),
                                    .log = [this] { return log(); }});
}

HaproxyProcess::~HaproxyProcess() {
    (void)process_.terminate(std::chrono::seconds(2));
}

std::string HaproxyProcess::log() const {
    return read_file(dir_.path() / "haproxy.log");
}

}  // namespace splicer::test
