// Tests for splicer::tls::parse_client_hello on real bytes: hellos made by libssl through
// memory BIOs, hellos captured from the openssl s_client binary, hand-built odd hellos, and
// corruptions of them. Every valid hello is also fed as every prefix and in random splits,
// because the daemon calls the parser again on a longer prefix each time bytes arrive.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "splicer/tls_client_hello.h"
#include "support/client_hello.h"
#include "support/process.h"
#include "support/sockets.h"
#include "unit/tls_hello_builder.h"

namespace {

using splicer::probe::Verdict;
using splicer::testing::ByteVector;
using splicer::testing::Extension;
using splicer::testing::HelloLayout;
using splicer::testing::HelloSpec;
using splicer::tls::ClientHello;
using splicer::tls::kMaxClientHelloLength;
using splicer::tls::kMaxProbeBytes;
using splicer::tls::ParseResult;

namespace build = splicer::testing;

ParseResult parse_hello(const ByteVector& bytes) {
    return splicer::tls::parse_client_hello(std::as_bytes(std::span<const std::uint8_t>(bytes)));
}

// Hands the parser prefixes of one input, each copied to end exactly where a heap buffer
// ends, so ASan reports any read past the prefix (inside a larger buffer such a read would go
// unnoticed). One buffer serves every length: a fresh allocation per prefix made the
// byte-by-byte feeding of a 22 KB hello page-fault its way to seconds under ASan.
class PrefixFeeder {
public:
    explicit PrefixFeeder(const ByteVector& input) : input_(input), buffer_(input.size()) {}

    ParseResult parse(std::size_t length) {
        std::uint8_t* start = buffer_.data() + (buffer_.size() - length);
        std::copy_n(input_.begin(), length, start);
        return splicer::tls::parse_client_hello(
            std::as_bytes(std::span<const std::uint8_t>(start, length)));
    }

private:
    const ByteVector& input_;
    ByteVector buffer_;
};

ParseResult parse_prefix(const ByteVector& bytes, std::size_t length) {
    return PrefixFeeder(bytes).parse(length);
}

std::string printable(std::string_view text) {
    std::string out;
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte >= 0x20 && byte < 0x7f) {
            out += c;
        } else {
            std::array<char, 5> escaped{};
            std::snprintf(escaped.data(), escaped.size(), "\\x%02x", byte);
            out += escaped.data();
        }
    }
    return out;
}

std::string hex16(std::uint16_t value) {
    std::array<char, 5> text{};
    std::snprintf(text.data(), text.size(), "%04x", value);
    return text.data();
}

// One line holding everything a result says, so that one string comparison checks it all
// and a failure prints it all: "match version=0303 sni=a.example alpn=[h2] ...".
std::string describe(const ParseResult& result) {
    std::ostringstream out;
    out << splicer::probe::to_string(result.verdict);
    if (result.verdict == Verdict::no_match) {
        out << ": " << result.reason;
    }
    if (result.verdict == Verdict::match) {
        const ClientHello& hello = result.hello;
        out << " version=" << hex16(hello.legacy_version) << " sni=" << printable(hello.server_name)
            << " alpn=[";
        for (std::size_t i = 0; i < hello.alpn_protocols.size(); ++i) {
            out << (i == 0 ? "" : ",") << printable(hello.alpn_protocols[i]);
        }
        out << "] versions=[";
        for (std::size_t i = 0; i < hello.supported_versions.size(); ++i) {
            out << (i == 0 ? "" : ",") << hex16(hello.supported_versions[i]);
        }
        out << "] ech=" << (hello.has_encrypted_client_hello ? "yes" : "no");
    }
    return out.str();
}

bool list_contains(const std::vector<std::uint16_t>& values, std::uint16_t wanted) {
    return std::find(values.begin(), values.end(), wanted) != values.end();
}

std::size_t count_records(const ByteVector& bytes) {
    std::size_t count = 0;
    for (std::size_t at = 0; at + build::kRecordHeaderSize <= bytes.size();
         at += build::kRecordHeaderSize + build::get_be(bytes, at + 3, 2)) {
        ++count;
    }
    return count;
}

ByteVector concat(ByteVector head, const ByteVector& tail) {
    head.insert(head.end(), tail.begin(), tail.end());
    return head;
}

// Appends `tail` inside the handshake message of a one-record hello, fixing both lengths:
// bytes after the extensions block, or an extensions block where there was none.
ByteVector with_body_tail(ByteVector hello, const ByteVector& tail) {
    const auto grow = static_cast<std::uint32_t>(tail.size());
    build::set_be(hello, 3, 2, build::get_be(hello, 3, 2) + grow);
    build::set_be(hello, 6, 3, build::get_be(hello, 6, 3) + grow);
    return concat(std::move(hello), tail);
}

// --- feeding: the stateless contract on one valid hello -----------------------------------

constexpr std::uint32_t kSplitSeed = 0x5eed0443;
constexpr std::uint32_t kRandomSplits = 50;
constexpr std::size_t kSegmentSize = 1460;  // one Ethernet MSS

