#!/usr/bin/env bash
# A full comparison session: Torpor against the two baselines (which
# loadtest starts itself) in every scenario, each run RUNS times against a
# freshly started release node, then the medians.
#
# Usage: loadtest/bench.sh [OUT_DIR]              (default target/bench/<time>)
# Environment (defaults in brackets):
#   SCENARIOS   which to run, in order [idle ping echo broadcast-1k broadcast-10k churn wake-live wake-exited]
#               (also idle-attach: idle with a 2000-byte attachment per socket;
#               ping-pipelined, echo-pipelined: 16 requests outstanding per connection)
#   RUNS [3]  EDGES [6]  WORKERS [2]  BASELINES [1] (0: Torpor alone)
#   SERVER_CPU [0]  CLIENT_CPU [1]    taskset -c lists: Torpor and the baselines
#                                     on one core, the load generator on another
#   HTTP_PORT [18787]  ADMIN_PORT [19090]
#   IDLE_CONNECTIONS [100000]  CONNECTIONS [1000] (ping, echo)
#   DURATION [10s] (each measured phase)  CHURN_RATE [1000]  WAKE_SAMPLES [50]
#   BROADCAST_WINDOW [8] (broadcasts in flight in the max phase)
#
# Results: OUT_DIR/<scenario>-run<N>.json (+ .html, .txt), medians in
# OUT_DIR/<scenario>-medians.txt. Only the processes this script starts are
# stopped, by pid (trap EXIT); each node gets its own temporary data dir.
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIOS=${SCENARIOS:-idle ping echo broadcast-1k broadcast-10k churn wake-live wake-exited}
RUNS=${RUNS:-3}
EDGES=${EDGES:-6}
WORKERS=${WORKERS:-2}
BASELINES=${BASELINES:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
HTTP_PORT=${HTTP_PORT:-18787}
ADMIN_PORT=${ADMIN_PORT:-19090}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-100000}
CONNECTIONS=${CONNECTIONS:-1000}
DURATION=${DURATION:-10s}
CHURN_RATE=${CHURN_RATE:-1000}
WAKE_SAMPLES=${WAKE_SAMPLES:-50}
BROADCAST_WINDOW=${BROADCAST_WINDOW:-8}
out=${1:-target/bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

cargo build --release --locked -p torpor -p torpor-loadtest >&2

pin() { # CPUS COMMAND...: pinned when taskset exists
  local cpus=$1; shift
  if command -v taskset >/dev/null; then taskset -c "$cpus" "$@"; else "$@"; fi
}

node_pid=
node_data=
stop_node() {
  if [ -n "$node_pid" ]; then
    # SIGTERM to the supervisor, which stops its edges and workers.
    kill "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
    node_pid=
  fi
  if [ -n "$node_data" ]; then rm -rf "$node_data"; node_data=; fi
}
trap stop_node EXIT

# config/torpor.toml with this session's settings.
write_config() { # NAME HIBERNATE_AFTER WORKER_IDLE_EXIT
  local file="$out/$1.toml"
  sed -e "s/^edges = .*/edges = $EDGES/" \
      -e "s/^bench_routes = .*/bench_routes = true/" \
      -e "s/^workers = .*/workers = $WORKERS/" \
      -e "s/^hibernate_after = .*/hibernate_after = \"$2\"/" \
      -e "s/^worker_idle_exit = .*/worker_idle_exit = \"$3\"/" \
      config/torpor.toml >"$file"
  if ! grep -q "^bench_routes = true\$" "$file"; then
    echo "bench.sh: config/torpor.toml has no 'bench_routes' line to set" >&2
    exit 1
  fi
  if ! grep -q "^edges = $EDGES\$" "$file"; then
    echo "bench.sh: config/torpor.toml has no 'edges' line to set" >&2
    exit 1
  fi
  echo "$file"
}

start_node() { # CONFIG
  node_data=$(mktemp -d)
  local cmd=(./target/release/torpor --config "$1" --http "127.0.0.1:$HTTP_PORT"
    --admin "127.0.0.1:$ADMIN_PORT" --data-dir "$node_data")
  # Not through pin(): a backgrounded function is a subshell, and $! would be
  # its pid, not Torpor's. taskset execs, so $! is the supervisor's pid.
  if command -v taskset >/dev/null; then cmd=(taskset -c "$SERVER_CPU" "${cmd[@]}"); fi
  "${cmd[@]}" >"$out/node.out" 2>>"$out/node.err" &
  node_pid=$!
  for _ in $(seq 1 100); do
    grep -q "torpor ready" "$out/node.out" && return 0
    kill -0 "$node_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench.sh: torpor did not start; see $out/node.err" >&2
  exit 1
}

# The load generator on its own core; its children and the baselines are
# pinned by loadtest itself from the same flags.
loadtest() { # SCENARIO-FLAGS...
  pin "$CLIENT_CPU" ./target/release/loadtest "$@" \
    --url "ws://127.0.0.1:$HTTP_PORT" --admin "127.0.0.1:$ADMIN_PORT"
}

baselines=()
if [ "$BASELINES" = 1 ]; then baselines=(--baselines); fi
common=(--server-cpu "$SERVER_CPU" --client-cpu "$CLIENT_CPU")

default_config=$(write_config node 10s 60s)
# Wakes: objects hibernate after 1 s; the worker stays (live) or exits
# 2 s after its last object (exited).
live_config=$(write_config wake-live 1s 10m)
exited_config=$(write_config wake-exited 1s 2s)

run_scenario() { # NAME RUN
  local name=$1 run=$2 file="$out/$1-run$2"
  local config=$default_config
  case $name in
    wake-live) config=$live_config ;;
    wake-exited) config=$exited_config ;;
  esac
  start_node "$config"
  local args
  case $name in
    idle) args=(idle --connections "$IDLE_CONNECTIONS" --hold 5s ${baselines[@]+"${baselines[@]}"} "${common[@]}") ;;
    idle-attach) args=(idle --connections "$IDLE_CONNECTIONS" --attach-bytes 2000 --hold 5s ${baselines[@]+"${baselines[@]}"} "${common[@]}") ;;
    ping) args=(ping --connections "$CONNECTIONS" --duration "$DURATION" ${baselines[@]+"${baselines[@]}"} "${common[@]}") ;;
    ping-pipelined) args=(ping --connections "$CONNECTIONS" --window 16 --duration "$DURATION" ${baselines[@]+"${baselines[@]}"} "${common[@]}") ;;
    echo) args=(echo --connections "$CONNECTIONS" --duration "$DURATION" ${baselines[@]+"${baselines[@]}"} "${common[@]}") ;;
    echo-pipelined) args=(echo --connections "$CONNECTIONS" --window 16 --duration "$DURATION" ${baselines[@]+"${baselines[@]}"} "${common[@]}") ;;
    broadcast-1k) args=(broadcast --connections 1000 --window "$BROADCAST_WINDOW" --duration "$DURATION" ${baselines[@]+"${baselines[@]}"} "${common[@]}") ;;
    broadcast-10k) args=(broadcast --connections 10000 --processes 2 --window "$BROADCAST_WINDOW" --duration "$DURATION" ${baselines[@]+"${baselines[@]}"} "${common[@]}") ;;
    churn) args=(churn --rate "$CHURN_RATE" --duration "$DURATION" ${baselines[@]+"${baselines[@]}"} "${common[@]}") ;;
    wake-live) args=(wake --variant live-worker --db-mb 1 --samples "$WAKE_SAMPLES") ;;
    wake-exited) args=(wake --variant exited-worker --db-mb 1 --samples "$WAKE_SAMPLES") ;;
    *) echo "bench.sh: unknown scenario $name" >&2; exit 64 ;;
  esac
  echo "bench.sh: $name run $run" >&2
  # A run with failures still writes its report; note it and go on.
  if ! loadtest "${args[@]}" --json "$file.json" >"$file.txt"; then
    echo "bench.sh: $name run $run reported problems; see $file.txt" >&2
  fi
  stop_node
  # Let the kernel finish closing the last run's sockets.
  sleep 2
}

for name in $SCENARIOS; do
  for run in $(seq 1 "$RUNS"); do
    run_scenario "$name" "$run"
  done
  files=()
  for run in $(seq 1 "$RUNS"); do
    [ -f "$out/$name-run$run.json" ] && files+=("$out/$name-run$run.json")
  done
  if [ "${#files[@]}" -gt 0 ]; then
    ./target/release/loadtest medians "${files[@]}" | tee "$out/$name-medians.txt"
  fi
done
echo "bench.sh: results in $out" >&2
