#include "handoff/wire.h"

#include <array>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>

namespace splicer::handoff {
namespace {

constexpr std::array<char, 8> kMagic{'S', 'P', 'L', 'H', 'A', 'N', 'D', 'O'};

// Direction flag bits.
constexpr std::uint8_t kSourceEof = 1U << 0;
constexpr std::uint8_t kSinkShut = 1U << 1;
constexpr std::uint8_t kSourceBraked = 1U << 2;
constexpr std::uint8_t kBrakedByWatch = 1U << 3;
constexpr std::uint8_t kConsumedKnown = 1U << 4;
constexpr std::uint8_t kKnownFlags =
    kSourceEof | kSinkShut | kSourceBraked | kBrakedByWatch | kConsumedKnown;

class Writer {
public:
    template <typename Integer>
    void put(Integer value) {
        for (std::size_t i = 0; i < sizeof(Integer); ++i) {
            out_.push_back(static_cast<std::byte>((static_cast<std::uint64_t>(value) >> (8 * i)) &
                                                  0xffU));
        }
    }
    void put_bytes(const void* data, std::size_t length) {
        const auto* first = static_cast<const std::byte*>(data);
        out_.insert(out_.end(), first, first + length);
    }
    std::vector<std::byte> take() { return std::move(out_); }

private:
    std::vector<std::byte> out_;
};

// Every read checked against what is left; the first failure sticks and names its field.
class Reader {
public:
    explicit Reader(std::span<const std::byte> bytes) : bytes_(bytes) {}

