#include "support/daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include "support/proc_stats.h"
#include "support/sockets.h"

namespace splicer::test {

// --- ports and pin dirs ---------------------------------------------------------------------

namespace {

// The first port the kernel hands out to connect() and bind(0) (ip_local_port_range).
std::uint16_t first_ephemeral_port() {
    std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
    unsigned low = 0;
    if (!(range >> low) || low > 65535) {
        return 0;
    }
    return static_cast<std::uint16_t>(low);
}

}  // namespace

// A port free on both 127.0.0.1 and ::1, taken below the ephemeral range when there is room:
// a port from bind(0) is an ephemeral one, which any connect() on the machine (the daemon's own
// start-up self-test, a test client) may take as its local port before the daemon binds it;
// the daemon's bind then fails with EADDRINUSE. Below the range only an explicit bind takes it.
std::uint16_t free_port() {
    constexpr std::uint16_t kLowest = 10000;
    static std::mutex mutex;
    static std::set<std::uint16_t> handed_out;
    static std::mt19937 random(static_cast<std::uint32_t>(::getpid()) ^
                               static_cast<std::uint32_t>(std::random_device{}()));
    const std::lock_guard lock(mutex);
    const std::uint16_t ephemeral = first_ephemeral_port();
    const bool below_range = ephemeral > kLowest + 1000;
    std::uniform_int_distribution<unsigned> pick(kLowest, below_range ? ephemeral - 1u : kLowest);
    for (int attempt = 0; attempt < 400; ++attempt) {
        // v4 holds the port while ::1 is tried.
        const Listener v4 =
            bind_loopback(below_range ? static_cast<std::uint16_t>(pick(random)) : 0, false);
        const std::uint16_t port = v4.port;
        if (port == 0 || handed_out.count(port) != 0) {
            continue;
        }
        if (bind_loopback(port, true).port != port) {
            continue;  // taken on ::1 (or no IPv6): try another
        }
        handed_out.insert(port);
        return port;
    }
    throw std::runtime_error("free_port: no port free on both 127.0.0.1 and ::1");
}

std::string unique_pin_dir() {
    static std::atomic<unsigned> counter{0};
    return "/sys/fs/bpf/splicer-test-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter.fetch_add(1));
}

PinDir::~PinDir() {
    remove();
}

bool PinDir::exists() const {
    std::error_code error;
    return std::filesystem::exists(path_, error);
}

bool PinDir::remove() const {
    std::error_code error;
    std::filesystem::remove_all(path_, error);
    return !exists();
}

// --- DaemonProcess --------------------------------------------------------------------------

namespace {

// True when a line of `text` starts (after blanks) with the top-level `workers` setting.
bool sets_workers(const std::string& text) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        const std::size_t start = line.find_first_not_of(" \t");
        if (start == std::string::npos || line.compare(start, 7, "workers") != 0) {
            continue;
        }
        const std::size_t after = line.find_first_not_of(" \t", start + 7);
        if (after != std::string::npos && (line[after] == ':' || line[after] == '=')) {
            return true;
        }
    }
    return false;
}

// `text` with `workers: N;` appended (after every other line: the lines a test's checks
// name stay where they are), unless it sets workers itself or `workers` is nullopt.
std::string with_workers(const std::string& text, std::optional<std::uint32_t> workers) {
    if (!workers || sets_workers(text)) {
        return text;
    }
    return text + "\nworkers: " + std::to_string(*workers) + ";\n";
}

}  // namespace

DaemonProcess::DaemonProcess(DaemonOptions options)
    : options_(std::move(options)),
      temp_dir_("splicer-daemon"),
      pin_dir_(options_.pin_dir.empty() ? unique_pin_dir() : options_.pin_dir) {
    if (options_.binary.empty()) {
        throw std::invalid_argument("DaemonProcess: no binary");
    }
    const char* echo = std::getenv("SPLICER_TEST_ECHO");
    if (echo != nullptr && std::strcmp(echo, "1") == 0) {
        options_.echo = true;
    }
    config_path_ =
        temp_dir_.write_file("splicer.conf", with_workers(options_.config_text, options_.workers));
    argv_ = options_.command_prefix;
    argv_.insert(argv_.end(), {options_.binary, "run", "--config", config_path_.string()});
    if (!options_.splice_mode.empty()) {
        argv_.insert(argv_.end(), {"--splice-mode", options_.splice_mode});
    }
    argv_.insert(argv_.end(), {"--pin-dir", pin_dir_.path()});
    argv_.insert(argv_.end(), options_.extra_args.begin(), options_.extra_args.end());

    int pipe_fds[2] = {-1, -1};
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    }
    UniqueFd read_end(pipe_fds[0]);
    UniqueFd write_end(pipe_fds[1]);
    // The daemon writes its log lines with blocking write(2) from its event loop: a 64 KiB
    // pipe is ~0.3 s of a flood's lines, so a reader thread descheduled that long on a busy
    // machine would stall the daemon under test. 1 MiB (the default pipe-max-size) is
    // seconds of them. Best effort: the default size still works, only less slack.
    ::fcntl(write_end.get(), F_SETPIPE_SZ, options_.stderr_pipe_bytes);
    SpawnOptions spawn;
    spawn.argv = argv_;
    spawn.stdout_fd = write_end.get();  // stdout too: anything it prints lands in the log
    spawn.stderr_fd = write_end.get();
    spawn.pass_fds = options_.pass_fds;
    child_ = ChildProcess(spawn);
    write_end.reset();  // only the child holds the write end: EOF when it exits
    reader_ =
        std::thread([this, fd = std::move(read_end)]() mutable { read_stderr(std::move(fd)); });
}

