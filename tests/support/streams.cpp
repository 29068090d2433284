#include "support/streams.h"

#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <thread>

namespace splicer::test {

// --- ByteGenerator --------------------------------------------------------------------------

ByteGenerator::ByteGenerator(std::uint64_t seed)
    // A zero state would stay zero; mix the seed so nearby seeds give unrelated streams.
    : state_((seed ^ 0x9e3779b97f4a7c15ULL) * 0xbf58476d1ce4e5b9ULL | 1ULL) {}

std::uint64_t ByteGenerator::next_word() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545f4914f6cdd1dULL;
}

void ByteGenerator::fill(char* out, std::size_t size) {
    std::size_t pos = 0;
    while (pos < size && pending_count_ > 0) {
        out[pos++] = static_cast<char>(pending_ & 0xff);
        pending_ >>= 8;
        --pending_count_;
    }
    // Whole words a block at a time: next_word's steps written out on a local state, the
    // words into a local array through a plain pointer, one memcpy per 4 KiB. The tests
    // generate and regenerate gigabytes a run (both ends of every stream) in code built at
    // -O0, and under ASan in CI, where every call and every checked byte store counts: 256 MiB
    // took 2-4 s a byte at a time in the debug build and 8-10 s under ASan, 0.8 and 1.0 s so
    // (issue 15's 30-minute budget). The same bytes, low byte of each word first.
    if (size - pos >= 8) {
        std::uint64_t state = state_;
        std::array<std::uint64_t, 512> block{};
        std::uint64_t* const words = block.data();
        while (size - pos >= 8) {
            const std::size_t count = std::min(block.size(), (size - pos) / 8);
            for (std::size_t i = 0; i < count; ++i) {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                words[i] = state * 0x2545f4914f6cdd1dULL;
            }
            if constexpr (std::endian::native == std::endian::big) {
                for (std::size_t i = 0; i < count; ++i) {
                    words[i] = __builtin_bswap64(words[i]);
                }
            }
            std::memcpy(out + pos, words, count * 8);
            pos += count * 8;
        }
        state_ = state;
    }
    if (pos < size) {
        pending_ = next_word();
        pending_count_ = 8;
        while (pos < size) {
            out[pos++] = static_cast<char>(pending_ & 0xff);
            pending_ >>= 8;
            --pending_count_;
        }
    }
}

void ByteGenerator::fill(std::span<std::byte> out) {
    fill(reinterpret_cast<char*>(out.data()), out.size());
}

std::string ByteGenerator::take(std::size_t size) {
    std::string bytes(size, '\0');
    fill(bytes.data(), bytes.size());
    return bytes;
}

// --- Sha256Hasher
// ---------------------------------------------------------------------------------

struct Sha256Hasher::State {
    EVP_MD_CTX* ctx = nullptr;
    ~State() { EVP_MD_CTX_free(ctx); }
};

Sha256Hasher::Sha256Hasher() : state_(std::make_unique<State>()) {
    state_->ctx = EVP_MD_CTX_new();
    if (state_->ctx == nullptr || EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("EVP sha256 init failed");
    }
}
Sha256Hasher::~Sha256Hasher() = default;
Sha256Hasher::Sha256Hasher(Sha256Hasher&& other) noexcept = default;
Sha256Hasher& Sha256Hasher::operator=(Sha256Hasher&& other) noexcept = default;

void Sha256Hasher::update(const void* data, std::size_t size) {
    if (size > 0 && EVP_DigestUpdate(state_->ctx, data, size) != 1) {
        throw std::runtime_error("EVP sha256 update failed");
    }
}

std::string Sha256Hasher::hex() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned length = 0;
    if (EVP_DigestFinal_ex(state_->ctx, digest.data(), &length) != 1) {
        throw std::runtime_error("EVP sha256 final failed");
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string text;
    for (unsigned i = 0; i < length; ++i) {
        text += kHex[digest[i] >> 4];
        text += kHex[digest[i] & 0xf];
    }
    return text;
}

std::string sha256_hex(std::string_view data) {
    Sha256Hasher hash;
    hash.update(data);
    return hash.hex();
}

