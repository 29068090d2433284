#pragma once
// An environment variable set for the processes a test starts (the daemons inherit it, e.g. a
// debug-build fault hook such as SPLICER_TEST_MISS_WAKEUP), and unset when the test ends.

#include <stdlib.h>

namespace splicer::test {

class ScopedEnvironment {
public:
    ScopedEnvironment(const char* name, const char* value) : name_(name) {
        ::setenv(name_, value, 1);
    }
    ~ScopedEnvironment() { ::unsetenv(name_); }
    ScopedEnvironment(const ScopedEnvironment&) = delete;
    ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

private:
    const char* name_;
};

}  // namespace splicer::test
