#pragma once
// Real ClientHellos made by libssl at test time: a client SSL object on memory BIOs is
// started once and what it wrote is the hello, exactly as it would go on the wire.

#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace splicer::test {

struct HelloOptions {
    std::string server_name;               // empty: no SNI extension
    std::vector<std::string> alpn;         // empty: no ALPN extension
    bool tls12_only = false;               // max protocol version TLS 1.2
    std::size_t padding_extension_bytes = 0;  // > 0: a custom extension of this size
    std::size_t max_fragment = 0;          // > 0: records of at most this many bytes (>= 512)
};

std::string make_client_hello(const HelloOptions& options);

inline std::span<const std::byte> as_bytes(const std::string& text) {
    return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

}  // namespace splicer::test
