#include "daemon/reload_runner.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <string>
#include <system_error>
#include <utility>

#include "splicer/log.h"

namespace splicer::daemon {

Result<std::unique_ptr<ReloadRunner>> ReloadRunner::create(Prepare prepare) {
    UniqueFd done(::eventfd(0, EFD_CLOEXEC));
    if (!done) {
        return errno_error("eventfd for reloads");
    }
    return std::unique_ptr<ReloadRunner>(new ReloadRunner(std::move(prepare), std::move(done)));
}

ReloadRunner::ReloadRunner(Prepare prepare, UniqueFd done)
    : prepare_(std::move(prepare)), done_(std::move(done)) {}

ReloadRunner::~ReloadRunner() {
    // At exit a reload still preparing is waited for (bounded by the resolver's timeout) and
    // dropped: nothing is applied any more.
    if (worker_.joinable()) {
        worker_.join();
    }
}

void ReloadRunner::request() {
    if (worker_.joinable()) {
        again_ = true;
        return;
    }
    start();
}

void ReloadRunner::start() {
    try {
        worker_ = std::thread([this] {
            prepared_ = prepare_();
            const std::uint64_t one = 1;
            // Cannot fail short of a bad fd: the counter only overflows after 2^64 - 1 writes.
            (void)!::write(done_.get(), &one, sizeof(one));
        });
    } catch (const std::system_error& error) {
        // No thread now (EAGAIN under a process limit): this reload fails, the daemon and
        // the rules in force go on; the next SIGHUP tries again.
        log::error("reload_failed",
                   {{"error", std::string("no thread to read the file: ") + error.what()},
                    {"kept", "old rules"}});
    }
}

void ReloadRunner::on_done() {
    if (!worker_.joinable()) {
        return;
    }
    worker_.join();
    Apply apply = std::move(prepared_);
    prepared_ = nullptr;
    if (apply) {
        apply();
    }
    if (again_) {
        again_ = false;
        start();
    }
}

}  // namespace splicer::daemon
