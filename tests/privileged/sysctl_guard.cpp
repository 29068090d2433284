// The sockmap plane raises net.core.wmem_max at start-up (plane/send_buffer.h), as it would
// on a real host. Each privileged test process puts the value it found back when it ends, so
// a test run leaves the machine's settings as they were.

// Listener types (TestEventListenerBase) are declared only with this, before the header.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>
#include <fstream>
#include <string>

namespace {

constexpr const char* kWmemMax = "/proc/sys/net/core/wmem_max";

class WmemMaxGuard final : public Catch::TestEventListenerBase {
public:
    using TestEventListenerBase::TestEventListenerBase;

    void testRunStarting(const Catch::TestRunInfo& info) override {
        TestEventListenerBase::testRunStarting(info);
        std::ifstream file(kWmemMax);
        file >> saved_;
    }

    void testRunEnded(const Catch::TestRunStats& stats) override {
        if (!saved_.empty()) {
            std::string now;
            std::ifstream(kWmemMax) >> now;
            if (now != saved_) {
                std::ofstream(kWmemMax) << saved_ << '\n';
            }
        }
        TestEventListenerBase::testRunEnded(stats);
    }

private:
    std::string saved_;
};

}  // namespace

CATCH_REGISTER_LISTENER(WmemMaxGuard)
