# What the workloads read from /proc: CPU ticks of a process tree, the machine's softirq and
# system ticks, resident memory of a process tree, kernel slab memory.

readonly ticks_per_second=$(getconf CLK_TCK)

# tree_cpu_ticks PID: user+sys of PID and every live descendant, plus the children each has
# already reaped (cutime+cstime): a fork-per-connection forwarder's finished children count.
tree_cpu_ticks() {
  local pid total=0
  for pid in "$1" $(descendants "$1"); do
    # Fields after the ")" of the command name: utime is the 12th, then stime, cutime, cstime.
    local stat
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -r -a fields <<<"${stat##*) }"
    total=$((total + fields[11] + fields[12] + fields[13] + fields[14]))
  done
  echo "$total"
}

# machine_ticks: "SYSTEM SOFTIRQ" ticks summed over all CPUs (/proc/stat first line).
machine_ticks() {
  awk '$1 == "cpu" { print $4, $8; exit }' /proc/stat
}

# tree_rss_kib PID: VmRSS summed over PID and its descendants (shared pages counted in each).
tree_rss_kib() {
  local pid files=()
  for pid in "$1" $(descendants "$1"); do
    files+=("/proc/$pid/status")
  done
  cat "${files[@]}" 2>/dev/null | awk '$1 == "VmRSS:" { total += $2 } END { print total + 0 }'
}

slab_kib() {
  awk '/^Slab:/ { print $2 }' /proc/meminfo
}

# The forwarder runs in a cgroup of its own, so its CPU time includes children that exited
# and were never waited for (sslh-fork ignores SIGCHLD: their times never reach its cutime).
# cgroup v2 (cpu.stat) or v1 cpuacct; without either, the /proc tree sum above.
cpu_cgroup=

cpu_cgroup_create() {
  local name=$1
  if [[ -e /sys/fs/cgroup/cgroup.controllers ]]; then
    cpu_cgroup=/sys/fs/cgroup/$name
  elif [[ -d /sys/fs/cgroup/cpuacct ]]; then
    cpu_cgroup=/sys/fs/cgroup/cpuacct/$name
  else
    return 0
  fi
  mkdir "$cpu_cgroup" 2>/dev/null || cpu_cgroup=
}

cpu_cgroup_remove() {
  [[ -n $cpu_cgroup ]] && rmdir "$cpu_cgroup" 2>/dev/null
  cpu_cgroup=
}

# forwarder_cpu_usec PID: CPU microseconds used so far by the forwarder and its children.
# thread_context_switches PID: a line "TID SWITCHES" for every thread of PID and its
# descendants: its voluntary and involuntary context switches so far. Unlike CPU time they
# hardly move with the machine's load: a thread woken per request shows as a switch per
# request however busy the machine is.
thread_context_switches() {
  local pid task
  for pid in "$1" $(descendants "$1"); do
    for task in /proc/"$pid"/task/*; do
      awk -v tid="${task##*/}" '/^(non)?voluntary_ctxt_switches:/ { n += $2 }
        END { if (NR) print tid, n + 0 }' "$task"/status 2>/dev/null
    done
  done
}

# context_switches_between BEFORE AFTER: the switches made between two
# thread_context_switches lists, thread by thread. A thread that ended in between drops out
# of the sum (its last count is gone with it) instead of making it negative; one that
# started counts in full.
context_switches_between() {
  awk 'NR == FNR { before[$1] = $2; next } { total += $2 - before[$1] }
    END { print total + 0 }' <(echo "$1") <(echo "$2")
}

forwarder_cpu_usec() {
  if [[ -f $cpu_cgroup/cpu.stat ]]; then
    awk '$1 == "usage_usec" { print $2 }' "$cpu_cgroup/cpu.stat"
  elif [[ -f $cpu_cgroup/cpuacct.usage ]]; then
    echo $(($(cat "$cpu_cgroup/cpuacct.usage") / 1000))
  else
    echo $(($(tree_cpu_ticks "$1") * 1000000 / ticks_per_second))
  fi
}
