#include "support/echo_process.h"

#include <csignal>
#include <stdexcept>
#include <thread>
#include <utility>

#include "support/daemon.h"  // free_port
#include "support/sockets.h"

namespace splicer::test {

using namespace std::chrono_literals;

EchoProcess::EchoProcess(std::string binary) : binary_(std::move(binary)), port_(free_port()) {
    start();
}

void EchoProcess::kill() {
    process_.signal(SIGKILL);
    process_.wait_for_exit(5s);
}

void EchoProcess::restart() {
    if (process_.running()) {
        kill();
    }
    start();
}

void EchoProcess::start() {
    process_ = ChildProcess(SpawnOptions{.argv = {binary_, "127.0.0.1", std::to_string(port_)}});
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (true) {
        try {
            connect_to(port_, false, 1s);  // the probe connection is echoed to and closed
            return;
        } catch (const std::runtime_error&) {
            if (!process_.running() || std::chrono::steady_clock::now() >= deadline) {
                throw std::runtime_error("echo server on port " + std::to_string(port_) +
                                         " did not start");
            }
            std::this_thread::sleep_for(20ms);
        }
    }
}

}  // namespace splicer::test
