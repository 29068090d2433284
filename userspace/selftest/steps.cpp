#include "selftest/steps.h"

#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <optional>
#include <thread>

namespace splicer::selftest {
namespace {

// A TLS ClientHello without post-quantum key shares is about this large.
constexpr std::size_t kHelloBytes = 517;
constexpr std::size_t kBannerBytes = 100;
constexpr std::size_t kPipelinedBytes = 64 * 1024;
constexpr std::size_t kBulkBytes = 384 * 1024;
constexpr std::size_t kHalfCloseBytes = 64 * 1024;
constexpr std::size_t kFlowBytes = 512 * 1024;
constexpr std::size_t kWakeBytes = 4 * 1024;
// A sink that fills after a few hundred KiB: its receive buffer and the send buffer behind
// it. Room enough for a 64 KiB loopback skb (the kernel doubles SO_SNDBUF), so the verdict
// redirects first and passes only once the sink is full, as in a real stream.
constexpr LoopbackBuffers kSmallSink{.server_receive_bytes = 64 * 1024,
                                     .back_send_bytes = 64 * 1024};
// How long the writer waits before writing, so the reader is already asleep in poll().
constexpr std::chrono::milliseconds kWakeDelay{5};

// The pair of a step, and its relay once paired. The relay is declared first so that it goes
// last: the sockets close (and leave the sockhash) before their links are deleted, the
// plane's teardown order.
struct Spliced {
    std::optional<Relay> relay;
    LoopbackPair pair;
};

Result<Spliced> make_pair(const LoopbackBuffers& buffers = {}) {
    auto pair = make_loopback_pair(buffers);
    if (!pair) {
        return pair.error();
    }
    return Spliced{std::nullopt, std::move(*pair)};
}

Result<void> splice(bpf::SpliceProgram& program, Spliced& spliced) {
    auto relay = Relay::start(program, spliced.pair.front.get(), spliced.pair.back.get());
    if (!relay) {
        return relay.error();
    }
    spliced.relay.emplace(std::move(*relay));
    return {};
}

// A pair already paired through the program: how every step that has nothing to queue
// before insertion begins.
Result<Spliced> make_spliced_pair(bpf::SpliceProgram& program,
                                  const LoopbackBuffers& buffers = {}) {
    auto spliced = make_pair(buffers);
    if (!spliced) {
        return spliced.error();
    }
    if (auto paired = splice(program, *spliced); !paired) {
        return paired.error();
    }
    return std::move(*spliced);
}

// Runs `exchange` until each far end has received everything the other one sends, then
// checks both directions arrived byte-exact: how every step that only moves bytes ends.
Result<void> exchange_both_ways(Exchange& exchange, Clock::time_point deadline) {
    const auto all_arrived = [&] {
        return exchange.upstream.received.size() >= exchange.upstream.to_send.size() &&
               exchange.downstream.received.size() >= exchange.downstream.to_send.size();
    };
    if (auto arrived = exchange.run_until(all_arrived, deadline); !arrived) {
        return arrived;
    }
    if (auto exact = check_arrived(exchange.upstream, "client to server"); !exact) {
        return exact;
    }
    return check_arrived(exchange.downstream, "server to client");
}

bool has_readable(int fd, std::size_t bytes) {
    auto readable = readable_bytes(fd);
    return readable && *readable >= bytes;
}

// The link of paired socket `fd` (zeros when unknown).
bpf::LinkState link_of(bpf::SpliceProgram& program, int fd) {
    auto cookie = bpf::socket_cookie(fd);
    if (!cookie) {
        return {};
    }
    auto link = program.link_state(*cookie);
    return link ? *link : bpf::LinkState{};
}

std::uint64_t passed_on(bpf::SpliceProgram& program, int fd) {
    return link_of(program, fd).passed;
}

Result<void> write_all_now(int fd, const std::byte* data, std::size_t size) {
    const ssize_t n = ::send(fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n != static_cast<ssize_t>(size)) {
        return n < 0 ? errno_error("send") : Error{"short send"};
    }
    return {};
}

// Writes `size` bytes to `writer` after kWakeDelay, from another thread, while this one
// sleeps in poll() on `reader`; then the reader must be readable and FIONREAD count bytes.
Result<void> wakes_up(int writer, int reader, const char* what, Clock::time_point deadline) {
    const auto bytes = pattern_bytes(kWakeBytes, 7);
    Result<void> written;
    std::thread late_writer([&] {
        std::this_thread::sleep_for(kWakeDelay);
        written = write_all_now(writer, bytes.data(), bytes.size());
    });
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd fd{reader, POLLIN, 0};
    const int ready = ::poll(&fd, 1, static_cast<int>(std::max<long>(left.count(), 0)));
    late_writer.join();
    if (!written) {
        return written.error();
    }
    if (ready <= 0 || (fd.revents & POLLIN) == 0) {
        return Error{std::string(what) + ": poll() did not wake up for bytes written " +
                     std::to_string(kWakeDelay.count()) + " ms after it began waiting"};
    }
    auto readable = readable_bytes(reader);
    if (!readable) {
        return readable.error();
    }
    if (*readable == 0) {
        return Error{std::string(what) + ": poll() reported POLLIN but FIONREAD counts 0 bytes"};
    }
    return {};
}

// Reads and drops whatever is readable on `fd` until it stays empty and `writer` has nothing
// left to send: nothing more is on its way.
Result<void> drain_until_quiet(int fd, int writer, Clock::time_point deadline) {
    std::byte buffer[16 * 1024];
    while (Clock::now() < deadline) {
        const ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n > 0) {
            continue;
        }
        if (n == 0) {
            return Error{"unexpected EOF"};
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return errno_error("recv");
        }
        int unsent = 0;
        if (::ioctl(writer, SIOCOUTQ, &unsent) != 0) {
            return errno_error("SIOCOUTQ");
        }
        if (unsent == 0) {
            return {};
        }
        pollfd wait{fd, POLLIN, 0};
        ::poll(&wait, 1, 1);
    }
    return Error{"deadline passed while draining"};
}

}  // namespace

