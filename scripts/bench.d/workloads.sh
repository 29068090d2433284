# The workloads, one function each, run against the current forwarder ($fwd, its process
# $fwd_pid or empty for direct, its addresses $fwd_tls $fwd_plain $fwd_http). Each appends
# rows "forwarder,workload,metric,value,status" to $csv; status is ok, partial (the run
# stopped short: value says how far it got), failed or n/a. Every client runs under
# `timeout`, so a stalled forwarder costs a bounded time.

workloads=(bulk cpu tls_new tls_keepalive pingpong idle slowread neverread http80
  tls_term_new tls_term_keepalive tls_term_idle)  # --workloads

row() { echo "$fwd,$1,$2,$3,$4" >>"$csv"; }

# fail_workload WORKLOAD STATUS: the workload produced no figure (status failed or n/a).
fail_workload() { row "$1" status "" "$2"; }

calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

# in_client_resolving IP COMMAND...: runs COMMAND in the client namespace with /etc/hosts naming
# $sni_name and $term_name as the address $1 (a private mount namespace: the host's /etc/hosts
# is untouched), so TLS clients send the SNI the forwarders route on.
in_client_resolving() {
  local address=$1
  shift
  echo "$address $sni_name $term_name" >"$work/hosts"
  ip netns exec "$ns_client" unshare -m sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' \
    "$work/hosts" "$@"
}

# --- 1 and 2: bulk throughput (iperf3) and the CPU it costs --------------------------------
workload_bulk() {
  local log=$logs/$fwd-bulk.log
  if ! start_plain_backend "$log.server" iperf3 -s -p "$plain_port" -B "$backend_ip"; then
    fail_workload bulk failed
    fail_workload cpu failed
    return
  fi
  local cpu_before=0 system_before softirq_before
  [[ -n $fwd_pid ]] && cpu_before=$(forwarder_cpu_usec "$fwd_pid")
  read -r system_before softirq_before < <(machine_ticks)
  local run streams direction bytes_total=0 json gbps bytes length=(-t "$bulk_seconds")
  [[ -n $bulk_bytes ]] && length=(-n "$bulk_bytes")
  for run in "${bulk_runs[@]}"; do
    read -r streams direction <<<"$run"
    local reverse=()
    [[ $direction == down ]] && reverse=(-R)
    json=$(ip netns exec "$ns_client" timeout $((bulk_seconds + 15)) iperf3 -J \
      -c "${fwd_plain%:*}" -p "${fwd_plain##*:}" "${length[@]}" -P "$streams" \
      --connect-timeout 3000 "${reverse[@]}" 2>>"$log") || true
    echo "$json" >>"$log"
    gbps=$(jq -r '.end.sum_received.bits_per_second // empty' <<<"$json" 2>/dev/null || true)
    bytes=$(jq -r '.end.sum_received.bytes // empty' <<<"$json" 2>/dev/null || true)
    if [[ -n $gbps && ${bytes:-0} != 0 ]]; then
      row bulk "gbps_${streams}_$direction" "$(calc "$gbps / 1e9")" ok
      bytes_total=$((bytes_total + ${bytes%.*}))
    else
      row bulk "gbps_${streams}_$direction" "" failed
    fi
  done
  sleep 0.3  # fork-per-connection children exit and are reaped into their parent's times
  local cpu_after=0 system_after softirq_after
  [[ -n $fwd_pid ]] && cpu_after=$(forwarder_cpu_usec "$fwd_pid")
  read -r system_after softirq_after < <(machine_ticks)
  stop_pid "$plain_pid"
  if ((bytes_total == 0)); then
    fail_workload cpu failed
    return
  fi
  local gigabytes
  gigabytes=$(calc "$bytes_total / 1e9" 4)
  row cpu gigabytes "$gigabytes" ok
  if [[ -n $fwd_pid ]]; then
    row cpu process_s_per_gb "$(calc "($cpu_after - $cpu_before) / 1e6 / $gigabytes")" ok
  else
    row cpu process_s_per_gb "" n/a
  fi
  row cpu softirq_s_per_gb "$(calc "($softirq_after - $softirq_before) / $ticks_per_second / $gigabytes")" ok
  row cpu system_s_per_gb "$(calc "($system_after - $system_before) / $ticks_per_second / $gigabytes")" ok
}

