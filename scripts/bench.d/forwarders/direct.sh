# No forwarder: the client talks to the backends across the forwarder namespace's kernel
# routing. The limit every forwarder is measured against; for the terminating workloads, the
# backend nginx answering TLS itself (no proxy hop).
fwd_tls=$backend_ip:$tls_port
fwd_term=$backend_ip:$tls_port
fwd_plain=$backend_ip:$plain_port
fwd_http=$backend_ip:$http_port
fwd_configure() { fwd_command=(); }
