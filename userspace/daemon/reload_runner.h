#pragma once
// SIGHUP without stalling the event loop. A reload reads the config file and resolves every
// backend name, and getaddrinfo() may wait seconds on a DNS server that does not answer: on
// the loop thread that would freeze every connection for as long. So the preparing half runs
// on a thread of its own, touching nothing the loop owns; it hands back a closure that the
// loop runs (applies) once the thread signals an eventfd the loop reads through the ring.
// A SIGHUP that arrives while one runs is remembered and runs after it, with the newest file.

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::daemon {

class ReloadRunner {
public:
    // Runs on the worker thread; returns what to do on the loop thread.
    using Apply = std::function<void()>;
    using Prepare = std::function<Apply()>;

    // Not movable: the worker thread holds `this`.
    static Result<std::unique_ptr<ReloadRunner>> create(Prepare prepare);
    ~ReloadRunner();
    ReloadRunner(const ReloadRunner&) = delete;
    ReloadRunner& operator=(const ReloadRunner&) = delete;

    // The eventfd that becomes readable when a prepared reload is ready to apply.
    [[nodiscard]] int done_fd() const { return done_.get(); }
    // Where the loop reads the eventfd's counter into.
    [[nodiscard]] std::uint64_t* done_buffer() { return &done_count_; }

    // A SIGHUP: starts preparing, or asks for another run once the current one is applied.
    void request();
    // The eventfd was read: joins the worker, applies its result here, and starts the run
    // a SIGHUP asked for meanwhile.
    void on_done();

private:
    ReloadRunner(Prepare prepare, UniqueFd done);
    void start();

    Prepare prepare_;
    UniqueFd done_;
    std::uint64_t done_count_ = 0;
    std::thread worker_;
    Apply prepared_;  // written by the worker before it signals, read after the join
    bool again_ = false;
};

}  // namespace splicer::daemon
