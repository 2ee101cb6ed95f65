#!/usr/bin/env bash
# The "Under attack" table of BENCHMARKS.md in one command: `loadtest attack`
# RUNS times for every kind, each run against a node this script starts
# afresh from the shipped config (config/torpor.toml, its own temporary
# data_dir), the node pinned to SERVER_CPU and the attack to CLIENT_CPU,
# then the median of each figure per kind as a markdown table.
#
# Usage: loadtest/attack.sh [OUT_DIR]          (default target/attack/<time>)
# Environment (defaults in brackets):
#   KINDS  which attacks, in order [stalled-heads stalled-bodies
#          keepalive-idle ping-flood fast-sender object-names counters matches]
#     stalled-heads   CONNECTIONS partial request heads, a byte every 3 s
#     stalled-bodies  CONNECTIONS POST heads whose 9-byte body never comes
#     keepalive-idle  CONNECTIONS keep-alive connections, idle after a GET
#     ping-flood      FLOOD_SOCKETS sockets on echo objects flooding empty
#                     pings, never reading (SO_RCVBUF 4096)
#     fast-sender     FAST_SOCKETS sockets writing FRAME_BYTES frames to an
#                     echo object without pause, echoes read if FAST_READ
#     object-names    NAMES GETs of /presence/<new name>, 32 keep-alive
#                     connections, ended when done or at COUNT_DURATION
#     counters        COUNTERS POSTs to /counter/<new name> (objects that
#                     store), likewise
#     matches         MATCHES GameRelay matches of 2 players, tick_ms=10
#   RUNS [3]  TRIES [100] (the fresh client's, 100 ms apart)
#   DURATION [30s] (the kinds without a count)
#   COUNT_DURATION [30m] (object-names, counters: the most they may take;
#     at 160 storing counters a second, 100,000 take over ten minutes)
#   CONNECTIONS [10000]  FLOOD_SOCKETS [20]  FAST_SOCKETS [1]
#   FRAME_BYTES [262144]  FAST_READ [true]  NAMES [1000000]
#   COUNTERS [100000]  MATCHES [50]
#   SERVER_CPU [0]  CLIENT_CPU [1]  taskset -c lists (none: not pinned)
#   HTTP_PORT [38787]  ADMIN_PORT [39090]  (not bench.sh's nor reload.sh's)
#   CONFIG_TEMPLATE [config/torpor.toml]
#   TORPOR [target/release/torpor, built here] the node's binary; one
#     named here is used as it is (an A/B against an older build)
#   START_NODE [1]; 0 attacks a node you started yourself at URL, ADMIN
#     (default the ports above), counting DATA_DIR's files if set, with
#     PAUSE [15] seconds between runs so its handshake_timeout lets go of
#     the last run's connections
#   LOADTEST_FLAGS  more flags for every `loadtest attack` (word-split)
#
# Results: OUT_DIR/<kind>-run<N>.json (+ .html, .txt), the node's output in
# OUT_DIR/node-<kind>-run<N>.{out,err}, the table in OUT_DIR/attack-table.md
# (also printed). A run that misses the goal (exit 1) does not stop the
# others; the script exits 1 if any did. Only the processes this script
# starts are stopped, by pid (trap EXIT), on failure too; the nodes'
# data_dirs are removed when the script ends, not after each run: ext4
# without a journal skips inodes deleted in the last minutes, reading an
# inode table for each, and a counters run that created 100,000 files
# right after the last one deleted as many lost a third of its CPU to it.
set -euo pipefail
cd "$(dirname "$0")/.."

