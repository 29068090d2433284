# splicer on one data plane (forwarders/splicer-*.sh set splicer_plane and source this):
# SNI $sni_name to the TLS backend, SNI $term_name terminated by splicer and proxied to the
# HTTP backend, anything else to the plain backend, and the port 80 HTTP proxy to the HTTP
# backend (the DESIGN.md `http` schema; a daemon that does not serve port 80 yet leaves that
# workload "failed"). Termination does not depend on the plane: every plane runs it.
fwd_tls=$forwarder_ip:443
fwd_plain=$forwarder_ip:443
fwd_http=$forwarder_ip:80
fwd_term=$forwarder_ip:443
fwd_configure() {
  local dir=$1
  # One client address opens every connection of the idle workload. SPLICER_BENCH_WORKERS
  # sets `workers` (unset: splicer's default, one loop per CPU it may run on).
  cat >"$dir/splicer.conf" <<CONF
max_connections_per_client: 20000;
${SPLICER_BENCH_WORKERS:+workers: $SPLICER_BENCH_WORKERS;}
listen: ( { host: "$forwarder_ip"; port: "443"; } );
protocols: (
    { name: "tls"; sni_hostnames: [ "$term_name" ]; terminate: true; },
    { name: "tls"; host: "$backend_ip"; port: "$tls_port"; sni_hostnames: [ "$sni_name" ]; },
    { name: "anyprot"; host: "$backend_ip"; port: "$plain_port"; }
);
http: {
    listen: ( { host: "$forwarder_ip"; port: "80"; } );
    keepalive_connections: 32;   # the default floor (the pool keeps what the load uses), as nginx's keepalive 32 and HAProxy's reuse
    routes: ( { hosts: [ "*" ]; backend: "$backend_ip:$http_port"; } );
};
https: {
    certificates: ( { certificate: "$term_dir/cert.pem"; key: "$term_dir/key.pem"; } );
    routes: ( { hosts: [ "*" ]; backend: "$backend_ip:$http_port"; } );
};
CONF
  fwd_command=("$splicer_binary" run --config "$dir/splicer.conf" --splice-mode "$splicer_plane"
    --pin-dir "$pin_root-$splicer_plane")
}

# After each workload: the daemon's counters (flow-control trips, bytes redirected or
# passed to the copy) into the logs, to explain the figures.
fwd_after_workload() {
  # In the daemon's mount namespace: `ip netns exec` gave it a /sys (and bpffs) of its own.
  nsenter -t "$fwd_pid" -m "$splicer_binary" stats --pin-dir "$pin_root-$splicer_plane" \
    >"$logs/$fwd-stats-$1.log" 2>&1 || true
}
