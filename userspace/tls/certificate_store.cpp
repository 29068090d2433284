#include "tls/certificate_store.h"

#include <map>
#include <string>
#include <utility>

namespace splicer::tls {
namespace {

// "SETTING (line N): MESSAGE".
Error setting_error(const config::Diagnostic& diagnostic) {
    std::string where = diagnostic.setting;
    if (diagnostic.line > 0) {
        where += " (line " + std::to_string(diagnostic.line) + ")";
    }
    return Error{where + ": " + diagnostic.message};
}

// Each file read once per build: the checks and the contexts see the same bytes (a renewal
// landing between two reads cannot pair an old key with a new certificate), and a reader
// that asks the privileged parent is asked once per file.
class ReadOnce {
public:
    explicit ReadOnce(const FileReader& read_file) : read_file_(read_file) {}

    Result<std::string> operator()(const std::filesystem::path& path) {
        auto found = read_.find(path);
        if (found == read_.end()) {
            found = read_.emplace(path, read_file_(path)).first;
        }
        return found->second;
    }

private:
    const FileReader& read_file_;
    std::map<std::filesystem::path, Result<std::string>> read_;
};

}  // namespace

CertificatePlaces places_of(const config::CertificateConfig& entry) {
    return CertificatePlaces{
        {entry.path + ".certificate", entry.certificate_line},
        {entry.path + ".key", entry.key_line},
        {entry.path + ".ocsp_response", entry.ocsp_response_line},
    };
}

CertificateFiles files_of(const config::CertificateConfig& entry) {
    return CertificateFiles{entry.certificate, entry.key, entry.ocsp_response};
}

std::vector<config::Diagnostic> check_https_files(const config::HttpsConfig& https, std::time_t now,
                                                  const FileReader& read_file) {
    std::vector<config::Diagnostic> out;
    for (const config::CertificateConfig& entry : https.certificates) {
        for (config::Diagnostic& diagnostic :
             check_certificate_files(files_of(entry), places_of(entry), now, read_file)) {
            out.push_back(std::move(diagnostic));
        }
    }
    for (std::size_t i = 0; i < https.routes.size(); ++i) {
        const config::HttpRoute& route = https.routes[i];
        if (!route.ca_file || !route.verify ||
            route.backend_scheme != config::BackendScheme::https) {
            continue;
        }
        const std::string setting = "https.routes.[" + std::to_string(i) + "].ca_file";
        if (auto pem = read_file(*route.ca_file); !pem) {
            out.push_back({config::Diagnostic::Severity::error, route.ca_file_line, setting,
                           pem.error().message});
        } else if (auto chain = parse_certificate_chain(*pem); !chain) {
            out.push_back({config::Diagnostic::Severity::error, route.ca_file_line, setting,
                           quoted_path(*route.ca_file) + " " + chain.error().message});
        }
    }
    return out;
}

Result<CertificateStore> build_certificate_store(const config::HttpsConfig& https,
                                                 const FileReader& read_file, Clock clock,
                                                 std::time_t now) {
    auto read_once = std::make_shared<ReadOnce>(read_file);
    const FileReader reader = [read_once](const std::filesystem::path& path) {
        return (*read_once)(path);
    };
    CertificateStore store;
    for (config::Diagnostic& diagnostic : check_https_files(https, now, reader)) {
        if (diagnostic.severity == config::Diagnostic::Severity::error) {
            return setting_error(diagnostic);
        }
        store.notices.push_back(std::move(diagnostic));
    }
    ServerSettings settings;
    for (const config::CertificateConfig& entry : https.certificates) {
        settings.certificates.push_back(files_of(entry));
    }
    settings.ticket_key_rotation = https.ticket_key_rotation;
    settings.clock = std::move(clock);
    settings.read_file = reader;
    auto server = ServerContext::create(settings);
    if (!server) {
        return server.error().with_context("https.certificates");
    }
    store.server = std::move(server).value();

    for (std::size_t i = 0; i < https.routes.size(); ++i) {
        const config::HttpRoute& route = https.routes[i];
        if (route.backend_scheme != config::BackendScheme::https) {
            store.upstreams.push_back(nullptr);
            continue;
        }
        UpstreamSettings upstream{route.verify, std::nullopt, reader};
        if (route.ca_file) {
            upstream.ca_file = *route.ca_file;
        }
        auto context = UpstreamContext::create(upstream);
        if (!context) {
            return context.error().with_context("https.routes.[" + std::to_string(i) + "] (line " +
                                                std::to_string(route.line) + ")");
        }
        store.upstreams.push_back(std::move(context).value());
    }
    return store;
}

}  // namespace splicer::tls
