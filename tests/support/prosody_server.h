#pragma once
// Debian's Prosody as a test's XMPP backend: its own config file, data dir and certificate in
// a temp dir, one account made with `prosodyctl register`, c2s on a plain port (STARTTLS
// required) and a direct-TLS port (Prosody 0.12's `c2s_direct_tls_ports`), run in the
// foreground (-F) inside a network namespace, killed by pid and its dir removed on
// destruction.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "support/process.h"

namespace splicer::test {

struct ProsodyOptions {
    std::vector<std::string> command_prefix;  // e.g. EdgeNetns::command_prefix(backend)
    std::string address;                      // interfaces = { address }
    std::uint16_t starttls_port = 5222;
    std::uint16_t direct_tls_port = 5223;
    std::string domain = "chat.example.com";  // the VirtualHost, and the certificate's name
    std::string user = "alice";
    std::string password = "correct horse battery staple";
};

class ProsodyServer {
public:
    // Throws (with Prosody's log) when it cannot register the user or does not start.
    // `listening(port)` must say when the given port accepts in Prosody's namespace.
    ProsodyServer(ProsodyOptions options, const std::function<bool(std::uint16_t)>& listening);
    ~ProsodyServer();
    ProsodyServer(const ProsodyServer&) = delete;
    ProsodyServer& operator=(const ProsodyServer&) = delete;

    [[nodiscard]] const ProsodyOptions& options() const { return options_; }
    [[nodiscard]] std::string jid() const { return options_.user + "@" + options_.domain; }
    // The certificate Prosody presents, for the client to verify it against.
    [[nodiscard]] const std::string& ca_file() const { return cert_path_; }
    [[nodiscard]] std::string log() const;
    bool running() { return process_.running(); }

private:
    ProsodyOptions options_;
    TempDir dir_;
    std::string cert_path_;
    std::string log_path_;
    ChildProcess process_;
};

}  // namespace splicer::test
