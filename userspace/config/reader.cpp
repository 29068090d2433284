#include "config/reader.h"

#include <cmath>
#include <utility>

#include "config/values.h"

namespace splicer::config::detail {

using libconfig::Setting;

void Diagnostics::error(const Setting& setting, std::string message) {
    error_at(path_of(setting), line_of(setting), std::move(message));
}

void Diagnostics::notice(const Setting& setting, std::string message) {
    notice_at(path_of(setting), line_of(setting), std::move(message));
}

void Diagnostics::error_at(std::string setting, int line, std::string message) {
    diagnostics_.push_back(
        Diagnostic{Diagnostic::Severity::error, line, std::move(setting), std::move(message)});
    ++error_count_;
}

void Diagnostics::notice_at(std::string setting, int line, std::string message) {
    diagnostics_.push_back(
        Diagnostic{Diagnostic::Severity::notice, line, std::move(setting), std::move(message)});
}

int line_of(const Setting& setting) {
    return static_cast<int>(setting.getSourceLine());
}

std::string path_of(const Setting& setting) {
    return setting.getPath();
}

std::string member_path(const Setting& group, std::string_view name) {
    if (group.isRoot()) {
        return std::string(name);
    }
    return path_of(group) + "." + std::string(name);
}

std::string_view type_name(const Setting& setting) {
    switch (setting.getType()) {
        case Setting::TypeInt:
        case Setting::TypeInt64:
            return "an integer";
        case Setting::TypeFloat:
            return "a floating-point number";
        case Setting::TypeString:
            return "a string";
        case Setting::TypeBoolean:
            return "a boolean";
        case Setting::TypeGroup:
            return "a group { }";
        case Setting::TypeArray:
            return "an array [ ]";
        case Setting::TypeList:
            return "a list ( )";
        case Setting::TypeNone:
            break;
    }
    return "nothing";
}

namespace {

void wrong_type(const Setting& setting, std::string_view expected, Diagnostics& diagnostics) {
    diagnostics.error(setting, "wrong type: expected " + std::string(expected) + ", found " +
                                   std::string(type_name(setting)));
}

bool is_integer(const Setting& setting) {
    return setting.getType() == Setting::TypeInt || setting.getType() == Setting::TypeInt64;
}

long long integer_value(const Setting& setting) {
    if (setting.getType() == Setting::TypeInt64) {
        return static_cast<long long>(setting);
    }
    return static_cast<int>(setting);
}

std::string join(std::initializer_list<std::string_view> names) {
    std::string out;
    for (const std::string_view name : names) {
        out += out.empty() ? "" : ", ";
        out += name;
    }
    return out;
}

}  // namespace

const Setting* find_member(const Setting& group, const char* name) {
    if (!group.isGroup() || !group.exists(name)) {
        return nullptr;
    }
    return &group[name];
}

const Setting* require_member(const Setting& group, const char* name, Diagnostics& diagnostics) {
    const Setting* member = find_member(group, name);
    if (member == nullptr) {
        diagnostics.error_at(member_path(group, name), line_of(group), "missing required setting");
    }
    return member;
}

bool check_known(const Setting& member, std::initializer_list<std::string_view> known,
                 Diagnostics& diagnostics) {
    const std::string_view name = member.getName() != nullptr ? member.getName() : "";
    for (const std::string_view candidate : known) {
        if (candidate == name) {
            return true;
        }
    }
    diagnostics.error(member, "unknown setting (known here: " + join(known) + ")");
    return false;
}

std::optional<std::string> read_string(const Setting& setting, Diagnostics& diagnostics) {
    if (setting.getType() != Setting::TypeString) {
        wrong_type(setting, "a string", diagnostics);
        return std::nullopt;
    }
    return std::string(setting.c_str());
}

std::optional<bool> read_bool(const Setting& setting, Diagnostics& diagnostics) {
    if (setting.getType() != Setting::TypeBoolean) {
        wrong_type(setting, "a boolean (true or false)", diagnostics);
        return std::nullopt;
    }
    return static_cast<bool>(setting);
}

std::optional<long long> read_integer(const Setting& setting, Diagnostics& diagnostics) {
    if (!is_integer(setting)) {
        wrong_type(setting, "an integer", diagnostics);
        return std::nullopt;
    }
    return integer_value(setting);
}

std::optional<std::uint32_t> read_connection_limit(const Setting& setting,
                                                   Diagnostics& diagnostics) {
    constexpr long long kMaxLimit = 1'000'000;
    auto value = read_integer(setting, diagnostics);
    if (!value) {
        return std::nullopt;
    }
    if (*value < 1 || *value > kMaxLimit) {
        diagnostics.error(setting, "out of range: expected 1.." + std::to_string(kMaxLimit));
        return std::nullopt;
    }
    return static_cast<std::uint32_t>(*value);
}

std::optional<std::uint32_t> read_prefix_length(const Setting& setting, std::uint32_t max_bits,
                                                Diagnostics& diagnostics) {
    auto value = read_integer(setting, diagnostics);
    if (!value) {
        return std::nullopt;
    }
    if (*value < 1 || *value > static_cast<long long>(max_bits)) {
        diagnostics.error(setting, "out of range: expected 1.." + std::to_string(max_bits));
        return std::nullopt;
    }
    return static_cast<std::uint32_t>(*value);
}

std::optional<std::uint8_t> read_proxy_protocol(const Setting& setting, Diagnostics& diagnostics) {
    auto value = read_integer(setting, diagnostics);
    if (!value) {
        return std::nullopt;
    }
    if (*value != 1 && *value != 2) {
        diagnostics.error(setting, "out of range: expected 1 or 2 (the PROXY protocol version)");
        return std::nullopt;
    }
    return static_cast<std::uint8_t>(*value);
}

std::optional<std::uint16_t> read_port(const Setting& setting, Diagnostics& diagnostics) {
    Result<std::uint16_t> port = Error{};
    if (setting.getType() == Setting::TypeString) {
        port = parse_port(setting.c_str());
    } else if (is_integer(setting)) {
        port = check_port(integer_value(setting));
    } else {
        wrong_type(setting, "a port (a string such as \"443\" or an integer)", diagnostics);
        return std::nullopt;
    }
    if (!port) {
        diagnostics.error(setting, port.error().message);
        return std::nullopt;
    }
    return port.value();
}

std::optional<std::string> read_host(const Setting& setting, Diagnostics& diagnostics) {
    std::optional<std::string> text = read_string(setting, diagnostics);
    if (!text) {
        return std::nullopt;
    }
    Result<std::string> host = parse_host(*text);
    if (!host) {
        diagnostics.error(setting, host.error().message);
        return std::nullopt;
    }
    return std::move(host.value());
}

std::optional<std::chrono::seconds> read_seconds(const Setting& setting, Diagnostics& diagnostics) {
    if (!is_integer(setting)) {
        wrong_type(setting, "a whole number of seconds", diagnostics);
        return std::nullopt;
    }
    const long long value = integer_value(setting);
    if (value < 1 || value > kMaxSeconds) {
        diagnostics.error(setting, "bad duration " + std::to_string(value) + ": expected 1.." +
                                       std::to_string(kMaxSeconds) + " seconds");
        return std::nullopt;
    }
    return std::chrono::seconds{value};
}

std::optional<std::uint64_t> read_size(const Setting& setting, Diagnostics& diagnostics) {
    if (is_integer(setting)) {
        const long long value = integer_value(setting);
        if (value < 1) {
            diagnostics.error(setting,
                              "bad size " + std::to_string(value) + ": must be at least 1 byte");
            return std::nullopt;
        }
        return static_cast<std::uint64_t>(value);
    }
    if (setting.getType() != Setting::TypeString) {
        wrong_type(setting, "a size (a string such as \"20M\" or an integer)", diagnostics);
        return std::nullopt;
    }
    Result<std::uint64_t> size = parse_size(setting.c_str());
    if (!size) {
        diagnostics.error(setting, size.error().message);
        return std::nullopt;
    }
    return size.value();
}

std::optional<std::vector<std::string>> read_string_list(const Setting& setting,
                                                         Diagnostics& diagnostics) {
    if (!setting.isArray() && !setting.isList()) {
        wrong_type(setting, "an array of strings [ \"...\", ... ]", diagnostics);
        return std::nullopt;
    }
    std::vector<std::string> values;
    bool ok = true;
    for (int i = 0; i < setting.getLength(); ++i) {
        std::optional<std::string> value = read_string(setting[i], diagnostics);
        if (value) {
            values.push_back(std::move(*value));
        } else {
            ok = false;
        }
    }
    if (!ok) {
        return std::nullopt;
    }
    return values;
}

std::optional<std::vector<Network>> read_network_list(const Setting& setting,
                                                      Diagnostics& diagnostics) {
    if (!setting.isArray() && !setting.isList()) {
        wrong_type(setting, "an array of networks [ \"198.18.0.0/15\", \"::1/128\" ]", diagnostics);
        return std::nullopt;
    }
    std::vector<Network> networks;
    bool ok = true;
    for (int i = 0; i < setting.getLength(); ++i) {
        std::optional<std::string> text = read_string(setting[i], diagnostics);
        if (!text) {
            ok = false;
            continue;
        }
        if (auto network = parse_network(*text)) {
            networks.push_back(std::move(*network));
        } else {
            diagnostics.error(setting[i], "not a network: \"" + *text +
                                              "\" (expected an address, or address/prefix "
                                              "such as 198.18.0.0/15 or ::1/128)");
            ok = false;
        }
    }
    if (!ok) {
        return std::nullopt;
    }
    return networks;
}

std::optional<std::vector<const Setting*>> read_group_list(const Setting& setting,
                                                           Diagnostics& diagnostics) {
    const bool empty_array = setting.isArray() && setting.getLength() == 0;
    if (!setting.isList() && !empty_array) {
        wrong_type(setting, "a list of groups ( { ... }, ... )", diagnostics);
        return std::nullopt;
    }
    std::vector<const Setting*> groups;
    for (int i = 0; i < setting.getLength(); ++i) {
        const Setting& element = setting[i];
        if (!element.isGroup()) {
            wrong_type(element, "a group { ... }", diagnostics);
            continue;
        }
        groups.push_back(&element);
    }
    return groups;
}

std::optional<std::vector<const Setting*>> read_nonempty_groups(const Setting& setting,
                                                                std::string_view what,
                                                                Diagnostics& diagnostics) {
    std::optional<std::vector<const Setting*>> groups = read_group_list(setting, diagnostics);
    if (groups && setting.getLength() == 0) {
        diagnostics.error(setting, "empty list: at least one " + std::string(what) + " is needed");
        return std::nullopt;
    }
    return groups;
}

namespace {

// sslh listen options that have no meaning here, and why (shown in the notice).
struct IgnoredOption {
    std::string_view name;
    std::string_view reason;
};

constexpr IgnoredOption kIgnoredListenOptions[] = {
    {"keepalive", "TCP keepalive is not configurable in splicer"},
    {"transparent", "set transparent at the top level or on a protocols entry"},
};

}  // namespace

std::optional<Listener> read_listener(const Setting& group, bool sslh_options,
                                      Diagnostics& diagnostics) {
    const std::size_t errors_before = diagnostics.error_count();
    Listener listener;
    listener.line = line_of(group);
    for (int i = 0; i < group.getLength(); ++i) {
        const Setting& member = group[i];
        const std::string_view name = member.getName();
        if (name == "host") {
            if (auto host = read_host(member, diagnostics)) {
                listener.address.host = std::move(*host);
            }
            continue;
        }
        if (name == "port") {
            if (auto port = read_port(member, diagnostics)) {
                listener.address.port = *port;
            }
            continue;
        }
        if (name == "max_connections") {
            // sslh's per-listener limit; splicer's http listeners take it too.
            listener.max_connections = read_connection_limit(member, diagnostics);
            continue;
        }
        if (name == "proxyprotocol") {
            // On a listener sslh takes a boolean (on a rule, a version: read_proxy_protocol).
            if (auto accept = read_bool(member, diagnostics)) {
                listener.proxy_protocol = *accept;
            }
            continue;
        }
        if (name == "trusted_proxies") {
            if (auto networks = read_network_list(member, diagnostics)) {
                listener.trusted_proxies = std::move(*networks);
            }
            continue;
        }
        if (sslh_options) {
            if (name == "is_udp") {
                // `is_udp: false` is what splicer does anyway; only a UDP listener is refused.
                if (auto udp = read_bool(member, diagnostics); udp && *udp) {
                    diagnostics.error(member, "UDP is not supported");
                }
                continue;
            }
            bool ignored = false;
            for (const IgnoredOption& option : kIgnoredListenOptions) {
                if (name == option.name) {
                    diagnostics.notice(member,
                                       "sslh setting ignored: " + std::string(option.reason));
                    ignored = true;
                }
            }
            if (ignored) {
                continue;
            }
            check_known(member,
                        {"host", "port", "is_udp", "keepalive", "transparent", "max_connections",
                         "proxyprotocol", "trusted_proxies"},
                        diagnostics);
            continue;
        }
        check_known(member, {"host", "port", "max_connections", "proxyprotocol", "trusted_proxies"},
                    diagnostics);
    }
    require_member(group, "host", diagnostics);
    require_member(group, "port", diagnostics);
    if (!listener.trusted_proxies.empty() && !listener.proxy_protocol) {
        diagnostics.error_at(path_of(group) + ".trusted_proxies", listener.line,
                             "trusted_proxies needs proxyprotocol: true on the same listener");
    }
    if (diagnostics.error_count() != errors_before) {
        return std::nullopt;
    }
    return listener;
}

void check_duplicate_listeners(const std::vector<Listener>& earlier, const Listener& added,
                               const std::string& setting, Diagnostics& diagnostics) {
    for (const Listener& listener : earlier) {
        if (listener.address.host == added.address.host &&
            listener.address.port == added.address.port) {
            diagnostics.error_at(setting, added.line,
                                 "already listening on " + to_string(added.address) + " (line " +
                                     std::to_string(listener.line) + ")");
            return;
        }
    }
}

}  // namespace splicer::config::detail
