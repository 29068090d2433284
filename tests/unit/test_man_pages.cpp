// The man pages (dist/man): splicer(8) and splicer.conf(5) render with man-db without a single
// groff warning, and splicer.conf(5) names every setting the config loader accepts.
//
// The list of settings is not kept by hand: the candidates are the string literals of the
// loader's sources (userspace/config), and the loader itself says which of them it accepts,
// in each place a setting can stand. A setting added to the loader without a line in the page
// fails here.

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "splicer/config.h"
#include "support/command.h"

using splicer::test::run_command;

namespace {

const std::string kSourceDir = SPLICER_SOURCE_DIR;

std::string read_source_file(const std::filesystem::path& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Rendered {
    int exit_code = -1;
    std::string text;      // what man printed on stdout
    std::string warnings;  // what it (groff) printed on stderr
};

// `man -l` as a reader would run it, with a fixed width and every groff warning enabled
// (`w` is groff's name for all of them); stdout and stderr apart.
Rendered render(const std::string& page, const std::string& locale) {
    const std::string man = "LC_ALL=" + locale + " MANWIDTH=80 man --warnings=w -l '" + page + "'";
    Rendered rendered;
    const auto out = run_command("{ " + man + " 2>/dev/null; }");
    rendered.exit_code = out.exit_code;
    rendered.text = out.output;
    rendered.warnings = run_command("{ " + man + " 2>&1 >/dev/null; }").output;
    return rendered;
}

// Every word of the rendered text, a word being what a setting name is made of.
std::set<std::string> words_of(const std::string& text) {
    static const std::regex kWord("[A-Za-z0-9_-]+");
    std::set<std::string> words;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), kWord);
         it != std::sregex_iterator(); ++it) {
        words.insert(it->str());
    }
    return words;
}

// Every string literal in the loader's sources that could be a setting name.
std::set<std::string> candidate_names() {
    static const std::regex kLiteral("\"([a-z][a-z0-9_-]*)\"");
    std::set<std::string> names;
    for (const auto& entry :
         std::filesystem::directory_iterator(kSourceDir + "/userspace/config")) {
        const std::string text = read_source_file(entry.path());
        for (auto it = std::sregex_iterator(text.begin(), text.end(), kLiteral);
             it != std::sregex_iterator(); ++it) {
            names.insert((*it)[1].str());
        }
    }
    return names;
}

// A minimal valid file with one place marked @ where a setting can stand, and the settings
// the file itself already uses there (libconfig refuses a name given twice in a group).
struct Place {
    const char* path;
    const char* text;
    std::set<std::string> already_there;
};

const Place kConfigPlaces[] = {
    {"top level",
     "listen: ( { host: \"127.0.0.1\"; port: 1; } );\n"
     "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: 2; } );\n@\n",
     {"listen", "protocols"}},
    {"listen entry",
     "listen: ( { host: \"127.0.0.1\"; port: 1;\n@ } );\n"
     "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: 2; } );\n",
     {"host", "port"}},
    {"protocols entry",
     "listen: ( { host: \"127.0.0.1\"; port: 1; } );\n"
     "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: 2;\n@ } );\n",
     {"name", "host", "port"}},
    {"http",
     "listen: ( { host: \"127.0.0.1\"; port: 1; } );\n"
     "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: 2; } );\n"
     "http: { listen: ( { host: \"127.0.0.1\"; port: 3; } );\n@ };\n",
     {"listen"}},
    {"http.listen entry",
     "listen: ( { host: \"127.0.0.1\"; port: 1; } );\n"
     "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: 2; } );\n"
     "http: { listen: ( { host: \"127.0.0.1\"; port: 3;\n@ } ); };\n",
     {"host", "port"}},
    {"http.routes entry",
     "listen: ( { host: \"127.0.0.1\"; port: 1; } );\n"
     "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: 2; } );\n"
     "http: { listen: ( { host: \"127.0.0.1\"; port: 3; } );\n"
     "  routes: ( { hosts: [ \"*\" ]; backend: \"127.0.0.1:4\";\n@ } ); };\n",
     {"hosts", "backend"}},
    {"https",
     "listen: ( { host: \"127.0.0.1\"; port: 1; } );\n"
     "protocols: ( { name: \"tls\"; terminate: true; } );\n"
     "https: { certificates: ( { certificate: \"c\"; key: \"k\"; } );\n@ };\n",
     {"certificates"}},
    {"https.certificates entry",
     "listen: ( { host: \"127.0.0.1\"; port: 1; } );\n"
     "protocols: ( { name: \"tls\"; terminate: true; } );\n"
     "https: { certificates: ( { certificate: \"c\"; key: \"k\";\n@ } ); };\n",
     {"certificate", "key"}},
    {"https.routes entry",
     "listen: ( { host: \"127.0.0.1\"; port: 1; } );\n"
     "protocols: ( { name: \"tls\"; terminate: true; } );\n"
     "https: { certificates: ( { certificate: \"c\"; key: \"k\"; } );\n"
     "  routes: ( { hosts: [ \"*\" ]; backend: \"https://127.0.0.1:4\";\n@ } ); };\n",
     {"hosts", "backend"}},
    {"metrics",
     "listen: ( { host: \"127.0.0.1\"; port: 1; } );\n"
     "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: 2; } );\n"
     "metrics: { host: \"127.0.0.1\"; port: 3;\n@ };\n",
     {"host", "port"}},
};

