#include "http/canned_response.h"

#include "http/route_match.h"

namespace splicer::http {

std::string_view status_reason(int status) {
    switch (status) {
        case 100: return "Continue";
        case 301: return "Moved Permanently";
        case 400: return "Bad Request";
        case 404: return "Not Found";
        case 408: return "Request Timeout";
        case 413: return "Content Too Large";
        case 414: return "URI Too Long";
        case 431: return "Request Header Fields Too Large";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        default: return "Error";
    }
}

namespace {

std::string response(int status, std::string_view extra_fields) {
    const std::string body =
        std::to_string(status) + " " + std::string(status_reason(status)) + "\n";
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " +
                      std::string(status_reason(status)) + "\r\n";
    out.append(extra_fields);
    out.append("Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
               "\r\nConnection: close\r\n\r\n");
    out.append(body);
    return out;
}

}  // namespace

std::string error_response(int status) { return response(status, ""); }

std::string redirect_to_https(std::string_view host, std::string_view target) {
    std::string location = "https://" + host_without_port(host);
    location.append(target.starts_with("/") ? target : "/");
    return response(301, "Location: " + location + "\r\n");
}

bool is_acme_challenge(std::string_view target) {
    return target.starts_with("/.well-known/acme-challenge/");
}

}  // namespace splicer::http
