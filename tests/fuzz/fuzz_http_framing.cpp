// libFuzzer target: HTTP/1.x framing (http::MessageParser over llhttp in strict mode) on a
// stream that arrives in fuzzer-chosen pieces (split_input.h), driven as the daemon drives it:
// feed what has arrived, after a head feed the rest again, after a message start the next one
// (pipelining), stop after an upgrade. Heads that frame go through the rewrites splicer sends
// on.
//
// The contract checked besides ASan/UBSan: framing does not depend on how TCP split the bytes.
// The heads and message ends found (and where, as stream offsets) are the same as when the
// whole stream is fed at once, and an error in one feeding is an error in the other. (Which
// error may differ: a 40 KiB head with a bad byte at 35 KiB is 431 when the first read already
// passed the head limit, 400 when llhttp saw the bad byte first; both are right answers.)
//
// Bits of the split header's first byte above the split count choose the mode: 0x10 frames
// responses instead of requests, 0x20 sets a 1000-byte body limit (413 paths).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "http/head_rewrite.h"
#include "http/message_parser.h"
#include "split_input.h"

namespace {

using splicer::http::Event;
using splicer::http::MessageParser;

struct Mark {
    std::size_t offset = 0;  // stream offset right after the head or the message
    Event event = Event::need_more;
    bool operator==(const Mark&) const = default;
};

struct Trace {
    std::vector<Mark> marks;  // head_complete and message_complete, in order
    bool failed = false;
};

void fail(const char* what) {
    std::fprintf(stderr, "fuzz_http_framing: %s\n", what);
    std::abort();
}

void rewrite_head(const MessageParser& parser, MessageParser::Kind kind) {
    if (kind == MessageParser::Kind::request) {
        const splicer::http::UpstreamOptions options{.client_address = "198.18.0.1",
                                                     .set_host = std::nullopt,
                                                     .drop_expect = true};
        (void)splicer::http::upstream_request_head(parser.head(), options);
    } else {
        (void)splicer::http::client_response_head(parser.head(), false);
    }
}

// Feeds `stream` to a fresh parser in pieces ending at `ends` (ascending, last = size).
Trace frame(std::span<const std::byte> bytes, const std::vector<std::size_t>& ends,
            MessageParser::Kind kind, bool small_body_limit) {
    const std::span<const char> stream(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    MessageParser parser(kind);
    if (small_body_limit) {
        parser.set_max_body(1000);
    }
    Trace trace;
    std::size_t offset = 0;
    for (const std::size_t end : ends) {
        // Every message end or head end means "feed the rest again", even when nothing is
        // left (a message without a body ends on the next feed); a bound keeps a parser that
        // stops consuming from looping forever.
        for (std::size_t rounds = 0;; ++rounds) {
            if (rounds > stream.size() + 4) {
                fail("the parser stopped consuming");
            }
            const splicer::http::Step step = parser.feed(stream.subspan(offset, end - offset));
            if (step.consumed > end - offset) {
                fail("consumed more than it was given");
            }
            offset += step.consumed;
            if (step.event == Event::error) {
                if (parser.error_status() == 0) {
                    fail("an error without a status");
                }
                trace.failed = true;
                return trace;
            }
            if (step.event == Event::need_more) {
                if (offset != end) {
                    fail("need_more left bytes unconsumed");
                }
                break;
            }
            trace.marks.push_back({offset, step.event});
            if (step.event == Event::head_complete) {
                rewrite_head(parser, kind);
            } else if (parser.head().upgrade) {
                return trace;  // what follows an upgrade (or a 101) is not HTTP any more
            } else {
                parser.next_message();
            }
        }
    }
    return trace;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const auto kind = (data[0] & 0x10) != 0 ? MessageParser::Kind::response
                                            : MessageParser::Kind::request;
    const bool small_body_limit = (data[0] & 0x20) != 0;
    const splicer::fuzz::SplitInput input = splicer::fuzz::split_input(data, size);
    const Trace split = frame(input.stream, input.prefix_lengths, kind, small_body_limit);
    const Trace whole = frame(input.stream, {input.stream.size()}, kind, small_body_limit);
    if (split.failed != whole.failed) {
        fail("an error in one feeding only");
    }
    if (split.marks != whole.marks) {
        fail("heads or message ends moved with the split points");
    }
    return 0;
}