Result<void> step_queued_before_insertion(bpf::SpliceProgram& program, Clock::time_point deadline) {
    auto spliced = make_pair();
    if (!spliced) {
        return spliced.error();
    }
    const LoopbackPair& pair = spliced->pair;
    Exchange exchange(pair, nullptr);
    exchange.upstream.to_send = pattern_bytes(kHelloBytes, 1);
    exchange.downstream.to_send = pattern_bytes(kBannerBytes, 2);
    exchange.server_reads = false;
    // Both writes wait on front and back, unread, before either socket enters the sockhash:
    // the ClientHello the daemon peeked, a server's banner.
    if (auto queued = exchange.run_until(
            [&] {
                return has_readable(pair.front.get(), kHelloBytes) &&
                       has_readable(pair.back.get(), kBannerBytes);
            },
            deadline);
        !queued) {
        return queued.error().with_context("before insertion");
    }
    if (auto spliced_now = splice(program, *spliced); !spliced_now) {
        return spliced_now;
    }
    exchange.set_relay(&*spliced->relay);
    exchange.server_reads = true;
    // Nothing else is written: only the kick can move these bytes.
    return exchange_both_ways(exchange, deadline);
}

Result<void> step_pipelined_behind_hello(bpf::SpliceProgram& program, Clock::time_point deadline) {
    auto spliced = make_pair();
    if (!spliced) {
        return spliced.error();
    }
    const LoopbackPair& pair = spliced->pair;
    Exchange exchange(pair, nullptr);
    exchange.upstream.to_send = pattern_bytes(kHelloBytes + kPipelinedBytes, 3);
    // The hello alone first, peeked on front as the probe does.
    if (auto hello =
            write_all_now(pair.client.get(), exchange.upstream.to_send.data(), kHelloBytes);
        !hello) {
        return hello;
    }
    exchange.upstream.written = kHelloBytes;
    if (auto peeked = exchange.run_until(
            [&] { return has_readable(pair.front.get(), kHelloBytes); }, deadline);
        !peeked) {
        return peeked.error().with_context("hello");
    }
    // Then the pipelined bytes, the first of them racing the insertion.
    if (auto racing =
            write_all_now(pair.client.get(), exchange.upstream.to_send.data() + kHelloBytes, 4096);
        !racing) {
        return racing;
    }
    exchange.upstream.written += 4096;
    if (auto spliced_now = splice(program, *spliced); !spliced_now) {
        return spliced_now;
    }
    exchange.set_relay(&*spliced->relay);
    return exchange_both_ways(exchange, deadline);
}