# The CPU figures are taken during workload_bulk.
workload_cpu() { :; }

# run_wrk WORKLOAD IP URL [wrk options...]: wrk from the client namespace, $sni_name resolving
# to IP; rows rate, p50, p99 and max (ms). Fails (false) when no request succeeded or most
# errored. Sets wrk_requests, the requests completed.
run_wrk() {
  local workload=$1 address=$2 url=$3
  shift 3
  local log=$logs/$fwd-$workload.log
  in_client_resolving "$address" timeout $((wrk_seconds + 15)) wrk -t2 -c"$wrk_connections" \
    -d"${wrk_seconds}s" --timeout 2s --latency "$@" "$url" >"$log" 2>&1 || true
  local parsed
  parsed=$(awk '
    function ms(text) {
      if (text ~ /us$/) return text / 1000
      if (text ~ /ms$/) return text + 0
      if (text ~ /m$/) return text * 60000
      if (text ~ /s$/) return text * 1000
      return text + 0
    }
    $1 == "Latency" && $2 != "Distribution" { max = ms($4) }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    $2 == "requests" && $3 == "in" { requests = $1 }
    $1 == "Requests/sec:" { rate = $2 }
    $1 == "Socket" && $2 == "errors:" { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
    $1 == "Non-2xx" { errors += $5 }
    END { printf "%s %s %s %s %s %s\n", requests + 0, errors + 0, rate, p50, p99, max }
  ' "$log")
  local requests errors rate p50 p99 max
  read -r requests errors rate p50 p99 max <<<"$parsed"
  wrk_requests=$requests
  if ((requests == 0 || errors * 2 > requests)) || [[ -z $rate ]]; then
    fail_workload "$workload" failed
    return 1
  fi
  row "$workload" rate "$(calc "$rate" 0)" ok
  row "$workload" p50_ms "$(calc "$p50")" ok
  row "$workload" p99_ms "$(calc "$p99")" ok
  row "$workload" max_ms "$(calc "$max")" ok
  ((errors == 0)) || row "$workload" errors "$errors" ok
  return 0
}

# --- 3: new TLS connections per second, and the keep-alive variant --------------------------
workload_tls_new() {
  run_wrk tls_new "${fwd_tls%:*}" "https://$sni_name:${fwd_tls##*:}/" -H "Connection: close" || true
}

workload_tls_keepalive() {
  run_wrk tls_keepalive "${fwd_tls%:*}" "https://$sni_name:${fwd_tls##*:}/" || true
}

# --- 4: small request/response latency on one established connection -----------------------
workload_pingpong() {
  local log=$logs/$fwd-pingpong.log
  if ! start_plain_backend "$log.server" "$tools/bench_echo_server" "$backend_ip" "$plain_port"; then
    fail_workload pingpong failed
    return
  fi
  local line
  line=$(ip netns exec "$ns_client" timeout $((${pingpong_seconds%.*} + 10)) \
    "$tools/bench_pingpong" "${fwd_plain%:*}" "${fwd_plain##*:}" "$pingpong_seconds" 2000000 64 \
    2>>"$log") || true
  echo "$line" >>"$log"
  stop_pid "$plain_pid"
  if [[ $line != rounds=* ]]; then
    fail_workload pingpong failed
    return
  fi
  local field
  for field in $line; do
    [[ $field == rounds=* ]] && continue
    row pingpong "${field%%=*}" "${field#*=}" ok
  done
}

# --- 5: memory per idle connection at $idle_count open connections ------------------------
workload_idle() {
  local log=$logs/$fwd-idle.log
  if ! start_plain_backend "$log.server" "$tools/bench_echo_server" "$backend_ip" "$plain_port"; then
    fail_workload idle failed
    return
  fi
  local rss_before=0 slab_before
  [[ -n $fwd_pid ]] && rss_before=$(tree_rss_kib "$fwd_pid")
  slab_before=$(slab_kib)
  start_in "$ns_client" "$log" "$tools/bench_idle_holder" "${fwd_plain%:*}" "${fwd_plain##*:}" \
    "$idle_count" "$idle_seconds"
  local holder=$last_pid i
  for ((i = 0; i < (idle_seconds + 5) * 10; i++)); do
    grep -q '^established=' "$log" && break
    running "$holder" || break
    sleep 0.1
  done
  sleep 0.5  # let the forwarder finish its side of the last connections
  local established rss_after=0 slab_after
  established=$(sed -n 's/^established=//p' "$log")
  [[ -n $fwd_pid ]] && rss_after=$(tree_rss_kib "$fwd_pid")
  slab_after=$(slab_kib)
  if [[ -n $fwd_pid ]] && ! running "$fwd_pid"; then
    row idle forwarder_died "${established:-0}" failed
  fi
  stop_pid "$holder"
  stop_pid "$plain_pid"
  if [[ -z $established || $established == 0 ]]; then
    fail_workload idle failed
    return
  fi
  local status=ok
  ((established < idle_count)) && status=partial
  row idle connections "$established" "$status"
  if [[ -n $fwd_pid ]]; then
    row idle rss_kib_per_conn "$(calc "($rss_after - $rss_before) / $established")" "$status"
  else
    row idle rss_kib_per_conn "" n/a
  fi
  # Machine-wide: both ends' sockets (and anything else the machine did) are in it.
  row idle slab_kib_per_conn "$(calc "($slab_after - $slab_before) / $established")" "$status"
}

# --- 6 and 7: memory held for readers that are slow or never read ---------------------------
# TCP memory is /proc/net/sockstat's `mem` (pages, machine-wide: every socket on the path,
# the client's and the stream server's included, so the figure is the path's, as with any
# forwarder; other work on the machine moves it too). RSS is the forwarder's process tree.

tcp_mem_pages() {
  awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat
}

# hold_readers WORKLOAD COUNT RATE SECONDS: bench_slow_readers against the stream server for
# SECONDS; samples TCP memory and the forwarder's RSS every 0.2 s meanwhile and sets
# held_pages / held_rss_kib (the highest growth over the values before) and readers_line
# (its output). False when the backend did not start or no reader got connected.
hold_readers() {
  local workload=$1 count=$2 rate=$3 seconds=$4
  local log=$logs/$fwd-$workload.log
  held_pages=0 held_rss_kib=0 readers_line=
  if ! start_plain_backend "$log.server" "$tools/bench_stream_server" "$backend_ip" "$plain_port"; then
    return 1
  fi
  local pages_before rss_before=0 pages rss
  pages_before=$(tcp_mem_pages)
  [[ -n $fwd_pid ]] && rss_before=$(tree_rss_kib "$fwd_pid")
  start_in "$ns_client" "$log" "$tools/bench_slow_readers" "${fwd_plain%:*}" "${fwd_plain##*:}" \
    "$count" "$rate" "$seconds"
  local readers=$last_pid i
  for ((i = 0; i < (${seconds%.*} + 5) * 5; i++)); do
    pages=$(tcp_mem_pages)
    ((pages - pages_before > held_pages)) && held_pages=$((pages - pages_before))
    if [[ -n $fwd_pid ]]; then
      rss=$(tree_rss_kib "$fwd_pid")
      ((rss - rss_before > held_rss_kib)) && held_rss_kib=$((rss - rss_before))
    fi
    running "$readers" || break
    sleep 0.2
  done
  stop_pid "$readers"
  stop_pid "$plain_pid"
  readers_line=$(grep -h '^established=\|^received=' "$log" | tr '\n' ' ')
  [[ $readers_line == *established=* && $readers_line != *established=0* ]]
}

# slowread: one client reading a fast stream at 64 KiB/s: the most the path held meanwhile.
workload_slowread() {
  if ! hold_readers slowread 1 65536 "$slowread_seconds"; then
    fail_workload slowread failed
    return
  fi
  row slowread tcp_mem_mib "$(calc "$held_pages * 4096 / 1048576" 1)" ok
  if [[ -n $fwd_pid ]]; then
    row slowread rss_mib "$(calc "$held_rss_kib / 1024" 1)" ok
  else
    row slowread rss_mib "" n/a
  fi
}

# neverread: $neverread_count clients that ask for a stream and never read: what each costs.
workload_neverread() {
  if ! hold_readers neverread "$neverread_count" 0 "$neverread_seconds"; then
    fail_workload neverread failed
    return
  fi
  local established status=ok
  established=$(sed -n 's/.*established=\([0-9]*\).*/\1/p' <<<"$readers_line")
  ((established < neverread_count)) && status=partial
  row neverread clients "$established" "$status"
  row neverread tcp_mem_mib_per_client "$(calc "$held_pages * 4096 / 1048576 / $established")" "$status"
  if [[ -n $fwd_pid ]]; then
    row neverread rss_kib_per_client "$(calc "$held_rss_kib / $established")" "$status"
  else
    row neverread rss_kib_per_client "" n/a
  fi
}

# --- 8: port 80, small GETs through the forwarder's HTTP reverse proxy ----------------------
workload_http80() {
  if [[ -z $fwd_http ]]; then
    fail_workload http80 n/a
    return
  fi
  run_wrk_counting_cpu http80 "${fwd_http%:*}" "http://$fwd_http/"
}

# --- 9, 10, 11: the forwarder terminating TLS itself ---------------------------------------
# The forwarder answers the handshake for $term_name with the certificate made at the start
# ($term_dir, the same files for every forwarder) and proxies the decrypted GETs to the
# plain HTTP backend ($fwd_term; empty where the forwarder cannot terminate: n/a). direct is
# the backend nginx terminating its own TLS: the limit without a proxy hop.

# have_terminating_target WORKLOAD: true when the forwarder terminates TLS here ($fwd_term set);
# otherwise the workload's row is n/a and the caller returns.
have_terminating_target() {
  [[ -n $fwd_term ]] && return 0
  fail_workload "$1" n/a
  return 1
}

# tls_term_new: handshakes per second. wrk asks with `Connection: close`, a new connection
# per request; it keeps each connection's session for the next, so where the forwarder issues
# tickets the handshakes are resumptions, as browsers make them.
workload_tls_term_new() {
  have_terminating_target tls_term_new || return 0
  run_wrk_counting_cpu tls_term_new "${fwd_term%:*}" "https://$term_name:${fwd_term##*:}/" \
    -H "Connection: close"
}

# run_wrk_counting_cpu WORKLOAD ADDRESS URL [wrk args]: run_wrk, and the forwarder's CPU per
# request (its cgroup; n/a for direct, whose nginx is the backend) as row cpu_us_per_req:
# the figure that says what a change costs on a machine too busy for steady rates.
# Also its context switches per request (row switches_per_req), a figure the load moves little,
# and, not in --quick runs (CI's harness check, bounded in time): where perf can count them,
# its mmap and munmap calls and page faults per request (rows mmap_per_req, munmap_per_req,
# faults_per_req: what a buffer mapped and unmapped per request costs, whatever the load),
# and its RSS halfway through the run and 2 s after it (rss_kib_loaded, rss_kib_after: what
# the burst left behind).
run_wrk_counting_cpu() {
  local workload=$1 cpu_before=0 cpu_after=0 switches_before="" switches_after=""
  local perf_pid="" perf_log=$logs/$fwd-$workload.perf rss_pid="" rss_file=$work/rss-loaded
  if [[ -n $fwd_pid ]]; then
    cpu_before=$(forwarder_cpu_usec "$fwd_pid")
    switches_before=$(thread_context_switches "$fwd_pid")
    if ((!quick)) && command -v perf >/dev/null; then
      local pids
      pids=$(echo "$fwd_pid" $(descendants "$fwd_pid") | tr ' ' ,)
      perf stat -x, -o "$perf_log" -p "$pids" \
        -e syscalls:sys_enter_mmap,syscalls:sys_enter_munmap,page-faults 2>/dev/null &
      perf_pid=$!
      started_pids+=("$perf_pid")
    fi
    if ((!quick)); then
      rm -f "$rss_file"
      (sleep "$(calc "$wrk_seconds / 2")" && tree_rss_kib "$fwd_pid" >"$rss_file") &
      rss_pid=$!
      started_pids+=("$rss_pid")
    fi
  fi
  if ! run_wrk "$@"; then
    if [[ -n $perf_pid ]]; then stop_pid "$perf_pid"; fi
    if [[ -n $rss_pid ]]; then stop_pid "$rss_pid"; fi
    return 0
  fi
  if [[ -n $fwd_pid ]]; then
    cpu_after=$(forwarder_cpu_usec "$fwd_pid")
    switches_after=$(thread_context_switches "$fwd_pid")
    row "$workload" cpu_us_per_req "$(calc "($cpu_after - $cpu_before) / $wrk_requests")" ok
    row "$workload" switches_per_req \
      "$(calc "$(context_switches_between "$switches_before" "$switches_after") / $wrk_requests")" ok
    if [[ -n $perf_pid ]]; then
      kill -INT "$perf_pid" 2>/dev/null || true  # perf stat prints its counts on SIGINT
      wait "$perf_pid" 2>/dev/null || true
      local event metric count
      for event in syscalls:sys_enter_mmap:mmap syscalls:sys_enter_munmap:munmap page-faults:faults; do
        metric=${event##*:} event=${event%:*}
        count=$(awk -F, -v event="$event" '$3 == event && $1 ~ /^[0-9]+$/ { print $1 }' "$perf_log")
        if [[ -n $count ]]; then
          row "$workload" "${metric}_per_req" "$(calc "$count / $wrk_requests" 3)" ok
        fi
      done
    fi
    if [[ -n $rss_pid ]]; then
      wait "$rss_pid" 2>/dev/null || true
      if [[ -s $rss_file ]]; then
        row "$workload" rss_kib_loaded "$(cat "$rss_file")" ok
      fi
      sleep 2
      row "$workload" rss_kib_after "$(tree_rss_kib "$fwd_pid")" ok
    fi
  else
    row "$workload" cpu_us_per_req "" n/a
    row "$workload" switches_per_req "" n/a
  fi
}

# tls_term_keepalive: requests per second on kept-alive terminated connections, and the
# forwarder's CPU per request (its cgroup; n/a for direct, whose nginx is the backend).
workload_tls_term_keepalive() {
  have_terminating_target tls_term_keepalive || return 0
  run_wrk_counting_cpu tls_term_keepalive "${fwd_term%:*}" "https://$term_name:${fwd_term##*:}/"
}

# tls_term_idle: $tls_idle_count terminated connections, each a full handshake and one GET
# answered 200, then held idle (tools/bench/tls_idle_holder.cpp): the forwarder's RSS growth
# per connection (its TLS session, buffers and HTTP state).
workload_tls_term_idle() {
  have_terminating_target tls_term_idle || return 0
  local log=$logs/$fwd-tls_term_idle.log rss_before=0 rss_after=0
  [[ -n $fwd_pid ]] && rss_before=$(tree_rss_kib "$fwd_pid")
  start_in "$ns_client" "$log" "$tools/bench_tls_idle_holder" "${fwd_term%:*}" \
    "${fwd_term##*:}" "$term_name" "$tls_idle_count" "$idle_seconds"
  local holder=$last_pid i
  for ((i = 0; i < (idle_seconds + 5) * 10; i++)); do
    grep -q '^established=' "$log" && break
    running "$holder" || break
    sleep 0.1
  done
  sleep 0.5  # let the forwarder finish its side of the last connections
  local established
  established=$(sed -n 's/^established=//p' "$log")
  [[ -n $fwd_pid ]] && rss_after=$(tree_rss_kib "$fwd_pid")
  if [[ -n $fwd_pid ]] && ! running "$fwd_pid"; then
    row tls_term_idle forwarder_died "${established:-0}" failed
  fi
  stop_pid "$holder"
  if [[ -z $established || $established == 0 ]]; then
    fail_workload tls_term_idle failed
    return
  fi
  local status=ok
  ((established < tls_idle_count)) && status=partial
  row tls_term_idle connections "$established" "$status"
  if [[ -n $fwd_pid ]]; then
    row tls_term_idle rss_kib_per_conn "$(calc "($rss_after - $rss_before) / $established")" "$status"
  else
    row tls_term_idle rss_kib_per_conn "" n/a
  fi
}
