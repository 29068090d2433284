// load_string / load_file: libconfig text (sslh's schema and splicer's own settings) -> Config,
// with every problem found in one pass reported as a Diagnostic naming the setting and line.

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <libconfig.h++>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/reader.h"
#include "config/values.h"
#include "splicer/config.h"

namespace splicer::config {
namespace {

using detail::Diagnostics;
using libconfig::Setting;

// A file this large is not a config file; refusing it keeps a mistaken path (a log, a disk
// image) from being read whole into memory.
constexpr long kMaxFileBytes = 16L * 1024 * 1024;

// ALPN protocol IDs are 1..255 bytes (RFC 7301, section 3.1).
constexpr std::size_t kMaxAlpnLength = 255;

struct IgnoredSetting {
    std::string_view name;
    std::string_view reason;
};

// sslh top-level settings that mean nothing to splicer. They are accepted so an sslh file
// loads unchanged; the notice says what splicer does instead. (Any "verbose*" key, sslh's
// logging switches, is handled separately.)
constexpr IgnoredSetting kIgnoredTopLevel[] = {
    {"foreground", "splicer always runs in the foreground"},
    {"inetd", "inetd mode is not supported; splicer accepts connections itself"},
    {"numeric", "splicer logs numeric addresses"},
    {"pidfile", "splicer writes no pid file"},
    {"chroot", "splicer does not chroot; it drops privileges after start-up"},
    {"syslog_facility", "splicer logs to stderr"},
    {"logfile", "splicer logs to stderr"},
    {"udp_max_connections", "UDP is not supported"},
    {"prefix", "splicer logs one logfmt line per event to stderr"},
};

// sslh per-protocol settings that mean nothing to splicer.
constexpr IgnoredSetting kIgnoredRuleOptions[] = {
    {"service", "libwrap checks are not supported"},
    {"fork", "splicer has no per-connection processes"},
    {"tfo_ok", "TCP Fast Open to backends is not used"},
    {"log_level", "per-protocol log levels are not supported"},
    {"keepalive", "TCP keepalive is not configurable in splicer"},
    {"resolve_on_forward", "not supported"},
    {"minlength", "not supported; probes decide from the bytes themselves"},
    {"udp_timeout", "UDP is not supported"},
    {"max_connections", "per-rule limits are not supported; use the top-level or per-listener max_connections"},
};

std::string_view ignored_reason(std::span<const IgnoredSetting> table, std::string_view name) {
    for (const IgnoredSetting& entry : table) {
        if (entry.name == name) {
            return entry.reason;
        }
    }
    return {};
}

std::string known_protocol_names() {
    std::string out;
    for (const ProbeKind kind : {ProbeKind::tls, ProbeKind::xmpp, ProbeKind::ssh, ProbeKind::http,
                                 ProbeKind::openvpn, ProbeKind::regex, ProbeKind::anyprot}) {
        out += out.empty() ? "" : ", ";
        out += to_string(kind);
    }
    return out;
}

std::string quoted(std::string_view text) {
    return "\"" + std::string(text) + "\"";
}

// sni_hostnames: each entry normalised, errors reported on the entry's own line.
void read_sni_hostnames(const Setting& setting, Rule& rule, Diagnostics& diagnostics) {
    std::optional<std::vector<std::string>> names = detail::read_string_list(setting, diagnostics);
    if (!names) {
        return;
    }
    for (std::size_t i = 0; i < names->size(); ++i) {
        Result<std::string> name = detail::parse_sni_hostname((*names)[i]);
        if (!name) {
            diagnostics.error(setting[static_cast<int>(i)], name.error().message);
            continue;
        }
        rule.sni_hostnames.push_back(std::move(name.value()));
    }
}

void read_alpn_protocols(const Setting& setting, Rule& rule, Diagnostics& diagnostics) {
    std::optional<std::vector<std::string>> ids = detail::read_string_list(setting, diagnostics);
    if (!ids) {
        return;
    }
    for (std::size_t i = 0; i < ids->size(); ++i) {
        const std::string& id = (*ids)[i];
        if (id.empty() || id.size() > kMaxAlpnLength) {
            diagnostics.error(setting[static_cast<int>(i)],
                              "bad ALPN protocol " + quoted(id) + ": expected 1..255 bytes");
            continue;
        }
        rule.alpn_protocols.push_back(id);
    }
}

void read_regex_patterns(const Setting& setting, Rule& rule, Diagnostics& diagnostics) {
    std::optional<std::vector<std::string>> patterns =
        detail::read_string_list(setting, diagnostics);
    if (!patterns) {
        return;
    }
    if (patterns->empty()) {
        diagnostics.error(setting, "empty: a regex rule needs at least one pattern");
        return;
    }
    for (std::size_t i = 0; i < patterns->size(); ++i) {
        if (Result<void> checked = detail::check_regex((*patterns)[i]); !checked) {
            diagnostics.error(setting[static_cast<int>(i)], checked.error().message);
            continue;
        }
        rule.regex_patterns.push_back((*patterns)[i]);
    }
}

// One entry of `protocols`. The probe comes from `name` (sslh's protocol names); options that
// only some probes understand are checked against it. `name_written` is set whenever `name`
// is a string, even an unknown one, so on-timeout does not add a second error for it.
Rule read_rule(const Setting& group, std::string& name_written, Diagnostics& diagnostics) {
    Rule rule;
    rule.line = detail::line_of(group);
    std::optional<ProbeKind> probe;
    if (const Setting* name = detail::require_member(group, "name", diagnostics)) {
        if (std::optional<std::string> text = detail::read_string(*name, diagnostics)) {
            name_written = *text;
            probe = probe_kind_from_string(*text);
            if (probe) {
                rule.name = *text;
                rule.probe = *probe;
            } else {
                diagnostics.error(*name, "unknown protocol name " + quoted(*text) +
                                             " (known: " + known_protocol_names() + ")");
            }
        }
    }
    // Says which probe a probe-specific option was found on; nothing when the name itself
    // was bad (that error is already reported).
    const auto only_on = [&](const Setting& member, ProbeKind wanted) {
        if (probe && *probe != wanted) {
            diagnostics.error(member, "only allowed on " + std::string(to_string(wanted)) +
                                          " rules (this rule is " + std::string(to_string(*probe)) +
                                          ")");
            return false;
        }
        return true;
    };
    bool has_patterns = false;
    for (int i = 0; i < group.getLength(); ++i) {
        const Setting& member = group[i];
        const std::string_view key = member.getName();
        if (key == "name") {
            continue;
        }
        if (key == "host") {
            if (auto host = detail::read_host(member, diagnostics)) {
                rule.backend.host = std::move(*host);
            }
        } else if (key == "port") {
            if (auto port = detail::read_port(member, diagnostics)) {
                rule.backend.port = *port;
            }
        } else if (key == "sni_hostnames") {
            if (only_on(member, ProbeKind::tls)) {
                read_sni_hostnames(member, rule, diagnostics);
            }
        } else if (key == "alpn_protocols") {
            if (only_on(member, ProbeKind::tls)) {
                read_alpn_protocols(member, rule, diagnostics);
            }
        } else if (key == "regex_patterns") {
            has_patterns = true;
            if (only_on(member, ProbeKind::regex)) {
                read_regex_patterns(member, rule, diagnostics);
            }
        } else if (key == "proxyprotocol") {
            if (auto version = detail::read_proxy_protocol(member, diagnostics)) {
                rule.proxy_protocol = *version;
            }
        } else if (key == "transparent") {
            rule.transparent = detail::read_bool(member, diagnostics);
        } else if (key == "terminate") {
            if (only_on(member, ProbeKind::tls)) {
                rule.terminate = detail::read_bool(member, diagnostics).value_or(false);
            }
        } else if (key == "is_udp") {
            if (auto udp = detail::read_bool(member, diagnostics); udp && *udp) {
                diagnostics.error(member, "UDP is not supported");
            }
        } else if (key == "probe") {
            // Older sslh files say probe: "builtin" for what is now implied by the name; a
            // list of patterns there is what regex_patterns holds today.
            if (auto text = detail::read_string(member, diagnostics)) {
                if (*text == "builtin") {
                    diagnostics.notice(member, "sslh setting ignored: the name picks the probe");
                } else {
                    diagnostics.error(member,
                                      "only \"builtin\" is accepted here; use "
                                      "name: \"regex\" with regex_patterns");
                }
            }
        } else if (const std::string_view reason = ignored_reason(kIgnoredRuleOptions, key);
                   !reason.empty()) {
            diagnostics.notice(member, "sslh setting ignored: " + std::string(reason));
        } else {
            detail::check_known(
                member,
                {"name", "host", "port", "sni_hostnames", "alpn_protocols", "regex_patterns",
                 "proxyprotocol", "is_udp", "probe", "service", "fork", "tfo_ok", "transparent",
                 "log_level", "keepalive", "resolve_on_forward", "minlength", "udp_timeout",
                 "max_connections", "terminate"},
                diagnostics);
        }
    }
    if (rule.terminate) {
        // The decrypted requests are routed by the https routes, each to its own backend: a
        // backend here would be a second, contradicting answer to where they go.
        for (const char* name : {"host", "port", "proxyprotocol", "transparent"}) {
            if (const Setting* member = detail::find_member(group, name)) {
                diagnostics.error(*member,
                                  "not allowed on a terminating rule: its requests "
                                  "go to the backends of the https routes");
            }
        }
    } else {
        detail::require_member(group, "host", diagnostics);
        detail::require_member(group, "port", diagnostics);
    }
    if (probe == ProbeKind::regex && !has_patterns) {
        diagnostics.error_at(detail::member_path(group, "regex_patterns"), rule.line,
                             "missing required setting: a regex rule needs regex_patterns");
    }
    return rule;
}

// A rule can never be chosen when an earlier rule with the same probe has no further
// conditions: routing takes the first match (router.h). sslh accepts such files, so this is
// a notice. Regex rules are left out: comparing patterns is beyond a config check.
void notice_unreachable_rules(const std::vector<Rule>& rules, const Setting& protocols,
                              Diagnostics& diagnostics) {
    for (std::size_t later = 0; later < rules.size(); ++later) {
        for (std::size_t first = 0; first < later; ++first) {
            const Rule& rule = rules[first];
            const bool unconditional = rule.sni_hostnames.empty() && rule.alpn_protocols.empty();
            if (rule.probe == rules[later].probe && rule.probe != ProbeKind::regex &&
                unconditional) {
                diagnostics.notice(protocols[static_cast<int>(later)],
                                   "never chosen: rule " + std::to_string(first) + " (line " +
                                       std::to_string(rule.line) + ") takes every " +
                                       std::string(to_string(rule.probe)) + " connection first");
                break;
            }
        }
    }
}

class Loader {
public:
    explicit Loader(Diagnostics& diagnostics) : diagnostics_(diagnostics) {}

