#!/usr/bin/env bash
# CTest script test: dist/systemd/splicer.service and splicer.socket pass `systemd-analyze
# verify`, and the service's `systemd-analyze security` exposure stays at or below what the
# unit reaches now (MAX_EXPOSURE). No PID 1 systemd is needed: verify loads the units in a
# test manager, security reads them offline (systemd 252's --offline).
# verify checks that ExecStart's binary exists: it gets a copy of the units whose ExecStart
# names this build's binary, every other line as shipped.
# usage: systemd_units_test.sh SOURCE_DIR SPLICER_BINARY
set -euo pipefail
readonly MAX_EXPOSURE=2.7
source_dir=$1
binary=$2
work=$(mktemp -d /tmp/splicer-units-test.XXXXXX)
trap 'rm -rf "$work"' EXIT

for unit in splicer.service splicer.socket; do
  sed "s|^ExecStart=/usr/sbin/splicer |ExecStart=$binary |" "$source_dir/dist/systemd/$unit" \
    > "$work/$unit"
done
grep -q "^ExecStart=$binary run\$" "$work/splicer.service" || {
  echo "splicer.service: no 'ExecStart=/usr/sbin/splicer run' line to point at the build" >&2
  exit 1
}

# --man=no: the man pages (Documentation=) come with the package, not this build.
# Anything verify prints is a finding: it must print nothing.
findings=$(cd "$work" && systemd-analyze verify --man=no splicer.service splicer.socket 2>&1) || {
  echo "$findings" >&2
  echo "systemd-analyze verify failed" >&2
  exit 1
}
if [[ -n $findings ]]; then
  echo "$findings" >&2
  echo "systemd-analyze verify printed findings" >&2
  exit 1
fi
echo "systemd-analyze verify: clean"

report=$(cd "$work" && systemd-analyze security --offline=true --no-pager splicer.service 2>&1) || true
echo "$report" | grep -E "Overall exposure level" || {
  echo "$report" >&2
  echo "systemd-analyze security printed no exposure level" >&2
  exit 1
}
exposure=$(echo "$report" | sed -n 's/.*Overall exposure level for splicer.service: \([0-9.]*\).*/\1/p')
if awk -v got="$exposure" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(got > max) }'; then
  echo "$report" >&2
  echo "exposure $exposure is above $MAX_EXPOSURE: a sandboxing line was lost or weakened" >&2
  exit 1
fi
echo "exposure $exposure (at most $MAX_EXPOSURE)"
