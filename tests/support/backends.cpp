#include "support/backends.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "support/command.h"
#include "support/daemon.h"
#include "support/openssl_client.h"

namespace splicer::test {

// --- scripts --------------------------------------------------------------------------------

BackendScript BackendScript::record(std::uint64_t read_limit) {
    BackendScript script;
    script.kind = BackendKind::exchange;
    script.read_limit = read_limit;
    return script;
}

BackendScript BackendScript::exchange(std::uint64_t reply_bytes, std::uint64_t seed) {
    BackendScript script;
    script.kind = BackendKind::exchange;
    script.reply.generated = reply_bytes;
    script.reply.seed = seed;
    return script;
}

BackendScript BackendScript::message_then_close(std::string message, std::uint64_t extra_bytes,
                                                std::uint64_t read_first) {
    BackendScript script;
    script.kind = BackendKind::read_then_reply;
    script.read_limit = read_first;
    script.reply.prefix = std::move(message);
    script.reply.generated = extra_bytes;
    script.end = BackendEnd::close;
    return script;
}

BackendScript BackendScript::read_to_eof_then_reply(std::string message,
                                                    std::uint64_t extra_bytes) {
    BackendScript script;
    script.kind = BackendKind::read_then_reply;
    script.read_limit = kUntilEof;
    script.reply.prefix = std::move(message);
    script.reply.generated = extra_bytes;
    script.end = BackendEnd::close;
    return script;
}

BackendScript BackendScript::greet_then_record(std::string greeting) {
    BackendScript script;
    script.kind = BackendKind::exchange;
    script.read_limit = kUntilEof;
    script.reply.prefix = std::move(greeting);
    return script;
}

BackendScript BackendScript::slow_sink(std::uint64_t rate, std::chrono::milliseconds slow_for) {
    BackendScript script;
    script.kind = BackendKind::slow_sink;
    script.sink_rate = rate;
    script.slow_for = slow_for;
    return script;
}

BackendScript BackendScript::fast_source(std::uint64_t read_first,
                                         std::chrono::milliseconds source_for) {
    BackendScript script;
    script.kind = BackendKind::fast_source;
    script.read_limit = read_first;
    script.source_for = source_for;
    return script;
}

// --- TcpBackend -----------------------------------------------------------------------------

namespace {

void take_receive_side(BackendConnection& record, const TransferResult& result) {
    record.received = result.received;
    record.received_sha256 = result.received_sha256;
    record.received_head = result.received_head;
    record.eof = record.eof || result.eof;
}

void merge_flags(BackendConnection& record, const TransferResult& result) {
    record.reset = record.reset || result.reset;
    record.timed_out = record.timed_out || result.timed_out;
    if (record.error.empty()) {
        record.error = result.error;
    }
}

}  // namespace

TcpBackend::TcpBackend(BackendScript script, bool ipv6)
    : TcpBackend(std::move(script), listen_loopback(ipv6)) {}

TcpBackend::TcpBackend(BackendScript script, Listener listener)
    : script_(std::move(script)),
      listener_(std::move(listener)),
      port_(listener_.port),
      address_(local_address(listener_.fd.get())) {
    acceptor_ = std::thread([this] { accept_loop(); });
}

TcpBackend::~TcpBackend() {
    stop();
}

void TcpBackend::accept_loop() {
    while (!stopping_.load()) {
        pollfd waiting{listener_.fd.get(), POLLIN, 0};
        const int ready = ::poll(&waiting, 1, 50);
        if (ready <= 0) {
            continue;
        }
        UniqueFd fd(::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!fd) {
            continue;  // EAGAIN, ECONNABORTED, EMFILE: try again (bounded by stop())
        }
        std::string peer = peer_address(fd.get());
        const std::lock_guard lock(mutex_);
        const std::size_t index = accepted_++;
        open_fds_[index] = fd.get();
        handlers_.emplace_back([this, index, socket = std::move(fd), peer]() mutable {
            serve(index, std::move(socket), std::move(peer));
        });
        changed_.notify_all();
    }
}

void TcpBackend::serve(std::size_t index, UniqueFd fd, std::string peer) {
    const Clock::time_point start = Clock::now();
    BackendConnection record;
    record.index = index;
    record.peer = std::move(peer);
    Outgoing reply = script_.reply;
    reply.seed += index;
    const auto left = [&] {
        return std::max(std::chrono::milliseconds(1),
                        script_.timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                              Clock::now() - start));
    };
    TransferOptions options;
    options.after_send = AfterSend::nothing;
    options.keep_received = script_.keep_received;
    options.live_received = &live_received_;
    options.live_sent = &live_sent_;