    void load(const Setting& root) {
        for (int i = 0; i < root.getLength(); ++i) {
            read_top_level(root[i]);
        }
        if (!seen_listen_) {
            diagnostics_.error_at("listen", 0,
                                  "missing required setting: at least one listener is needed");
        }
        if (!seen_protocols_) {
            diagnostics_.error_at("protocols", 0,
                                  "missing required setting: at least one rule is needed");
        }
        resolve_on_timeout();
        check_termination();
        check_listeners();
        if (rules_ok_ && protocols_ != nullptr) {
            notice_unreachable_rules(config_.rules, *protocols_, diagnostics_);
        }
    }

    Config take() { return std::move(config_); }

private:
    void read_top_level(const Setting& setting) {
        const std::string_view key = setting.getName();
        if (key == "listen") {
            seen_listen_ = true;
            read_listen(setting);
        } else if (key == "protocols") {
            seen_protocols_ = true;
            read_protocols(setting);
        } else if (key == "timeout") {
            read_probe_timeout(setting);
        } else if (key == "on-timeout") {
            on_timeout_ = &setting;
        } else if (key == "user") {
            if (auto user = detail::read_string(setting, diagnostics_)) {
                if (user->empty()) {
                    diagnostics_.error(setting, "empty user name");
                } else {
                    config_.user = std::move(*user);
                }
            }
        } else if (key == "splice_mode") {
            read_splice_mode(setting);
        } else if (key == "transparent") {
            if (auto transparent = detail::read_bool(setting, diagnostics_)) {
                config_.transparent = *transparent;
            }
        } else if (key == "connect_timeout") {
            if (auto seconds = detail::read_seconds(setting, diagnostics_)) {
                config_.connect_timeout = *seconds;
            }
        } else if (key == "stall_timeout") {
            read_stall_timeout(setting);
        } else if (key == "max_connections") {
            config_.max_connections = detail::read_connection_limit(setting, diagnostics_);
        } else if (key == "max_probing") {
            if (auto limit = detail::read_connection_limit(setting, diagnostics_)) {
                config_.max_probing = *limit;
            }
        } else if (key == "max_pipes") {
            config_.max_pipes = detail::read_connection_limit(setting, diagnostics_);
        } else if (key == "max_connections_per_client") {
            if (auto limit = detail::read_connection_limit(setting, diagnostics_)) {
                config_.max_connections_per_client = *limit;
            }
        } else if (key == "log_buffer_size") {
            read_log_buffer_size(setting);
        } else if (key == "workers") {
            read_workers(setting);
        } else if (key == "client_ipv4_prefix_length") {
            if (auto bits = detail::read_prefix_length(setting, 32, diagnostics_)) {
                config_.client_ipv4_prefix_length = *bits;
            }
        } else if (key == "client_ipv6_prefix_length") {
            if (auto bits = detail::read_prefix_length(setting, 128, diagnostics_)) {
                config_.client_ipv6_prefix_length = *bits;
            }
        } else if (key == "http") {
            if (!setting.isGroup()) {
                diagnostics_.error(setting, "wrong type: expected a group { ... }, found " +
                                                std::string(detail::type_name(setting)));
                return;
            }
            config_.http = detail::read_http_section(setting, diagnostics_);
        } else if (key == "https") {
            if (!setting.isGroup()) {
                diagnostics_.error(setting, "wrong type: expected a group { ... }, found " +
                                                std::string(detail::type_name(setting)));
                return;
            }
            https_ = &setting;
            config_.https = detail::read_https_section(setting, diagnostics_);
        } else if (key == "metrics") {
            if (!setting.isGroup()) {
                diagnostics_.error(setting, "wrong type: expected a group { ... }, found " +
                                                std::string(detail::type_name(setting)));
                return;
            }
            config_.metrics = detail::read_metrics_section(setting, diagnostics_);
        } else if (key.starts_with("verbose")) {
            diagnostics_.notice(setting,
                                "sslh setting ignored: splicer logs one logfmt line "
                                "per event to stderr");
        } else if (const std::string_view reason = ignored_reason(kIgnoredTopLevel, key);
                   !reason.empty()) {
            diagnostics_.notice(setting, "sslh setting ignored: " + std::string(reason));
        } else {
            diagnostics_.error(setting, "unknown setting");
        }
    }

