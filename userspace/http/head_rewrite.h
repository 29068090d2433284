#pragma once
// The heads splicer writes: the request it sends upstream and the response head it relays to
// the client. Both drop the hop-by-hop fields (RFC 9110 s. 7.6.1: Connection and every field
// it names, Keep-Alive, TE, Trailer, Proxy-Connection, Upgrade unless upgrading) and pass the
// start line and every other field through byte for byte, in order.

#include <optional>
#include <string>
#include <string_view>

#include "http/message_head.h"

namespace splicer::http {

struct UpstreamOptions {
    std::string client_address;          // appended to X-Forwarded-For
    std::optional<std::string> set_host;  // replaces Host when set
    // splicer answers "Expect: 100-continue" itself (as nginx does), so it is not forwarded.
    bool drop_expect = false;
};

// The request head for the backend. One backend connection serves one request, so it says
// "Connection: close", or "Connection: upgrade" with the client's Upgrade for an upgrade.
std::string upstream_request_head(const MessageHead& request, const UpstreamOptions& options);

// The response head for the client: "Connection: close" when splicer closes the client
// after this response, "Connection: upgrade" and Upgrade kept for a 101.
std::string client_response_head(const MessageHead& response, bool close_client);

// True when `name` must not cross the proxy, given the request's or response's own fields.
bool is_hop_by_hop(const MessageHead& head, std::string_view name, bool keep_upgrade);

}  // namespace splicer::http
