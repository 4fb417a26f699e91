# CPU budgets for benchmark processes through cgroups (v1, with separate
# cpu and cpuacct hierarchies, or v2), so that processes sharing this
# machine behave like machines of their own. Sourced by benches/*-cluster.
# Needs PERIOD_US (the CFS period) set by the caller.

# cg_detect BENCH: sets CGV (1 or 2); says why not and fails when the CPU
# controller cannot be used here (not root, not delegated).
cg_detect() {
  if [ -w /sys/fs/cgroup/cpu/cgroup.procs ] && [ -w /sys/fs/cgroup/cpuacct/cgroup.procs ]; then
    CGV=1
  elif [ -w /sys/fs/cgroup/cgroup.subtree_control ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    CGV=2
    if ! grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control \
      && ! echo +cpu 2>/dev/null >/sys/fs/cgroup/cgroup.subtree_control; then
      echo "$1: cannot delegate the cgroup v2 cpu controller here; not measured" >&2
      return 1
    fi
  else
    echo "$1: needs root and the cgroup CPU controller (v1 cpu+cpuacct, or v2 with cpu" >&2
    echo "available at /sys/fs/cgroup) to give each process its own CPU budget; not measured" >&2
    return 1
  fi
}

# cg_make NAME QUOTA_US (-1: unlimited): a group; cg_join NAME PID; cg_usage NAME: CPU ns used.
cg_make() {
  if [ "$CGV" = 1 ]; then
    mkdir -p "/sys/fs/cgroup/cpu/$1" "/sys/fs/cgroup/cpuacct/$1"
    echo "$PERIOD_US" >"/sys/fs/cgroup/cpu/$1/cpu.cfs_period_us"
    echo "$2" >"/sys/fs/cgroup/cpu/$1/cpu.cfs_quota_us"
  else
    mkdir -p "/sys/fs/cgroup/$1"
    if [ "$2" = -1 ]; then echo "max $PERIOD_US"; else echo "$2 $PERIOD_US"; fi >"/sys/fs/cgroup/$1/cpu.max"
  fi
}
cg_join() {
  if [ "$CGV" = 1 ]; then
    echo "$2" >"/sys/fs/cgroup/cpu/$1/cgroup.procs"
    echo "$2" >"/sys/fs/cgroup/cpuacct/$1/cgroup.procs"
  else
    echo "$2" >"/sys/fs/cgroup/$1/cgroup.procs"
  fi
}
cg_usage() {
  if [ "$CGV" = 1 ]; then
    cat "/sys/fs/cgroup/cpuacct/$1/cpuacct.usage"
  else
    awk '$1 == "usage_usec" { print $2 * 1000 }' "/sys/fs/cgroup/$1/cpu.stat"
  fi
}
# cg_throttled NAME: "periods throttled_periods" so far.
cg_throttled() {
  local stat="/sys/fs/cgroup/$1/cpu.stat"
  [ "$CGV" = 1 ] && stat="/sys/fs/cgroup/cpu/$1/cpu.stat"
  awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { t = $2 } END { print p + 0, t + 0 }' "$stat"
}
cg_remove() {
  if [ "$CGV" = 1 ]; then
    rmdir "/sys/fs/cgroup/cpu/$1" "/sys/fs/cgroup/cpuacct/$1" 2>/dev/null || true
  else
    rmdir "/sys/fs/cgroup/$1" 2>/dev/null || true
  fi
}


# cg_start NAME QUOTA_US LOG CMD...: starts CMD in the background in a new
# group NAME with that quota, output to LOG; appends its pid to PIDS and
# NAME to GROUPS_MADE (the caller's arrays, for its cleanup), and returns
# once it is in the group (fails, showing LOG, if it never gets there).
cg_start() {
  local name="$1" quota="$2" log="$3"
  shift 3
  cg_make "$name" "$quota"
  GROUPS_MADE+=("$name")
  (
    cg_join "$name" "$BASHPID" || exit 1
    exec "$@"
  ) >"$log" 2>&1 &
  PIDS+=($!)
  local pid=$!
  for _ in $(seq 50); do
    grep -q "/$name\$" "/proc/$pid/cgroup" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$name is not in its CPU cgroup; its log:" >&2
  cat "$log" >&2
  return 1
}

# free_port: a TCP port free on 127.0.0.1 now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
