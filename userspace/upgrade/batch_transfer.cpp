#include "upgrade/batch_transfer.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "upgrade/fd_passing.h"
#include "upgrade/handover_protocol.h"

namespace splicer::upgrade {
namespace {

constexpr char kBatchMagic[4] = {'S', 'P', 'L', 'B'};
constexpr char kPieceMagic[4] = {'S', 'P', 'L', 'P'};
constexpr char kEndMagic[4] = {'S', 'P', 'L', 'E'};
constexpr char kAnswerMagic[4] = {'S', 'P', 'L', 'A'};
constexpr std::size_t kHeadBytes = 6;        // magic + version
constexpr std::size_t kBatchHeadBytes = 14;  // + byte count + fd count

void put_u16(std::string& out, std::uint16_t value) {
    out.push_back(static_cast<char>(value >> 8));
    out.push_back(static_cast<char>(value & 0xff));
}

void put_u32(std::string& out, std::uint32_t value) {
    put_u16(out, static_cast<std::uint16_t>(value >> 16));
    put_u16(out, static_cast<std::uint16_t>(value & 0xffff));
}

std::uint32_t get_u32(const std::string& bytes, std::size_t at) {
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < 4; ++i) {
        value = value << 8 | static_cast<unsigned char>(bytes[at + i]);
    }
    return value;
}

std::string head(const char (&magic)[4]) {
    std::string out(magic, sizeof magic);
    put_u16(out, kProtocolVersion);
    return out;
}

enum class Kind { batch, piece, end };

// Which kind of record `bytes` is: its magic, checked with the version.
Result<Kind> kind_of(const std::string& bytes) {
    if (bytes.size() < kHeadBytes) {
        return Error{"a batch record of " + std::to_string(bytes.size()) + " bytes"};
    }
    const unsigned version =
        static_cast<unsigned char>(bytes[4]) << 8 | static_cast<unsigned char>(bytes[5]);
    if (version != kProtocolVersion) {
        return Error{"a batch record of protocol version " + std::to_string(version)};
    }
    if (std::memcmp(bytes.data(), kBatchMagic, 4) == 0) {
        return Kind::batch;
    }
    if (std::memcmp(bytes.data(), kPieceMagic, 4) == 0) {
        return Kind::piece;
    }
    if (std::memcmp(bytes.data(), kEndMagic, 4) == 0) {
        return Kind::end;
    }
    return Error{"not a batch record"};
}

}  // namespace

Result<void> send_batch(int socket, std::span<const std::byte> bytes, std::span<const int> fds) {
    if (bytes.size() > kMaxBatchBytes || fds.size() > kMaxBatchFds) {
        return Error{"a batch of " + std::to_string(bytes.size()) + " bytes and " +
                     std::to_string(fds.size()) + " fds (at most " +
                     std::to_string(kMaxBatchBytes) + " and " + std::to_string(kMaxBatchFds) + ")"};
    }
    std::string header = head(kBatchMagic);
    put_u32(header, static_cast<std::uint32_t>(bytes.size()));
    put_u32(header, static_cast<std::uint32_t>(fds.size()));
    if (auto sent = send_record(socket, header, {}); !sent) {
        return sent.error().with_context("sending a batch");
    }
    std::size_t byte_at = 0;
    std::size_t fd_at = 0;
    while (byte_at < bytes.size() || fd_at < fds.size()) {
        const std::size_t byte_count = std::min(kPieceBytes, bytes.size() - byte_at);
        const std::size_t fd_count = std::min(kListenersPerRecord, fds.size() - fd_at);
        std::string piece = head(kPieceMagic);
        const auto* text = reinterpret_cast<const char*>(bytes.data()) + byte_at;
        piece.append(text, byte_count);
        if (auto sent = send_record(socket, piece, fds.subspan(fd_at, fd_count)); !sent) {
            return sent.error().with_context("sending a batch");
        }
        byte_at += byte_count;
        fd_at += fd_count;
    }
    return {};
}

Result<void> send_batch_answer(int socket, bool taken) {
    std::string answer = head(kAnswerMagic);
    answer.push_back(taken ? '\1' : '\0');
    return send_record(socket, answer, {});
}

Result<bool> receive_batch_answer(int socket) {
    auto answer = receive_record(socket, kHeadBytes + 1, 0);
    if (!answer) {
        return answer.error().with_context("waiting for the batch's answer");
    }
    const std::string& bytes = answer->bytes;
    if (bytes.size() != kHeadBytes + 1 || std::memcmp(bytes.data(), kAnswerMagic, 4) != 0 ||
        (static_cast<unsigned char>(bytes[4]) << 8 | static_cast<unsigned char>(bytes[5])) !=
            kProtocolVersion ||
        static_cast<unsigned char>(bytes[6]) > 1) {
        return Error{"a malformed answer to a batch"};
    }
    return bytes[6] == '\1';
}

Result<void> send_batches_end(int socket) {
    return send_record(socket, head(kEndMagic), {});
}

Result<std::optional<ReceivedBatch>> receive_batch(int socket) {
    auto first = receive_record(socket, kBatchHeadBytes, 0);
    if (!first) {
        return first.error().with_context("waiting for a batch");
    }
    auto kind = kind_of(first->bytes);
    if (!kind) {
        return kind.error();
    }
    if (*kind == Kind::end) {
        return std::optional<ReceivedBatch>();
    }
    if (*kind != Kind::batch || first->bytes.size() != kBatchHeadBytes) {
        return Error{"a batch piece or a malformed header where a batch header belongs"};
    }
    const std::size_t byte_total = get_u32(first->bytes, 6);
    const std::size_t fd_total = get_u32(first->bytes, 10);
    if (byte_total > kMaxBatchBytes || fd_total > kMaxBatchFds) {
        return Error{"a batch of " + std::to_string(byte_total) + " bytes and " +
                     std::to_string(fd_total) + " fds (at most " + std::to_string(kMaxBatchBytes) +
                     " and " + std::to_string(kMaxBatchFds) + ")"};
    }
    ReceivedBatch batch;
    // Each piece brings bytes or fds or both, so this ends within that many reads.
    while (batch.bytes.size() < byte_total || batch.fds.size() < fd_total) {
        auto piece = receive_record(socket, kHeadBytes + kPieceBytes, kListenersPerRecord);
        if (!piece) {
            return piece.error().with_context("receiving a batch");
        }
        auto piece_kind = kind_of(piece->bytes);
        if (!piece_kind) {
            return piece_kind.error();
        }
        const std::size_t payload = piece->bytes.size() - kHeadBytes;
        if (*piece_kind != Kind::piece || (payload == 0 && piece->fds.empty()) ||
            batch.bytes.size() + payload > byte_total ||
            batch.fds.size() + piece->fds.size() > fd_total) {
            return Error{"a batch piece past its header's counts (" + std::to_string(byte_total) +
                         " bytes, " + std::to_string(fd_total) + " fds) or empty"};
        }
        const auto* data = reinterpret_cast<const std::byte*>(piece->bytes.data()) + kHeadBytes;
        batch.bytes.insert(batch.bytes.end(), data, data + payload);
        for (UniqueFd& fd : piece->fds) {
            batch.fds.push_back(std::move(fd));
        }
    }
    return std::optional<ReceivedBatch>(std::move(batch));
}

}  // namespace splicer::upgrade