std::string sha256_of_generated(std::string_view prefix, std::uint64_t seed, std::uint64_t count) {
    Sha256Hasher hash;
    hash.update(prefix);
    ByteGenerator generator(seed);
    std::vector<char> chunk(1 << 20);
    while (count > 0) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(count, chunk.size()));
        generator.fill(chunk.data(), n);
        hash.update(chunk.data(), n);
        count -= n;
    }
    return hash.hex();
}

namespace {

bool is_reset_errno(int error) {
    return error == ECONNRESET || error == EPIPE || error == ECONNABORTED;
}

std::chrono::milliseconds since(Clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

// Produces the outgoing byte sequence (prefix, then generated) chunk by chunk and hashes
// exactly the bytes the socket accepted.
class OutgoingCursor {
public:
    OutgoingCursor(const Outgoing& outgoing, std::size_t chunk_size)
        : outgoing_(outgoing), generator_(outgoing.seed), buffer_(chunk_size) {}

    [[nodiscard]] bool finished() const { return produced_ == outgoing_.total() && pos_ == len_; }

    // Bytes ready to send (refills when the current chunk is used up).
    std::span<const char> ready() {
        if (pos_ == len_ && produced_ < outgoing_.total()) {
            refill();
        }
        return {buffer_.data() + pos_, len_ - pos_};
    }

    // Bytes sent outside this cursor, before it: part of the count and the hash.
    void sent_elsewhere(std::string_view bytes) {
        hash_.update(bytes);
        sent_ += bytes.size();
    }

    void consumed(std::size_t n) {
        hash_.update(buffer_.data() + pos_, n);
        pos_ += n;
        sent_ += n;
    }

    [[nodiscard]] std::uint64_t sent() const { return sent_; }
    std::string hex() { return hash_.hex(); }

private:
    void refill() {
        pos_ = 0;
        len_ = 0;
        while (len_ < buffer_.size() && produced_ < outgoing_.prefix.size()) {
            const std::size_t n =
                std::min(buffer_.size() - len_,
                         outgoing_.prefix.size() - static_cast<std::size_t>(produced_));
            std::memcpy(buffer_.data() + len_, outgoing_.prefix.data() + produced_, n);
            len_ += n;
            produced_ += n;
        }
        if (len_ < buffer_.size() && produced_ < outgoing_.total()) {
            const std::size_t n = static_cast<std::size_t>(
                std::min<std::uint64_t>(buffer_.size() - len_, outgoing_.total() - produced_));
            generator_.fill(buffer_.data() + len_, n);
            len_ += n;
            produced_ += n;
        }
    }

    const Outgoing& outgoing_;
    ByteGenerator generator_;
    std::vector<char> buffer_;
    std::size_t pos_ = 0;
    std::size_t len_ = 0;
    std::uint64_t produced_ = 0;
    std::uint64_t sent_ = 0;
    Sha256Hasher hash_;
};

}  // namespace

// Regenerates from the start: meant for a failure path (or a small stream).
std::string expected_bytes(const Outgoing& outgoing, std::uint64_t from, std::uint64_t count) {
    std::string bytes;
    const std::uint64_t end = std::min(outgoing.total(), from + count);
    for (std::uint64_t at = from; at < end && at < outgoing.prefix.size(); ++at) {
        bytes += outgoing.prefix[static_cast<std::size_t>(at)];
    }
    const std::uint64_t prefix = outgoing.prefix.size();
    if (end <= prefix) {
        return bytes;
    }
    ByteGenerator generator(outgoing.seed);
    std::vector<char> chunk(1 << 20);
    std::uint64_t skip = from > prefix ? from - prefix : 0;
    while (skip > 0) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(skip, chunk.size()));
        generator.fill(chunk.data(), n);
        skip -= n;
    }
    const std::size_t wanted = static_cast<std::size_t>(end - std::max(from, prefix));
    const std::size_t start = bytes.size();
    bytes.resize(start + wanted);
    generator.fill(bytes.data() + start, wanted);
    return bytes;
}

namespace {

// Compares received bytes with what the peer was expected to send, as they arrive.
class StreamVerifier {
public:
    explicit StreamVerifier(const Outgoing& expected)
        : expected_(expected), generator_(expected.seed) {}

