// Privilege separation (README "Privileges"): a daemon started as root forks a helper that
// keeps root and only reads the files the configuration names, for the worker's reloads.
// - A root-only config file (mode 0600), changed on disk, reloads on SIGHUP after the drop.
// - The helper is uid 0 with nothing but stdio and its unix socket: no listener, no BPF
//   object, no io_uring (fds and mappings); the worker (the main pid) has no privilege.
// - Killing either ends the other, logged; the worker then exits non-zero.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "daemon_test_common.h"
#include "http_test_common.h"
#include "support/daemon_reload.h"
#include "support/file_modes.h"
#include "support/proc_stats.h"

using namespace splicer::test;

namespace {

std::string proc_file(pid_t pid, const std::string& name) {
    return read_file("/proc/" + std::to_string(pid) + "/" + name);
}

// The helper's pid, from the worker's `privsep_helper` line; 0 when there is none.
pid_t helper_pid(const DaemonProcess& daemon) {
    const auto line = daemon.wait_for_log("privsep_helper", {}, 5s);
    return line ? static_cast<pid_t>(std::stol(std::string(line->get("pid")))) : 0;
}

// Gone, or a zombie nobody reaps yet (it has ended either way).
bool ended(pid_t pid) {
    const std::string state = proc_status_field(pid, "State");
    return state.empty() || state[0] == 'Z';
}

// A daemon serving `site`, ready, and its privileged helper's pid.
std::pair<std::unique_ptr<DaemonProcess>, pid_t> start_with_helper(const HttpSite& site) {
    auto daemon = start_http_daemon(site);
    REQUIRE(daemon->wait_ready());
    const pid_t helper = helper_pid(*daemon);
    INFO(daemon->log_tail(20));
    REQUIRE(helper > 0);
    return {std::move(daemon), helper};
}

bool wait_ended(pid_t pid, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!ended(pid)) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

}  // namespace

TEST_CASE("SIGHUP after the privilege drop rereads a root-only config file (mode 0600)",
          "[daemon][privileges][reload]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);
    // Root-only, as /etc/splicer/splicer.conf may be: the dropped worker cannot open it.
    make_root_only(daemon->config_path());
    struct stat file {};
    REQUIRE(::stat(daemon->config_path().c_str(), &file) == 0);
    REQUIRE(file.st_uid == 0);
    CHECK(http_exchange(site.listen, get_request("nobody.example.org", "/before")).status == 404);

    // Changed on disk: a default route appears and takes unknown hosts.
    daemon->rewrite_config(http_site_config(site, {.default_route = true}));
    const auto outcome = reload_daemon(*daemon, 5s);
    INFO(daemon->log_tail(20));
    REQUIRE(outcome.has_value());
    CHECK(outcome->event() == "reloaded");
    const HttpResponse after = http_exchange(site.listen, get_request("nobody.example.org", "/y"));
    CHECK(after.status == 200);
    CHECK(after.body == "fallback GET /y");
    check_http_still_serving(site);
    stop_daemon(*daemon);
}

TEST_CASE(
    "the privileged helper holds no listener, BPF object or io_uring, the worker no privilege",
    "[daemon][privileges]") {
    require_root();
    HttpSite site;
    auto daemon = start_daemon("sockmap", http_site_config(site));
    REQUIRE(daemon->wait_ready());
    const pid_t helper = helper_pid(*daemon);
    INFO(daemon->log_tail(20));
    REQUIRE(helper > 0);
    CHECK(proc_status_field(helper, "PPid") == std::to_string(daemon->pid()));

    // The worker: the main pid, unprivileged, never root again.
    std::istringstream worker_uids(proc_status_field(daemon->pid(), "Uid"));
    for (int i = 0; i < 4; ++i) {
        unsigned long uid = 0;
        REQUIRE(worker_uids >> uid);
        CHECK(uid != 0);
    }
    CHECK(proc_status_field(daemon->pid(), "Gid").rfind("0\t", 0) != 0);
    CHECK(proc_status_field(daemon->pid(), "CapEff") == "0000000000000000");
    CHECK(proc_status_field(daemon->pid(), "CapPrm") == "0000000000000000");
    CHECK(proc_status_field(daemon->pid(), "NoNewPrivs") == "1");

    // The helper: root with no capability but CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
    // (bits 1 and 2), and nothing but stdio and unix sockets.
    CHECK(proc_status_field(helper, "Uid").rfind("0\t", 0) == 0);
    for (const char* set : {"CapEff", "CapPrm", "CapBnd"}) {
        CAPTURE(set);
        CHECK((std::stoull(proc_status_field(helper, set), nullptr, 16) & ~0x6ULL) == 0);
    }
    CHECK(proc_status_field(helper, "CapInh") == "0000000000000000");
    CHECK(proc_status_field(helper, "CapAmb") == "0000000000000000");
    CHECK(proc_status_field(helper, "NoNewPrivs") == "1");
    const std::string unix_sockets = proc_file(helper, "net/unix");
    int sockets = 0;
    for (const auto& entry :
         std::filesystem::directory_iterator("/proc/" + std::to_string(helper) + "/fd")) {
        const std::string target = std::filesystem::read_symlink(entry.path()).string();
        CAPTURE(entry.path().filename().string(), target);
        CHECK(target.find("bpf") == std::string::npos);
        CHECK(target.find("io_uring") == std::string::npos);
        CHECK(target.find("signalfd") == std::string::npos);
        if (target.rfind("socket:[", 0) == 0) {
            ++sockets;
            // A unix socket (its inode is in net/unix), so no TCP listener.
            const std::string inode = target.substr(8, target.size() - 9);
            const bool listed = unix_sockets.find(" " + inode + " ") != std::string::npos ||
                                unix_sockets.find(" " + inode + "\n") != std::string::npos;
            CHECK(listed);
        } else {
            CHECK(std::stoi(entry.path().filename().string()) <= 2);
        }
    }
    CHECK(sockets == 1);
    // No ring or BPF map mapped either (a mapping keeps its object alive without an fd).
    const std::string maps = proc_file(helper, "maps");
    CHECK(maps.find("io_uring") == std::string::npos);
    CHECK(maps.find("anon_inode:bpf") == std::string::npos);
    stop_daemon(*daemon);
    CHECK(wait_ended(helper, 5s));
}

TEST_CASE("killing the privileged helper stops the worker with a non-zero status",
          "[daemon][privileges]") {
    require_root();
    HttpSite site;
    auto [daemon, helper] = start_with_helper(site);
    REQUIRE(::kill(helper, SIGKILL) == 0);
    const auto logged = daemon->wait_for_log("privsep_helper_exited", {}, 5s);
    REQUIRE(logged.has_value());
    CHECK(logged->get("signal") == "9");
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (daemon->running() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
    }
    const auto status = daemon->exit_status();
    REQUIRE(status.has_value());
    CHECK(*status != 0);
}

TEST_CASE("killing the worker ends the privileged helper, logged", "[daemon][privileges]") {
    require_root();
    HttpSite site;
    auto [daemon, helper] = start_with_helper(site);
    REQUIRE(::kill(daemon->pid(), SIGKILL) == 0);
    CHECK(wait_ended(helper, 5s));
    CHECK(daemon->wait_for_log("privsep_worker_gone", {}, 5s).has_value());
}