// need_more for every proper prefix; the same match whole, per TCP segment and in random
// splits; and bytes pipelined after the hello change nothing. Returns the match.
ParseResult check_feeding(const ByteVector& hello) {
    const ParseResult whole = parse_hello(hello);
    INFO("whole hello: " << describe(whole));
    REQUIRE(whole.verdict == Verdict::match);
    const std::string expected = describe(whole);
    PrefixFeeder feeder(hello);

    for (std::size_t length = 0; length < hello.size(); ++length) {
        const ParseResult partial = feeder.parse(length);
        if (partial.verdict != Verdict::need_more) {
            CAPTURE(length, hello.size());
            FAIL("a proper prefix gave " << describe(partial));
        }
        // The daemon waits for `needed` bytes: past the hello's end it would hold a real
        // client up until the probe timeout.
        if (partial.needed <= length || partial.needed > hello.size()) {
            CAPTURE(length, hello.size(), partial.needed);
            FAIL("needed is not within (prefix, hello end]");
        }
    }

    for (std::size_t length = kSegmentSize; length < hello.size(); length += kSegmentSize) {
        CAPTURE(length);
        REQUIRE(feeder.parse(length).verdict == Verdict::need_more);
    }

    for (std::uint32_t split = 0; split < kRandomSplits; ++split) {
        const std::uint32_t seed = kSplitSeed + split;
        CAPTURE(seed);
        std::mt19937 rng(seed);
        // Small, medium and segment-sized reads, so long hellos also get many cuts.
        constexpr std::array<std::size_t, 3> kMaxChunks = {16, 300, kSegmentSize};
        std::uniform_int_distribution<std::size_t> chunk(1, kMaxChunks.at(split % 3));
        std::size_t received = 0;
        while (received < hello.size()) {
            received = std::min(hello.size(), received + chunk(rng));
            const ParseResult partial = feeder.parse(received);
            if (received < hello.size() && partial.verdict != Verdict::need_more) {
                CAPTURE(received);
                FAIL("a split prefix gave " << describe(partial));
            }
            if (received == hello.size()) {
                REQUIRE(describe(partial) == expected);
            }
        }
    }

    const std::vector<ByteVector> pipelined = {
        {0x17, 0x03, 0x03, 0x00, 0x03, 0x01, 0x02, 0x03},  // early data
        {0x14, 0x03, 0x03, 0x00, 0x01, 0x01},              // middlebox-compat CCS
        {'G', 'E', 'T', ' ', '/'},
        {0x80, 0x00},
        hello,
    };
    for (const ByteVector& tail : pipelined) {
        CAPTURE(tail.size());
        REQUIRE(describe(parse_hello(concat(hello, tail))) == expected);
    }
    return whole;
}

// --- hellos from libssl -------------------------------------------------------------------

std::vector<std::string> many_alpn_names() {
    std::vector<std::string> names;
    for (int i = 0; i < 200; ++i) {
        names.push_back("proto-" + std::to_string(i));
    }
    return names;
}

struct LibsslOptions {
    std::string server_name;  // empty: no SNI
    std::vector<std::string> alpn;
    int max_version = 0;  // 0: the library's default (TLS 1.3)
    std::size_t padding_bytes = 0;
    long max_send_fragment = 0;
};

// The ClientHello an OpenSSL client writes on its first handshake step (tests/support).
ByteVector libssl_client_hello(const LibsslOptions& options) {
    const std::string hello = splicer::test::make_client_hello({
        .server_name = options.server_name,
        .alpn = options.alpn,
        .tls12_only = options.max_version == TLS1_2_VERSION,
        .padding_extension_bytes = options.padding_bytes,
        .max_fragment = static_cast<std::size_t>(options.max_send_fragment),
    });
    return ByteVector(hello.begin(), hello.end());
}

TEST_CASE("ClientHellos written by libssl parse to the SNI and ALPN that were set", "[tls]") {
    const auto [name, server_name, alpn, max_version, padding, fragment] =
        GENERATE(table<std::string, std::string, std::vector<std::string>, int, std::size_t, long>({
            {"TLS 1.3, SNI, h2 and http/1.1", "chat.example.com", {"h2", "http/1.1"}, 0, 0, 0},
            {"TLS 1.3, no SNI", "", {"h2", "http/1.1"}, 0, 0, 0},
            {"TLS 1.3, SNI, no ALPN", "www.example.org", {}, 0, 0, 0},
            {"TLS 1.3, xmpp-client", "xmpp.example.net", {"xmpp-client"}, 0, 0, 0},
            {"TLS 1.3, mixed case, three ALPN",
             "Groups.Chat.Example.COM",
             {"xmpp-client", "h2", "http/1.1"},
             0,
             0,
             0},
            {"TLS 1.2 only", "legacy.example.com", {"http/1.1"}, TLS1_2_VERSION, 0, 0},
            {"TLS 1.2 only, no SNI, no ALPN", "", {}, TLS1_2_VERSION, 0, 0},
            {"padded past 2 KB", "big.example.com", {"h2", "http/1.1"}, 0, 2200, 0},
            {"200 ALPN names", "alpn.example.com", many_alpn_names(), 0, 0, 0},
            {"512-byte records", "frag.example.com", {"h2", "http/1.1"}, 0, 1500, 512},
            {"TLS 1.2, 512-byte records", "frag12.example.com", {"h2"}, TLS1_2_VERSION, 1200, 512},
        }));
    CAPTURE(name);
    const ByteVector hello =
        libssl_client_hello({server_name, alpn, max_version, padding, fragment});
    CAPTURE(hello.size(), count_records(hello));
    if (padding > 2048 || alpn.size() > 100) {
        REQUIRE(hello.size() > 2048);  // more than one TCP segment
    }
    if (fragment != 0) {
        REQUIRE(count_records(hello) > 1);
    } else {
        REQUIRE(count_records(hello) == 1);
    }

    const ParseResult result = check_feeding(hello);
    CHECK(result.hello.server_name == server_name);
    CHECK(result.hello.alpn_protocols == alpn);
    CHECK(result.hello.legacy_version == 0x0303);
    CHECK_FALSE(result.hello.has_encrypted_client_hello);
    if (max_version == TLS1_2_VERSION) {
        CHECK_FALSE(list_contains(result.hello.supported_versions, 0x0304));
    } else {
        CHECK(list_contains(result.hello.supported_versions, 0x0304));
    }
}

