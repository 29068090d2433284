#include "support/config_text.h"

namespace splicer::test {

std::string all_diagnostics(const config::LoadResult& result, std::string_view source) {
    std::string out;
    for (const config::Diagnostic& diagnostic : result.diagnostics) {
        out += config::format(diagnostic, source) + "\n";
    }
    return out;
}

std::vector<std::string> formatted_diagnostics(const std::vector<config::Diagnostic>& diagnostics) {
    std::vector<std::string> lines;
    for (const config::Diagnostic& diagnostic : diagnostics) {
        lines.push_back(config::format(diagnostic, "splicer.conf"));
    }
    return lines;
}

std::string proxy_config(const ProxyConfigSlots& slots) {
    return "listen: ( { host: \"0.0.0.0\"; port: \"443\"; " + slots.listen + " } );\n"
           "protocols: (\n"
           "  { name: \"tls\"; host: \"127.0.0.1\"; port: \"5443\"; " + slots.rule + " },\n"
           "  { name: \"xmpp\"; host: \"127.0.0.1\"; port: \"5222\"; }\n"
           ");\n"
           "http: { listen: ( { host: \"0.0.0.0\"; port: \"80\"; " + slots.http_listen + " } );\n"
           "  routes: (\n"
           "    { hosts: [\"*\"]; backend: \"127.0.0.1:8080\"; " + slots.route + " }\n"
           "  );\n"
           "};\n";
}

}  // namespace splicer::test
