# sslh from Debian (1.20), one of its binaries (forwarders/sslh-*.sh set sslh_binary):
# SNI $sni_name to the TLS backend, anything else (anyprot) to the plain backend. sslh is
# no HTTP proxy: port 80 is n/a.
fwd_tls=$forwarder_ip:443
fwd_plain=$forwarder_ip:443
fwd_http=
fwd_configure() {
  local dir=$1
  cat >"$dir/sslh.conf" <<CONF
foreground: true;
verbose: 0;
timeout: 2;
listen: ( { host: "$forwarder_ip"; port: "443"; } );
protocols: (
    { name: "tls"; host: "$backend_ip"; port: "$tls_port"; sni_hostnames: [ "$sni_name" ]; },
    { name: "anyprot"; host: "$backend_ip"; port: "$plain_port"; }
);
CONF
  fwd_command=("$sslh_binary" "-F$dir/sslh.conf")
}
