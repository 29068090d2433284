#include "daemon/config_source.h"

#include <unistd.h>

#include "splicer/log.h"

namespace splicer::daemon {

Result<config::Config> load_run_config(const std::optional<std::string>& path) {
    std::string source;
    config::LoadResult loaded;
    if (path) {
        source = *path;
        loaded = config::load_file(*path);
    } else if (::access(kSystemConfigPath, F_OK) == 0) {
        source = kSystemConfigPath;
        loaded = config::load_file(kSystemConfigPath);
    } else {
        source = "embedded default";
        loaded = config::load_string(config::embedded_default_text(), "<embedded default>");
    }
    for (const config::Diagnostic& diagnostic : loaded.diagnostics) {
        const bool is_error = diagnostic.severity == config::Diagnostic::Severity::error;
        log::write(is_error ? log::Level::error : log::Level::notice, "config",
                   {{"msg", config::format(diagnostic, source)}});
    }
    if (!loaded.ok()) {
        return Error{"configuration " + source + " is invalid"};
    }
    log::info("config_loaded", {{"source", source}});
    return std::move(*loaded.config);
}

}  // namespace splicer::daemon