// --- hellos from the openssl s_client binary ----------------------------------------------

constexpr int kCaptureTimeoutMs = 10'000;

// Runs `openssl s_client -connect 127.0.0.1:PORT OPTIONS...` against a listener of our own
// and returns the bytes it sends, read until the parser stops saying need_more.
ByteVector s_client_hello(const std::vector<std::string>& options) {
    const splicer::test::Listener listener = splicer::test::listen_loopback();
    std::vector<std::string> args = {"openssl", "s_client", "-connect",
                                     "127.0.0.1:" + std::to_string(listener.port)};
    args.insert(args.end(), options.begin(), options.end());
    // stdin, stdout and stderr on /dev/null; killed and reaped however the test leaves the
    // scope (a failed REQUIRE throws).
    const splicer::test::ChildProcess child(splicer::test::SpawnOptions{.argv = args});

    pollfd incoming{listener.fd.get(), POLLIN, 0};
    REQUIRE(poll(&incoming, 1, kCaptureTimeoutMs) == 1);
    const splicer::UniqueFd connection = splicer::test::accept_one(listener);
    REQUIRE(connection.get() >= 0);

    ByteVector received;
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kCaptureTimeoutMs);
    while (parse_hello(received).verdict == Verdict::need_more) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now())
                              .count();
        REQUIRE(left > 0);
        pollfd readable{connection.get(), POLLIN, 0};
        REQUIRE(poll(&readable, 1, static_cast<int>(left)) == 1);
        std::array<std::uint8_t, 4096> buffer{};
        const ssize_t n = recv(connection.get(), buffer.data(), buffer.size(), 0);
        REQUIRE(n > 0);
        received.insert(received.end(), buffer.begin(), buffer.begin() + n);
    }
    // Keep only the hello itself, should the client have sent anything behind it.
    std::size_t length = 1;
    while (parse_prefix(received, length).verdict == Verdict::need_more) {
        ++length;
    }
    received.resize(length);
    return received;
}

TEST_CASE("ClientHellos sent by openssl s_client parse to its options", "[tls]") {
    const auto [name, options, server_name, alpn, tls_version] = GENERATE(
        table<std::string, std::vector<std::string>, std::string, std::vector<std::string>, int>({
            {"SNI and ALPN",
             {"-servername", "chat.example.com", "-alpn", "h2,http/1.1"},
             "chat.example.com",
             {"h2", "http/1.1"},
             0},
            {"no SNI", {"-noservername", "-alpn", "h2,http/1.1"}, "", {"h2", "http/1.1"}, 0},
            {"several ALPN",
             {"-servername", "xmpp.example.net", "-alpn", "xmpp-client,xmpp-server,h2,http/1.1"},
             "xmpp.example.net",
             {"xmpp-client", "xmpp-server", "h2", "http/1.1"},
             0},
            {"TLS 1.2",
             {"-servername", "legacy.example.com", "-alpn", "h2,http/1.1", "-tls1_2"},
             "legacy.example.com",
             {"h2", "http/1.1"},
             TLS1_2_VERSION},
            {"TLS 1.3",
             {"-servername", "modern.example.com", "-alpn", "h2,http/1.1", "-tls1_3"},
             "modern.example.com",
             {"h2", "http/1.1"},
             TLS1_3_VERSION},
            {"TLS 1.3, no SNI, no ALPN", {"-noservername", "-tls1_3"}, "", {}, TLS1_3_VERSION},
        }));
    CAPTURE(name);
    const ByteVector hello = s_client_hello(options);
    CAPTURE(hello.size());

    const ParseResult result = check_feeding(hello);
    CHECK(result.hello.server_name == server_name);
    CHECK(result.hello.alpn_protocols == alpn);
    if (tls_version == TLS1_2_VERSION) {
        CHECK_FALSE(list_contains(result.hello.supported_versions, 0x0304));
    }
    if (tls_version == TLS1_3_VERSION) {
        CHECK(result.hello.supported_versions == std::vector<std::uint16_t>{0x0304});
    }
}

// --- odd hellos, built by hand ------------------------------------------------------------

HelloSpec typical_spec(std::string_view server_name = "chat.example.com") {
    HelloSpec spec;
    spec.extensions = {
        build::server_name_extension(server_name), build::alpn_extension({"h2", "http/1.1"}),
        build::supported_versions_extension({0x0304, 0x0303}),
        build::key_share_extension(0x001d, 32),  // x25519
    };
    return spec;
}

HelloSpec spec_with(std::vector<Extension> extensions) {
    HelloSpec spec;
    spec.extensions = std::move(extensions);
    return spec;
}

ByteVector hello_with(std::vector<Extension> extensions) {
    return build::build_hello(spec_with(std::move(extensions)));
}

