# Three network namespaces joined by two veth pairs, the addressing tests/support/netns.cpp
# uses:   client 198.18.0.1 --veth-- 198.18.0.2 forwarder 198.18.1.2 --veth-- 198.18.1.1 backend
# The forwarder namespace routes between the two links (ip_forward), which is the "direct"
# path: no forwarder process, only the kernel. Names carry this run's pid, and the veth ends
# are created inside their namespaces, so a concurrent run (or the test suite) cannot collide.

readonly client_ip=198.18.0.1 forwarder_ip=198.18.0.2 backend_ip=198.18.1.1

topology_up() {
  local prefix=$1
  ns_client=${prefix}c ns_forwarder=${prefix}f ns_backend=${prefix}b
  ip netns add "$ns_client"
  ip netns add "$ns_forwarder"
  ip netns add "$ns_backend"
  ip link add a0 netns "$ns_client" type veth peer name a1 netns "$ns_forwarder"
  ip link add b0 netns "$ns_backend" type veth peer name b1 netns "$ns_forwarder"
  ip -n "$ns_client" addr add "$client_ip/24" dev a0
  ip -n "$ns_forwarder" addr add "$forwarder_ip/24" dev a1
  ip -n "$ns_forwarder" addr add 198.18.1.2/24 dev b1
  ip -n "$ns_backend" addr add "$backend_ip/24" dev b0
  local ns
  for ns in "$ns_client" "$ns_forwarder" "$ns_backend"; do
    ip -n "$ns" link set lo up
  done
  ip -n "$ns_client" link set a0 up
  ip -n "$ns_forwarder" link set a1 up
  ip -n "$ns_forwarder" link set b1 up
  ip -n "$ns_backend" link set b0 up
  ip -n "$ns_client" route add default via "$forwarder_ip"
  ip -n "$ns_backend" route add default via 198.18.1.2
  ip netns exec "$ns_forwarder" sysctl -qw net.ipv4.ip_forward=1
  # Thousands of short TLS connections from one client address: reuse TIME_WAIT ports.
  ip netns exec "$ns_client" sysctl -qw net.ipv4.tcp_tw_reuse=1
  ip netns exec "$ns_client" sysctl -qw net.ipv4.ip_local_port_range="10000 65000"
  ip netns exec "$ns_forwarder" sysctl -qw net.ipv4.ip_local_port_range="10000 65000"
}

# Deleting a namespace deletes its veth ends; the peers go with them.
topology_down() {
  local ns
  for ns in "${ns_client:-}" "${ns_forwarder:-}" "${ns_backend:-}"; do
    [[ -n $ns ]] && ip netns del "$ns" 2>/dev/null
  done
  return 0
}

# wait_listening NS IP:PORT [SECONDS]: true once something listens there.
wait_listening() {
  local ns=$1 address=$2 seconds=${3:-5} i
  for ((i = 0; i < seconds * 20; i++)); do
    if ip netns exec "$ns" ss -Hltn "src $address" | grep -q .; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}
