# socat, fork per connection, plain byte forwarding. It cannot route by SNI, so it gets one
# listener per backend (443 to TLS, $plain_port to plain): an upper bound for the simplest
# userspace copy. No HTTP proxy: port 80 is n/a.
fwd_tls=$forwarder_ip:443
fwd_plain=$forwarder_ip:$plain_port
fwd_http=
fwd_configure() {
  fwd_command=(sh -c "socat TCP-LISTEN:443,bind=$forwarder_ip,fork,reuseaddr,backlog=4096 TCP:$backend_ip:$tls_port &
    exec socat TCP-LISTEN:$plain_port,bind=$forwarder_ip,fork,reuseaddr,backlog=4096 TCP:$backend_ip:$plain_port")
}