    // `data` arrived at stream offset `at` (= bytes received before it).
    void check(const char* data, std::size_t size, std::uint64_t at, TransferResult& result) {
        if (result.first_mismatch != std::numeric_limits<std::uint64_t>::max()) {
            return;
        }
        const std::string want = next(size);
        // The whole piece at once: memcmp, not a loop per byte (gigabytes pass here: 256 MiB
        // took 3 s by bytes at -O0 and 8 s under ASan, 0.05 s by memcmp); the byte loop below
        // only finds where a piece that differs first differs.
        if (want.size() == size && std::memcmp(data, want.data(), size) == 0) {
            return;
        }
        for (std::size_t i = 0; i < size; ++i) {
            if (i >= want.size() || data[i] != want[i]) {
                result.first_mismatch = at + i;
                locate(std::string_view(data + i, std::min<std::size_t>(size - i, 64)), result);
                return;
            }
        }
    }

private:
    std::string next(std::size_t size) {
        std::string bytes;
        while (bytes.size() < size && produced_ < expected_.prefix.size()) {
            bytes += expected_.prefix[static_cast<std::size_t>(produced_++)];
        }
        const auto generated = static_cast<std::size_t>(
            std::min<std::uint64_t>(size - bytes.size(), expected_.total() - produced_));
        const std::size_t start = bytes.size();
        bytes.resize(start + generated);
        generator_.fill(bytes.data() + start, generated);
        produced_ += generated;
        return bytes;
    }

    // Where the bytes found at the mismatch sit in the expected stream, if nearby.
    void locate(std::string_view sample, TransferResult& result) const {
        constexpr std::uint64_t kBefore = 32ULL << 20;
        constexpr std::uint64_t kAfter = 64ULL << 20;
        if (sample.size() < 16) {
            return;
        }
        const std::uint64_t from =
            result.first_mismatch > kBefore ? result.first_mismatch - kBefore : 0;
        const std::string window = expected_bytes(expected_, from, kBefore + kAfter);
        const std::size_t found = window.find(sample);
        if (found != std::string::npos) {
            result.mismatch_found_at = from + found;
        }
    }

    const Outgoing& expected_;
    ByteGenerator generator_;
    std::uint64_t produced_ = 0;
};

struct Transfer {
    Transfer(int socket, const TransferOptions& opts, std::size_t chunk)
        : fd(socket), options(&opts), out(opts.send, chunk) {
        if (opts.verify != nullptr) {
            verifier.emplace(*opts.verify);
        }
        out.sent_elsewhere(opts.sent_before);
        send_done = out.finished();
        if (send_done && options->after_send == AfterSend::shutdown_write) {
            ::shutdown(fd, SHUT_WR);
        }
        recv_done = options->expect == 0;
    }

    int fd;
    const TransferOptions* options;
    OutgoingCursor out;
    Sha256Hasher received_hash;
    std::optional<StreamVerifier> verifier;
    TransferResult result;
    bool send_done = false;
    bool recv_done = false;

    [[nodiscard]] bool done() const { return send_done && recv_done; }

    void fail(int error) {
        if (is_reset_errno(error)) {
            result.reset = true;
        } else if (result.error.empty()) {
            result.error = std::strerror(error);
        }
        send_done = true;
        recv_done = true;
    }

    void on_writable() {
        while (!send_done) {
            const std::span<const char> bytes = out.ready();
            const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    return;
                }
                if (errno == EINTR) {
                    continue;
                }
                fail(errno);
                return;
            }
            out.consumed(static_cast<std::size_t>(n));
            if (options->live_sent != nullptr) {
                options->live_sent->fetch_add(static_cast<std::uint64_t>(n),
                                              std::memory_order_relaxed);
            }
            if (out.finished()) {
                send_done = true;
                if (options->after_send == AfterSend::shutdown_write) {
                    ::shutdown(fd, SHUT_WR);
                }
            }
        }
    }

    void on_readable(std::vector<char>& buffer) {
        // Bounded per wake-up so one busy socket cannot starve the others in transfer_many.
        for (int round = 0; round < 16 && !recv_done; ++round) {
            std::size_t want = buffer.size();
            if (options->expect != kUntilEof) {
                want = static_cast<std::size_t>(
                    std::min<std::uint64_t>(want, options->expect - result.received));
            }
            const ssize_t n = ::recv(fd, buffer.data(), want, MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    return;
                }
                if (errno == EINTR) {
                    continue;
                }
                fail(errno);
                return;
            }
            if (n == 0) {
                result.eof = true;
                recv_done = true;
                return;
            }
            const auto got = static_cast<std::size_t>(n);
            received_hash.update(buffer.data(), got);
            if (verifier) {
                verifier->check(buffer.data(), got, result.received, result);
            }
            if (result.received_head.size() < options->keep_received) {
                result.received_head.append(
                    buffer.data(),
                    std::min(got, options->keep_received - result.received_head.size()));
            }
            result.received += got;
            if (options->live_received != nullptr) {
                options->live_received->fetch_add(got, std::memory_order_relaxed);
            }
            if (options->expect != kUntilEof && result.received >= options->expect) {
                recv_done = true;
            }
        }
    }

    TransferResult finish(Clock::time_point start) {
        result.sent = out.sent();
        result.sent_sha256 = out.hex();
        result.received_sha256 = received_hash.hex();
        result.elapsed = since(start);
        return std::move(result);
    }
};

}  // namespace