void DaemonProcess::rewrite_config(const std::string& text) const {
    std::ofstream out(config_path_, std::ios::trunc);
    out << with_workers(text, options_.workers);
    if (!out.flush()) {
        throw std::runtime_error("rewriting " + config_path_.string());
    }
}

DaemonProcess::~DaemonProcess() {
    const bool was_running = child_.running();
    if (was_running) {
        child_.signal(SIGKILL);
        child_.wait_for_exit(std::chrono::milliseconds(5000));
    }
    {
        const std::lock_guard lock(mutex_);
        stop_reader_ = true;
    }
    if (reader_.joinable()) {
        reader_.join();
    }
    if (!stopped_cleanly_ && !options_.echo) {
        // The test did not see a clean stop: show what the daemon said.
        std::cerr << "---- splicer daemon (pid " << child_.pid() << ", "
                  << (was_running ? std::string("killed by the harness") : child_.describe_end())
                  << "), last lines ----\n"
                  << log_tail(40) << "\n---- end of daemon log ----\n";
    }
    // ~PinDir removes a pin dir left behind; ~TempDir the config.
}

void DaemonProcess::read_stderr(UniqueFd pipe) {
    std::string pending;
    char buffer[16384];
    const auto flush_line = [this](std::string_view text) {
        if (options_.echo) {
            std::cerr << "[splicer] " << text << '\n';
        }
        LogLine line = parse_log_line(text);
        const std::lock_guard lock(mutex_);
        lines_.push_back(std::move(line));
        changed_.notify_all();
    };
    while (true) {
        bool paused = false;
        {
            const std::lock_guard lock(mutex_);
            if (stop_reader_) {
                break;
            }
            paused = reading_paused_;
        }
        if (paused) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            continue;
        }
        pollfd waiting{pipe.get(), POLLIN, 0};
        const int ready = ::poll(&waiting, 1, 100);
        if (ready < 0 && errno != EINTR) {
            break;
        }
        if (ready <= 0) {
            continue;
        }
        const ssize_t n = ::read(pipe.get(), buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        pending.append(buffer, static_cast<std::size_t>(n));
        std::size_t start = 0;
        std::size_t newline = 0;
        while ((newline = pending.find('\n', start)) != std::string::npos) {
            flush_line(std::string_view(pending).substr(start, newline - start));
            start = newline + 1;
        }
        pending.erase(0, start);
    }
    if (!pending.empty()) {
        flush_line(pending);
    }
    const std::lock_guard lock(mutex_);
    stderr_closed_ = true;
    changed_.notify_all();
}

void DaemonProcess::pause_reading(bool paused) {
    const std::lock_guard lock(mutex_);
    reading_paused_ = paused;
}

std::optional<LogLine> DaemonProcess::wait_for_log(std::string_view event,
                                                   const LogPredicate& predicate,
                                                   std::chrono::milliseconds timeout,
                                                   std::size_t from) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lock(mutex_);
    std::size_t checked = from;
    while (true) {
        for (; checked < lines_.size(); ++checked) {
            const LogLine& line = lines_[checked];
            if ((event.empty() || line.event() == event) && (!predicate || predicate(line))) {
                return line;
            }
        }
        if (stderr_closed_) {
            return std::nullopt;
        }
        if (changed_.wait_until(lock, deadline) == std::cv_status::timeout &&
            checked == lines_.size()) {
            return std::nullopt;
        }
    }
}

bool DaemonProcess::wait_ready(std::chrono::milliseconds timeout) const {
    return wait_for_log("ready", {}, timeout).has_value();
}

std::vector<LogLine> DaemonProcess::logs() const {
    const std::lock_guard lock(mutex_);
    return lines_;
}

std::vector<LogLine> DaemonProcess::logs(std::string_view event,
                                         const LogPredicate& predicate) const {
    std::vector<LogLine> matching;
    const std::lock_guard lock(mutex_);
    for (const LogLine& line : lines_) {
        if (line.event() == event && (!predicate || predicate(line))) {
            matching.push_back(line);
        }
    }
    return matching;
}

std::size_t DaemonProcess::log_count() const {
    const std::lock_guard lock(mutex_);
    return lines_.size();
}

std::string DaemonProcess::log_tail(std::size_t last) const {
    const std::lock_guard lock(mutex_);
    std::string text;
    const std::size_t first = lines_.size() > last ? lines_.size() - last : 0;
    for (std::size_t i = first; i < lines_.size(); ++i) {
        text += lines_[i].raw;
        text += '\n';
    }
    return text;
}

int DaemonProcess::open_fd_count() const {
    return test::open_fd_count(child_.pid());
}

bool DaemonProcess::running() {
    return child_.running();
}

std::optional<int> DaemonProcess::stop(std::chrono::milliseconds timeout, int signal_number) {
    child_.signal(signal_number);
    std::optional<int> status = child_.wait_for_exit(timeout);
    if (status) {
        // Let the reader take the last lines (the closed events written at shutdown).
        std::unique_lock lock(mutex_);
        changed_.wait_for(lock, std::chrono::seconds(2), [this] { return stderr_closed_; });
        stopped_cleanly_ = *status == 0;
    }
    return status;
}

std::string DaemonProcess::describe_end() {
    return child_.describe_end();
}

std::optional<int> DaemonProcess::exit_status() {
    child_.running();  // reaps if it exited
    return child_.exit_status();
}

}  // namespace splicer::test