TEST_CASE("GREASE values in extensions, cipher suites, versions and ALPN are tolerated", "[tls]") {
    HelloSpec spec;
    spec.cipher_suites = {0x2a2a, 0x1301, 0x1302, 0xc02b};
    spec.extensions = {
        {0x0a0a, {}},
        build::server_name_extension("grease.example.com"),
        build::alpn_extension({"\x1a\x1a", "h2", "http/1.1"}),
        build::supported_versions_extension({0x3a3a, 0x0304, 0x0303}),
        build::key_share_extension(0x4a4a, 1),
        {0xfafa, {0x00}},
    };
    const ParseResult result = check_feeding(build::build_hello(spec));
    CHECK(result.hello.server_name == "grease.example.com");
    CHECK(result.hello.alpn_protocols == std::vector<std::string>{"\x1a\x1a", "h2", "http/1.1"});
    CHECK(result.hello.supported_versions == std::vector<std::uint16_t>{0x3a3a, 0x0304, 0x0303});
}

TEST_CASE("an ECH outer hello routes on its outer SNI", "[tls]") {
    constexpr std::uint32_t kEchSeed = 0xec4;
    CAPTURE(kEchSeed);
    std::mt19937 rng(kEchSeed);
    ByteVector ech_payload(200);
    for (std::uint8_t& byte : ech_payload) {
        byte = static_cast<std::uint8_t>(rng() & 0xffU);
    }
    HelloSpec spec = typical_spec("public.example.com");
    spec.extensions.push_back({0xfe0d, ech_payload});
    const ParseResult result = check_feeding(build::build_hello(spec));
    CHECK(result.hello.has_encrypted_client_hello);
    CHECK(result.hello.server_name == "public.example.com");
    CHECK(result.hello.alpn_protocols == std::vector<std::string>{"h2", "http/1.1"});
}