bool TransferResult::complete(const TransferOptions& options) const {
    const bool read_all = options.expect == kUntilEof ? eof : received == options.expect;
    return sent == options.sent_before.size() + options.send.total() && read_all && !reset &&
           !timed_out && error.empty();
}

std::vector<TransferResult> transfer_many(const std::vector<int>& fds,
                                          const std::vector<TransferOptions>& options,
                                          std::chrono::milliseconds timeout) {
    if (fds.size() != options.size()) {
        throw std::invalid_argument("transfer_many: one TransferOptions per fd");
    }
    const Clock::time_point start = Clock::now();
    const Clock::time_point deadline = start + timeout;
    // Send chunks are per connection: keep them small when there are many.
    const std::size_t chunk = fds.size() > 16 ? 32 * 1024 : 256 * 1024;
    std::vector<std::unique_ptr<Transfer>> transfers;
    transfers.reserve(fds.size());
    for (std::size_t i = 0; i < fds.size(); ++i) {
        set_nonblocking(fds[i]);
        transfers.push_back(std::make_unique<Transfer>(fds[i], options[i], chunk));
    }
    std::vector<char> buffer(256 * 1024);
    std::vector<pollfd> poll_set;
    std::vector<Transfer*> polled;
    while (true) {
        poll_set.clear();
        polled.clear();
        for (auto& transfer : transfers) {
            if (transfer->done()) {
                continue;
            }
            short events = 0;
            if (!transfer->send_done) {
                events |= POLLOUT;
            }
            if (!transfer->recv_done) {
                events |= POLLIN;
            }
            poll_set.push_back(pollfd{transfer->fd, events, 0});
            polled.push_back(transfer.get());
        }
        if (poll_set.empty()) {
            break;
        }
        const auto now = Clock::now();
        if (now >= deadline) {
            for (Transfer* transfer : polled) {
                transfer->result.timed_out = true;
            }
            break;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
        const int wait_ms = static_cast<int>(std::min<std::int64_t>(left.count() + 1, 100));
        const int ready = ::poll(poll_set.data(), poll_set.size(), wait_ms);
        if (ready < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
        }
        for (std::size_t i = 0; i < poll_set.size(); ++i) {
            const short revents = poll_set[i].revents;
            if (revents == 0) {
                continue;
            }
            Transfer* transfer = polled[i];
            // On HUP/ERR both calls run so recv()/send() report what actually happened.
            if ((revents & (POLLIN | POLLHUP | POLLERR)) != 0 && !transfer->recv_done) {
                transfer->on_readable(buffer);
            }
            if ((revents & (POLLOUT | POLLHUP | POLLERR)) != 0 && !transfer->send_done) {
                transfer->on_writable();
            }
            if ((revents & POLLERR) != 0 && !transfer->done()) {
                int error = 0;
                socklen_t length = sizeof(error);
                ::getsockopt(transfer->fd, SOL_SOCKET, SO_ERROR, &error, &length);
                if (error != 0) {
                    transfer->fail(error);
                }
            }
        }
    }
    std::vector<TransferResult> results;
    results.reserve(transfers.size());
    for (auto& transfer : transfers) {
        results.push_back(transfer->finish(start));
    }
    return results;
}

TransferResult transfer_both_ways(int fd, const TransferOptions& options) {
    return std::move(transfer_many({fd}, {options}, options.timeout).front());
}

SourceResult source_for(int fd, const SourceOptions& options) {
    set_nonblocking(fd);
    Outgoing endless{options.prefix, kUntilEof - options.prefix.size(), options.seed};
    OutgoingCursor out(endless, 256 * 1024);
    SourceResult result;
    const Clock::time_point end = Clock::now() + options.duration;
    while (Clock::now() < end) {
        pollfd waiting{fd, POLLOUT, 0};
        const int ready = ::poll(&waiting, 1, 20);
        if (ready < 0 && errno != EINTR) {
            result.error = std::strerror(errno);
            break;
        }
        if (ready <= 0) {
            continue;
        }
        bool stop = false;
        while (Clock::now() < end) {
            const std::span<const char> bytes = out.ready();
            const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    break;
                }
                if (is_reset_errno(errno)) {
                    result.reset = true;
                } else {
                    result.error = std::strerror(errno);
                }
                stop = true;
                break;
            }
            out.consumed(static_cast<std::size_t>(n));
            if (options.live_sent != nullptr) {
                options.live_sent->fetch_add(static_cast<std::uint64_t>(n),
                                             std::memory_order_relaxed);
            }
        }
        if (stop) {
            break;
        }
    }
    if (options.after_send == AfterSend::shutdown_write) {
        ::shutdown(fd, SHUT_WR);
    }
    result.sent = out.sent();
    result.sent_sha256 = out.hex();
    return result;
}

