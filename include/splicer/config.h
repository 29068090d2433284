#pragma once
// The typed configuration. A libconfig file in sslh's schema (a superset of it) is loaded into
// Config by config::load_file / config::load_string; see README.md, "Configuration".

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace splicer::config {

enum class SpliceMode { automatic, sockmap, splice, copy };

// What a rule's probe recognises. Names are sslh's protocol names.
enum class ProbeKind { tls, xmpp, ssh, http, openvpn, regex, anyprot };

std::string_view to_string(SpliceMode mode);
std::string_view to_string(ProbeKind kind);
std::optional<SpliceMode> splice_mode_from_string(std::string_view name);
std::optional<ProbeKind> probe_kind_from_string(std::string_view name);

// A host (IPv4 literal, IPv6 literal without brackets, or a name) and a port.
struct Endpoint {
    std::string host;
    std::uint16_t port = 0;
};
// "127.0.0.1:5223", "[::1]:443".
std::string to_string(const Endpoint& endpoint);

// A network written "198.18.0.0/15" or "::1/128" (a bare address: the host alone).
struct Network {
    std::string text;                        // as written, for `splicer check` and diagnostics
    int family = 0;                          // AF_INET or AF_INET6
    std::array<std::uint8_t, 16> address{};  // network order; IPv4 in the first 4 bytes
    std::uint32_t prefix_length = 0;         // 0..32 or 0..128
};

// Parses "a.b.c.d/N" (N 0..32), "ipv6/N" (N 0..128) or a bare address (the host alone,
// /32 or /128); nullopt if it is none of these or has bits set past its prefix
// ("10.0.0.1/8" is a typo more often than a network, so it is refused).
std::optional<Network> parse_network(std::string_view text);
// Whether `address` (family, network-order bytes) lies inside `network`. An IPv4-mapped IPv6
// address (::ffff:a.b.c.d) is matched as the IPv4 address it carries.
bool network_contains(const Network& network, int family, const std::uint8_t* address);

struct Listener {
    Endpoint address;
    // Connections held at once through this listener (sslh's per-listener max_connections);
    // none: only Config::max_connections applies.
    std::optional<std::uint32_t> max_connections;
    // sslh `proxyprotocol: true`: every connection starts with a PROXY protocol header (v1
    // or v2, told apart by its first bytes) from a balancer; its source then stands for the
    // client (README "Accepting PROXY from a balancer").
    bool proxy_protocol = false;
    // Peers allowed to send that header; empty: any peer. Others are closed unserved.
    std::vector<Network> trusted_proxies;
    int line = 0;  // where it was configured (in the embedded default text for the default)
};

// One entry of `protocols`: a probe, its extra conditions and the backend it leads to.
struct Rule {
    std::string name;  // as written, e.g. "tls"; on-timeout refers to it
    ProbeKind probe = ProbeKind::anyprot;
    Endpoint backend;
    // Lowercase, without a trailing dot; "*.example.com" matches any name below example.com.
    std::vector<std::string> sni_hostnames;
    std::vector<std::string> alpn_protocols;
    std::vector<std::string> regex_patterns;  // PCRE2 syntax, as in sslh
    // sslh `proxyprotocol`: the PROXY protocol version (1 or 2) written to the backend before
    // any client byte; 0: none.
    std::uint8_t proxy_protocol = 0;
    // sslh `transparent` on a protocols entry: set, it decides for this rule whether the
    // backend connection leaves from the client's own address and port; unset, the
    // top-level Config::transparent does (README "Transparent mode").
    std::optional<bool> transparent;
    // `terminate: true` (tls rules only): splicer answers the ClientHello itself with the
    // certificates of the `https` section, and the decrypted requests go through the https
    // routes (Config::https); such a rule has no host or port of its own.
    bool terminate = false;
    int line = 0;
};

// How an http route reaches its backend: `backend: "host:port"` or "http://host:port" is
// plain HTTP; "https://host:port" (https routes only) is TLS, with SNI from the request's
// Host, as nginx's proxy_ssl_server_name on.
enum class BackendScheme { http, https };

struct HttpRoute {
    // Lowercase, without port or trailing dot: exact names, "*.suffix" or "*".
    std::vector<std::string> hosts;
    std::string path_prefix = "/";
    Endpoint backend;
    std::optional<std::string> set_host;
    bool redirect_https = false;
    std::optional<std::uint64_t> max_body_size;  // overrides its section's HttpLimits
    // PROXY protocol version (1 or 2) written first on every backend connection; 0: none.
    std::uint8_t proxy_protocol = 0;
    // Backend connections leave from the client's address and port (nginx's `proxy_bind
    // $remote_addr transparent`). Per route only: the top-level `transparent` is sslh's and
    // covers the port-443 rules.
    bool transparent = false;
    // https routes only. The scheme of `backend`, and for https:// whether the backend's
    // certificate is verified (on unless the route says `verify: false`, nginx's
    // proxy_ssl_verify off) and against which CA file (unset: the system store).
    BackendScheme backend_scheme = BackendScheme::http;
    bool verify = true;
    std::optional<std::string> ca_file;
    int ca_file_line = 0;
    int line = 0;
};

// What bounds one proxied HTTP/1.1 connection, the same settings (and defaults) in the `http`
// section (port 80) and the `https` one (terminated TLS): one reader, one proxy.
struct HttpLimits {
    std::uint64_t max_body_size = 20ULL * 1024 * 1024;  // a route may override it
    std::chrono::seconds header_timeout{10};   // a request head (and a TLS handshake) must arrive
    std::chrono::seconds idle_timeout{60};     // between requests, and a client that stops reading
    std::chrono::seconds backend_timeout{60};  // a backend that neither answers nor reads
    // Idle backend connections kept for reuse, per backend (address, and for an https://
    // backend its TLS name); 0: a new connection per request (daemon/backend_pool.h).
    std::uint32_t keepalive_connections = 32;
    std::chrono::seconds keepalive_timeout{30};  // how long an idle backend connection is kept
};
inline constexpr std::uint32_t kMaxKeepaliveConnections = 1024;

struct HttpConfig {
    std::vector<Listener> listeners;
    std::vector<HttpRoute> routes;
    HttpLimits limits;
};

// One `https.certificates` entry: PEM files as written (relative paths are relative to the
// daemon's working directory, as nginx's are to its prefix), with where each was set, so
// `splicer check` and a failed reload can name the setting and line.
struct CertificateConfig {
    std::string certificate;    // the leaf, then its intermediates (full chain)
    std::string key;            // unencrypted private key
    std::string ocsp_response;  // DER OCSP response to staple; empty: none
    std::string path;           // "https.certificates.[0]"
    int line = 0;               // of the entry
    int certificate_line = 0;
    int key_line = 0;
    int ocsp_response_line = 0;
};

// `https: { ... }`: TLS termination for the rules marked `terminate` (README "TLS
// termination"). No listeners of its own: terminated connections arrive on the 443 listeners.
// The decrypted requests go through `routes` as port 80's go through http.routes, with
// X-Forwarded-Proto https.
struct HttpsConfig {
    std::vector<CertificateConfig> certificates;  // the first is the default (no SNI match)
    std::chrono::seconds ticket_key_rotation{3600};
    std::vector<HttpRoute> routes;
    HttpLimits limits;
    int line = 0;
};

// `metrics: { host: "127.0.0.1"; port: N; };`: the Prometheus endpoint (README
// "Monitoring"). Absent: no endpoint (the default).
struct MetricsConfig {
    Endpoint address;
    int line = 0;
};

inline constexpr std::uint32_t kDefaultMaxConnections = 16384;

struct Config {
    std::vector<Listener> listeners;
    std::vector<Rule> rules;
    // sslh `timeout`: how long a connection may stay unidentified before on-timeout applies.
    std::chrono::milliseconds probe_timeout{2000};
    // sslh `on-timeout`: index into `rules` of the first rule of that name; none -> close.
    std::optional<std::size_t> on_timeout_rule;
    SpliceMode splice_mode = SpliceMode::automatic;
    std::chrono::seconds connect_timeout{5};
    // A spliced pair whose bytes wait for a peer that takes none of them for this long is
    // ended (RSTs, end=stalled); an idle pair, with nothing waiting, never is. 0: off.
    std::chrono::seconds stall_timeout{120};
    std::optional<std::string> user;  // sslh `user`: whom to run as after start-up
    // sslh `transparent`: backend connections of the port-443 rules leave from the client's
    // own address and port (IP_TRANSPARENT), unless a rule says otherwise. Needs routing
    // that brings the backends' replies back (scripts/transparent-setup) and keeps
    // CAP_NET_RAW after the privilege drop.
    bool transparent = false;
    // Connections held at once (probing, connecting or spliced), all listeners together; the
    // newest beyond it is refused (closed). RLIMIT_NOFILE is raised to fit it at start, or
    // the start fails. Unset: kDefaultMaxConnections, lowered to what the fd hard limit
    // allows when that cannot be raised (logged).
    std::optional<std::uint32_t> max_connections;
    // Connections still being probed (nothing routed yet) at once: a flood of silent or
    // trickling clients cannot take every slot from the ones that speak.
    std::uint32_t max_probing = 1024;
    // Connections held at once from one client (below), enforced only under pressure: while
    // half of max_connections are held, or half of max_probing are probing. An idle daemon
    // serves a lone busy client (a NAT, a load test) in full; a loaded one refuses the
    // clients over their limit first (limits/admission.h).
    std::uint32_t max_connections_per_client = 1024;
    // What one client is: an IPv4 address cut to its first N bits, an IPv6 one to its first
    // N bits (Postfix's smtpd_client_ipv{4,6}_prefix_length, HAProxy's ipmask(32,64)). One
    // host on IPv6 gets a /64, so a /128 key would let it multiply its limit by 2^64.
    std::uint32_t client_ipv4_prefix_length = 32;  // 1..32
    std::uint32_t client_ipv6_prefix_length = 64;  // 1..128
    // Splice plane only: pipes held at once (a direction holds one only while bytes are in
    // it); over it a round is copied through a buffer instead. Unset: limits::default_pipes.
    std::optional<std::uint32_t> max_pipes;
    std::optional<HttpConfig> http;
    std::optional<HttpsConfig> https;
    std::optional<MetricsConfig> metrics;
    // Bytes of log lines that may wait for stderr (log/line_queue.h); past it lines are
    // dropped and counted, never waited for.
    std::uint64_t log_buffer_size = 1024 * 1024;
    // io_uring event loops, one per thread, each pinned to one CPU with its own listening
    // sockets (SO_REUSEPORT when more than one); limits stay global. Unset: the CPUs splicer
    // may run on (sched_getaffinity), at most kMaxWorkers.
    std::optional<std::uint32_t> workers;
};

// More loops than this is a typo, not a machine: `workers` above it is an error.
inline constexpr std::uint32_t kMaxWorkers = 1024;

struct Diagnostic {
    enum class Severity { error, notice };
    Severity severity = Severity::error;
    int line = 0;         // 0 when the problem has no line (e.g. a missing setting)
    std::string setting;  // path such as "protocols.[1].port"
    std::string message;
};

// "FILE:LINE: error: SETTING: MESSAGE" (or "notice").
std::string format(const Diagnostic& diagnostic, std::string_view source_name);

struct LoadResult {
    std::optional<Config> config;  // set when there is no error
    std::vector<Diagnostic> diagnostics;
    [[nodiscard]] bool ok() const { return config.has_value(); }
};

// Parses libconfig text; `source_name` only labels diagnostics.
LoadResult load_string(std::string_view text, std::string_view source_name = "<config>");
LoadResult load_file(const std::string& path);

// The configuration used when no file is given: Snikket behind splicer (DESIGN.md).
std::string_view embedded_default_text();

// Human-readable listing of listeners and rules in order, as `splicer check` prints it.
std::string describe(const Config& config);

// Whether `rule`'s backend connections are transparent: its own setting, else the global one.
bool transparent_for(const Config& config, const Rule& rule);
// Whether anything in `config` (a rule or an http route) connects transparently, and so
// needs CAP_NET_RAW.
bool uses_transparent(const Config& config);

// sslh configurations end lists with a trailing comma, which Debian 12's libconfig 1.5
// rejects. Returns `text` with a comma directly before `)` or `]` (ignoring whitespace and
// comments between them) removed, outside strings and comments, keeping every newline so
// libconfig's line numbers stay right.
std::string drop_trailing_commas(std::string_view text);

}  // namespace splicer::config
