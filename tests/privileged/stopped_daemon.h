#pragma once
// A daemon held stopped (SIGSTOP) while a test lines clients up: the kernel still completes
// their TCP handshakes and queues their bytes, so they are all waiting when the daemon's
// loop runs again (SIGCONT, at the latest when the holder goes).

#include <signal.h>
#include <sys/types.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "support/streams.h"

namespace splicer::test {

// Every thread of `pid` is stopped (a SIGSTOP took effect), within `timeout`.
inline bool every_thread_stopped(pid_t pid, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        bool all = true;
        for (const auto& task :
             std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
            std::ifstream stat(task.path() / "stat");
            const std::string text((std::istreambuf_iterator<char>(stat)),
                                   std::istreambuf_iterator<char>());
            const auto paren = text.rfind(')');
            const char state = paren + 2 < text.size() ? text[paren + 2] : '?';
            all = all && (state == 'T' || state == 't');
        }
        if (all) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
}

// Stops `pid` (REQUIREs that every thread stopped within 5 s) until resume() or the end of
// its scope.
class StoppedDaemon {
public:
    explicit StoppedDaemon(pid_t pid) : pid_(pid) {
        REQUIRE(::kill(pid_, SIGSTOP) == 0);
        REQUIRE(every_thread_stopped(pid_, std::chrono::seconds(5)));
    }
    StoppedDaemon(const StoppedDaemon&) = delete;
    StoppedDaemon& operator=(const StoppedDaemon&) = delete;
    ~StoppedDaemon() { resume(); }

    void resume() {
        if (pid_ > 0) {
            ::kill(pid_, SIGCONT);
            pid_ = 0;
        }
    }

private:
    pid_t pid_;
};

}  // namespace splicer::test
