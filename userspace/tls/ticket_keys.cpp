#include "tls/ticket_keys.h"

#include <openssl/rand.h>

#include <cassert>
#include <utility>

namespace splicer::tls {

TicketKeys::TicketKeys(std::chrono::seconds rotation, Clock clock)
    : rotation_(rotation),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })) {
    assert(rotation_.count() > 0);
}

bool TicketKeys::make_current() {
    TicketKey key;
    if (RAND_bytes(key.name.data(), static_cast<int>(key.name.size())) != 1 ||
        RAND_priv_bytes(key.cipher_key.data(), static_cast<int>(key.cipher_key.size())) != 1 ||
        RAND_priv_bytes(key.mac_key.data(), static_cast<int>(key.mac_key.size())) != 1) {
        return false;
    }
    current_ = key;
    ++generation_;
    return true;
}

void TicketKeys::rotate_if_due() {
    const auto now = clock_();
    if (!current_) {
        current_since_ = now;
        make_current();
        return;
    }
    const auto elapsed = now - current_since_;
    if (elapsed < rotation_) {
        return;
    }
    const auto intervals = elapsed / rotation_;
    // One interval: the current key becomes the previous one. Two or more (no handshake for
    // a while): the current key is already older than one interval, so it opens nothing.
    previous_ = intervals == 1 ? current_ : std::nullopt;
    current_since_ += rotation_ * intervals;
    if (!make_current()) {
        current_.reset();  // no ticket until the generator works again
    }
}

std::optional<TicketKey> TicketKeys::sealing_key() {
    const std::lock_guard lock(mutex_);
    rotate_if_due();
    return current_;
}

std::optional<TicketKeys::Found> TicketKeys::opening_key(
    const std::array<unsigned char, 16>& name) {
    const std::lock_guard lock(mutex_);
    rotate_if_due();
    if (current_ && current_->name == name) {
        return Found{*current_, true};
    }
    if (previous_ && previous_->name == name) {
        return Found{*previous_, false};
    }
    return std::nullopt;
}

}  // namespace splicer::tls
