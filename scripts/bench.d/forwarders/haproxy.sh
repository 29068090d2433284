# HAProxy 2.6 in tcp mode: waits for a complete ClientHello (req.ssl_hello_type), routes
# SNI $sni_name to the TLS backend and anything that is not TLS to the plain backend, moving
# bytes with splice(2) both ways. Port 80 in http mode as a reverse proxy, and $term_port
# terminating TLS for $term_name in front of the same backend.
fwd_tls=$forwarder_ip:443
fwd_plain=$forwarder_ip:443
fwd_http=$forwarder_ip:80
fwd_term=$forwarder_ip:$term_port
fwd_configure() {
  local dir=$1
  cat >"$dir/haproxy.cfg" <<CONF
global
    # 2 fds per connection plus a pipe (2 fds) per 4 for splice: fits the 20000-fd limit
    maxconn 7000
defaults
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend tls_or_not
    mode tcp
    bind $forwarder_ip:443 backlog 4096
    option splice-request
    option splice-response
    tcp-request inspect-delay 2s
    acl tls req.ssl_hello_type 1
    tcp-request content accept if tls
    tcp-request content accept if !tls { req.len gt 0 }
    use_backend tls if { req.ssl_sni -i $sni_name }
    default_backend plain
backend tls
    mode tcp
    server tls $backend_ip:$tls_port
backend plain
    mode tcp
    server plain $backend_ip:$plain_port
frontend web
    mode http
    bind $forwarder_ip:80 backlog 4096
    default_backend web
frontend term
    mode http
    bind $forwarder_ip:$term_port ssl crt $term_dir/both.pem backlog 4096
    default_backend web
backend web
    mode http
    http-reuse always
    server web $backend_ip:$http_port
CONF
  fwd_command=(haproxy -db -f "$dir/haproxy.cfg")
}