std::string with_setting(const Place& place, const std::string& setting) {
    std::string text = place.text;
    text.replace(text.find('@'), 1, setting);
    return text;
}

// The loader accepts `name` at `place` when a file with it there draws no "unknown setting"
// (a wrong-type error or an "ignored" notice still means the name is known there).
bool accepted(const Place& place, const std::string& name) {
    if (place.already_there.count(name) != 0) {
        return true;
    }
    const auto loaded = splicer::config::load_string(with_setting(place, name + " = 1;"));
    return std::none_of(loaded.diagnostics.begin(), loaded.diagnostics.end(), [](const auto& d) {
        return d.message.starts_with("unknown setting") || d.message.starts_with("syntax");
    });
}

}  // namespace

TEST_CASE("man pages render with man -l without a groff warning", "[man]") {
    const auto page = GENERATE(as<std::string>{}, "splicer.8", "splicer.conf.5");
    const auto locale = GENERATE(as<std::string>{}, "C", "C.UTF-8");
    CAPTURE(page, locale);
    const Rendered rendered = render(kSourceDir + "/dist/man/" + page, locale);
    CHECK(rendered.exit_code == 0);
    CHECK(rendered.warnings.empty());
    CAPTURE(rendered.text.substr(0, 400));
    // The sections a reader looks for, as the rendered text shows them.
    std::vector<std::string> sections = {"NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"};
    if (page == "splicer.8") {
        sections.insert(sections.end(),
                        {"COMMANDS", "SIGNALS", "LOGS", "PRIVILEGES", "EXIT STATUS"});
    } else {
        sections.insert(sections.end(), {"SSLH COMPATIBILITY", "LIMITS", "EXAMPLES"});
    }
    for (const std::string& section : sections) {
        CAPTURE(section);
        CHECK(rendered.text.find("\n" + section + "\n") != std::string::npos);
    }
}

TEST_CASE("every setting the config loader accepts is in splicer.conf(5)", "[man]") {
    // The template files themselves load without a diagnostic, else "accepted" means nothing.
    for (const Place& place : kConfigPlaces) {
        CAPTURE(place.path);
        const auto loaded = splicer::config::load_string(with_setting(place, ""));
        CHECK(loaded.ok());
        CHECK(loaded.diagnostics.empty());
        CHECK_FALSE(accepted(place, "no_such_setting_anywhere"));
    }
    const Rendered rendered = render(kSourceDir + "/dist/man/splicer.conf.5", "C");
    REQUIRE(rendered.exit_code == 0);
    const std::set<std::string> documented = words_of(rendered.text);
    const std::set<std::string> candidates = candidate_names();
    std::size_t settings = 0;
    for (const Place& place : kConfigPlaces) {
        for (const std::string& name : candidates) {
            if (!accepted(place, name)) {
                continue;
            }
            ++settings;
            CAPTURE(place.path, name);
            CHECK(documented.count(name) == 1);
        }
    }
    // Sanity: the loader's own sources yield the settings known today (60 across the places,
    // counting host and port in each), not a handful because the extraction broke.
    CHECK(settings >= 60);
}
