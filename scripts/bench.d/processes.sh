# Every process the benchmark starts is recorded here and ended by pid (with its
# descendants, for fork-per-connection forwarders) when it is no longer needed or on exit.

started_pids=()

# start_in NS LOG COMMAND...: runs COMMAND in namespace NS in the background; sets
# last_pid. `ip netns exec` execs the command, so the pid is the command's own. With
# start_cgroup set, the process enters that cgroup before it execs (`ip netns exec` mounts
# a fresh /sys, so the command itself could not reach /sys/fs/cgroup).
start_in() {
  local ns=$1 log=$2
  shift 2
  (
    [[ -n ${start_cgroup:-} ]] && echo "$BASHPID" >"$start_cgroup/cgroup.procs"
    exec ip netns exec "$ns" "$@" >"$log" 2>&1
  ) &
  last_pid=$!
  started_pids+=("$last_pid")
}

# descendants PID: the pids of PID's children, grandchildren, ... (from /proc).
descendants() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { children[$2] = children[$2] " " $1 }
    function walk(pid,   list, n, i) {
      n = split(children[pid], list, " ")
      for (i = 1; i <= n; i++) { print list[i]; walk(list[i]) }
    }
    END { walk(root) }'
}

# running PID: true while PID exists and has not exited (a zombie waiting for `wait` has).
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [[ ${stat##*) } != Z* ]]
}

# stop_pid PID: SIGTERM to PID and its descendants, SIGKILL whatever is left after 3 s.
stop_pid() {
  local pid=$1 i
  local tree=("$pid" $(descendants "$pid"))
  kill -TERM "${tree[@]}" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    running "$pid" || break
    sleep 0.1
  done
  kill -KILL "${tree[@]}" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_all() {
  local pid
  for pid in "${started_pids[@]}"; do
    running "$pid" && stop_pid "$pid"
  done
  started_pids=()
}
