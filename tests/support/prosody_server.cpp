#include "support/prosody_server.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <sstream>
#include <stdexcept>

#include "splicer/unique_fd.h"
#include "support/command.h"
#include "support/listening_child.h"

namespace splicer::test {
namespace {

// A certificate whose subjectAltName is `domain`: clients (Python's ssl among them) match the
// host name against the SAN only, not the CN.
std::string make_certificate(const TempDir& dir, const std::string& domain) {
    const std::string cert = (dir.path() / (domain + ".crt")).string();
    const std::string key = (dir.path() / (domain + ".key")).string();
    const CommandResult made = run_command(
        std::string("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes") +
        " -days 1 -subj '/CN=" + domain + "' -addext 'subjectAltName=DNS:" + domain +
        "' -keyout '" + key + "' -out '" + cert + "' 2>&1");
    if (made.exit_code != 0) {
        throw std::runtime_error("openssl req failed: " + made.output);
    }
    return cert;
}

// Lua string literal: the paths are the test's own temp dirs, but quote them properly anyway.
std::string lua_string(const std::string& text) {
    std::string quoted = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            quoted += '\\';
        }
        quoted += c;
    }
    return quoted + "\"";
}

}  // namespace

ProsodyServer::ProsodyServer(ProsodyOptions options,
                             const std::function<bool(std::uint16_t)>& listening)
    : options_(std::move(options)), dir_("splicer-prosody") {
    cert_path_ = make_certificate(dir_, options_.domain);
    const std::string key_path = (dir_.path() / (options_.domain + ".key")).string();
    const std::string data_path = (dir_.path() / "data").string();
    ::mkdir(data_path.c_str(), 0700);
    log_path_ = (dir_.path() / "prosody.log").string();
    // Only what a c2s test needs: no s2s, no HTTP, no posix module (it would daemonize or
    // switch user); run_as_root because the test runs as root and Prosody refuses otherwise.
    std::ostringstream config;
    config << "pidfile = " << lua_string((dir_.path() / "prosody.pid").string()) << "\n"
           << "data_path = " << lua_string(data_path) << "\n"
           << "certificates = " << lua_string(dir_.path().string()) << "\n"
           << "daemonize = false\nrun_as_root = true\n"
           << "log = { { levels = { min = \"info\" }, to = \"console\" } }\n"
           << "modules_enabled = { \"tls\"; \"saslauth\"; \"disco\"; \"roster\"; \"ping\" }\n"
           << "modules_disabled = { \"s2s\"; \"posix\" }\n"
           << "plugin_paths = {}\n"
           << "interfaces = { " << lua_string(options_.address) << " }\n"
           << "c2s_ports = { " << options_.starttls_port
           << " }\n"
           // Prosody 0.12's name for XEP-0368 direct TLS (0.11 called it legacy_ssl_ports).
           << "c2s_direct_tls_ports = { " << options_.direct_tls_port << " }\n"
           << "c2s_require_encryption = true\n"
           << "authentication = \"internal_hashed\"\nstorage = \"internal\"\n"
           << "ssl = { certificate = " << lua_string(cert_path_)
           << "; key = " << lua_string(key_path) << " }\n"
           << "VirtualHost " << lua_string(options_.domain) << "\n";
    const std::string config_path = dir_.write_file("prosody.cfg.lua", config.str()).string();

    const CommandResult registered =
        run_command("prosodyctl --config '" + config_path + "' register '" + options_.user + "' '" +
                    options_.domain + "' '" + options_.password + "' 2>&1");
    if (registered.exit_code != 0) {
        throw std::runtime_error("prosodyctl register failed: " + registered.output);
    }

    const UniqueFd log(::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    SpawnOptions spawn;
    spawn.argv = options_.command_prefix;
    for (const std::string& argument :
         {std::string("prosody"), std::string("--config"), config_path, std::string("-F")}) {
        spawn.argv.push_back(argument);
    }
    spawn.stdout_fd = log.get();
    spawn.stderr_fd = log.get();
    process_ = ChildProcess(spawn);
    wait_until_listening(process_, {.name = "prosody",
                                    .ports = {options_.starttls_port, options_.direct_tls_port},
                                    .listening = listening,
                                    .log = [this] { return this->log(); }});
}

ProsodyServer::~ProsodyServer() {
    (void)process_.terminate(std::chrono::seconds(3));
}

std::string ProsodyServer::log() const {
    return read_file(log_path_);
}

}  // namespace splicer::test
