// Writes the seed corpora in tests/fuzz/corpus/<target>/ (committed; rerun after changing what
// the seeds should cover): real ClientHellos made by libssl (as the unit tests make them) and
// one captured from a real `openssl s_client`, odd hellos from the unit tests' field-by-field
// builder, real XMPP, SSH, HTTP and OpenVPN openings, and the repository's configurations.
// Built on request in the debug build (`scripts/build debug splicer_fuzz_seeds`, not part of
// `all`): `build/debug/tests/splicer_fuzz_seeds OUT_DIR`.

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <openssl/evp.h>

#include "fuzz/split_input.h"
#include "splicer/config.h"
#include "splicer/tls_client_hello.h"
#include "support/client_hello.h"
#include "support/process.h"
#include "support/sockets.h"
#include "unit/tls_hello_builder.h"

namespace {

namespace fs = std::filesystem;
using splicer::test::make_client_hello;

std::string sha1_name(const std::string& bytes) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha1(), nullptr);
    std::string name;
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < length; ++i) {
        name += kHex[digest[i] >> 4];
        name += kHex[digest[i] & 15];
    }
    return name;
}

// libFuzzer names corpus files by content hash; so do we, so reruns do not duplicate seeds.
void write_seed(const fs::path& dir, const std::string& bytes) {
    fs::create_directories(dir);
    std::ofstream(dir / sha1_name(bytes), std::ios::binary) << bytes;
}

// The stream with a split header in front (split_input.h): whole, and cut at `cuts`.
void write_stream_seeds(const fs::path& dir, const std::string& stream,
                        const std::vector<std::uint16_t>& cuts) {
    for (const auto& header : {splicer::fuzz::split_header({}), splicer::fuzz::split_header(cuts)}) {
        write_seed(dir, std::string(header.begin(), header.end()) + stream);
    }
}

std::string as_string(const splicer::testing::ByteVector& bytes) {
    return {bytes.begin(), bytes.end()};
}

// What a real `openssl s_client` sends first, read from a loopback listener until the
// ClientHello is complete.
std::string capture_s_client_hello() {
    const splicer::test::Listener listener = splicer::test::listen_loopback();
    splicer::test::ChildProcess client({.argv = {"openssl", "s_client", "-connect",
                                                 splicer::test::loopback_text(listener.port),
                                                 "-servername", "chat.example.com", "-alpn",
                                                 "xmpp-client,h2"}});
    const splicer::UniqueFd connection = splicer::test::accept_one(listener);
    std::string stream;
    char buffer[16384];
    while (splicer::tls::parse_client_hello(splicer::test::as_bytes(stream)).verdict ==
           splicer::probe::Verdict::need_more) {
        const ssize_t got = recv(connection.get(), buffer, sizeof buffer, 0);
        if (got <= 0) {
            throw std::runtime_error("s_client closed before its ClientHello was complete");
        }
        stream.append(buffer, static_cast<std::size_t>(got));
    }
    client.terminate(std::chrono::milliseconds(2000));
    return stream;
}

std::vector<std::string> hellos() {
    namespace b = splicer::testing;
    b::HelloSpec ech;
    ech.extensions = {b::server_name_extension("public.example"),
                      {.type = 0xfe0d, .data = b::ByteVector(200, 0x42)}};
    b::HelloSpec post_quantum;
    post_quantum.extensions = {b::server_name_extension("pq.example"),
                               b::supported_versions_extension({0x0304}),
                               b::key_share_extension(0x11ec, 1216)};
    b::HelloSpec no_extensions;
    no_extensions.has_extensions_block = false;
    return {
        capture_s_client_hello(),
        make_client_hello({.server_name = "chat.example.com", .alpn = {"xmpp-client"}}),
        make_client_hello({.server_name = "www.example.com", .alpn = {"h2", "http/1.1"}}),
        make_client_hello({.tls12_only = true}),
        make_client_hello({.server_name = "big.example", .padding_extension_bytes = 20000}),
        make_client_hello({.server_name = "frag.example", .max_fragment = 512}),
        as_string(b::build_hello(ech)),
        as_string(b::build_hello(post_quantum)),
        as_string(b::build_hello(no_extensions)),
        as_string(b::build_records(b::build_handshake(post_quantum), 7)),
    };
}

std::vector<std::string> other_openings() {
    return {
        "<?xml version='1.0'?><stream:stream to='chat.example.com' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:server' "
        "to='example.org' version='1.0'>",
        "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
        "GET / HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        std::string("\x00\x0e\x38" "ABCDEFGH" "\x00" "\x00\x00\x00\x00", 16),
        "hello world splicer\r\n",
    };
}

// Requests as the port 80 tests send them (tests/privileged/test_http_*.cpp), pipelined and
// malformed ones included, then backend responses. Framed by fuzz_http_framing.
std::vector<std::string> http_requests() {
    return {
        "GET / HTTP/1.1\r\nHost: chat.example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: chat.example.com\r\nContent-Length: 11\r\n"
        "Expect: 100-continue\r\n\r\nhello world",
        "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
        "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
        "HEAD /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nframe",
        "GET /.well-known/acme-challenge/TOKEN HTTP/1.0\r\nHost: www.example.com\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\n\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    };
}

std::vector<std::string> http_responses() {
    return {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the backend closes",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        "HTTP/1.1 301 Moved Permanently\r\nLocation: https://a/\r\nContent-Length: 0\r\n\r\n",
    };
}

std::vector<std::uint16_t> cuts_for(const std::string& stream) {
    const auto size = static_cast<std::uint16_t>(std::min<std::size_t>(stream.size(), 65535));
    return {1, 5, 6, static_cast<std::uint16_t>(size / 2), static_cast<std::uint16_t>(size - 1)};
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: splicer_fuzz_seeds CORPUS_DIR (tests/fuzz/corpus)\n";
        return 2;
    }
    const fs::path out = argv[1];
    for (const std::string& hello : hellos()) {
        write_stream_seeds(out / "fuzz_client_hello", hello, cuts_for(hello));
        write_stream_seeds(out / "fuzz_probe_chain", hello, cuts_for(hello));
    }
    for (const std::string& opening : other_openings()) {
        write_stream_seeds(out / "fuzz_probe_chain", opening, cuts_for(opening));
    }
    for (const std::string& request : http_requests()) {
        write_stream_seeds(out / "fuzz_http_framing", request, cuts_for(request));
    }
    for (std::string response : http_responses()) {
        // 0x10 in the split header's first byte: frame responses (fuzz_http_framing.cpp).
        for (auto header : {splicer::fuzz::split_header({}),
                            splicer::fuzz::split_header(cuts_for(response))}) {
            header[0] |= 0x10;
            write_seed(out / "fuzz_http_framing",
                       std::string(header.begin(), header.end()) + response);
        }
    }
    write_seed(out / "fuzz_config", std::string(splicer::config::embedded_default_text()));
    for (const auto& entry : fs::directory_iterator(fs::path(SPLICER_FIXTURES_DIR) / "config")) {
        write_seed(out / "fuzz_config", splicer::test::read_file(entry.path()));
    }
    return 0;
}
