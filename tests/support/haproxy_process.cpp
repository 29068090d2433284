#include "support/haproxy_process.h"

#include <fcntl.h>

#include <stdexcept>
#include <thread>

#include "splicer/unique_fd.h"
#include "support/sockets.h"

namespace splicer::test {
namespace {

bool all_accept(const std::vector<std::uint16_t>& ports) {
    for (const std::uint16_t port : ports) {
        try {
            (void)connect_to(port, false, std::chrono::milliseconds(200));
        } catch (const std::exception&) {
            return false;
        }
    }
    return true;
}

}  // namespace

HaproxyProcess::HaproxyProcess(const std::string& config_text,
                               const std::vector<std::uint16_t>& ports)
    : dir_("splicer-haproxy") {
    const auto config_path = dir_.write_file("haproxy.cfg", config_text);
    const auto log_path = dir_.path() / "haproxy.log";
    const UniqueFd log_fd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    SpawnOptions spawn;
    spawn.argv = {"haproxy", "-db", "-f", config_path.string()};
    spawn.stdout_fd = log_fd.get();
    spawn.stderr_fd = log_fd.get();
    process_ = ChildProcess(spawn);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline && process_.running()) {
        if (all_accept(ports)) {
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("haproxy did not listen (" + process_.describe_end() + "): " + log());
}

HaproxyProcess::~HaproxyProcess() {
    (void)process_.terminate(std::chrono::seconds(2));
}

std::string HaproxyProcess::log() const {
    return read_file(dir_.path() / "haproxy.log");
}

}  // namespace splicer::test
