# Turns $csv into the printed table (table.md), the "where splicer's planes lose" list and
# the chart (chart.png, gnuplot).

# One table column: "header|workload|metric[+metric...]" (several metrics joined by "/").
readonly table_columns=(
  "Gb/s 1 up|bulk|gbps_1_up" "Gb/s 1 down|bulk|gbps_1_down"
  "Gb/s 4 up|bulk|gbps_4_up" "Gb/s 4 down|bulk|gbps_4_down"
  "process CPU s/GB|cpu|process_s_per_gb" "softirq s/GB|cpu|softirq_s_per_gb"
  "machine sys s/GB|cpu|system_s_per_gb"
  "new TLS conn/s|tls_new|rate" "new TLS p50/p99/max ms|tls_new|p50_ms+p99_ms+max_ms"
  "keep-alive req/s|tls_keepalive|rate" "keep-alive p99/max ms|tls_keepalive|p99_ms+max_ms"
  "ping-pong rt/s|pingpong|rate" "ping-pong p50/p99/max µs|pingpong|p50_us+p99_us+max_us"
  "idle conns|idle|connections" "RSS KiB/conn|idle|rss_kib_per_conn"
  "slab KiB/conn|idle|slab_kib_per_conn"
  "slow reader TCP MiB|slowread|tcp_mem_mib" "slow reader RSS MiB|slowread|rss_mib"
  "never-read TCP MiB/client|neverread|tcp_mem_mib_per_client"
  "never-read RSS KiB/client|neverread|rss_kib_per_client"
  ":80 req/s|http80|rate" ":80 p99 ms|http80|p99_ms"
  "terminating handshakes/s|tls_term_new|rate"
  "terminating req/s|tls_term_keepalive|rate"
  "terminating p99 ms|tls_term_keepalive|p99_ms"
  "terminating CPU µs/req|tls_term_keepalive|cpu_us_per_req"
  "terminating idle conns|tls_term_idle|connections"
  "terminating RSS KiB/idle conn|tls_term_idle|rss_kib_per_conn"
)

# Metrics the loss list compares: "workload|metric|higher or lower is better".
readonly compared_metrics=(
  "bulk|gbps_1_up|higher" "bulk|gbps_1_down|higher" "bulk|gbps_4_up|higher"
  "bulk|gbps_4_down|higher" "cpu|process_s_per_gb|lower" "cpu|system_s_per_gb|lower"
  "tls_new|rate|higher" "tls_keepalive|rate|higher" "tls_keepalive|p99_ms|lower"
  "pingpong|rate|higher" "pingpong|p99_us|lower" "idle|rss_kib_per_conn|lower"
  "slowread|tcp_mem_mib|lower" "neverread|tcp_mem_mib_per_client|lower"
  "neverread|rss_kib_per_client|lower" "http80|rate|higher"
  "tls_term_new|rate|higher" "tls_term_keepalive|rate|higher"
  "tls_term_keepalive|cpu_us_per_req|lower" "tls_term_idle|rss_kib_per_conn|lower"
)

print_table() {
  local columns
  columns=$(printf '%s\n' "${table_columns[@]}")
  awk -F, -v columns="$columns" '
    NR == 1 { next }
    {
      if (!($1 in seen)) { seen[$1] = 1; order[++forwarders] = $1 }
      value[$1 SUBSEP $2 SUBSEP $3] = $4
      status[$1 SUBSEP $2 SUBSEP $3] = $5
    }
    function cell(fwd, workload, metric,   key) {
      key = fwd SUBSEP workload SUBSEP metric
      if ((key in value) && value[key] != "") {
        return value[key] (status[key] == "partial" ? "*" : "")
      }
      if (key in status) return status[key]
      key = fwd SUBSEP workload SUBSEP "status"
      if (key in status) return status[key]
      return "-"
    }
    END {
      count = split(columns, spec, "\n")
      header = "| forwarder |"; rule = "|---|"
      for (c = 1; c <= count; c++) {
        split(spec[c], part, "|"); header = header " " part[1] " |"; rule = rule "---|"
      }
      print header; print rule
      for (f = 1; f <= forwarders; f++) {
        line = "| " order[f] " |"
        for (c = 1; c <= count; c++) {
          split(spec[c], part, "|")
          n = split(part[3], metrics, "+")
          text = ""
          for (m = 1; m <= n; m++) {
            v = cell(order[f], part[2], metrics[m])
            if (m > 1 && v == text) break  # one status word, not "failed/failed/failed"
            text = (m == 1 ? v : text "/" v)
          }
          line = line " " text " |"
        }
        print line
      }
    }' "$csv"
}

# For every splicer plane and compared metric, the peers (not direct, not splicer) that
# beat it: the table must say where a plane loses.
print_losses() {
  local compared
  compared=$(printf '%s\n' "${compared_metrics[@]}")
  awk -F, -v compared="$compared" '
    NR == 1 { next }
    !($1 in fwds) { fwds[$1] = 1; order[++n] = $1 }
    $4 != "" && ($5 == "ok" || $5 == "partial") { value[$1 SUBSEP $2 SUBSEP $3] = $4 + 0; measured[$2 SUBSEP $3] = 1 }
    END {
      count = split(compared, spec, "\n")
      for (fwd in fwds) {
        if (fwd !~ /^splicer-/) continue
        for (c = 1; c <= count; c++) {
          split(spec[c], part, "|")
          mine = fwd SUBSEP part[1] SUBSEP part[2]
          if (!(mine in value)) {
            if ((part[1] SUBSEP part[2]) in measured) {
              losses[fwd] = losses[fwd] "\n  " part[1] " " part[2] ": failed"
            }
            continue
          }
          beaten = ""
          for (j = 1; j <= n; j++) {
            peer = order[j]
            if (peer == "direct" || peer ~ /^splicer-/) continue
            theirs = peer SUBSEP part[1] SUBSEP part[2]
            if (!(theirs in value)) continue
            if ((part[3] == "higher" && value[theirs] > value[mine]) ||
                (part[3] == "lower" && value[theirs] < value[mine])) {
              beaten = beaten " " peer " (" value[theirs] ")"
            }
          }
          if (beaten != "") {
            losses[fwd] = losses[fwd] "\n  " part[1] " " part[2] " " value[mine] ": behind" beaten
          }
        }
      }
      for (i = 1; i <= n; i++) {
        fwd = order[i]
        if (fwd !~ /^splicer-/) continue
        print fwd ":" (fwd in losses ? losses[fwd] : " ahead of every peer on every compared figure")
      }
    }' "$csv"
}

# chart.png: four panels, one bar per forwarder.
draw_chart() {
  local data=$results/chart.dat
  awk -F, '
    NR == 1 { next }
    {
      if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
      if ($4 != "") value[$1 SUBSEP $2 SUBSEP $3] = $4
    }
    function get(f, w, m) { return ((f SUBSEP w SUBSEP m) in value) ? value[f SUBSEP w SUBSEP m] : "NaN" }
    END {
      print "forwarder gbps_1_up tls_new_rate keepalive_rate pingpong_p99_us"
      for (i = 1; i <= n; i++) {
        print order[i], get(order[i], "bulk", "gbps_1_up"), get(order[i], "tls_new", "rate"),
              get(order[i], "tls_keepalive", "rate"), get(order[i], "pingpong", "p99_us")
      }
    }' "$csv" >"$data"
  gnuplot -e "data='$data'; output='$results/chart.png'" "$bench_lib/chart.gnuplot" \
    2>>"$logs/gnuplot.log" || echo "bench: chart not drawn (see $logs/gnuplot.log)" >&2
}