    switch (script_.kind) {
        case BackendKind::exchange: {
            options.send = reply;
            options.expect = script_.read_limit;
            options.timeout = left();
            if (script_.verify) {
                options.verify = &*script_.verify;
            }
            const TransferResult result = transfer_both_ways(fd.get(), options);
            take_receive_side(record, result);
            record.first_mismatch = result.first_mismatch;
            record.mismatch_found_at = result.mismatch_found_at;
            record.sent = result.sent;
            record.sent_sha256 = result.sent_sha256;
            merge_flags(record, result);
            break;
        }
        case BackendKind::read_then_reply: {
            options.expect = script_.read_limit;
            options.timeout = left();
            const TransferResult reading = transfer_both_ways(fd.get(), options);
            take_receive_side(record, reading);
            merge_flags(record, reading);
            if (!reading.reset && !reading.timed_out && reading.error.empty()) {
                TransferOptions replying = options;
                replying.send = reply;
                replying.expect = 0;
                replying.timeout = left();
                const TransferResult written = transfer_both_ways(fd.get(), replying);
                record.sent = written.sent;
                record.sent_sha256 = written.sent_sha256;
                merge_flags(record, written);
            }
            break;
        }
        case BackendKind::slow_sink: {
            SinkOptions sink;
            sink.rate_bytes_per_second = script_.sink_rate;
            sink.slow_for = script_.slow_for;
            sink.timeout = left();
            sink.keep_received = script_.keep_received;
            sink.live_received = &live_received_;
            const SinkResult result = sink_slowly(fd.get(), sink);
            record.received = result.received;
            record.received_while_slow = result.received_while_slow;
            record.received_sha256 = result.received_sha256;
            record.received_head = result.received_head;
            record.eof = result.eof;
            record.reset = result.reset;
            record.timed_out = result.timed_out;
            record.error = result.error;
            break;
        }
        case BackendKind::fast_source: {
            options.expect = script_.read_limit;
            options.timeout = left();
            const TransferResult reading = transfer_both_ways(fd.get(), options);
            take_receive_side(record, reading);
            merge_flags(record, reading);
            SourceOptions source;
            source.seed = reply.seed;
            source.duration = script_.source_for;
            source.after_send = AfterSend::shutdown_write;
            source.live_sent = &live_sent_;
            const SourceResult result = source_for(fd.get(), source);
            record.sent = result.sent;
            record.sent_sha256 = result.sent_sha256;
            record.reset = record.reset || result.reset;
            if (record.error.empty()) {
                record.error = result.error;
            }
            break;
        }
    }

    if (script_.end == BackendEnd::shutdown_then_drain && !record.reset) {
        ::shutdown(fd.get(), SHUT_WR);
        if (!record.eof) {
            TransferOptions drain = options;
            drain.send = Outgoing{};
            drain.expect = kUntilEof;
            drain.keep_received = 0;
            drain.timeout = left();
            const TransferResult rest = transfer_both_ways(fd.get(), drain);
            record.received += rest.received;  // (the hash covers only the scripted part)
            record.eof = rest.eof;
            merge_flags(record, rest);
        }
    }
    record.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);

    const std::lock_guard lock(mutex_);
    open_fds_.erase(index);
    // Closed under the lock, so stop() never shuts down a number that was reused meanwhile.
    if (script_.end == BackendEnd::reset) {
        close_with_reset(std::move(fd));
    } else {
        fd.reset();
    }
    finished_.push_back(std::move(record));
    changed_.notify_all();
}

std::size_t TcpBackend::accepted() const {
    const std::lock_guard lock(mutex_);
    return accepted_;
}

bool TcpBackend::wait_for_accepted(std::size_t count, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return accepted_ >= count; });
}

bool TcpBackend::wait_for_finished(std::size_t count, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return finished_.size() >= count; });
}