TEST_CASE("a 22 KB hello with a post-quantum-sized key share spans two records", "[tls]") {
    HelloSpec spec = typical_spec("pq.example.com");
    spec.extensions.back() = build::key_share_extension(0x11ec, 22'000);
    const ByteVector hello = build::build_hello(spec);
    CAPTURE(hello.size());
    REQUIRE(hello.size() > 22'000);
    REQUIRE(count_records(hello) == 2);
    const ParseResult result = check_feeding(hello);
    CHECK(result.hello.server_name == "pq.example.com");
    CHECK(result.hello.alpn_protocols == std::vector<std::string>{"h2", "http/1.1"});
}

TEST_CASE("unknown extensions are skipped", "[tls]") {
    HelloSpec spec = typical_spec("unknown.example.com");
    spec.extensions.insert(spec.extensions.begin(), {0x1234, {1, 2, 3, 4}});
    spec.extensions.push_back({0xff01, {0x00}});       // renegotiation_info
    spec.extensions.push_back({0x7777, {}});           // unassigned, empty
    spec.extensions.push_back({0xfd00, {0x00}});       // ech_outer_extensions (inner-only)
    spec.extensions.push_back({21, ByteVector(300)});  // padding
    const ParseResult result = check_feeding(build::build_hello(spec));
    CHECK(result.hello.server_name == "unknown.example.com");
    CHECK(result.hello.supported_versions == std::vector<std::uint16_t>{0x0304, 0x0303});
}

TEST_CASE("a hello without extensions matches, with no SNI", "[tls]") {
    HelloSpec spec;
    spec.session_id = {};
    SECTION("no extensions block at all") {
        spec.has_extensions_block = false;
    }
    SECTION("an empty extensions block") {
        spec.has_extensions_block = true;
    }
    const ParseResult result = check_feeding(build::build_hello(spec));
    CHECK(result.hello.server_name.empty());
    CHECK(result.hello.alpn_protocols.empty());
    CHECK(result.hello.supported_versions.empty());
}

TEST_CASE("a hello cut into tiny records is reassembled", "[tls]") {
    const std::size_t record_size = GENERATE(1, 2, 3, 7, 100);
    CAPTURE(record_size);
    const ByteVector hello =
        build::build_records(build::build_handshake(typical_spec("tiny.example.com")), record_size);
    REQUIRE(count_records(hello) > 1);
    const ParseResult result = check_feeding(hello);
    CHECK(result.hello.server_name == "tiny.example.com");
    CHECK(result.hello.alpn_protocols == std::vector<std::string>{"h2", "http/1.1"});
}

// A spec whose body is exactly `body_length` bytes, topped up with a padding extension.
HelloSpec spec_of_body_length(std::size_t body_length) {
    HelloSpec spec = typical_spec("large.example.com");
    spec.extensions.push_back({21, {}});
    const std::size_t base = build::build_handshake(spec).size() - build::kHandshakeHeaderSize;
    spec.extensions.back().data.resize(body_length - base);
    return spec;
}

TEST_CASE("the size limits sit exactly at kMaxClientHelloLength", "[tls]") {
    SECTION("the largest accepted hello matches") {
        const ByteVector hello = build::build_hello(spec_of_body_length(kMaxClientHelloLength));
        REQUIRE(build::get_be(hello, 6, 3) == kMaxClientHelloLength);
        REQUIRE(hello.size() <= kMaxProbeBytes);
        CHECK(parse_hello(hello).verdict == Verdict::match);
        CHECK(parse_hello(hello).hello.server_name == "large.example.com");
        // Every prefix would be slow at this size; a stride and the last one will do.
        PrefixFeeder feeder(hello);
        for (std::size_t length = 0; length < hello.size(); length += 997) {
            CAPTURE(length);
            REQUIRE(feeder.parse(length).verdict == Verdict::need_more);
        }
        CHECK(feeder.parse(hello.size() - 1).verdict == Verdict::need_more);
    }
    SECTION("one byte more is refused after the handshake header") {
        const ByteVector hello = build::build_hello(spec_of_body_length(kMaxClientHelloLength + 1));
        CHECK(parse_prefix(hello, 8).verdict == Verdict::need_more);
        CHECK(describe(parse_prefix(hello, 9)) == "no-match: ClientHello too large");
        CHECK(describe(parse_hello(hello)) == "no-match: ClientHello too large");
    }
}

// --- clean no_match -----------------------------------------------------------------------

ByteVector raw_server_name(const std::vector<std::pair<std::uint8_t, std::string>>& entries) {
    ByteVector list;
    for (const auto& [type, name] : entries) {
        list.push_back(type);
        list.push_back(static_cast<std::uint8_t>(name.size() >> 8U));
        list.push_back(static_cast<std::uint8_t>(name.size() & 0xffU));
        list.insert(list.end(), name.begin(), name.end());
    }
    ByteVector data = {static_cast<std::uint8_t>(list.size() >> 8U),
                       static_cast<std::uint8_t>(list.size() & 0xffU)};
    return concat(data, list);
}

ByteVector big_handshake(std::size_t key_share_size) {
    HelloSpec spec = typical_spec();
    spec.extensions.back() = build::key_share_extension(0x11ec, key_share_size);
    return build::build_handshake(spec);
}

ByteVector handshake_of_type(std::uint8_t type) {
    HelloSpec spec = typical_spec();
    spec.handshake_type = type;
    return build::build_records(build::build_handshake(spec));
}

ByteVector hello_of_version(std::uint16_t version) {
    HelloSpec spec = typical_spec();
    spec.legacy_version = version;
    return build::build_hello(spec);
}

ByteVector hello_with_session_id(std::size_t length) {
    HelloSpec spec = typical_spec();
    spec.session_id = ByteVector(length, 0x33);
    return build::build_hello(spec);
}

ByteVector hello_with_cipher_suites(std::vector<std::uint16_t> suites) {
    HelloSpec spec = typical_spec();
    spec.cipher_suites = std::move(suites);
    return build::build_hello(spec);
}

ByteVector hello_with_odd_cipher_suites() {
    HelloLayout layout;
    ByteVector hello = build::build_hello(typical_spec(), &layout);
    build::set_be(hello, layout.cipher_suites_length, 2, 7);
    return hello;
}

ByteVector hello_without_compression() {
    HelloSpec spec = typical_spec();
    spec.compression_methods = {};
    return build::build_hello(spec);
}

ByteVector hello_without_extensions_block() {
    HelloSpec spec = typical_spec();
    spec.has_extensions_block = false;
    return build::build_hello(spec);
}

// Two records of a hello with another record between them.
ByteVector hello_interrupted_by(const ByteVector& record) {
    const ByteVector records = build::build_records(build::build_handshake(typical_spec()), 64);
    const auto first_end = static_cast<std::ptrdiff_t>(build::kRecordHeaderSize + 64);
    const ByteVector first(records.begin(), records.begin() + first_end);
    const ByteVector rest(records.begin() + first_end, records.end());
    return concat(concat(first, record), rest);
}

// The hello and a second handshake message in the same record.
ByteVector hello_sharing_its_record() {
    const ByteVector handshake = build::build_handshake(typical_spec());
    return build::build_records(concat(handshake, {0x0f, 0x00, 0x00, 0x00}));
}

TEST_CASE("malformed hellos are a clean no_match with a reason", "[tls]") {
    const auto [name, bytes, reason] = GENERATE(table<std::string, ByteVector, std::string>({
        {"SSLv2-style hello",
         {0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15},
         "SSLv2-style ClientHello"},
        {"application data record", build::build_records({0x01, 0x00}, 16384, 0x17),
         "not a TLS handshake record"},
        {"alert record", {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28}, "not a TLS handshake record"},
        {"plain HTTP", {'G', 'E', 'T', ' ', '/', ' '}, "not a TLS handshake record"},
        {"record version major 2",
         build::build_records(build::build_handshake(typical_spec()), 16384, 0x16, 0x0201),
         "TLS record version major is not 3"},
        {"zero-length record", {0x16, 0x03, 0x01, 0x00, 0x00}, "zero-length TLS record"},
        {"zero-length record inside a hello", hello_interrupted_by({0x16, 0x03, 0x01, 0x00, 0x00}),
         "zero-length TLS record"},
        {"record longer than 16384",
         {0x16, 0x03, 0x01, 0x40, 0x01},
         "TLS record longer than 16384 bytes"},
        {"ChangeCipherSpec inside a hello", hello_interrupted_by({0x14, 0x03, 0x03, 0x00, 0x01, 1}),
         "not a TLS handshake record"},
        {"handshake type server_hello", handshake_of_type(2),
         "handshake message is not a ClientHello"},
        {"handshake type hello_request", handshake_of_type(0),
         "handshake message is not a ClientHello"},
        {"hello claiming 70000 bytes",
         {0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x01, 0x11, 0x70},
         "ClientHello too large"},
        {"hello in 1-byte records past kMaxProbeBytes",
         build::build_records(big_handshake(11'000), 1),
         "ClientHello does not complete within kMaxProbeBytes"},
        {"another message after the hello in its record", hello_sharing_its_record(),
         "ClientHello does not end at a record boundary"},
        {"empty handshake message",
         {0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00},
         "ClientHello shorter than its legacy_version"},
        {"legacy_version 2.0", hello_of_version(0x0200),
         "ClientHello legacy_version major is not 3"},
        {"33-byte session_id", hello_with_session_id(33), "session_id longer than 32 bytes"},
        {"no cipher suites", hello_with_cipher_suites({}), "cipher_suites length is odd or zero"},
        {"odd cipher_suites length", hello_with_odd_cipher_suites(),
         "cipher_suites length is odd or zero"},
        {"no compression methods", hello_without_compression(), "compression_methods is empty"},
        {"a 1-byte extensions block", with_body_tail(hello_without_extensions_block(), {0x00}),
         "extensions length overruns ClientHello"},
        {"bytes after the extensions block",
         with_body_tail(build::build_hello(typical_spec()), {0}),
         "extensions block does not fill the ClientHello"},
        {"half an extension header",
         with_body_tail(hello_without_extensions_block(), {0x00, 0x01, 0x00}),
         "extension header overruns extensions block"},
        {"duplicate extension",
         hello_with({build::server_name_extension("a.example"), {0x1234, {}}, {0x1234, {}}}),
         "duplicate extension"},
        {"two SNI extensions",
         hello_with({build::server_name_extension("a.example"),
                     build::server_name_extension("b.example")}),
         "duplicate extension"},
        {"empty SNI extension", hello_with({{0, {}}}), "SNI list length overruns its extension"},
        {"empty SNI list", hello_with({{0, {0x00, 0x00}}}), "SNI list is empty"},
        {"SNI name type 1", hello_with({{0, raw_server_name({{1, "example.com"}})}}),
         "SNI name type is not host_name"},
        {"two SNI entries",
         hello_with({{0, raw_server_name({{0, "a.example.com"}, {0, "b.example.com"}})}}),
         "more than one SNI entry"},
        {"host_name then another type",
         hello_with({{0, raw_server_name({{0, "a.example.com"}, {1, "x"}})}}),
         "more than one SNI entry"},
        {"empty SNI name", hello_with({build::server_name_extension("")}), "SNI name is empty"},
        {"SNI list shorter than its extension",
         hello_with({{0, concat(raw_server_name({{0, "a.example"}}), {0x00})}}),
         "SNI list does not fill its extension"},
        {"SNI name with a space", hello_with({build::server_name_extension("a b.example")}),
         "SNI name has a byte outside [A-Za-z0-9._-]"},
        {"SNI name with a port", hello_with({build::server_name_extension("a.example:443")}),
         "SNI name has a byte outside [A-Za-z0-9._-]"},
        {"SNI name with a slash", hello_with({build::server_name_extension("a.example/x")}),
         "SNI name has a byte outside [A-Za-z0-9._-]"},
        {"SNI name with a NUL",
         hello_with({build::server_name_extension(std::string_view("a\0b.example", 11))}),
         "SNI name has a byte outside [A-Za-z0-9._-]"},
        {"SNI name in UTF-8", hello_with({build::server_name_extension("caf\xc3\xa9.example")}),
         "SNI name has a byte outside [A-Za-z0-9._-]"},
        {"empty ALPN extension", hello_with({{16, {}}}), "ALPN list length overruns its extension"},
        {"1-byte ALPN list", hello_with({{16, {0x00, 0x01, 0x00}}}),
         "ALPN list shorter than 2 bytes"},
        {"zero-length ALPN entry first", hello_with({{16, {0x00, 0x04, 0x00, 0x02, 'h', '2'}}}),
         "empty ALPN protocol name"},
        {"zero-length ALPN entry last", hello_with({{16, {0x00, 0x04, 0x02, 'h', '2', 0x00}}}),
         "empty ALPN protocol name"},
        {"ALPN list shorter than its extension",
         hello_with({{16, {0x00, 0x03, 0x02, 'h', '2', 0x00}}}),
         "ALPN list does not fill its extension"},
        {"odd supported_versions", hello_with({{43, {0x03, 0x03, 0x04, 0x03}}}),
         "supported_versions list length is odd or zero"},
        {"empty supported_versions", hello_with({{43, {0x00}}}),
         "supported_versions list length is odd or zero"},
        {"supported_versions overrun", hello_with({{43, {0x04, 0x03, 0x04}}}),
         "supported_versions list length overruns its extension"},
    }));
    CAPTURE(name, bytes.size());
    CHECK(describe(parse_hello(bytes)) == "no-match: " + reason);
    // No prefix may match: a match would have to persist as bytes arrive. Long inputs get a
    // stride, to keep the run short.
    const std::size_t stride = bytes.size() > 4096 ? 97 : 1;
    PrefixFeeder feeder(bytes);
    for (std::size_t length = 0; length < bytes.size(); length += stride) {
        const ParseResult partial = feeder.parse(length);
        if (partial.verdict == Verdict::match) {
            CAPTURE(length);
            FAIL("a prefix matched: " << describe(partial));
        }
    }
}

TEST_CASE("hopeless prefixes are refused at once, not after buffering", "[tls]") {
    SECTION("SSLv2 at its first byte") {
        CHECK(describe(parse_hello({0x80})) == "no-match: SSLv2-style ClientHello");
    }
    SECTION("a non-handshake record at its first byte") {
        CHECK(describe(parse_hello({0x17})) == "no-match: not a TLS handshake record");
    }
    SECTION("a 70000-byte claim after the 9 header bytes") {
        const ByteVector claim = {0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x01, 0x11, 0x70};
        CHECK(parse_prefix(claim, 8).verdict == Verdict::need_more);
        CHECK(describe(parse_hello(claim)) == "no-match: ClientHello too large");
    }
    SECTION("a record running past the hello as soon as both lengths are known") {
        ByteVector hello = build::build_hello(typical_spec());
        build::set_be(hello, 3, 2, build::get_be(hello, 3, 2) + 1);
        CHECK(parse_prefix(hello, 8).verdict == Verdict::need_more);
        CHECK(describe(parse_prefix(hello, 9)) ==
              "no-match: ClientHello does not end at a record boundary");
    }
    SECTION("tiny records within kMaxProbeBytes of stream") {
        const ByteVector stream = build::build_records(big_handshake(11'000), 1);
        REQUIRE(stream.size() > kMaxProbeBytes);
        // The verdict is monotonic, so a binary search finds the first refusing prefix.
        std::size_t low = 0;
        std::size_t high = stream.size();
        while (low < high) {
            const std::size_t mid = low + (high - low) / 2;
            if (parse_prefix(stream, mid).verdict == Verdict::no_match) {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        CAPTURE(low);
        CHECK(low <= kMaxProbeBytes);
        CHECK(parse_prefix(stream, low - 1).verdict == Verdict::need_more);
        CHECK(describe(parse_prefix(stream, kMaxProbeBytes)) ==
              "no-match: ClientHello does not complete within kMaxProbeBytes");
    }
}

// The one-record hello whose length fields get corrupted; extension order is fixed below.
enum class Field {
    record,
    handshake,
    session_id,
    cipher_suites,
    compression_methods,
    extensions,
    one_extension,
    sni_list,
    sni_name,
    alpn_list,
    alpn_entry,
};

struct FieldAt {
    std::size_t offset;
    std::size_t width;
};

FieldAt locate(const HelloLayout& layout, Field field) {
    const std::size_t sni = layout.extension_starts.at(0);
    const std::size_t alpn = layout.extension_starts.at(1);
    switch (field) {
        case Field::record:
            return {layout.record_length, 2};
        case Field::handshake:
            return {layout.handshake_length, 3};
        case Field::session_id:
            return {layout.session_id_length, 1};
        case Field::cipher_suites:
            return {layout.cipher_suites_length, 2};
        case Field::compression_methods:
            return {layout.compression_methods_length, 1};
        case Field::extensions:
            return {layout.extensions_length, 2};
        case Field::one_extension:
            return {sni + 2, 2};
        case Field::sni_list:
            return {sni + 4, 2};
        case Field::sni_name:
            return {sni + 7, 2};  // after the list length and name_type
        case Field::alpn_list:
            return {alpn + 4, 2};
        case Field::alpn_entry:
            return {alpn + 6, 1};
    }
    return {0, 0};
}

TEST_CASE("every overlong length field is a no_match", "[tls]") {
    const auto [name, field, reason_plus_one, reason_at_max] =
        GENERATE(table<std::string, Field, std::string, std::string>({
            {"record", Field::record, "ClientHello does not end at a record boundary",
             "TLS record longer than 16384 bytes"},
            {"session_id", Field::session_id, "session_id longer than 32 bytes",
             "session_id length overruns ClientHello"},
            {"cipher_suites", Field::cipher_suites, "cipher_suites length is odd or zero",
             "cipher_suites length overruns ClientHello"},
            {"compression_methods", Field::compression_methods,
             "extensions length overruns ClientHello",
             "compression_methods length overruns ClientHello"},
            {"extensions block", Field::extensions, "extensions length overruns ClientHello",
             "extensions length overruns ClientHello"},
            {"one extension", Field::one_extension, "SNI list does not fill its extension",
             "extension length overruns extensions block"},
            {"SNI list", Field::sni_list, "SNI list length overruns its extension",
             "SNI list length overruns its extension"},
            {"SNI name", Field::sni_name, "SNI name length overruns its list",
             "SNI name length overruns its list"},
            {"ALPN list", Field::alpn_list, "ALPN list length overruns its extension",
             "ALPN list length overruns its extension"},
            {"ALPN entry", Field::alpn_entry, "ALPN protocol length overruns its list",
             "ALPN protocol length overruns its list"},
        }));
    CAPTURE(name);
    HelloLayout layout;
    const ByteVector valid = build::build_hello(typical_spec(), &layout);
    REQUIRE(parse_hello(valid).verdict == Verdict::match);
    const FieldAt at = locate(layout, field);
    const std::uint32_t value = build::get_be(valid, at.offset, at.width);

    ByteVector plus_one = valid;
    build::set_be(plus_one, at.offset, at.width, value + 1);
    CHECK(describe(parse_hello(plus_one)) == "no-match: " + reason_plus_one);

    ByteVector at_max = valid;
    build::set_be(at_max, at.offset, at.width,
                  static_cast<std::uint32_t>((std::uint64_t{1} << (8 * at.width)) - 1));
    CHECK(describe(parse_hello(at_max)) == "no-match: " + reason_at_max);
}

TEST_CASE("an overlong handshake length waits for the next record, then fails", "[tls]") {
    HelloLayout layout;
    ByteVector hello = build::build_hello(typical_spec(), &layout);
    build::set_be(hello, layout.handshake_length, 3,
                  build::get_be(hello, layout.handshake_length, 3) + 1);
    // The message could go on in another record: a streaming parser cannot refuse yet.
    CHECK(parse_hello(hello).verdict == Verdict::need_more);
    // Once that record brings the missing byte, the extensions no longer fill the message.
    CHECK(describe(parse_hello(concat(hello, {0x16, 0x03, 0x03, 0x00, 0x01, 0x00}))) ==
          "no-match: extensions block does not fill the ClientHello");
    ByteVector at_max = build::build_hello(typical_spec());
    build::set_be(at_max, layout.handshake_length, 3, 0xffffff);
    CHECK(describe(parse_hello(at_max)) == "no-match: ClientHello too large");
}

// --- corruption ---------------------------------------------------------------------------

bool is_host_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

// Whatever the verdict, it must be self-consistent and no field may be larger than the input.
void check_sane(const ParseResult& result, const ByteVector& input) {
    if (result.verdict == Verdict::no_match) {
        REQUIRE(result.reason != nullptr);
        REQUIRE(std::string_view(result.reason).size() > 0);
        return;
    }
    if (result.verdict == Verdict::need_more) {
        return;
    }
    const ClientHello& hello = result.hello;
    INFO(describe(result));
    REQUIRE((hello.legacy_version >> 8U) == 3);
    REQUIRE(hello.server_name.size() < input.size());
    REQUIRE(std::all_of(hello.server_name.begin(), hello.server_name.end(), is_host_name_char));
    std::size_t alpn_bytes = 0;
    for (const std::string& protocol : hello.alpn_protocols) {
        REQUIRE(!protocol.empty());
        REQUIRE(protocol.size() <= 255);
        alpn_bytes += 1 + protocol.size();
    }
    REQUIRE(alpn_bytes < input.size());
    REQUIRE(hello.supported_versions.size() * 2 < input.size());
}

std::vector<ByteVector> corruption_corpus() {
    return {
        build::build_hello(typical_spec()),
        libssl_client_hello({"chat.example.com", {"xmpp-client", "h2"}, 0, 0, 0}),
        libssl_client_hello({"legacy.example.com", {"http/1.1"}, TLS1_2_VERSION, 0, 0}),
        libssl_client_hello({"frag.example.com", {"h2"}, 0, 700, 512}),
        build::build_records(build::build_handshake(typical_spec("tiny.example")), 3),
    };
}

TEST_CASE("corrupted hellos are parsed without crashing and never insanely", "[tls]") {
    const std::vector<ByteVector> corpus = corruption_corpus();

    SECTION("every byte flipped in turn") {
        for (std::size_t which = 0; which < corpus.size(); ++which) {
            const ByteVector& hello = corpus[which];
            for (std::size_t i = 0; i < hello.size(); ++i) {
                for (const std::uint8_t mask : {std::uint8_t{0xff}, std::uint8_t{0x01}}) {
                    ByteVector corrupted = hello;
                    corrupted[i] ^= mask;
                    CAPTURE(which, i, mask);
                    check_sane(parse_hello(corrupted), corrupted);
                }
            }
        }
    }

    SECTION("random multi-byte corruptions") {
        constexpr std::uint32_t kCorruptionSeed = 0xc0ffee;
        constexpr int kRounds = 3000;
        constexpr int kRoundsWithPrefixes = 150;
        CAPTURE(kCorruptionSeed);
        std::mt19937 rng(kCorruptionSeed);
        for (int round = 0; round < kRounds; ++round) {
            const std::size_t which = rng() % corpus.size();
            ByteVector corrupted = corpus[which];
            const std::size_t flips = 1 + rng() % 8;
            for (std::size_t k = 0; k < flips; ++k) {
                corrupted[rng() % corrupted.size()] = static_cast<std::uint8_t>(rng() & 0xffU);
            }
            if (rng() % 4 == 0) {
                corrupted.resize(rng() % (corrupted.size() + 1));
            }
            CAPTURE(round, which, corrupted.size());
            const ParseResult result = parse_hello(corrupted);
            check_sane(result, corrupted);
            if (round >= kRoundsWithPrefixes) {
                continue;
            }
            // need_more until a verdict, and the verdict never changes as bytes arrive.
            ParseResult settled;
            PrefixFeeder feeder(corrupted);
            for (std::size_t length = 0; length <= corrupted.size(); ++length) {
                const ParseResult partial = feeder.parse(length);
                check_sane(partial, corrupted);
                if (settled.verdict == Verdict::need_more) {
                    settled = partial;
                    continue;
                }
                CAPTURE(length);
                REQUIRE(partial.verdict == settled.verdict);
                if (settled.verdict == Verdict::match) {
                    REQUIRE(describe(partial) == describe(settled));
                }
            }
        }
    }
}

}  // namespace

// What the daemon does with `needed`: look again only once that many bytes are there. A hello
// whose length is known is then parsed a few times, however many segments carry it.
std::size_t parses_when_waiting_for_needed(const ByteVector& hello, std::size_t first_segment) {
    PrefixFeeder feeder(hello);
    std::size_t received = std::min(first_segment, hello.size());
    std::size_t parses = 1;
    ParseResult result = feeder.parse(received);
    while (result.verdict == Verdict::need_more) {
        REQUIRE(result.needed > received);
        REQUIRE(result.needed <= hello.size());
        received = result.needed;
        result = feeder.parse(received);
        ++parses;
    }
    CHECK(received == hello.size());
    CHECK(result.verdict == Verdict::match);
    return parses;
}

TEST_CASE("waiting for needed bytes parses a 58 KiB hello a few times, not once per segment",
          "[tls]") {
    const std::size_t record_size = GENERATE(std::size_t{16384}, std::size_t{512}, std::size_t{100});
    CAPTURE(record_size);
    const ByteVector hello = build::build_records(
        build::build_handshake(spec_of_body_length(58 * 1024)), record_size);
    // Every record header past the first one the length is known in adds to what is still
    // missing, so each look finds the shortfall reduced to the headers of the records left.
    const std::size_t parses = parses_when_waiting_for_needed(hello, 500);
    CAPTURE(hello.size(), parses);
    CHECK(parses <= 8);
    // Before the handshake header is complete, one byte at a time (its bytes are checked).
    CHECK(parse_prefix(hello, 0).needed == 1);
    CHECK(parse_prefix(hello, 3).needed == 4);
}
