#include "tls/cipher_channel.h"

#include <algorithm>
#include <cstring>

namespace splicer::tls {

std::span<std::byte> CipherQueue::room() {
    if (!data_) {
        // Not zero-filled: only what is put is ever read, and zeroing would touch every page.
        data_ = std::make_unique_for_overwrite<std::byte[]>(capacity_);
    }
    if (end_ == capacity_ && start_ > 0) {
        // Full at the back with room in front: move the pending bytes down, so pending()
        // stays one contiguous span (one send, one read).
        std::memmove(data_.get(), data_.get() + start_, end_ - start_);
        end_ -= start_;
        start_ = 0;
    }
    return {data_.get() + end_, std::size_t{capacity_} - end_};
}

void CipherQueue::filled(std::size_t bytes) {
    // At most the room left, which fits in 32 bits as the capacity does.
    end_ += static_cast<std::uint32_t>(std::min(bytes, std::size_t{capacity_} - end_));
    consume(0);  // nothing arrived into an empty queue: give the buffer back
}

std::size_t CipherQueue::put(std::span<const std::byte> bytes) {
    if (bytes.empty()) {
        return 0;
    }
    const std::span<std::byte> space = room();
    const std::size_t taken = std::min(bytes.size(), space.size());
    std::memcpy(space.data(), bytes.data(), taken);
    end_ += static_cast<std::uint32_t>(taken);  // at most the room left
    return taken;
}

void CipherQueue::consume(std::size_t bytes) {
    start_ += static_cast<std::uint32_t>(std::min(bytes, size()));  // at most what is pending
    if (start_ == end_) {
        data_.reset();  // the connection is idle in this direction: hold nothing
        start_ = end_ = 0;
    }
}

namespace {

CipherChannel& channel_of(BIO* bio) {
    return *static_cast<CipherChannel*>(BIO_get_data(bio));
}

int channel_write(BIO* bio, const char* data, std::size_t length, std::size_t* written) {
    BIO_clear_retry_flags(bio);
    *written = channel_of(bio).outgoing.put(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), length));
    if (*written == 0 && length > 0) {
        BIO_set_retry_write(bio);  // full: the handler sends, then the SSL writes again
        return 0;
    }
    return 1;
}

int channel_read(BIO* bio, char* data, std::size_t length, std::size_t* read) {
    BIO_clear_retry_flags(bio);
    CipherChannel& channel = channel_of(bio);
    *read = std::min(length, channel.incoming.size());
    if (*read == 0) {
        if (!channel.incoming.ended()) {
            BIO_set_retry_read(bio);  // the handler ingests more, then the SSL reads again
        }
        return 0;  // without the retry flag: EOF
    }
    std::memcpy(data, channel.incoming.pending().data(), *read);
    channel.incoming.consume(*read);
    return 1;
}

long channel_ctrl(BIO* bio, int command, long /*number*/, void* /*pointer*/) {
    const CipherChannel& channel = channel_of(bio);
    switch (command) {
        case BIO_CTRL_FLUSH:
            return 1;  // the handler sends what is pending; nothing to push here
        case BIO_CTRL_PENDING:
            return static_cast<long>(channel.incoming.size());
        case BIO_CTRL_WPENDING:
            return static_cast<long>(channel.outgoing.size());
        case BIO_CTRL_EOF:
            return channel.incoming.ended() && channel.incoming.empty() ? 1 : 0;
        default:
            return 0;  // not supported (kTLS, dup, push/pop): OpenSSL does without
    }
}

int channel_create(BIO* bio) {
    BIO_set_init(bio, 1);
    return 1;
}

struct BioMethodFree {
    void operator()(BIO_METHOD* method) const { BIO_meth_free(method); }
};

// Made once per process (OpenSSL's BIO methods are shared, read-only after set-up); freed at
// exit, after the last session.
const BIO_METHOD* channel_method() {
    static const std::unique_ptr<BIO_METHOD, BioMethodFree> method = [] {
        std::unique_ptr<BIO_METHOD, BioMethodFree> made(
            BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "splicer cipher channel"));
        if (made && (BIO_meth_set_write_ex(made.get(), channel_write) != 1 ||
                     BIO_meth_set_read_ex(made.get(), channel_read) != 1 ||
                     BIO_meth_set_ctrl(made.get(), channel_ctrl) != 1 ||
                     BIO_meth_set_create(made.get(), channel_create) != 1)) {
            made.reset();
        }
        return made;
    }();
    return method.get();
}

}  // namespace

BioPtr new_channel_bio(CipherChannel& channel) {
    const BIO_METHOD* method = channel_method();
    if (method == nullptr) {
        return nullptr;
    }
    BioPtr bio(BIO_new(method));
    if (bio) {
        BIO_set_data(bio.get(), &channel);
    }
    return bio;
}

void rebind_channel_bio(BIO* bio, CipherChannel& channel) {
    BIO_set_data(bio, &channel);
}

}  // namespace splicer::tls
