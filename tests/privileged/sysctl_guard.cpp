// The sockmap plane raises net.core.wmem_max at start-up (plane/send_buffer.h), as it would
// on a real host. The privileged tests put the value they found back when they end, so a test
// run leaves the machine's settings as they were.
//
// CTest runs privileged test processes two at a time (tests/CMakeLists.txt): one process
// saving the value at its start and restoring it at its end would, with another overlapping
// it, save the other's raised value and put that back last. So the processes running at
// once share one record (under flock): the value found by the first of them, and the pids
// of those still running; the last one to end (dead pids are dropped: a crashed test does
// not keep the value raised for good) restores it.

// Listener types (TestEventListenerBase) are declared only with this, before the header.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "splicer/unique_fd.h"

namespace {

constexpr const char* kWmemMax = "/proc/sys/net/core/wmem_max";
// Root-only, on tmpfs: gone at reboot with the setting it records. Left in place, empty.
constexpr const char* kRecord = "/run/splicer-tests-wmem_max";

struct Record {
    std::string saved;  // the value before the first of the running test processes
    std::set<pid_t> running;
};

std::string current_value() {
    std::string value;
    std::ifstream(kWmemMax) >> value;
    return value;
}

bool alive(pid_t pid) {
    return ::kill(pid, 0) == 0 || errno == EPERM;
}

// "VALUE PID PID ...", the dead pids left out; empty when absent or unreadable.
Record read_record(int fd) {
    Record record;
    std::string text(4096, '\0');
    const ssize_t got = ::pread(fd, text.data(), text.size(), 0);
    text.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
    std::istringstream fields(text);
    fields >> record.saved;
    long pid = 0;
    while (fields >> pid) {
        if (pid > 0 && alive(static_cast<pid_t>(pid))) {
            record.running.insert(static_cast<pid_t>(pid));
        }
    }
    return record;
}

void write_record(int fd, const Record& record) {
    std::string text = record.saved;
    for (const pid_t pid : record.running) {
        text += " " + std::to_string(pid);
    }
    text += "\n";
    if (::ftruncate(fd, 0) == 0) {
        (void)::pwrite(fd, text.data(), text.size(), 0);
    }
}

class WmemMaxGuard final : public Catch::TestEventListenerBase {
public:
    using TestEventListenerBase::TestEventListenerBase;

    void testRunStarting(const Catch::TestRunInfo& info) override {
        TestEventListenerBase::testRunStarting(info);
        splicer::UniqueFd fd = locked_record();
        if (!fd) {
            return;  // not root: nothing here changes the setting
        }
        Record record = read_record(fd.get());
        if (record.running.empty()) {
            record.saved = current_value();  // the first one running
        }
        record.running.insert(::getpid());
        write_record(fd.get(), record);
    }

    void testRunEnded(const Catch::TestRunStats& stats) override {
        if (splicer::UniqueFd fd = locked_record()) {
            Record record = read_record(fd.get());
            record.running.erase(::getpid());
            if (record.running.empty()) {
                if (!record.saved.empty() && current_value() != record.saved) {
                    std::ofstream(kWmemMax) << record.saved << '\n';
                }
                // Emptied, never unlinked: a process waiting for the lock holds this file
                // open, and must see the record everyone else sees.
                (void)::ftruncate(fd.get(), 0);
            } else {
                write_record(fd.get(), record);
            }
        }  // closing the fd releases the lock
        TestEventListenerBase::testRunEnded(stats);
    }

private:
    static splicer::UniqueFd locked_record() {
        splicer::UniqueFd fd(::open(kRecord, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (fd && ::flock(fd.get(), LOCK_EX) != 0) {
            return {};
        }
        return fd;
    }
};

}  // namespace

CATCH_REGISTER_LISTENER(WmemMaxGuard)
