#include "support/byte_stream.h"

#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace splicer::test {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// xorshift64*: fast enough not to be what a test measures, and not constant data.
class Pattern {
public:
    explicit Pattern(std::uint64_t seed) : state_(seed == 0 ? 0x9e3779b97f4a7c15ULL : seed) {}
    void fill(unsigned char* out, std::size_t size) {
        for (std::size_t i = 0; i < size; i += 8) {
            state_ ^= state_ >> 12;
            state_ ^= state_ << 25;
            state_ ^= state_ >> 27;
            const std::uint64_t word = state_ * 0x2545f4914f6cdd1dULL;
            std::memcpy(out + i, &word, std::min<std::size_t>(8, size - i));
        }
    }

private:
    std::uint64_t state_;
};

constexpr std::size_t kSendChunk = 256 * 1024;  // a multiple of 8: the pattern stays aligned

}  // namespace

struct Sha256::Context {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Context() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : context_(std::make_unique<Context>()) {
    if (context_->ctx == nullptr || EVP_DigestInit_ex(context_->ctx, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("EVP sha256 init failed");
    }
}
Sha256::~Sha256() = default;

void Sha256::update(const void* data, std::size_t size) {
    EVP_DigestUpdate(context_->ctx, data, size);
}

std::string Sha256::hex_digest() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    EVP_DigestFinal_ex(context_->ctx, digest.data(), &length);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string text;
    for (unsigned int i = 0; i < length; ++i) {
        text.push_back(kHex[digest[i] >> 4]);
        text.push_back(kHex[digest[i] & 0xf]);
    }
    return text;
}

SendReport send_stream(int fd, const SendOptions& options) {
    SendReport report;
    Sha256 hash;
    Pattern pattern(options.seed);
    std::vector<unsigned char> chunk(kSendChunk);
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
                pattern.fill(chunk.data(), chunk_size);
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
    report.sha256 = options.hash ? hash.hex_digest() : std::string();
    if (options.close_after) {
        ::close(fd);
    } else if (options.shutdown_after) {
        ::shutdown(fd, SHUT_WR);
    }
    return report;
}

ReadReport read_stream(int fd, const ReadOptions& options) {
    ReadReport report;
    Sha256 hash;
    std::vector<unsigned char> buffer(options.chunk);
    std::vector<unsigned char> expected;
    if (options.expect_repeating_seed != 0) {
        expected.resize(kSendChunk);
        Pattern(options.expect_repeating_seed).fill(expected.data(), expected.size());
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
    report.sha256 = options.hash ? hash.hex_digest() : std::string();
    return report;
}

std::string stream_sha256(std::uint64_t seed, std::uint64_t bytes) {
    Sha256 hash;
    Pattern pattern(seed);
    std::vector<unsigned char> chunk(kSendChunk);
    while (bytes > 0) {
        const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(kSendChunk, bytes));
        pattern.fill(chunk.data(), size);
        hash.update(chunk.data(), size);
        bytes -= size;
    }
    return hash.hex_digest();
}

std::uint64_t mem_available_bytes() {
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    std::uint64_t value = 0;
    std::string unit;
    while (meminfo >> key >> value >> unit) {
        if (key == "MemAvailable:") {
            return value * 1024;
        }
    }
    throw std::runtime_error("no MemAvailable in /proc/meminfo");
}

}  // namespace splicer::test
