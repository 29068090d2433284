#include "cli/check_command.h"

#include <vector>

#include "splicer/config.h"
#include "tls/certificate_store.h"

namespace splicer::cli {

int check_command(const std::string& config_path, std::ostream& out, std::ostream& err) {
    const config::LoadResult loaded = config::load_file(config_path);
    for (const config::Diagnostic& diagnostic : loaded.diagnostics) {
        err << config::format(diagnostic, config_path) << '\n';
    }
    if (!loaded.ok()) {
        err << config_path << ": invalid configuration\n";
        return 1;
    }
    // The TLS files are read here, not by the loader (which does no I/O): what the daemon
    // would refuse at start or reload is an error now, with the setting and line.
    bool files_ok = true;
    if (loaded.config->https) {
        for (const config::Diagnostic& diagnostic : tls::check_https_files(*loaded.config->https)) {
            err << config::format(diagnostic, config_path) << '\n';
            files_ok = files_ok && diagnostic.severity != config::Diagnostic::Severity::error;
        }
    }
    if (!files_ok) {
        err << config_path << ": invalid configuration\n";
        return 1;
    }
    out << config::describe(*loaded.config);
    out << config_path << ": configuration ok\n";
    return 0;
}

}  // namespace splicer::cli
