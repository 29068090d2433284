#pragma once
// Runs a few system calls as another user, to plant what an unprivileged local user (or the
// daemon's own user after its privilege drop) could plant: a forked child drops to uid/gid
// and runs `body`, whose return value is its exit code.
//
// The test process has threads (daemon log readers): after fork() only async-signal-safe
// calls are allowed, so `body` must make plain system calls on strings prepared beforehand,
// never allocate.

#include <sys/types.h>

#include <functional>

namespace splicer::test {

// The child's exit code: `body`'s result, or 125 if dropping to uid/gid failed.
int run_as(uid_t uid, gid_t gid, const std::function<int()>& body);

// `body` for run_as: 0 when `call` returned 0, else its errno (so a failure says why).
int errno_of(int call_result);

}  // namespace splicer::test