std::vector<BackendConnection> TcpBackend::finished() const {
    const std::lock_guard lock(mutex_);
    return finished_;
}

void TcpBackend::stop() {
    if (stopping_.exchange(true)) {
        return;
    }
    if (acceptor_.joinable()) {
        acceptor_.join();
    }
    std::vector<std::thread> handlers;
    {
        const std::lock_guard lock(mutex_);
        for (const auto& [index, fd] : open_fds_) {
            ::shutdown(fd, SHUT_RDWR);  // wakes the handler's poll: it finishes at once
        }
        handlers.swap(handlers_);
    }
    for (std::thread& handler : handlers) {
        handler.join();
    }
    listener_.fd.reset();
}

// --- BlackholeListener ----------------------------------------------------------------------

BlackholeListener::BlackholeListener()
    // Backlog 0: the accept queue is full after one or two connections, and Linux then
    // drops further SYNs (no RST), so connecting peers wait for their own timeout.
    : listener_(listen_loopback(false, 0)) {
    const SocketAddress address = loopback_address(listener_.port);
    for (int i = 0; i < 8; ++i) {
        UniqueFd filler(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        ::connect(filler.get(), address.get(), address.length);
        pollfd waiting{filler.get(), POLLOUT, 0};
        const bool completed = ::poll(&waiting, 1, 300) > 0;
        fillers_.push_back(std::move(filler));
        if (!completed) {
            return;  // this SYN was dropped: the queue is full
        }
    }
    throw std::runtime_error("BlackholeListener: the accept queue never filled");
}

// --- openssl s_server -----------------------------------------------------------------------

Certificate make_self_signed_certificate(const TempDir& dir, const std::string& common_name) {
    Certificate certificate;
    certificate.cert_path = (dir.path() / (common_name + ".crt")).string();
    certificate.key_path = (dir.path() / (common_name + ".key")).string();
    const std::string command =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj '/CN=" +
        common_name + "' -keyout '" + certificate.key_path + "' -out '" + certificate.cert_path +
        "'";
    const CommandResult result = run_command(command);
    if (result.exit_code != 0) {
        throw std::runtime_error("openssl req failed: " + result.output);
    }
    return certificate;
}

OpensslServer::OpensslServer(OpensslServerOptions options)
    : options_(std::move(options)), dir_("splicer-s_server") {
    const Certificate certificate = options_.certificate.cert_path.empty()
                                        ? make_self_signed_certificate(dir_, options_.common_name)
                                        : options_.certificate;
    log_path_ = (dir_.path() / "s_server.log").string();
    // s_server prints "ACCEPT" once it listens; a port taken meanwhile makes it exit: retry.
    for (int attempt = 0; attempt < 5; ++attempt) {
        port_ = free_port();
        std::vector<std::string> argv = {"openssl", "s_server",
                                         "-accept", loopback_text(port_, options_.ipv6),
                                         "-cert",   certificate.cert_path,
                                         "-key",    certificate.key_path,
                                         "-www"};
        if (options_.ipv6) {
            argv.push_back("-6");
        }
        add_alpn_option(argv, options_.alpn);
        if (!options_.servername.empty()) {
            argv.insert(argv.end(), {"-servername", options_.servername, "-cert2",
                                     options_.servername_certificate.cert_path, "-key2",
                                     options_.servername_certificate.key_path});
        }
        argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
        const UniqueFd log(
            ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        SpawnOptions spawn;
        spawn.argv = argv;
        spawn.stdout_fd = log.get();
        spawn.stderr_fd = log.get();
        process_ = ChildProcess(spawn);
        const auto deadline = Clock::now() + std::chrono::seconds(5);
        while (Clock::now() < deadline && process_.running()) {
            if (output().find("ACCEPT") != std::string::npos) {
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        process_.terminate(std::chrono::milliseconds(1000));
    }
    throw std::runtime_error("openssl s_server did not start: " + output());
}

OpensslServer::~OpensslServer() {
    stop();
}

std::string OpensslServer::address() const {
    return loopback_text(port_, options_.ipv6);
}

std::string OpensslServer::output() const {
    return read_file(log_path_);
}

void OpensslServer::stop() {
    if (process_.pid() > 0) {
        process_.terminate(std::chrono::milliseconds(2000));
    }
}

}  // namespace splicer::test