    template <typename Integer>
    bool get(Integer& value) {
        if (bytes_.size() - offset_ < sizeof(Integer)) {
            return false;
        }
        std::uint64_t assembled = 0;
        for (std::size_t i = 0; i < sizeof(Integer); ++i) {
            assembled |= static_cast<std::uint64_t>(bytes_[offset_ + i]) << (8 * i);
        }
        offset_ += sizeof(Integer);
        value = static_cast<Integer>(assembled);
        return true;
    }
    bool get_bytes(void* out, std::size_t length) {
        if (bytes_.size() - offset_ < length) {
            return false;
        }
        if (length > 0) {
            std::memcpy(out, bytes_.data() + offset_, length);
        }
        offset_ += length;
        return true;
    }
    [[nodiscard]] std::size_t left() const { return bytes_.size() - offset_; }

private:
    std::span<const std::byte> bytes_;
    std::size_t offset_ = 0;
};

Error refused(std::size_t record, const std::string& what) {
    return Error{"handoff record " + std::to_string(record) + ": " + what};
}

// An fd index field: kNoFd, or below fd_count and not named before.
bool take_fd(std::uint32_t index, std::vector<bool>& named, bool required) {
    if (index == kNoFd) {
        return !required;
    }
    if (index >= named.size() || named[index]) {
        return false;
    }
    named[index] = true;
    return true;
}

// Family 0 all zero, family 4 with zero past its 4 bytes, family 6: nothing else.
bool valid_client(const ClientAddress& client) {
    const std::size_t used = client.family == 6   ? std::size_t{16}
                             : client.family == 4 ? std::size_t{4}
                                                  : std::size_t{0};
    if (client.family != 0 && client.family != 4 && client.family != 6) {
        return false;
    }
    if (client.family == 0 && client.port != 0) {
        return false;
    }
    for (std::size_t i = used; i < client.address.size(); ++i) {
        if (client.address[i] != 0) {
            return false;
        }
    }
    return true;
}

}  // namespace

std::vector<std::byte> encode(const std::vector<ConnectionRecord>& records,
                              std::uint32_t fd_count) {
    Writer out;
    out.put_bytes(kMagic.data(), kMagic.size());
    out.put(kVersion);
    out.put(static_cast<std::uint32_t>(records.size()));
    out.put(fd_count);
    for (const ConnectionRecord& record : records) {
        out.put(static_cast<std::uint8_t>(record.plane));
        out.put(std::uint8_t{0});
        out.put(static_cast<std::uint16_t>(record.protocol.size()));
        out.put(record.id);
        out.put(record.client);
        out.put(record.backend);
        out.put(record.listener);
        out.put(record.age_ms);
        out.put_bytes(record.protocol.data(), record.protocol.size());
        for (const DirectionRecord& direction : record.directions) {
            out.put(direction.bytes);
            std::uint8_t flags = 0;
            flags |= direction.source_eof ? kSourceEof : 0;
            flags |= direction.sink_shut ? kSinkShut : 0;
            flags |= direction.source_braked ? kSourceBraked : 0;
            flags |= direction.braked_by_watch ? kBrakedByWatch : 0;
            flags |= direction.consumed_known ? kConsumedKnown : 0;
            out.put(flags);
            out.put(direction.consumed_at_start);
            out.put(direction.pipe_read);
            out.put(direction.pipe_write);
            out.put(direction.in_pipe);
            out.put(direction.baseline_consumed);
            out.put(direction.baseline_written);
            out.put(direction.copied);
            out.put(direction.urgent_removed);
            out.put(static_cast<std::uint32_t>(direction.buffered.size()));
            out.put_bytes(direction.buffered.data(), direction.buffered.size());
        }
        for (const ClientAddress* address : {&record.proxied_client, &record.client_peer}) {
            out.put(address->family);
            out.put(address->port);
            out.put_bytes(address->address.data(), address->address.size());
        }
    }
    return out.take();
}

Result<std::vector<ConnectionRecord>> decode(std::span<const std::byte> bytes,
                                             std::uint32_t fd_count) {
    Reader in(bytes);
    std::array<char, 8> magic{};
    if (!in.get_bytes(magic.data(), magic.size()) || magic != kMagic) {
        return Error{"handoff: not a handoff message (bad magic)"};
    }
    std::uint32_t version = 0;
    std::uint32_t count = 0;
    std::uint32_t claimed_fds = 0;
    if (!in.get(version) || !in.get(count) || !in.get(claimed_fds)) {
        return Error{"handoff: truncated header"};
    }
    if (version != kVersion) {
        return Error{"handoff: version " + std::to_string(version) + ", this binary reads " +
                     std::to_string(kVersion)};
    }
    if (count > kMaxRecords) {
        return Error{"handoff: " + std::to_string(count) + " records, over the bound of " +
                     std::to_string(kMaxRecords)};
    }
    if (claimed_fds != fd_count || fd_count > kMaxFds) {
        return Error{"handoff: the message names " + std::to_string(claimed_fds) +
                     " fds, " + std::to_string(fd_count) + " arrived"};
    }
    std::vector<bool> named(fd_count, false);
    std::vector<ConnectionRecord> records;
    // Not reserved from `count`: a lying count must not allocate; the loop ends at the bytes.
    for (std::uint32_t i = 0; i < count; ++i) {
        ConnectionRecord record;
        std::uint8_t plane = 0;
        std::uint8_t reserved = 0;
        std::uint16_t protocol_length = 0;
        if (!in.get(plane) || !in.get(reserved) || !in.get(protocol_length) ||
            !in.get(record.id) || !in.get(record.client) || !in.get(record.backend) ||
            !in.get(record.listener) || !in.get(record.age_ms)) {
            return refused(i, "truncated");
        }
        if (plane != static_cast<std::uint8_t>(PlaneKind::copy) &&
            plane != static_cast<std::uint8_t>(PlaneKind::splice) &&
            plane != static_cast<std::uint8_t>(PlaneKind::sockmap)) {
            return refused(i, "unknown plane " + std::to_string(plane));
        }
        record.plane = static_cast<PlaneKind>(plane);
        if (reserved != 0) {
            return refused(i, "reserved byte set");
        }
        if (protocol_length > kMaxProtocolBytes) {
            return refused(i, "protocol name of " + std::to_string(protocol_length) +
                                  " bytes, over the bound of " +
                                  std::to_string(kMaxProtocolBytes));
        }
        record.protocol.resize(protocol_length);
        if (!in.get_bytes(record.protocol.data(), protocol_length)) {
            return refused(i, "truncated protocol name");
        }
        if (!take_fd(record.client, named, true)) {
            return refused(i, "bad client fd index " + std::to_string(record.client));
        }
        if (!take_fd(record.backend, named, true)) {
            return refused(i, "bad backend fd index " + std::to_string(record.backend));
        }
        for (std::size_t d = 0; d < 2; ++d) {
            DirectionRecord& direction = record.directions[d];
            const std::string which = "direction " + std::to_string(d) + ": ";
            std::uint8_t flags = 0;
            std::uint32_t buffered = 0;
            if (!in.get(direction.bytes) || !in.get(flags) ||
                !in.get(direction.consumed_at_start) || !in.get(direction.pipe_read) ||
                !in.get(direction.pipe_write) || !in.get(direction.in_pipe) ||
                !in.get(direction.baseline_consumed) || !in.get(direction.baseline_written) ||
                !in.get(direction.copied) || !in.get(direction.urgent_removed) ||
                !in.get(buffered)) {
                return refused(i, which + "truncated");
            }
            if ((flags & ~kKnownFlags) != 0) {
                return refused(i, which + "unknown flags");
            }
            direction.source_eof = (flags & kSourceEof) != 0;
            direction.sink_shut = (flags & kSinkShut) != 0;
            direction.source_braked = (flags & kSourceBraked) != 0;
            direction.braked_by_watch = (flags & kBrakedByWatch) != 0;
            direction.consumed_known = (flags & kConsumedKnown) != 0;
            if (direction.sink_shut && !direction.source_eof) {
                return refused(i, which + "sink shut before the source ended");
            }
            const bool has_pipe = direction.pipe_read != kNoFd || direction.pipe_write != kNoFd;
            if (has_pipe && record.plane != PlaneKind::splice) {
                return refused(i, which + "a pipe on a plane without pipes");
            }
            if (has_pipe && (!take_fd(direction.pipe_read, named, true) ||
                             !take_fd(direction.pipe_write, named, true))) {
                return refused(i, which + "bad pipe fd index");
            }
            if (has_pipe != (direction.in_pipe > 0)) {
                return refused(i, which + "a pipe must hold bytes, and bytes need a pipe");
            }
            if (has_pipe && direction.sink_shut) {
                return refused(i, which + "bytes in a pipe after the end of the stream");
            }
            if (direction.in_pipe > kMaxPipeBytes) {
                return refused(i, which + "in_pipe " + std::to_string(direction.in_pipe) +
                                      " over the bound of " + std::to_string(kMaxPipeBytes));
            }
            if (buffered > kMaxBufferedBytes) {
                return refused(i, which + std::to_string(buffered) +
                                      " buffered bytes, over the bound of " +
                                      std::to_string(kMaxBufferedBytes));
            }
            if (buffered > 0 && has_pipe) {
                return refused(i, which + "both a pipe and buffered bytes");
            }
            if (buffered > 0 && (direction.source_eof || direction.sink_shut)) {
                // Bytes are only read while the sink is open, and the FIN only after them.
                return refused(i, which + "buffered bytes after the end of the stream");
            }
            if (direction.urgent_removed > direction.copied) {
                return refused(i, which + "more urgent bytes left out than copied");
            }
            if (record.plane == PlaneKind::sockmap && buffered > 0) {
                // A sockmap pair moves only between copy rounds (plane/sockmap_plane.cpp).
                return refused(i, which + "buffered bytes on the sockmap plane");
            }
            if (in.left() < buffered) {
                return refused(i, which + "truncated buffered bytes");
            }
            direction.buffered.resize(buffered);
            (void)in.get_bytes(direction.buffered.data(), buffered);
        }
        for (const auto& [address, name] :
             {std::pair{&record.proxied_client, "client address"},
              std::pair{&record.client_peer, "client peer address"}}) {
            if (!in.get(address->family) || !in.get(address->port) ||
                !in.get_bytes(address->address.data(), address->address.size())) {
                return refused(i, std::string("truncated ") + name);
            }
            if (!valid_client(*address)) {
                return refused(i, std::string(name) + " of family " +
                                      std::to_string(address->family) +
                                      " with stray bytes or an unknown family");
            }
        }
        records.push_back(std::move(record));
    }
    if (in.left() != 0) {
        return Error{"handoff: " + std::to_string(in.left()) + " bytes after the last record"};
    }
    for (std::uint32_t index = 0; index < fd_count; ++index) {
        if (!named[index]) {
            return Error{"handoff: fd " + std::to_string(index) + " is named by no record"};
        }
    }
    return records;
}

}  // namespace splicer::handoff
