#!/usr/bin/env bash
# Wakes of big rooms (issue 14): `loadtest wake --room-sockets SIZE` RUNS
# times for every room size and variant, each run against a node this script
# starts afresh from the shipped config (config/torpor.toml, its own
# temporary data_dir), the node pinned to SERVER_CPU and the load generator
# (and the client processes holding the room) to CLIENT_CPU, then the
# median of each figure as a markdown table.
#
# One object (/bench/wake-0) holds SIZE silent sockets, each with an
# ATTACH_BYTES attachment, opened from idle-client processes (one per
# 15,000 sockets, each from its own 127.0.0.x) and held through every
# sample; then SAMPLES times: wait until the object is hibernated (and, for
# exited-worker, every worker has exited), send `echo:x` on the run's own
# socket and time the reply (wake), then the same again (warm).
#
# Usage: loadtest/wake-room.sh [OUT_DIR]       (default target/wake-room/<time>)
#   e.g. a check at small size:  SIZES="200 1000" RUNS=1 SAMPLES=5 loadtest/wake-room.sh
# Environment (defaults in brackets):
#   SIZES [1000 10000 32768]  room sockets per run, each besides the probe's
#   VARIANTS [live-worker exited-worker]
#     live-worker    the worker stays up (worker_idle_exit = LIVE_IDLE_EXIT)
#     exited-worker  every worker has exited before each wake
#                    (worker_idle_exit = EXITED_IDLE_EXIT), so each wake
#                    starts one
#   RUNS [3]  SAMPLES [20] (wakes per run)  ATTACH_BYTES [2000]
#   HIBERNATE_AFTER [2s]  LIVE_IDLE_EXIT [30m]  EXITED_IDLE_EXIT [2s]
#   EDGES [3] for every size, so that only the room changes: 32,769 sockets
#     over 3 edges is ~11,000 each, under the 15,646 one edge holds at an
#     open files limit of 20,000 however unevenly the kernel spreads them.
#     max_connections_per_object is raised to SIZE + 1 where 32,768 is short.
#   SERVER_CPU [0]  CLIENT_CPU [1]  taskset -c lists (none: not pinned)
#   HTTP_PORT [48787]  ADMIN_PORT [49090]  (not bench.sh's, attack.sh's,
#     reload.sh's nor js-bench.sh's)
#   CONFIG_TEMPLATE [config/torpor.toml]
#   TORPOR [target/release/torpor, built here] the node's binary; one
#     named here is used as it is (an A/B against an older build)
#   LOADTEST_FLAGS  more flags for every `loadtest wake` (word-split)
#
# Results: OUT_DIR/<size>-<variant>-run<N>.json (+ .html, .txt), the nodes'
# configs and output in OUT_DIR/node-<size>-<variant>-run<N>.*, the table in
# OUT_DIR/wake-room.md (also printed). Needs jq for the table. A run that
# fails does not stop the others; the script exits 1 if any did. Only the
# processes this script starts are stopped, by pid (trap EXIT), on failure
# too; loadtest closes its client processes itself. A run takes about a
# minute to open 32,768 sockets, then HIBERNATE_AFTER (+ EXITED_IDLE_EXIT)
# and a little more per sample.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-1000 10000 32768}
VARIANTS=${VARIANTS:-live-worker exited-worker}
RUNS=${RUNS:-3}
SAMPLES=${SAMPLES:-20}
ATTACH_BYTES=${ATTACH_BYTES:-2000}
HIBERNATE_AFTER=${HIBERNATE_AFTER:-2s}
LIVE_IDLE_EXIT=${LIVE_IDLE_EXIT:-30m}
EXITED_IDLE_EXIT=${EXITED_IDLE_EXIT:-2s}
EDGES=${EDGES:-3}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
HTTP_PORT=${HTTP_PORT:-48787}
ADMIN_PORT=${ADMIN_PORT:-49090}
CONFIG_TEMPLATE=${CONFIG_TEMPLATE:-config/torpor.toml}
TORPOR=${TORPOR:-}
out=${1:-target/wake-room/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

if ! command -v jq >/dev/null; then
  echo "wake-room.sh: needs jq for the table" >&2
  exit 1
fi
# Both in one build when both are needed: built apart, the crates they
# share may be built twice with different features.
if [ -z "$TORPOR" ]; then
  cargo build --release --locked -p torpor -p torpor-loadtest >&2
  TORPOR=target/release/torpor
else
  cargo build --release --locked -p torpor-loadtest >&2
fi
# The edges and the client processes each hold up to ~15,000 sockets; the
# hard limit cannot be raised, but the soft one can be raised to it.
ulimit -n "$(ulimit -Hn)"

pin() { # CPUS COMMAND...: under taskset when asked for and present
  local cpus=$1; shift
  if [ "$cpus" != none ] && command -v taskset >/dev/null; then taskset -c "$cpus" "$@"; else "$@"; fi
}

node_pid=
node_data=
stop_node() {
  if [ -n "$node_pid" ]; then
    # SIGTERM to the supervisor, which stops its edges and workers (after
    # a run, those may still be handling the room's 32,768 closes).
    kill "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$node_pid" 2>/dev/null; then
      # Its edges and workers too, by pid: an edge left behind would hold
      # the port the next run's node needs.
      local children
      children=$(pgrep -P "$node_pid" || true)
      echo "wake-room.sh: torpor $node_pid did not stop in 30 s; killing it and its" \
        "processes ${children//$'\n'/ }" >&2
      # shellcheck disable=SC2086 # one pid a word
      kill -9 "$node_pid" $children 2>/dev/null || true
    fi
    wait "$node_pid" 2>/dev/null || true
    node_pid=
  fi
  if [ -n "$node_data" ]; then rm -rf "$node_data"; node_data=; fi
}
trap stop_node EXIT

# The template with this run's settings; fails if a key has no line to set.
write_config() { # FILE SIZE WORKER_IDLE_EXIT
  local file=$1 per_object=32768
  if [ $(($2 + 1)) -gt "$per_object" ]; then per_object=$(($2 + 1)); fi
  sed -e "s/^edges = .*/edges = $EDGES/" \
      -e "s/^bench_routes = .*/bench_routes = true/" \
      -e "s/^hibernate_after = .*/hibernate_after = \"$HIBERNATE_AFTER\"/" \
      -e "s/^worker_idle_exit = .*/worker_idle_exit = \"$3\"/" \
      -e "s/^max_connections_per_object = .*/max_connections_per_object = $per_object/" \
      "$CONFIG_TEMPLATE" >"$file"
  local want
  for want in "edges = $EDGES" "bench_routes = true" "hibernate_after = \"$HIBERNATE_AFTER\"" \
      "worker_idle_exit = \"$3\"" "max_connections_per_object = $per_object"; do
    if ! grep -qx "$want" "$file"; then
      echo "wake-room.sh: $CONFIG_TEMPLATE has no line for: $want" >&2
      exit 1
    fi
  done
}

start_node() { # CONFIG LOG-NAME
  node_data=$(mktemp -d)
  local cmd=("$TORPOR" --config "$1" --http "127.0.0.1:$HTTP_PORT"
    --admin "127.0.0.1:$ADMIN_PORT" --data-dir "$node_data")
  # Not through pin(): a backgrounded function is a subshell, and $! would be
  # its pid, not Torpor's. taskset execs, so $! is the supervisor's pid.
  if [ "$SERVER_CPU" != none ] && command -v taskset >/dev/null; then
    cmd=(taskset -c "$SERVER_CPU" "${cmd[@]}")
  fi
  "${cmd[@]}" >"$out/node-$2.out" 2>"$out/node-$2.err" &
  node_pid=$!
  for _ in $(seq 1 100); do
    grep -q "torpor ready" "$out/node-$2.out" && return 0
    kill -0 "$node_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "wake-room.sh: torpor did not start; see $out/node-$2.err" >&2
  exit 1
}

status=0
for size in $SIZES; do
  for variant in $VARIANTS; do
    case $variant in
      live-worker) idle_exit=$LIVE_IDLE_EXIT ;;
      exited-worker) idle_exit=$EXITED_IDLE_EXIT ;;
      *) echo "wake-room.sh: unknown variant $variant" >&2; exit 64 ;;
    esac
    for run in $(seq 1 "$RUNS"); do
      name="$size-$variant-run$run"
      file="$out/$name"
      write_config "$out/node-$name.toml" "$size" "$idle_exit"
      start_node "$out/node-$name.toml" "$name"
      echo "wake-room.sh: $size sockets, $variant, run $run" >&2
      # --db-mb 0: the probe is echo:x, which leaves the database closed.
      # shellcheck disable=SC2086 # LOADTEST_FLAGS is word-split on purpose
      if ! pin "$CLIENT_CPU" ./target/release/loadtest wake \
          --url "ws://127.0.0.1:$HTTP_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
          --objects 1 --db-mb 0 --room-sockets "$size" --attach-bytes "$ATTACH_BYTES" \
          --samples "$SAMPLES" --variant "$variant" --json "$file.json" \
          ${LOADTEST_FLAGS:-} >"$file.txt"; then
        echo "wake-room.sh: $name failed; see $file.txt" >&2
        status=1
      fi
      stop_node
      # Let the kernel finish closing the last run's sockets.
      sleep 2
    done
  done
