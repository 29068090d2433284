#include "daemon/config_source.h"

#include <cerrno>

#include "splicer/log.h"

namespace splicer::daemon {
namespace {

// What config::load_file says for the same outcome.
config::LoadResult load_read(const privsep::FileRead& read, const std::string& path) {
    if (read.error == 0) {
        return config::load_string(read.bytes, path);
    }
    config::LoadResult result;
    result.diagnostics.push_back(config::Diagnostic{
        config::Diagnostic::Severity::error, 0, std::string(),
        read.error == EFBIG ? "cannot read: larger than 16 MiB, not a config file"
                            : "cannot read: " + errno_text(read.error)});
    return result;
}

}  // namespace

std::string run_config_path(const std::optional<std::string>& path) {
    return path ? *path : kSystemConfigPath;
}

Result<config::Config> load_run_config(const std::optional<std::string>& path,
                                       const privsep::FileSource& files) {
    std::string source = run_config_path(path);
    const privsep::FileRead read = files(source);
    config::LoadResult loaded;
    if (!path && read.error == ENOENT) {
        source = "embedded default";
        loaded = config::load_string(config::embedded_default_text(), "<embedded default>");
    } else {
        loaded = load_read(read, source);
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
