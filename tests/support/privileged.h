#pragma once
// Privileged tests need root (BPF, namespaces). Outside CI a non-root run exits 77, which
// CTest reports as skipped; in CI (CI=true) the same situation is a failure.

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>

namespace splicer::test {

inline void require_root() {
    if (geteuid() == 0) {
        return;
    }
    const char* ci = std::getenv("CI");
    if (ci != nullptr && std::strcmp(ci, "true") == 0) {
        std::cerr << "privileged test run without root in CI\n";
        std::exit(1);
    }
    std::cerr << "skipped: needs root\n";
    std::exit(77);
}

}  // namespace splicer::test
