#include "service/notify.h"

#include <systemd/sd-daemon.h>

#include <atomic>
#include <cstdint>
#include <ctime>

#include "splicer/log.h"
#include "splicer/result.h"

namespace splicer::service {
namespace {

// libsystemd rather than the protocol by hand: it finds NOTIFY_SOCKET (a path, or '@' for an
// abstract socket), and a systemd that changes the wire format changes it with it.
void send(const std::string& state) {
    // unset_environment = 0: NOTIFY_SOCKET must stay for the reloads and the stop.
    const int sent = ::sd_notify(0, state.c_str());
    if (sent >= 0) {
        return;
    }
    // Once: a notify socket that refuses one message (gone, or not writable by the run user)
    // refuses them all, and the daemon serves on regardless.
    static std::atomic<bool> logged{false};
    if (!logged.exchange(true)) {
        log::warning("notify_failed", {{"error", errno_text(sent)}});
    }
}

std::uint64_t monotonic_microseconds() {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000U +
           static_cast<std::uint64_t>(now.tv_nsec) / 1'000U;
}

}  // namespace

void notify_ready(const std::string& status) {
    send("READY=1\nSTATUS=" + status);
}

void notify_reloading() {
    send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_microseconds()));
}

void notify_main_pid(int pid) {
    send("MAINPID=" + std::to_string(pid) + "\nSTATUS=handed over to pid " + std::to_string(pid));
}

void notify_stopping() {
    send("STOPPING=1");
}

}  // namespace splicer::service
