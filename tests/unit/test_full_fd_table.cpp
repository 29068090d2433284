// The daemon goes on with a full fd table (accept() meeting EMFILE is handled, not fatal), so
// every build must too: code that runs while no fd is free may not end the process. This
// guards the sanitizer build's flags (CMakeLists.txt, SPLICER_SANITIZE): UBSan's vptr check
// opens a pipe the first time it checks a dynamic type, and with none free it called a valid
// object's vptr invalid and exited (the copy plane's first counters read under EMFILE, CI).

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "plane/copy_plane.h"
#include "splicer/unique_fd.h"

namespace {

using splicer::UniqueFd;

// Fills this process's fd table for its lifetime: the soft RLIMIT_NOFILE lowered to just
// above the fds in use, every number below it taken by /dev/null. Restores both on the way
// out. Checks nothing itself (a failed REQUIRE in a constructor would skip the restore):
// full() says whether it worked.
class FullFdTable {
public:
    FullFdTable() {
        if (::getrlimit(RLIMIT_NOFILE, &saved_) != 0) {
            return;
        }
        int highest = 2;
        for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
            highest = std::max(highest, std::stoi(entry.path().filename().string()));
        }
        // The limit bounds fd numbers: open ones above it stay usable, no new one is given.
        rlimit lowered = saved_;
        lowered.rlim_cur = static_cast<rlim_t>(highest) + 16;
        if (::setrlimit(RLIMIT_NOFILE, &lowered) != 0) {
            return;
        }
        lowered_ = true;
        while (true) {
            UniqueFd filler(::open("/dev/null", O_RDONLY | O_CLOEXEC));
            if (!filler) {
                full_ = errno == EMFILE;
                break;
            }
            fillers_.push_back(std::move(filler));
        }
    }
    ~FullFdTable() {
        fillers_.clear();
        if (lowered_) {
            ::setrlimit(RLIMIT_NOFILE, &saved_);
        }
    }
    FullFdTable(const FullFdTable&) = delete;
    FullFdTable& operator=(const FullFdTable&) = delete;

    [[nodiscard]] bool full() const { return full_; }

private:
    rlimit saved_{};
    bool lowered_ = false;
    bool full_ = false;
    std::vector<UniqueFd> fillers_;
};

// A polymorphic type no other test calls through its base: its first vptr check (in a
// sanitizer build) is the one made below, with the table full.
class Shape {
public:
    virtual ~Shape() = default;
    [[nodiscard]] virtual std::uint64_t corners() const = 0;
};

class Square final : public Shape {
public:
    [[nodiscard]] std::uint64_t corners() const override { return 4; }
};

}  // namespace

TEST_CASE("virtual calls first made while the fd table is full do not end the process",
          "[fd][build]") {
    const std::unique_ptr<Shape> shape = std::make_unique<Square>();
    // Made before: the daemon makes its planes at start-up and calls the copy plane (the
    // sockmap plane's fallback) for the first time at its first counters read.
    const std::unique_ptr<splicer::plane::DataPlane> plane = splicer::plane::make_copy_plane();
    bool full = false;
    bool pipe_refused = false;
    std::uint64_t corners = 0;
    std::uint64_t urgent = 1;
    {
        // Only the calls under test while it is full: Catch's own assertion objects are
        // polymorphic too, and so checked at their first use.
        const FullFdTable table;
        full = table.full();
        int ends[2] = {-1, -1};
        pipe_refused = ::pipe(ends) == -1 && errno == EMFILE;  // what the vptr check opens
        corners = shape->corners();
        urgent = plane->urgent_bytes_dropped();
    }
    REQUIRE(full);
    REQUIRE(pipe_refused);
    CHECK(corners == 4);
    CHECK(urgent == 0);
}