Result<void> step_byte_exact_both_ways(bpf::SpliceProgram& program, Clock::time_point deadline) {
    auto spliced = make_spliced_pair(program);
    if (!spliced) {
        return spliced.error();
    }
    Exchange exchange(spliced->pair, &*spliced->relay);
    exchange.upstream.to_send = pattern_bytes(kBulkBytes, 4);
    exchange.downstream.to_send = pattern_bytes(kBulkBytes, 5);
    return exchange_both_ways(exchange, deadline);
}

Result<void> step_half_close(bpf::SpliceProgram& program, Clock::time_point deadline) {
    auto spliced = make_spliced_pair(program);
    if (!spliced) {
        return spliced.error();
    }
    Exchange exchange(spliced->pair, &*spliced->relay);
    exchange.upstream.to_send = pattern_bytes(kHalfCloseBytes, 6);
    exchange.upstream.shut_after = true;
    if (auto ended = exchange.run_until([&] { return exchange.upstream.eof_received; }, deadline);
        !ended) {
        return ended.error().with_context("client's EOF");
    }
    if (auto exact = check_arrived(exchange.upstream, "client to server before EOF"); !exact) {
        return exact;
    }
    // The server answers only now, after its EOF: the half-open direction must still flow.
    exchange.downstream.to_send = pattern_bytes(kHalfCloseBytes, 7);
    exchange.downstream.shut_after = true;
    if (auto answered =
            exchange.run_until([&] { return exchange.downstream.eof_received; }, deadline);
        !answered) {
        return answered.error().with_context("reply after the client's EOF");
    }
    return check_arrived(exchange.downstream, "server to client after the client's EOF");
}

Result<void> step_flow_control_pass(bpf::SpliceProgram& program, Clock::time_point deadline) {
    auto spliced = make_spliced_pair(program, kSmallSink);
    if (!spliced) {
        return spliced.error();
    }
    const LoopbackPair& pair = spliced->pair;
    Exchange exchange(pair, &*spliced->relay);
    exchange.upstream.to_send = pattern_bytes(kFlowBytes, 8);
    exchange.server_reads = false;
    // Kernel fact 2: the sink's buffers full, the verdict must stop redirecting and pass.
    if (auto full =
            exchange.run_until([&] { return passed_on(program, pair.front.get()) > 0; }, deadline);
        !full) {
        return full.error().with_context("the verdict never passed bytes up with the sink full");
    }
    if (link_of(program, pair.front.get()).redirected == 0) {
        return Error{"the verdict passed before it redirected anything: the sink never filled"};
    }
    exchange.server_reads = true;
    if (auto arrived = exchange.run_until(
            [&] { return exchange.upstream.received.size() >= kFlowBytes; }, deadline);
        !arrived) {
        return arrived.error().with_context("sink reading again");
    }
    if (spliced->relay->copied(SPLICER_DIR_CLIENT_TO_BACKEND) == 0) {
        return Error{"no passed byte went through the copy"};
    }
    return check_arrived(exchange.upstream, "client to server");
}

Result<void> step_readiness_and_fionread(bpf::SpliceProgram& program, Clock::time_point deadline) {
    // Redirected bytes: the far end's reader wakes up.
    {
        auto spliced = make_spliced_pair(program);
        if (!spliced) {
            return spliced.error();
        }
        if (auto woke = wakes_up(spliced->pair.client.get(), spliced->pair.server.get(),
                                 "redirected bytes at the server", deadline);
            !woke) {
            return woke;
        }
    }
    // Passed bytes: the paired socket itself wakes up, which is what the sockmap plane's poll
    // on each source waits for. Nothing is copied here, so the link stays in passing mode and
    // every later byte is passed too.
    auto spliced = make_spliced_pair(program, kSmallSink);
    if (!spliced) {
        return spliced.error();
    }
    const LoopbackPair& pair = spliced->pair;
    Exchange exchange(pair, nullptr);
    exchange.upstream.to_send = pattern_bytes(kFlowBytes, 9);
    exchange.server_reads = false;
    if (auto full =
            exchange.run_until([&] { return passed_on(program, pair.front.get()) > 0; }, deadline);
        !full) {
        return full.error().with_context("the verdict never passed bytes up with the sink full");
    }
    if (auto quiet = drain_until_quiet(pair.front.get(), pair.client.get(), deadline); !quiet) {
        return quiet.error().with_context("passed bytes");
    }
    return wakes_up(pair.client.get(), pair.front.get(), "passed bytes on the paired socket",
                    deadline);
}

}  // namespace splicer::selftest
