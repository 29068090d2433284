#!/usr/bin/env bash
# CTest script test: `scripts/bench --quick` on this build finishes within its bound and
# leaves a complete report: a results.csv row for every forwarder and each workload it runs
# (all of them on direct and splicer-sockmap), the direct baseline and splicer-sockmap's own
# figures measured (not failed) everywhere they apply, a table row per forwarder and a chart.
# The figures themselves are not checked (performance belongs to scripts/bench).
# usage: bench_quick_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
source_dir=$1 build_dir=$2

if [[ $(id -u) -ne 0 ]]; then
  [[ ${CI:-} == true ]] && { echo "bench test: needs root, and CI must run it" >&2; exit 1; }
  echo "bench test: not root: skipped" >&2
  exit 77
fi

results=$(mktemp -d /tmp/splicer-bench-test.XXXXXX)
trap 'rm -rf "$results"' EXIT
# scripts/bench stops its own processes on SIGTERM; the bound keeps CI's cost under 2 min
# (about 45 s on a quiet machine, 70 s at load 10 on 2 cores).
if ! timeout --signal=TERM --kill-after=10 120 "$source_dir/scripts/bench" --quick \
    --build-dir "$build_dir" "$results"; then
  echo "bench test: scripts/bench --quick failed or ran over 120 s" >&2
  exit 1
fi

csv=$results/results.csv
failures=0
forwarders=()
for file in "$source_dir"/scripts/bench.d/forwarders/*.sh; do
  forwarders+=("$(basename "$file" .sh)")
done
# --quick runs every workload on direct and splicer-sockmap, and on every other forwarder
# the ones that cross each of its listeners (scripts/bench: quick_every_workload).
every_workload=(bulk cpu tls_new tls_keepalive pingpong idle slowread neverread http80
  tls_term_new tls_term_keepalive tls_term_idle)
route_workloads=(pingpong tls_keepalive http80 tls_term_keepalive)
for forwarder in "${forwarders[@]}"; do
  workloads=("${route_workloads[@]}")
  [[ $forwarder == direct || $forwarder == splicer-sockmap ]] && workloads=("${every_workload[@]}")
  for workload in "${workloads[@]}"; do
    if ! grep -q "^$forwarder,$workload," "$csv"; then
      echo "missing: $forwarder $workload" >&2
      failures=$((failures + 1))
    fi
  done
  if ! grep -q "^| $forwarder |" "$results/table.md"; then
    echo "missing table row: $forwarder" >&2
    failures=$((failures + 1))
  fi
done
# The harness itself works: the no-forwarder baseline produces a figure for every workload
# it takes part in (idle memory is the forwarder's, so direct has none there), and so does
# a forwarder process (the figures measured on it: its CPU, RSS and memory per connection).
for metric in bulk,gbps_1_up bulk,gbps_4_down cpu,softirq_s_per_gb tls_new,rate \
    tls_keepalive,p99_ms pingpong,p99_us idle,connections slowread,tcp_mem_mib \
    neverread,tcp_mem_mib_per_client http80,rate tls_term_new,rate tls_term_keepalive,rate; do
  if ! grep -Eq "^direct,$metric,[0-9.]+,ok$" "$csv"; then
    echo "direct has no figure for $metric" >&2
    failures=$((failures + 1))
  fi
done
for metric in cpu,process_s_per_gb idle,rss_kib_per_conn slowread,rss_mib \
    neverread,rss_kib_per_client tls_term_new,rate tls_term_keepalive,cpu_us_per_req \
    tls_term_idle,rss_kib_per_conn; do
  # Signed: a forwarder's RSS growth over 20 connections can be below zero (a heap trim of
  # the previous workload's memory landing during the hold); figures are not checked here.
  if ! grep -Eq "^splicer-sockmap,$metric,-?[0-9.]+,ok$" "$csv"; then
    echo "splicer-sockmap has no figure for $metric" >&2
    failures=$((failures + 1))
  fi
done
if [[ ! -s $results/chart.png ]]; then
  echo "no chart.png" >&2
  failures=$((failures + 1))
fi
if ((failures)); then
  cat "$results/table.md" >&2
  exit 1
fi
echo "bench test: complete table for ${#forwarders[@]} forwarders"
