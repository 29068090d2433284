// libFuzzer target: the TLS ClientHello parser on a stream that arrives in fuzzer-chosen
// pieces (split_input.h). Besides ASan/UBSan findings it checks the parser's contract: every
// prefix before the answer is need_more, and once it answers, every longer prefix gives the
// same answer with the same fields, so the verdict never depends on how TCP split the bytes.
// And `needed` (how long the daemon waits before asking again) is past the prefix and never
// past the length at which the hello matches: waiting for it delays no real client.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "split_input.h"
#include "splicer/tls_client_hello.h"

namespace {

using splicer::probe::Verdict;

void fail(const char* what) {
    std::fprintf(stderr, "fuzz_client_hello: %s\n", what);
    std::abort();
}

bool same_fields(const splicer::tls::ClientHello& a, const splicer::tls::ClientHello& b) {
    return a.legacy_version == b.legacy_version && a.server_name == b.server_name &&
           a.alpn_protocols == b.alpn_protocols && a.supported_versions == b.supported_versions &&
           a.has_encrypted_client_hello == b.has_encrypted_client_hello;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const splicer::fuzz::SplitInput input = splicer::fuzz::split_input(data, size);
    bool decided = false;
    splicer::tls::ParseResult first;
    std::size_t undecided = 0;    // the longest prefix seen that gave need_more
    std::size_t most_needed = 0;  // the largest `needed` any need_more answer gave
    for (const std::size_t length : input.prefix_lengths) {
        const splicer::tls::ParseResult result =
            splicer::tls::parse_client_hello(input.stream.first(length));
        if (!decided) {
            if (result.verdict == Verdict::need_more) {
                if (result.needed <= length || result.needed > splicer::tls::kMaxProbeBytes) {
                    fail("needed is not past the prefix or is past kMaxProbeBytes");
                }
                undecided = length;
                most_needed = std::max(most_needed, result.needed);
                continue;
            }
            decided = true;
            first = result;
            if (result.verdict == Verdict::match) {
                // The exact length at which it first matches (answers are stable once given).
                std::size_t low = undecided;  // need_more
                std::size_t high = length;    // match
                while (high - low > 1) {
                    const std::size_t middle = low + (high - low) / 2;
                    const auto verdict =
                        splicer::tls::parse_client_hello(input.stream.first(middle)).verdict;
                    (verdict == Verdict::need_more ? low : high) = middle;
                }
                if (most_needed > high) {
                    fail("needed past the length at which the hello matches");
                }
            }
            continue;
        }
        if (result.verdict != first.verdict) {
            fail("a longer prefix changed the verdict");
        }
        if (result.verdict == Verdict::match && !same_fields(result.hello, first.hello)) {
            fail("a longer prefix changed the parsed fields");
        }
    }
    if (input.stream.size() >= splicer::tls::kMaxProbeBytes && !decided) {
        fail("need_more past kMaxProbeBytes");
    }
    return 0;
}
