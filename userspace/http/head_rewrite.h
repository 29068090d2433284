#pragma once
// The heads splicer writes: the request it sends upstream and the response head it relays to
// the client. Both drop the hop-by-hop fields (RFC 9110 s. 7.6.1: Connection and every field
// it names, Keep-Alive, TE, Trailer, Proxy-Connection, Upgrade unless upgrading) and pass the
// start line and every other field through byte for byte, in order.
//
// Work is linear in the head: the Connection fields are parsed once per head into a sorted
// list, and each field name is then looked up in it (a 32 KiB head listing thousands of
// names used to cost fields x names compares, 0.3-0.4 s of the loop).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/message_head.h"

namespace splicer::http {

struct UpstreamOptions {
    std::string client_address;           // appended to X-Forwarded-For
    std::optional<std::string> set_host;  // replaces Host when set
    // splicer answers "Expect: 100-continue" itself (as nginx does), so it is not forwarded.
    bool drop_expect = false;
    // X-Forwarded-Proto: "http" on port 80, "https" for a request splicer decrypted.
    std::string_view forwarded_proto = "http";
    // The backend connection may serve further requests (daemon/backend_pool.h): no
    // "Connection: close" (HTTP/1.1 connections persist by default). The client's own
    // Connection field is hop-by-hop and never goes up.
    bool keep_alive = false;
};

// The request head for the backend: "Connection: upgrade" with the client's Upgrade for an
// upgrade, else "Connection: close" unless options.keep_alive (a pooled backend connection).
// An absolute-form target is sent in origin-form, with its authority as Host (RFC 9112
// s. 3.2.2), unless set_host says otherwise. Fields a client could forge to pose as another
// client, scheme, host or port (kForwardingFields) are dropped: splicer is the edge.
std::string upstream_request_head(const MessageHead& request, const UpstreamOptions& options);

// The response head for the client: "Connection: close" when splicer closes the client
// after this response, "Connection: upgrade" and Upgrade kept for a 101.
std::string client_response_head(const MessageHead& response, bool close_client);

// The fields of one message that must not cross the proxy. Built once per head (it points
// into the head's Connection values, so it must not outlive the head); each drops() is a
// binary search, so a head costs O((fields + names) log names), never fields x names.
class HopByHop {
public:
    HopByHop(const MessageHead& head, bool keep_upgrade);
    [[nodiscard]] bool drops(std::string_view name) const;
    // The names the message's Connection fields list, in case-insensitive order.
    [[nodiscard]] const std::vector<std::string_view>& connection_names() const { return named_; }

private:
    std::vector<std::string_view> named_;
    bool keep_upgrade_;
};

// True for a field that states where a request came from or how it was sent (Forwarded,
// X-Real-IP, X-Forwarded-Port, True-Client-IP, ...): only the edge proxy may say that.
bool is_forwarding_field(std::string_view name);

}  // namespace splicer::http
