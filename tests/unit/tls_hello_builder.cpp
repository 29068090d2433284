#include "unit/tls_hello_builder.h"

#include <algorithm>
#include <stdexcept>

namespace splicer::testing {
namespace {

void put_be(ByteVector& out, std::size_t width, std::size_t value) {
    for (std::size_t i = width; i > 0; --i) {
        out.push_back(static_cast<std::uint8_t>((value >> (8 * (i - 1))) & 0xffU));
    }
}

// Appends `body` behind a length prefix of `width` bytes; a builder for valid hellos refuses
// a body its prefix cannot describe (tests corrupt lengths afterwards, on purpose).
void put_vector(ByteVector& out, std::size_t width, const ByteVector& body) {
    if (width < sizeof(std::size_t) && body.size() >= (std::size_t{1} << (8 * width))) {
        throw std::length_error("tls_hello_builder: vector too long for its length prefix");
    }
    put_be(out, width, body.size());
    out.insert(out.end(), body.begin(), body.end());
}

// The body, with each length field's offset relative to the body's first byte.
ByteVector build_body(const HelloSpec& spec, HelloLayout& layout) {
    ByteVector body;
    body.reserve(512);  // also keeps GCC 12 -O3 from a false -Warray-bounds on a tiny vector
    put_be(body, 2, spec.legacy_version);
    body.resize(body.size() + 32, 0xa5);  // random
    layout.session_id_length = body.size();
    put_vector(body, 1, spec.session_id);
    layout.cipher_suites_length = body.size();
    ByteVector suites;
    for (const std::uint16_t suite : spec.cipher_suites) {
        put_be(suites, 2, suite);
    }
    put_vector(body, 2, suites);
    layout.compression_methods_length = body.size();
    put_vector(body, 1, spec.compression_methods);
    if (spec.has_extensions_block) {
        layout.extensions_length = body.size();
        ByteVector extensions;
        std::vector<std::size_t> starts;
        for (const Extension& extension : spec.extensions) {
            starts.push_back(extensions.size());
            put_be(extensions, 2, extension.type);
            put_vector(extensions, 2, extension.data);
        }
        put_vector(body, 2, extensions);
        layout.extension_starts.clear();
        for (const std::size_t start : starts) {
            layout.extension_starts.push_back(layout.extensions_length + 2 + start);
        }
    }
    return body;
}

}  // namespace

Extension server_name_extension(std::string_view host_name) {
    ByteVector entry = {0};  // host_name
    put_vector(entry, 2, ByteVector(host_name.begin(), host_name.end()));
    Extension extension{0, {}};
    put_vector(extension.data, 2, entry);
    return extension;
}

Extension alpn_extension(const std::vector<std::string>& protocols) {
    ByteVector list;
    for (const std::string& protocol : protocols) {
        put_vector(list, 1, ByteVector(protocol.begin(), protocol.end()));
    }
    Extension extension{16, {}};
    put_vector(extension.data, 2, list);
    return extension;
}

Extension supported_versions_extension(const std::vector<std::uint16_t>& versions) {
    ByteVector list;
    for (const std::uint16_t version : versions) {
        put_be(list, 2, version);
    }
    Extension extension{43, {}};
    put_vector(extension.data, 1, list);
    return extension;
}

Extension key_share_extension(std::uint16_t group, std::size_t key_exchange_size) {
    ByteVector key_exchange(key_exchange_size);
    for (std::size_t i = 0; i < key_exchange.size(); ++i) {
        key_exchange[i] = static_cast<std::uint8_t>((i * 131U + 7U) & 0xffU);
    }
    ByteVector share;
    put_be(share, 2, group);
    put_vector(share, 2, key_exchange);
    Extension extension{51, {}};
    put_vector(extension.data, 2, share);
    return extension;
}

ByteVector build_handshake(const HelloSpec& spec) {
    HelloLayout layout;
    const ByteVector body = build_body(spec, layout);
    ByteVector message = {spec.handshake_type};
    put_vector(message, 3, body);
    return message;
}

ByteVector build_records(const ByteVector& handshake, std::size_t max_payload,
                         std::uint8_t content_type, std::uint16_t record_version) {
    ByteVector out;
    for (std::size_t at = 0; at < handshake.size(); at += max_payload) {
        const std::size_t length = std::min(max_payload, handshake.size() - at);
        out.push_back(content_type);
        put_be(out, 2, record_version);
        put_be(out, 2, length);
        const auto first = handshake.begin() + static_cast<std::ptrdiff_t>(at);
        out.insert(out.end(), first, first + static_cast<std::ptrdiff_t>(length));
    }
    return out;
}

ByteVector build_hello(const HelloSpec& spec, HelloLayout* layout) {
    HelloLayout local;
    const ByteVector body = build_body(spec, local);
    ByteVector message = {spec.handshake_type};
    put_vector(message, 3, body);
    if (layout != nullptr) {
        if (message.size() > kMaxRecordPayload) {
            throw std::length_error("tls_hello_builder: a layout needs a one-record hello");
        }
        // Body offsets become stream offsets behind the record and handshake headers.
        constexpr std::size_t kBodyStart = kRecordHeaderSize + kHandshakeHeaderSize;
        *layout = local;
        layout->session_id_length += kBodyStart;
        layout->cipher_suites_length += kBodyStart;
        layout->compression_methods_length += kBodyStart;
        layout->extensions_length += kBodyStart;
        for (std::size_t& start : layout->extension_starts) {
            start += kBodyStart;
        }
    }
    return build_records(message);
}

std::uint32_t get_be(const ByteVector& bytes, std::size_t offset, std::size_t width) {
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < width; ++i) {
        value = (value << 8U) | bytes.at(offset + i);
    }
    return value;
}

void set_be(ByteVector& bytes, std::size_t offset, std::size_t width, std::uint32_t value) {
    for (std::size_t i = 0; i < width; ++i) {
        bytes.at(offset + i) = static_cast<std::uint8_t>((value >> (8 * (width - 1 - i))) & 0xffU);
    }
}

}  // namespace splicer::testing