SinkResult sink_slowly(int fd, const SinkOptions& options) {
    set_nonblocking(fd);
    SinkResult result;
    Sha256Hasher hash;
    std::vector<char> buffer(256 * 1024);
    const Clock::time_point start = Clock::now();
    const Clock::time_point slow_end = start + options.slow_for;
    const Clock::time_point deadline = start + options.timeout;
    auto record = [&](std::size_t got) {
        hash.update(buffer.data(), got);
        if (result.received_head.size() < options.keep_received) {
            result.received_head.append(
                buffer.data(), std::min(got, options.keep_received - result.received_head.size()));
        }
        result.received += got;
        if (options.live_received != nullptr) {
            options.live_received->fetch_add(got, std::memory_order_relaxed);
        }
    };
    // Returns false when reading is over (EOF or error).
    auto read_some = [&](std::size_t limit) {
        const ssize_t n = ::recv(fd, buffer.data(), std::min(limit, buffer.size()), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                return true;
            }
            if (is_reset_errno(errno)) {
                result.reset = true;
            } else {
                result.error = std::strerror(errno);
            }
            return false;
        }
        if (n == 0) {
            result.eof = true;
            return false;
        }
        record(static_cast<std::size_t>(n));
        return true;
    };
    bool open = true;
    // Slow phase: a token bucket refilled every 10 ms.
    while (open && Clock::now() < slow_end) {
        const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
        const auto allowed = static_cast<std::uint64_t>(
            elapsed * static_cast<double>(options.rate_bytes_per_second));
        if (allowed > result.received) {
            open = read_some(static_cast<std::size_t>(allowed - result.received));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    result.received_while_slow = result.received;
    // Fast phase: drain until EOF.
    while (open) {
        const auto now = Clock::now();
        if (now >= deadline) {
            result.timed_out = true;
            break;
        }
        pollfd waiting{fd, POLLIN, 0};
        const int ready = ::poll(&waiting, 1, 100);
        if (ready < 0 && errno != EINTR) {
            result.error = std::strerror(errno);
            break;
        }
        if (ready > 0) {
            open = read_some(buffer.size());
        }
    }
    result.received_sha256 = hash.hex();
    return result;
}

namespace {

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// send_stream's chunk; an unhashed send repeats the first one, which read_stream can check.
constexpr std::size_t kSendChunk = 256 * 1024;

}  // namespace

SendReport send_stream(int fd, const SendOptions& options) {
    SendReport report;
    Sha256Hasher hash;
    ByteGenerator generator(options.seed);
    std::vector<char> chunk(kSendChunk);
    std::size_t chunk_size = 0;  // valid bytes in chunk
    std::size_t chunk_sent = 0;
    const auto start = Clock::now();
    const auto deadline = start + options.max_time;
    while (report.bytes < options.max_bytes && Clock::now() < deadline &&
           (options.stop == nullptr || !options.stop->load())) {
        if (chunk_sent == chunk_size) {
            const bool first = chunk_size == 0;
            chunk_size = static_cast<std::size_t>(
                std::min<std::uint64_t>(kSendChunk, options.max_bytes - report.bytes));
            if (options.hash || first) {
                generator.fill(chunk.data(), chunk_size);
            }
            chunk_sent = 0;
        }
        const ssize_t n = ::send(fd, chunk.data() + chunk_sent, chunk_size - chunk_sent,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            if (options.hash) {
                hash.update(chunk.data() + chunk_sent, static_cast<std::size_t>(n));
            }
            chunk_sent += static_cast<std::size_t>(n);
            report.bytes += static_cast<std::uint64_t>(n);
            if (options.progress != nullptr) {
                options.progress->store(report.bytes);
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            pollfd waiting{fd, POLLOUT, 0};
            ::poll(&waiting, 1, 20);
            continue;
        }
        report.error = std::string("send: ") + std::strerror(errno);
        break;
    }
    report.seconds = seconds_since(start);
    report.sha256 = options.hash ? hash.hex() : std::string();
    if (options.close_after) {
        ::close(fd);
    } else if (options.shutdown_after) {
        ::shutdown(fd, SHUT_WR);
    }
    return report;
}

ReadReport read_stream(int fd, const ReadOptions& options) {
    ReadReport report;
    Sha256Hasher hash;
    std::vector<char> buffer(options.chunk);
    std::vector<char> expected;
    if (options.expect_repeating_seed != 0) {
        expected.resize(kSendChunk);
        ByteGenerator(options.expect_repeating_seed).fill(expected.data(), expected.size());
    }
    const auto start = Clock::now();
    const auto deadline = start + options.max_time;
    // Rate limiting: a budget that grows with time since the rate last changed.
    std::uint64_t current_rate = options.rate != nullptr ? options.rate->load() : 0;
    auto rate_start = start;
    std::uint64_t read_at_rate_start = 0;
    while (report.bytes < options.max_bytes && Clock::now() < deadline) {
        std::size_t want = static_cast<std::size_t>(
            std::min<std::uint64_t>(buffer.size(), options.max_bytes - report.bytes));
        if (options.rate != nullptr) {
            const std::uint64_t rate = options.rate->load();
            if (rate != current_rate) {
                current_rate = rate;
                rate_start = Clock::now();
                read_at_rate_start = report.bytes;
            }
            if (rate != 0) {
                const auto budget = static_cast<std::uint64_t>(seconds_since(rate_start) *
                                                               static_cast<double>(rate));
                const std::uint64_t used = report.bytes - read_at_rate_start;
                if (budget <= used) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(5));
                    continue;
                }
                want = static_cast<std::size_t>(std::min<std::uint64_t>(want, budget - used));
            }
        }
        pollfd waiting{fd, POLLIN, 0};
        const int ready = ::poll(&waiting, 1, 20);
        if (ready <= 0) {
            continue;
        }
        const ssize_t n = ::recv(fd, buffer.data(), want, MSG_DONTWAIT);
        if (n > 0) {
            if (options.hash) {
                hash.update(buffer.data(), static_cast<std::size_t>(n));
            }
            if (!expected.empty() &&
                report.first_mismatch == std::numeric_limits<std::uint64_t>::max()) {
                for (std::size_t done = 0; done < static_cast<std::size_t>(n);) {
                    const std::size_t at =
                        static_cast<std::size_t>((report.bytes + done) % kSendChunk);
                    const std::size_t run =
                        std::min(static_cast<std::size_t>(n) - done, kSendChunk - at);
                    if (std::memcmp(buffer.data() + done, expected.data() + at, run) != 0) {
                        std::size_t k = 0;
                        while (buffer[done + k] == expected[at + k]) {
                            ++k;
                        }
                        report.first_mismatch = report.bytes + done + k;
                        break;
                    }
                    done += run;
                }
            }
            report.bytes += static_cast<std::uint64_t>(n);
            report.seconds = seconds_since(start);
            if (options.progress != nullptr) {
                options.progress->store(report.bytes);
            }
            continue;
        }
        if (n == 0) {
            report.eof = true;
            report.seconds = seconds_since(start);
            break;
        }
        if (errno == EAGAIN || errno == EINTR) {
            continue;
        }
        report.error = std::string("recv: ") + std::strerror(errno);
        break;
    }
    report.sha256 = options.hash ? hash.hex() : std::string();
    return report;
}

}  // namespace splicer::test
