#include "support/listening_child.h"

#include <stdexcept>
#include <thread>

#include "support/sockets.h"

namespace splicer::test {

bool accepts_on_loopback(std::uint16_t port) {
    try {
        (void)connect_to(port, false, std::chrono::milliseconds(200));
        return true;
    } catch (const std::runtime_error&) {
        return false;
    }
}

void wait_until_listening(ChildProcess& child, const ListenWait& wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait.timeout;
    const auto& listening = wait.listening ? wait.listening : accepts_on_loopback;
    for (const std::uint16_t port : wait.ports) {
        while (!listening(port)) {
            // Asked after the check, so a child that listened and then died is still told.
            const bool ended = !child.running();
            if (ended || std::chrono::steady_clock::now() >= deadline) {
                std::string message =
                    wait.name +
                    (ended ? " ended before listening on " + std::to_string(port)
                           : " did not listen on " + std::to_string(port) + " within " +
                                 std::to_string(wait.timeout.count()) + " ms") +
                    " (" + child.describe_end() + ")";
                if (wait.log) {
                    message += ": " + wait.log();
                }
                throw std::runtime_error(message);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
}

}  // namespace splicer::test