    // 1..kMaxWorkers event loops.
    void read_workers(const Setting& setting) {
        const auto value = detail::read_integer(setting, diagnostics_);
        if (!value) {
            return;
        }
        if (*value < 1 || *value > kMaxWorkers) {
            diagnostics_.error(setting, "out of range " + std::to_string(*value) +
                                            ": expected 1.." + std::to_string(kMaxWorkers) +
                                            " event loops");
            return;
        }
        config_.workers = static_cast<std::uint32_t>(*value);
    }

    void read_log_buffer_size(const Setting& setting) {
        // At least a few lines; at most what a log buffer has any business holding.
        constexpr std::uint64_t kMin = 4 * 1024;
        constexpr std::uint64_t kMax = 1024ULL * 1024 * 1024;
        if (auto size = detail::read_size(setting, diagnostics_)) {
            if (*size < kMin || *size > kMax) {
                diagnostics_.error(setting, "out of range: expected 4K..1G");
            } else {
                config_.log_buffer_size = *size;
            }
        }
    }

    // Seconds, 0 (off) .. kMaxSeconds.
    void read_stall_timeout(const Setting& setting) {
        const auto value = detail::read_integer(setting, diagnostics_);
        if (!value) {
            return;
        }
        if (*value < 0 || *value > detail::kMaxSeconds) {
            diagnostics_.error(setting, "bad duration " + std::to_string(*value) +
                                            ": expected 0 (off) or 1.." +
                                            std::to_string(detail::kMaxSeconds) + " seconds");
            return;
        }
        config_.stall_timeout = std::chrono::seconds{*value};
    }

