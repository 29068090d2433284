// The io_uring owner: a full submission queue makes room by submitting, completions come
// back once each and in order, and a ring the kernel takes nothing from ends the process with
// a message instead of spinning. Real io_uring (no privileges needed).

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "uring/ring.h"

using splicer::uring::Ring;

TEST_CASE("Ring: a full submission queue is submitted to make room, every completion once",
          "[uring]") {
    Ring ring;
    REQUIRE(Ring::init(ring, 4).has_value());
    constexpr std::uint64_t kOps = 1000;
    std::vector<std::uint64_t> completed;
    // 1,000 NOPs through 4 entries without a drain in between: sqe() submits when full.
    for (std::uint64_t i = 0; i < kOps; ++i) {
        io_uring_sqe* sqe = ring.sqe();
        REQUIRE(sqe != nullptr);
        io_uring_prep_nop(sqe);
        sqe->user_data = i;
    }
    // The completion queue holds 8: the rest overflow in the kernel and come 8 per enter.
    for (int round = 0; round < 2000 && completed.size() < kOps; ++round) {
        REQUIRE(ring.submit_and_wait(100) >= 0);
        ring.drain([&](const splicer::uring::Completion& cqe) {
            CHECK(cqe.res == 0);
            completed.push_back(cqe.user_data);
        });
    }
    REQUIRE(completed.size() == kOps);
    for (std::uint64_t i = 0; i < kOps; ++i) {
        CAPTURE(i);
        CHECK(completed[i] == i);  // NOPs complete in submission order
    }
    CHECK(ring.deferred() == 0);
}

TEST_CASE("Ring: a ring that takes no submission aborts with a message, never spins", "[uring]") {
    // In a child: the abort (or, before the fix, an endless loop) must not take the test down.
    int pipe_fds[2] = {-1, -1};
    REQUIRE(::pipe(pipe_fds) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::dup2(pipe_fds[1], STDERR_FILENO);
        ::close(pipe_fds[0]);
        // A disabled ring (never enabled) refuses every submit with EBADFD.
        Ring ring;
        if (!Ring::init(ring, 4, IORING_SETUP_R_DISABLED)) {
            ::_exit(3);
        }
        for (int i = 0; i < 5; ++i) {  // four fit; the fifth needs a submit
            io_uring_prep_nop(ring.sqe());
        }
        ::_exit(0);  // never reached: sqe() cannot make room
    }
    ::close(pipe_fds[1]);
    int status = 0;
    pid_t reaped = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while ((reaped = ::waitpid(child, &status, WNOHANG)) == 0 &&
           std::chrono::steady_clock::now() < deadline) {
        ::usleep(10'000);
    }
    if (reaped == 0) {
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
    }
    std::string output;
    char buffer[4096];
    ssize_t n = 0;
    while ((n = ::read(pipe_fds[0], buffer, sizeof(buffer))) > 0) {
        output.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(pipe_fds[0]);
    CAPTURE(output);
    INFO("still spinning after 5 s: " << (reaped == 0 ? "yes (killed)" : "no"));
    REQUIRE(reaped == child);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGABRT);
    CHECK_THAT(output, Catch::Contains("event=fatal") &&
                           Catch::Contains("io_uring_submit: File descriptor in bad state"));
}
