#include "support/echo_process.h"

#include <csignal>
#include <utility>

#include "support/daemon.h"  // free_port
#include "support/listening_child.h"

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
    // The probe connection is echoed to and closed.
    wait_until_listening(process_, {.name = "echo server", .ports = {port_}, .timeout = 5s});
}

}  // namespace splicer::test
