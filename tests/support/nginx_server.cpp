#include "support/nginx_server.h"

#include <sstream>
#include <stdexcept>

#include "support/command.h"
#include "support/daemon.h"
#include "support/listening_child.h"

namespace splicer::test {

NginxServer::NginxServer(NginxOptions options, const std::function<bool(std::uint16_t)>& listening)
    : options_(std::move(options)), dir_("splicer-nginx") {
    const std::string dir = dir_.path().string();
    const bool own_certificate = !options_.certificate.empty();
    cert_path_ = own_certificate ? options_.certificate : dir + "/" + options_.server_name + ".crt";
    const std::string key_path =
        own_certificate ? options_.key : dir + "/" + options_.server_name + ".key";
    blob_path_ = dir + "/html/blob";
    // The SAN is what curl matches the name against. The blob is random: a byte lost,
    // duplicated or reordered anywhere changes it.
    const std::string name = options_.server_name;
    const std::string make_certificate =
        own_certificate
            ? std::string()
            : "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1" +
                  std::string(" -subj '/CN=") + name + "' -addext 'subjectAltName=DNS:" + name +
                  "' -keyout '" + key_path + "' -out '" + cert_path_ + "' 2>&1; ";
    const CommandResult made =
        run_command("set -e; mkdir -p '" + dir + "/html' '" + dir + "/logs'; " +
                    make_certificate + "head -c " + std::to_string(options_.blob_bytes) +
                    " /dev/urandom > '" + blob_path_ + "'");
    if (made.exit_code != 0) {
        throw std::runtime_error("nginx files: " + made.output);
    }
    // `user root`: the test runs as root and the workers read files in its 0700 temp dir.
    // Every path nginx writes is under the prefix (-p): nothing of the system's nginx is used.
    std::ostringstream config;
    config << "daemon off;\nuser root;\nworker_processes 1;\n"
           << "pid " << dir << "/nginx.pid;\n"
           << "error_log " << dir << "/logs/error.log info;\n"
           << "worker_rlimit_nofile " << 2 * options_.worker_connections + 64 << ";\n"
           << "events { worker_connections " << options_.worker_connections << "; }\n"
           << "http {\n"
           << "  access_log off;\n";
    for (const char* temp : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"}) {
        config << "  " << temp << "_temp_path " << dir << "/" << temp << ";\n";
    }
    config << "  default_type application/octet-stream;\n"
           << "  log_format from_proxy 'pp=$proxy_protocol_addr:$proxy_protocol_port"
           << " remote=$remote_addr sni=$ssl_server_name \"$request\" $status"
           << " $body_bytes_sent';\n"
           << "  log_format by_connection 'conn=$connection \"$request\" $status';\n"
           << "  log_format from_http 'xff=$http_x_forwarded_for remote=$remote_addr"
           << " \"$request\" $status $body_bytes_sent';\n"
           << "  server {\n"
           << "    listen " << options_.address << ":" << options_.https_port
           << (options_.https_proxy_protocol ? " ssl proxy_protocol;\n" : " ssl;\n")
           << "    server_name " << name << ";\n"
           << "    ssl_certificate " << cert_path_ << ";\n"
           << "    ssl_certificate_key " << key_path << ";\n"
           << "    access_log " << dir << "/logs/https.log from_proxy;\n"
           << "    access_log " << dir << "/logs/https_connections.log by_connection;\n"
           << "    root " << dir << "/html;\n"
           << "  }\n"
           << "  server {\n"
           // A backlog past nginx's default 511: a proxy that opens a connection per
           // client in flight may open hundreds in one moment.
           << "    listen " << options_.address << ":" << options_.http_port
           << " backlog=4096;\n"
           << "    server_name " << name << ";\n"
           << "    access_log " << dir << "/logs/http.log from_http;\n"
           << "    root " << dir << "/html;\n"
           << "  }\n"
           << "}\n";
    const std::string config_path = dir_.write_file("nginx.conf", config.str()).string();
    SpawnOptions spawn;
    spawn.argv = options_.command_prefix;
    for (const std::string& argument :
         {std::string("nginx"), std::string("-p"), dir, std::string("-c"), config_path}) {
        spawn.argv.push_back(argument);
    }
    process_ = ChildProcess(spawn);
    wait_until_listening(process_, {.name = "nginx",
                                    .ports = {options_.https_port, options_.http_port},
                                    .listening = listening,
                                    .log = [this] { return error_log(); }});
}

// SIGTERM to the master: it stops its worker and exits (fast shutdown).
NginxServer::~NginxServer() {
    (void)process_.terminate(std::chrono::seconds(3));
}

std::string NginxServer::https_log() const {
    return read_file(dir_.path() / "logs" / "https.log");
}
std::string NginxServer::https_connection_log() const {
    return read_file(dir_.path() / "logs" / "https_connections.log");
}
std::string NginxServer::http_log() const {
    return read_file(dir_.path() / "logs" / "http.log");
}
std::string NginxServer::error_log() const {
    return read_file(dir_.path() / "logs" / "error.log");
}

NginxOptions a_test_https_backend(const TestCertificates& pki) {
    return {.address = "127.0.0.1",
            .https_port = free_port(),
            .http_port = free_port(),
            .server_name = "a.test",
            .https_proxy_protocol = false,
            .certificate = pki.a_chain.string(),
            .key = pki.a_key.string()};
}

}  // namespace splicer::test