    void read_listen(const Setting& setting) {
        std::optional<std::vector<const Setting*>> groups =
            detail::read_nonempty_groups(setting, "listener", diagnostics_);
        if (!groups) {
            return;
        }
        for (const Setting* group : *groups) {
            if (auto listener = detail::read_listener(*group, true, diagnostics_)) {
                config_.listeners.push_back(std::move(*listener));
                listener_paths_.push_back(detail::path_of(*group));
            }
        }
    }

    void read_protocols(const Setting& setting) {
        std::optional<std::vector<const Setting*>> groups =
            detail::read_nonempty_groups(setting, "rule", diagnostics_);
        if (!groups) {
            rules_ok_ = false;  // no rules to check further (an empty list was reported)
            return;
        }
        const std::size_t errors_before = diagnostics_.error_count();
        protocols_ = &setting;
        rule_names_.assign(static_cast<std::size_t>(setting.getLength()), std::string());
        for (int i = 0; i < setting.getLength(); ++i) {
            const Setting& element = setting[i];
            if (!element.isGroup()) {
                continue;  // already reported by read_group_list
            }
            // Rules keep their index from the file, so on-timeout's index is the file's.
            config_.rules.resize(static_cast<std::size_t>(i) + 1);
            config_.rules[static_cast<std::size_t>(i)] =
                read_rule(element, rule_names_[static_cast<std::size_t>(i)], diagnostics_);
        }
        rules_ok_ = diagnostics_.error_count() == errors_before;
    }

