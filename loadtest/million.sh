#!/usr/bin/env bash
# The million: `loadtest idle` against one node on this machine, the load
# generator on the same machine, in steps (50k, 200k, 500k, 1M by default),
# each against a freshly started node with edges = "auto" sized from
# limits.max_connections. Stops at the first step that does not hold
# (nearly) all of its connections, so the last good step is the figure.
#
# Usage: loadtest/million.sh [OUT_DIR]        (default target/million/<time>)
# Environment (defaults in brackets):
#   STEPS [50000 200000 500000 1000000]   connections per step
#   ROOMS [100]  HOLD [30s] (the ping probe runs meanwhile)  ATTACH_BYTES [0]
#   CONCURRENCY [32]   connections being opened at once per client process
#                      (each in-flight handshake costs an edge ~16 KiB of
#                      heap high-water mark, which idle sockets then carry)
#   MAX_CONNECTIONS [1100000]  the node's limits.max_connections: above the
#                      largest step, since the kernel spreads connections
#                      over the edges unevenly and an edge past its share
#                      answers 503
#   FRONTDOOR [1024]   limits.max_frontdoor_connections: what an edge keeps
#                      free of its 20000 files for handshakes
#   WORKERS [2]  HTTP_PORT [9787]  ADMIN_PORT [9797]
#   PROBE_RATE [100]   held-ping probe: pings per second over 8 sockets
#   OPEN_TIMEOUT [600s] each client process gives up on what is not open by then
#   SYSCTL [1]   1: set the kernel settings the largest step needs (root),
#                and put them back on exit; 0: only check, and print what
#                to run
#   STEP_TIMEOUT [900]  seconds one step may take before it is stopped
#
# Kernel settings a million loopback WebSockets need (both ends of each
# connection are on this machine, so two sockets and two files each):
#   fs.file-max >= 2 x connections + 200000 (all files of the machine)
#   net.core.somaxconn >= 4096 (each edge listens with a backlog of 4096);
#     net.ipv4.tcp_max_syn_backlog >= 8192 only without SYN cookies
#     (net.ipv4.tcp_syncookies = 0), else a burst of SYNs is dropped
#   net.core.netdev_max_backlog >= 10000: loopback packets pass through
#     the per-CPU input queue, 1000 by default, and a burst of handshakes
#     overflows it (drops, then a retransmit a second later); each step
#     reports the drops it saw
#   net.netfilter.nf_conntrack_max >= connections + 100000, only if
#     conntrack is tracking (nf_conntrack_count > 0): a full table drops SYNs
# Not needed: net.ipv4.ip_local_port_range (each client process binds its
# own 127.0.0.x with explicit ports outside the ephemeral range, at most
# 15000 per address), net.ipv4.tcp_mem (idle sockets hold no buffer pages;
# sockstat `mem` is read and reported), fs.nr_open (each process holds under
# 20000 files: the node's edges and the client processes are sized for it).
#
# Results: OUT_DIR/idle-<N>.{json,html,txt,err}, the node's output in
# OUT_DIR/node-<N>.{out,err}, sockstat and /proc/meminfo's Slab lines every
# 5 s of each step in OUT_DIR/kernel-<N>.txt, a summary in OUT_DIR/summary.txt. Only the
# processes this script starts are stopped, by pid; the node's data dir is
# temporary and removed after each step.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-50000 200000 500000 1000000}
ROOMS=${ROOMS:-100}
HOLD=${HOLD:-30s}
ATTACH_BYTES=${ATTACH_BYTES:-0}
CONCURRENCY=${CONCURRENCY:-32}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-1100000}
FRONTDOOR=${FRONTDOOR:-1024}
WORKERS=${WORKERS:-2}
HTTP_PORT=${HTTP_PORT:-9787}
ADMIN_PORT=${ADMIN_PORT:-9797}
PROBE_RATE=${PROBE_RATE:-100}
OPEN_TIMEOUT=${OPEN_TIMEOUT:-600s}
SYSCTL=${SYSCTL:-1}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
out=${1:-target/million/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

largest=0
for n in $STEPS; do [ "$n" -gt "$largest" ] && largest=$n; done
if [ "$largest" -gt "$MAX_CONNECTIONS" ]; then
  echo "million.sh: a step of $largest is above MAX_CONNECTIONS=$MAX_CONNECTIONS" >&2
  exit 64
fi

# --- kernel settings -------------------------------------------------------
restore=()
put_back() {
  local kv
  for kv in ${restore[@]+"${restore[@]}"}; do
    sysctl -q -w "$kv" >/dev/null 2>&1 || echo "million.sh: could not put back $kv" >&2
  done
}
missing=0
want() { # KEY MINIMUM: at least MINIMUM (first field of the value)
  local key=$1 min=$2 now
  now=$(sysctl -n "$key" 2>/dev/null | awk '{print $1}') || return 0
  [ -n "$now" ] || return 0
  if [ "$now" -ge "$min" ]; then
    echo "million.sh: $key = $now (>= $min, kept)" >&2
    return 0
  fi
  if [ "$SYSCTL" = 1 ] && sysctl -q -w "$key=$min" >/dev/null 2>&1; then
    restore+=("$key=$now")
    echo "million.sh: $key = $now -> $min (put back on exit)" >&2
  else
    echo "million.sh: $key = $now, needs $min: run  sysctl -w $key=$min" >&2
    missing=1
  fi
}
want fs.file-max $((2 * largest + 200000))
want net.core.somaxconn 4096
want net.core.netdev_max_backlog 10000
if [ "$(sysctl -n net.ipv4.tcp_syncookies 2>/dev/null || echo 1)" = 0 ]; then
  # Without SYN cookies a full SYN queue drops SYNs (the clients retry).
  want net.ipv4.tcp_max_syn_backlog 8192
fi
if [ -r /proc/sys/net/netfilter/nf_conntrack_count ] &&
  [ "$(cat /proc/sys/net/netfilter/nf_conntrack_count)" -gt 0 ]; then
  want net.netfilter.nf_conntrack_max $((largest + 100000))
else
  echo "million.sh: conntrack tracks nothing here; nf_conntrack_max left alone" >&2
fi
echo "million.sh: net.ipv4.tcp_mem = $(sysctl -n net.ipv4.tcp_mem) pages (not changed)" >&2
if [ "$missing" = 1 ]; then
  put_back
  echo "million.sh: kernel settings missing (above); SYSCTL=1 as root sets them" >&2
  exit 78
fi

# Each connection costs about 10 KB of kernel memory for its two sockets,
# plus the node and the clients: refuse a step the machine cannot hold
# rather than push it into the OOM killer.
available_kb() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
fits() { # N: whether N connections fit in what is available now
  [ $(( $1 * 13 / 1000 )) -lt $(( $(available_kb) / 1000 )) ]
}

# --- the node --------------------------------------------------------------
cargo build --release --locked -p torpor -p torpor-loadtest >&2

config="$out/node.toml"
sed -e 's/^edges = .*/edges = "auto"/' \
    -e 's/^bench_routes = .*/bench_routes = true/' \
    -e "s/^workers = .*/workers = $WORKERS/" \
    -e "s/^max_connections = .*/max_connections = $MAX_CONNECTIONS/" \
    -e "s/^max_frontdoor_connections = .*/max_frontdoor_connections = $FRONTDOOR/" \
    config/torpor.toml >"$config"
for line in 'edges = "auto"' 'bench_routes = true' "max_connections = $MAX_CONNECTIONS" \
  "max_frontdoor_connections = $FRONTDOOR"; do
  if ! grep -qx "$line" "$config"; then
    echo "million.sh: config/torpor.toml has no line to set '$line'" >&2
    put_back
    exit 1
  fi
done

node_pid=
node_data=
stop_node() {
  if [ -n "$node_pid" ]; then
    # SIGTERM to the supervisor, which stops its edges and workers.
    kill "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
    node_pid=
  fi
  if [ -n "$node_data" ]; then rm -rf "$node_data"; node_data=; fi
}
loadtest_pid=
finish() {
  if [ -n "$loadtest_pid" ]; then kill "$loadtest_pid" 2>/dev/null || true; fi
  stop_node
  put_back
}
trap finish EXIT

start_node() { # NAME
  node_data=$(mktemp -d)
  ./target/release/torpor --config "$config" --http "127.0.0.1:$HTTP_PORT" \
    --admin "127.0.0.1:$ADMIN_PORT" --data-dir "$node_data" \
    >"$out/node-$1.out" 2>"$out/node-$1.err" &
  node_pid=$!
  for _ in $(seq 1 300); do
    grep -q "torpor ready" "$out/node-$1.out" && return 0
    kill -0 "$node_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "million.sh: torpor did not start; see $out/node-$1.err" >&2
  exit 1
}

# Packets the kernel dropped from its per-CPU input queues (loopback goes
# through them; net.core.netdev_max_backlog bounds them), all CPUs.
softnet_drops() {
  local total=0 hex
  for hex in $(awk '{print $2}' /proc/net/softnet_stat); do total=$((total + 16#$hex)); done
  echo "$total"
}

# "<processes> processes, Rss <kB> kB, Pss <kB> kB" of PID and its descendants.
tree_memory() {
  local pids=($1) i=0
  while [ "$i" -lt "${#pids[@]}" ]; do
    pids+=($(cat "/proc/${pids[$i]}/task/"*/children 2>/dev/null))
    i=$((i + 1))
  done
  cat $(printf '/proc/%s/smaps_rollup ' "${pids[@]}") 2>/dev/null |
    awk -v n="${#pids[@]}" '/^Rss:/ {r += $2} /^Pss:/ {p += $2}
      END {printf "%d processes, Rss %d kB, Pss %d kB\n", n, r, p}'
}

# --- the steps -------------------------------------------------------------
summary="$out/summary.txt"
: >"$summary"
for n in $STEPS; do
  if ! fits "$n"; then
    echo "million.sh: $n connections need about $(( n * 13 / 1000 )) MB, $(( $(available_kb) / 1000 )) MB available: stopping" | tee -a "$summary" >&2
    break
  fi
  echo "million.sh: step $n" >&2
  start_node "$n"
  drops_before=$(softnet_drops)
  # A step is bounded: loadtest's own deadlines, and STEP_TIMEOUT over all.
  timeout --signal=TERM "$STEP_TIMEOUT" ./target/release/loadtest idle \
    --connections "$n" --rooms "$ROOMS" --attach-bytes "$ATTACH_BYTES" --hold "$HOLD" \
    --concurrency "$CONCURRENCY" --probe-rate "$PROBE_RATE" --open-timeout "$OPEN_TIMEOUT" \
    --server-cpu none --client-cpu none \
    --url "ws://127.0.0.1:$HTTP_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
    --json "$out/idle-$n.json" >"$out/idle-$n.txt" 2>"$out/idle-$n.err" &
  loadtest_pid=$!
  # The kernel's view every 5 s while the step runs, and the node's and the
  # clients' memory: RSS summed as loadtest does, and PSS, which counts the
  # pages the processes share (the binary's code, in every edge) once.
  while kill -0 "$loadtest_pid" 2>/dev/null; do
    { date +%T; grep '^TCP:' /proc/net/sockstat
      grep -E '^(MemAvailable|Slab|SUnreclaim|SReclaimable):' /proc/meminfo
      echo "node $(tree_memory "$node_pid")"
      echo "clients $(tree_memory "$loadtest_pid")"
    } >>"$out/kernel-$n.txt"
    sleep 5
  done
  status=0
  wait "$loadtest_pid" || status=$?
  loadtest_pid=
  stop_node
  opened=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["targets"][0]["open"]["opened"])' \
    "$out/idle-$n.json" 2>/dev/null || true)
  echo "step $n: exit $status, opened ${opened:-?}, input queue drops $(( $(softnet_drops) - drops_before )); $out/idle-$n.txt" | tee -a "$summary" >&2
  # Nearly all (99.9 %) or stop: the next step would only fail further.
  if [ -z "$opened" ] || [ "$opened" -lt $(( n - n / 1000 )) ]; then
    echo "million.sh: step $n did not hold; stopping" | tee -a "$summary" >&2
    break
  fi
  # Let the kernel finish closing the last step's sockets.
  sleep 5
done
echo "million.sh: results in $out" >&2
