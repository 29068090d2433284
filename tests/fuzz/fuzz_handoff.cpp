// libFuzzer target: the handoff record reader (handoff/wire.h), which a new process runs on
// bytes the old one sent. Besides ASan/UBSan findings it checks the reader's contract: what
// it accepts respects every bound in handoff/record.h, names each fd index once and below the
// fd count, and encodes back to exactly the bytes it was given (one layout, no slack).

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "handoff/wire.h"

namespace {

void fail(const char* what) {
    std::fprintf(stderr, "fuzz_handoff: %s\n", what);
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace splicer::handoff;
    if (size < 1) {
        return 0;
    }
    // The first byte picks how many fds "arrived", the rest is the message.
    const std::uint32_t fd_count = data[0] % 16;
    const std::span bytes(reinterpret_cast<const std::byte*>(data + 1), size - 1);
    auto decoded = decode(bytes, fd_count);
    if (!decoded) {
        if (decoded.error().message.empty()) {
            fail("a refusal without a reason");
        }
        return 0;
    }
    std::vector<bool> named(fd_count, false);
    auto name = [&](std::uint32_t index) {
        if (index == kNoFd) {
            return;
        }
        if (index >= fd_count || named[index]) {
            fail("an fd index out of range or named twice was accepted");
        }
        named[index] = true;
    };
    for (const ConnectionRecord& record : *decoded) {
        name(record.client);
        name(record.backend);
        if (record.protocol.size() > kMaxProtocolBytes) {
            fail("protocol name over the bound");
        }
        for (const DirectionRecord& direction : record.directions) {
            name(direction.pipe_read);
            name(direction.pipe_write);
            if (direction.buffered.size() > kMaxBufferedBytes ||
                direction.in_pipe > kMaxPipeBytes) {
                fail("a length over its bound was accepted");
            }
        }
    }
    const std::vector<std::byte> again = encode(*decoded, fd_count);
    if (again.size() != bytes.size() ||
        !std::equal(again.begin(), again.end(), bytes.begin())) {
        fail("accepted bytes do not encode back to themselves");
    }
    return 0;
}
