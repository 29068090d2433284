#include "cli/check_command.h"

#include "splicer/config.h"

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
    out << config::describe(*loaded.config);
    out << config_path << ": configuration ok\n";
    return 0;
}

}  // namespace splicer::cli