KINDS=${KINDS:-stalled-heads stalled-bodies keepalive-idle ping-flood fast-sender object-names counters matches}
RUNS=${RUNS:-3}
TRIES=${TRIES:-100}
DURATION=${DURATION:-30s}
COUNT_DURATION=${COUNT_DURATION:-30m}
CONNECTIONS=${CONNECTIONS:-10000}
FLOOD_SOCKETS=${FLOOD_SOCKETS:-20}
FAST_SOCKETS=${FAST_SOCKETS:-1}
FRAME_BYTES=${FRAME_BYTES:-262144}
FAST_READ=${FAST_READ:-true}
NAMES=${NAMES:-1000000}
COUNTERS=${COUNTERS:-100000}
MATCHES=${MATCHES:-50}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
HTTP_PORT=${HTTP_PORT:-38787}
ADMIN_PORT=${ADMIN_PORT:-39090}
CONFIG_TEMPLATE=${CONFIG_TEMPLATE:-config/torpor.toml}
TORPOR=${TORPOR:-}
START_NODE=${START_NODE:-1}
URL=${URL:-ws://127.0.0.1:$HTTP_PORT}
ADMIN=${ADMIN:-127.0.0.1:$ADMIN_PORT}
DATA_DIR=${DATA_DIR:-}
PAUSE=${PAUSE:-15}
out=${1:-target/attack/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

cargo build --release --locked -p torpor-loadtest >&2
if [ "$START_NODE" = 1 ] && [ -z "$TORPOR" ]; then
  cargo build --release --locked -p torpor >&2
  TORPOR=target/release/torpor
fi
# 10,000 held connections and the fresh client's in one process; the hard
# limit cannot be raised, but the soft one can be raised to it.
ulimit -n "$(ulimit -Hn)"

pin() { # CPUS COMMAND...: under taskset when asked for and present
  local cpus=$1; shift
  if [ "$cpus" != none ] && command -v taskset >/dev/null; then taskset -c "$cpus" "$@"; else "$@"; fi
}

node_pid=
node_data=
spent_data=()
stop_node() {
  if [ -n "$node_pid" ]; then
    # SIGTERM to the supervisor, which stops its edges and workers.
    kill "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
    node_pid=
  fi
  if [ -n "$node_data" ]; then spent_data+=("$node_data"); node_data=; fi
}
finish() {
  stop_node
  if [ "${#spent_data[@]}" -gt 0 ]; then rm -rf "${spent_data[@]}"; fi
}
trap finish EXIT

start_node() { # LOG-NAME
  node_data=$(mktemp -d)
  local cmd=("$TORPOR" --config "$CONFIG_TEMPLATE" --http "127.0.0.1:$HTTP_PORT"
    --admin "127.0.0.1:$ADMIN_PORT" --data-dir "$node_data")
  # Not through pin(): a backgrounded function is a subshell, and $! would be
  # its pid, not Torpor's. taskset execs, so $! is the supervisor's pid.
  if [ "$SERVER_CPU" != none ] && command -v taskset >/dev/null; then
    cmd=(taskset -c "$SERVER_CPU" "${cmd[@]}")
  fi
  "${cmd[@]}" >"$out/node-$1.out" 2>"$out/node-$1.err" &
  node_pid=$!
  for _ in $(seq 1 100); do
    grep -q "torpor ready" "$out/node-$1.out" && return 0
    kill -0 "$node_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "attack.sh: torpor did not start; see $out/node-$1.err" >&2
  exit 1
}

kind_flags() { # KIND: its size and bounds
  case $1 in
    stalled-heads|stalled-bodies|keepalive-idle)
      echo --connections "$CONNECTIONS" --duration "$DURATION" ;;
    ping-flood) echo --connections "$FLOOD_SOCKETS" --duration "$DURATION" ;;
    fast-sender)
      echo --connections "$FAST_SOCKETS" --frame-bytes "$FRAME_BYTES" --read "$FAST_READ" \
        --duration "$DURATION" ;;
    object-names) echo --count "$NAMES" --duration "$COUNT_DURATION" ;;
    counters) echo --count "$COUNTERS" --duration "$COUNT_DURATION" ;;
    matches) echo --matches "$MATCHES" --duration "$DURATION" ;;
    *) echo "attack.sh: unknown kind $1" >&2; exit 64 ;;
  esac
}

status=0
files=()
for kind in $KINDS; do
  flags=$(kind_flags "$kind")
  for run in $(seq 1 "$RUNS"); do
    file="$out/$kind-run$run"
    data_flags=()
    if [ "$START_NODE" = 1 ]; then
      start_node "$kind-run$run"
      data_flags=(--data-dir "$node_data")
    elif [ -n "$DATA_DIR" ]; then
      data_flags=(--data-dir "$DATA_DIR")
    fi
    echo "attack.sh: $kind run $run" >&2
    # shellcheck disable=SC2086 # flags and LOADTEST_FLAGS are word-split on purpose
    if ! pin "$CLIENT_CPU" ./target/release/loadtest attack --url "$URL" --admin "$ADMIN" \
        --kind "$kind" $flags --tries "$TRIES" ${data_flags[@]+"${data_flags[@]}"} \
        --json "$file.json" ${LOADTEST_FLAGS:-} >"$file.txt"; then
      echo "attack.sh: $kind run $run missed the goal or failed; see $file.txt" >&2
      status=1
    fi
    [ -f "$file.json" ] && files+=("$file.json")
    if [ "$START_NODE" = 1 ]; then
      stop_node
      # Let the kernel finish closing the last run's sockets.
      sleep 2
    else
      sleep "$PAUSE"
    fi
  done
done
if [ "${#files[@]}" -gt 0 ]; then
  ./target/release/loadtest attack-table "${files[@]}" | tee "$out/attack-table.md"
fi
echo "attack.sh: results in $out" >&2
exit "$status"