    void read_probe_timeout(const Setting& setting) {
        // sslh allows a fraction of a second here; splicer keeps milliseconds.
        double seconds = 0;
        if (setting.getType() == Setting::TypeFloat) {
            seconds = static_cast<double>(setting);
        } else if (auto integer = detail::read_integer(setting, diagnostics_)) {
            seconds = static_cast<double>(*integer);
        } else {
            return;
        }
        if (!std::isfinite(seconds) || seconds <= 0 ||
            seconds > static_cast<double>(detail::kMaxSeconds)) {
            diagnostics_.error(setting, "bad timeout " + std::to_string(seconds) +
                                            ": expected more than 0 and at most " +
                                            std::to_string(detail::kMaxSeconds) + " seconds");
            return;
        }
        const long long milliseconds = std::llround(seconds * 1000);
        if (milliseconds < 1) {
            diagnostics_.error(setting, "bad timeout: less than a millisecond");
            return;
        }
        config_.probe_timeout = std::chrono::milliseconds{milliseconds};
    }

    void read_splice_mode(const Setting& setting) {
        std::optional<std::string> text = detail::read_string(setting, diagnostics_);
        if (!text) {
            return;
        }
        if (std::optional<SpliceMode> mode = splice_mode_from_string(*text)) {
            config_.splice_mode = *mode;
        } else {
            diagnostics_.error(setting, "unknown splice mode " + quoted(*text) +
                                            " (known: auto, sockmap, splice, copy)");
        }
    }

    // on-timeout names a protocol; it resolves to the first rule with that name, as in sslh.
    void resolve_on_timeout() {
        if (on_timeout_ == nullptr) {
            // sslh defaults on-timeout to "ssh" (and to its first rule where there is no ssh
            // rule); splicer closes instead, which only changes things when there is an ssh
            // rule, so only then is it worth saying.
            for (const std::string& name : rule_names_) {
                if (name == "ssh") {
                    diagnostics_.notice_at(
                        "on-timeout", 0,
                        "not set: unidentified connections are closed at the timeout, where "
                        "sslh would send them to \"ssh\" (add on-timeout: \"ssh\"; for that)");
                    break;
                }
            }
            return;
        }
        std::optional<std::string> name = detail::read_string(*on_timeout_, diagnostics_);
        if (!name) {
            return;
        }
        for (std::size_t i = 0; i < rule_names_.size(); ++i) {
            if (rule_names_[i] == *name) {
                config_.on_timeout_rule = i;
                return;
            }
        }
        if (protocols_ == nullptr) {
            return;  // protocols is missing, empty or not a list: already an error
        }
        std::string names;
        for (const std::string& known : rule_names_) {
            if (!known.empty() && names.find(quoted(known)) == std::string::npos) {
                names += (names.empty() ? "" : ", ") + quoted(known);
            }
        }
        diagnostics_.error(*on_timeout_, "names " + quoted(*name) +
                                             ", but no rule in protocols has that name" +
                                             (names.empty() ? "" : " (names: " + names + ")"));
    }

    // A terminating rule needs certificates to answer with; an https section no rule uses
    // is harmless but surely not what was meant.
    void check_termination() {
        bool any_terminates = false;
        for (std::size_t i = 0; i < config_.rules.size(); ++i) {
            const Rule& rule = config_.rules[i];
            if (!rule.terminate) {
                continue;
            }
            any_terminates = true;
            if (https_ == nullptr) {
                diagnostics_.error_at(
                    "protocols.[" + std::to_string(i) + "].terminate", rule.line,
                    "terminate needs an https section with certificates (and routes for the "
                    "decrypted requests)");
            }
        }
        if (https_ != nullptr && !any_terminates && rules_ok_) {
            diagnostics_.notice(*https_, "unused: no tls rule has terminate: true");
        }
    }

