#pragma once
// Result<T>: a value or an Error, for start-up and configuration failures (STYLE.md,
// "Errors", kind 2). g++ 12 offers std::expected only under -std=c++2b, so this keeps the
// same member names (has_value, value, error) in C++20 and can be swapped for it later.

#include <cassert>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace splicer {

struct Error {
    std::string message;

    // Prefixes context, so messages read outermost first:
    // "loading splice.bpf.o: attaching stream_verdict: Operation not permitted".
    [[nodiscard]] Error with_context(const std::string& context) const {
        return Error{context + ": " + message};
    }
};

// strerror() of an errno value given either way round (syscalls: errno; io_uring: -errno).
inline std::string errno_text(int error) { return std::strerror(error < 0 ? -error : error); }

// "what: No such file or directory", for a failed call that set errno (or returned -errno).
inline Error errno_error(const std::string& what, int error = errno) {
    return Error{what + ": " + errno_text(error)};
}

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : storage_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
    Result(Error error) : storage_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

    [[nodiscard]] bool has_value() const { return storage_.index() == 0; }
    explicit operator bool() const { return has_value(); }

    T& value() & {
        assert(has_value());
        return std::get<0>(storage_);
    }
    const T& value() const& {
        assert(has_value());
        return std::get<0>(storage_);
    }
    T&& value() && {
        assert(has_value());
        return std::get<0>(std::move(storage_));
    }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

    [[nodiscard]] const Error& error() const {
        assert(!has_value());
        return std::get<1>(storage_);
    }

private:
    std::variant<T, Error> storage_;
};

// Result<void>: success, or an Error.
template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT

    [[nodiscard]] bool has_value() const { return !failed_; }
    explicit operator bool() const { return has_value(); }
    [[nodiscard]] const Error& error() const {
        assert(failed_);
        return error_;
    }

private:
    Error error_;
    bool failed_ = false;
};

}  // namespace splicer
