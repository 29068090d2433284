// libFuzzer target: the configuration loader on arbitrary text (trailing-comma rewrite,
// libconfig, the schema checks). A loaded configuration must also describe itself and, when
// its regexes compile, build a router, as `splicer check` and `splicer run` do with it.

#include <cstdint>
#include <string_view>

#include "splicer/config.h"
#include "splicer/router.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const splicer::config::LoadResult loaded = splicer::config::load_string(text, "<fuzz>");
    for (const splicer::config::Diagnostic& diagnostic : loaded.diagnostics) {
        (void)splicer::config::format(diagnostic, "<fuzz>");
    }
    if (loaded.ok()) {
        (void)splicer::config::describe(*loaded.config);
        (void)splicer::route::Router::create(*loaded.config);
    }
    return 0;
}
