// libFuzzer target: the received PROXY header parser (net/proxy_header_parse.h) on a stream
// that arrives in fuzzer-chosen pieces (split_input.h). Besides ASan/UBSan findings it checks
// the parser's contract: every prefix before the answer is need_more, once it answers every
// longer prefix gives the same answer (the verdict never depends on how TCP split the bytes),
// a header never claims more bytes than it was given nor more than kMaxReceivedProxyBytes,
// and a parsed client address is IPv4 or IPv6.

#include <sys/socket.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "net/proxy_header_parse.h"
#include "split_input.h"

namespace {

using splicer::net::ProxyParseResult;
using splicer::net::ProxyParseStatus;

void fail(const char* what) {
    std::fprintf(stderr, "fuzz_proxy_header: %s\n", what);
    std::abort();
}

bool same(const ProxyParseResult& a, const ProxyParseResult& b) {
    return a.status == b.status && a.reason == b.reason && a.header.length == b.header.length &&
           a.header.local == b.header.local && a.header.version == b.header.version &&
           splicer::net::to_string(a.header.source) == splicer::net::to_string(b.header.source);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const splicer::fuzz::SplitInput input = splicer::fuzz::split_input(data, size);
    bool decided = false;
    ProxyParseResult first;
    for (const std::size_t length : input.prefix_lengths) {
        const ProxyParseResult result =
            splicer::net::parse_proxy_header(input.stream.first(length));
        if (decided) {
            if (!same(result, first)) {
                fail("a longer prefix changed the answer");
            }
            continue;
        }
        if (result.status == ProxyParseStatus::need_more) {
            if (length >= splicer::net::kMaxReceivedProxyBytes) {
                fail("need_more past the longest header");
            }
            continue;
        }
        if (result.status == ProxyParseStatus::parsed) {
            if (result.header.length == 0 || result.header.length > length ||
                result.header.length > splicer::net::kMaxReceivedProxyBytes) {
                fail("a parsed header's length is out of bounds");
            }
            if (!result.header.local) {
                const int family = result.header.source.family();
                if ((family != AF_INET && family != AF_INET6) ||
                    result.header.destination.family() != family) {
                    fail("a parsed client address is not IPv4 or IPv6");
                }
            }
        } else if (result.reason.empty()) {
            fail("invalid without a reason");
        }
        decided = true;
        first = result;
    }
    return 0;
}
