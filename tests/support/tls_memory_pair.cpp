#include "support/tls_memory_pair.h"

#include <cstddef>
#include <span>

namespace splicer::test {

void pass_pending_cipher(tls::Session& from, tls::Session& to) {
    for (int rounds = 0; rounds < 64; ++rounds) {
        const std::span<const std::byte> pending = from.pending_cipher();
        if (pending.empty()) {
            return;
        }
        const std::size_t taken = to.ingest(pending);
        if (taken == 0) {
            return;  // `to`'s queue is full: the caller reads from it first
        }
        from.consume_cipher(taken);
    }
}

bool handshake_in_memory(tls::Session& client, tls::Session& server) {
    // A TLS 1.3 handshake takes two flights each way; 20 rounds bound a session that never
    // finishes (a failed handshake) without looping for ever.
    for (int rounds = 0; rounds < 20 && !(client.handshake_done() && server.handshake_done());
         ++rounds) {
        (void)client.handshake();
        pass_pending_cipher(client, server);
        (void)server.handshake();
        pass_pending_cipher(server, client);
    }
    return client.handshake_done() && server.handshake_done();
}

}  // namespace splicer::test