done

# One figure of every run of SIZE and VARIANT, one per line.
figures() { # SIZE VARIANT JQ-EXPRESSION
  local run
  for run in $(seq 1 "$RUNS"); do
    local f="$out/$1-$2-run$run.json"
    if [ -f "$f" ]; then jq -r ".targets[0] | select(.error == null) | $3 // empty" "$f"; fi
  done
}
median() { sort -g | awk '{ v[NR] = $1 } END {
  if (NR == 0) { print "-"; exit }
  m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "%.3f\n", m }'; }
sum() { awk '{ s += $1 } END { print s + 0 }'; }
latency() { echo ".phases[] | select(.name == \"$1\") | .latency.summary.${2}_ms"; }
counter() { echo ".phases[] | select(.name == \"wake\") | .counters.$1"; }

{
  echo "Wake of one hibernated object holding SIZE more sockets with $ATTACH_BYTES B"
  echo "attachments, \`echo:x\` written → reply read; medians of $RUNS runs of $SAMPLES"
  echo "wakes (ms). Checks: wakes not confirmed by the object's counter, and worker"
  echo "starts a live-worker wake met, summed over the runs."
  echo
  echo "| room sockets | variant | wake p50 | wake p99 | warm p50 | warm p99 | runs | unconfirmed | worker restarts |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  for size in $SIZES; do
    for variant in $VARIANTS; do
      echo "| $size | $variant" \
        "| $(figures "$size" "$variant" "$(latency wake p50)" | median)" \
        "| $(figures "$size" "$variant" "$(latency wake p99)" | median)" \
        "| $(figures "$size" "$variant" "$(latency warm p50)" | median)" \
        "| $(figures "$size" "$variant" "$(latency warm p99)" | median)" \
        "| $(figures "$size" "$variant" "$(latency wake p99)" | wc -l)" \
        "| $(figures "$size" "$variant" "$(counter unconfirmed_wakes)" | sum)" \
        "| $(figures "$size" "$variant" "$(counter worker_restarts)" | sum) |"
    done
  done
  # The target: p99 at the largest size within 2x of the p99 at the smallest.
  first=${SIZES%% *} last=${SIZES##* }
  if [ "$first" != "$last" ]; then
    echo
    for variant in $VARIANTS; do
      small=$(figures "$first" "$variant" "$(latency wake p99)" | median)
      big=$(figures "$last" "$variant" "$(latency wake p99)" | median)
      awk -v s="$small" -v b="$big" -v v="$variant" -v f="$first" -v l="$last" 'BEGIN {
        if (s == "-" || b == "-" || s == 0) { printf "%s: p99 at %s over p99 at %s: -\n", v, l, f; exit }
        printf "%s: p99 at %s over p99 at %s: %.2fx\n", v, l, f, b / s }'
    done
  fi
} | tee "$out/wake-room.md"
echo "wake-room.sh: results in $out" >&2
exit "$status"