    void check_listeners() {
        std::vector<Listener> seen;
        for (std::size_t i = 0; i < config_.listeners.size(); ++i) {
            detail::check_duplicate_listeners(seen, config_.listeners[i], listener_paths_[i],
                                              diagnostics_);
            seen.push_back(config_.listeners[i]);
        }
        if (config_.http) {
            for (std::size_t i = 0; i < config_.http->listeners.size(); ++i) {
                detail::check_duplicate_listeners(seen, config_.http->listeners[i],
                                                  "http.listen.[" + std::to_string(i) + "]",
                                                  diagnostics_);
                seen.push_back(config_.http->listeners[i]);
            }
        }
        if (config_.metrics) {
            detail::check_duplicate_listeners(seen,
                                              Listener{.address = config_.metrics->address,
                                                       .max_connections = std::nullopt,
                                                       .line = config_.metrics->line},
                                              "metrics", diagnostics_);
        }
    }

    Diagnostics& diagnostics_;
    Config config_;
    bool seen_listen_ = false;
    bool seen_protocols_ = false;
    bool rules_ok_ = true;
    const Setting* protocols_ = nullptr;
    const Setting* on_timeout_ = nullptr;
    const Setting* https_ = nullptr;
    std::vector<std::string> rule_names_;      // per protocols entry; empty when unreadable
    std::vector<std::string> listener_paths_;  // per config_.listeners entry
};

int line_of_offset(std::string_view text, std::size_t offset) {
    int line = 1;
    for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
        line += text[i] == '\n' ? 1 : 0;
    }
    return line;
}

}  // namespace

#if defined(__SANITIZE_ADDRESS__)
// libconfig 1.5's parser leaks the buffer of a string token (64 bytes) when a syntax error
// comes with that token as its lookahead (measured: `b "x";`). The loader runs once per load
// and the leak is libconfig's, but LeakSanitizer would fail every sanitized binary that loads
// such a file (unit tests, `splicer check`, fuzz targets). Weak, so a binary that needs its
// own suppression list can still define one.
extern "C" __attribute__((weak)) const char* __lsan_default_suppressions() {
    return "leak:strbuf_append\n";
}
#endif

LoadResult load_string(std::string_view text, std::string_view source_name) {
    (void)source_name;  // diagnostics carry no file name; format() adds it
    LoadResult result;
    Diagnostics diagnostics;
    // libconfig reads a C string: a NUL would silently end the file early.
    if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos) {
        diagnostics.error_at("", line_of_offset(text, nul), "NUL byte in the file");
        result.diagnostics = diagnostics.take();
        return result;
    }
    try {
        libconfig::Config parsed;
        // libconfig 1.5 reports a syntax error for a comment that ends the text without a
        // newline; the extra newline changes no line number.
        parsed.readString(drop_trailing_commas(text) + "\n");
        Loader loader(diagnostics);
        loader.load(parsed.getRoot());
        Config config = loader.take();
        if (diagnostics.error_count() == 0) {
            result.config = std::move(config);
        }
    } catch (const libconfig::ParseException& e) {
        diagnostics.error_at("", e.getLine(), std::string("syntax: ") + e.getError());
    } catch (const std::exception& e) {
        // Reads check types before converting, so libconfig should not throw here; if it does,
        // the file is still refused with a message rather than taking the daemon down.
        diagnostics.error_at("", 0, std::string("internal error while loading: ") + e.what());
    }
    result.diagnostics = diagnostics.take();
    return result;
}

LoadResult load_file(const std::string& path) {
    const auto fail = [](std::string message) {
        LoadResult result;
        result.diagnostics.push_back(
            Diagnostic{Diagnostic::Severity::error, 0, std::string(), std::move(message)});
        return result;
    };
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                         &std::fclose);
    if (!file) {
        return fail(std::string("cannot read: ") + std::strerror(errno));
    }
    std::string text;
    char buffer[65536];
    while (true) {
        const std::size_t got = std::fread(buffer, 1, sizeof buffer, file.get());
        text.append(buffer, got);
        if (text.size() > static_cast<std::size_t>(kMaxFileBytes)) {
            return fail("cannot read: larger than 16 MiB, not a config file");
        }
        if (got < sizeof buffer) {
            if (std::ferror(file.get()) != 0) {
                // fread leaves errno set (EISDIR for a directory, EIO, ...).
                return fail(std::string("cannot read: ") + std::strerror(errno));
            }
            break;
        }
    }
    return load_string(text, path);
}

}  // namespace splicer::config
