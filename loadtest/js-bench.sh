#!/usr/bin/env bash
# One JavaScript Durable Objects app (loadtest/apps/bench-js) under Torpor
# (`torpor dev`) and under workerd (`workerd serve`, the runtime alone, not
# wrangler's node processes around it), in one session, with one load
# generator: each loadtest run is `--target torpor,external`, so the two
# servers take turns inside it and its report has both, with ratios. Every
# run starts both servers afresh (own ports, own temporary data dirs); RUNS
# runs of each scenario, then the medians.
#
# Needs workerd, from the package registry, outside the repo:
#   mkdir -p /tmp/jsb-npm && cd /tmp/jsb-npm && npm install workerd
# and WORKERD=/tmp/jsb-npm/node_modules/.bin/workerd (the default).
#
# Usage: loadtest/js-bench.sh [OUT_DIR]           (default target/js-bench/<time>)
# Environment (defaults in brackets):
#   SCENARIOS  in order [idle-attach echo broadcast wake]
#              idle-attach: IDLE_CONNECTIONS sockets over ROOMS objects, each
#                sends attach:<ATTACH_BYTES x a>; RSS per socket of each
#                server's whole process tree once the objects hibernated
#              echo: CONNECTIONS sockets over ROOMS objects, echo:<32 B>;
#                server CPU-s per million echoes (phase max)
#              broadcast: BROADCAST_CONNECTIONS sockets of one object;
#                server CPU-s per million deliveries (phase max)
#              wake: WAKE_OBJECTS objects with WAKE_DB_MB MiB each, each
#                probe after QUIET without an event, WAKE_SAMPLES in all;
#                Torpor first, then workerd (one loadtest run each)
#   RUNS [3]  WORKERD [/tmp/jsb-npm/node_modules/.bin/workerd]
#   IDLE_CONNECTIONS [15000]  ATTACH_BYTES [2000]  ROOMS [100]
#   CONNECTIONS [1000]  BROADCAST_CONNECTIONS [1000]  DURATION [10s]
#   HOLD [15s]    idle hold; longer than workerd's ~10 s hibernation timeout,
#                 since loadtest cannot ask workerd whether its objects sleep
#   QUIET [15s]   wake: quiet before each probe (both hibernate after 10 s)
#   WAKE_OBJECTS [20]  WAKE_SAMPLES [100]  WAKE_DB_MB [1]
#   SERVER_CPU [0]  CLIENT_CPU [1]   taskset -c lists: both servers on one
#                                    core, the load generator on another;
#                                    none: not pinned (a shared machine)
#   TORPOR_PORT [28787]  ADMIN_PORT [29090]  WORKERD_PORT [28788] (not
#                 bench.sh's ports, so both can run on one machine)
#   BUILD [1]  0: use target/release as it is
#
# Results: OUT_DIR/<scenario>-run<N>.json (+ .html, .txt), medians in
# OUT_DIR/<scenario>-medians.txt. Only the processes this script starts are
# stopped, by pid (trap EXIT).
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIOS=${SCENARIOS:-idle-attach echo broadcast wake}
RUNS=${RUNS:-3}
WORKERD=${WORKERD:-/tmp/jsb-npm/node_modules/.bin/workerd}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-15000}
ATTACH_BYTES=${ATTACH_BYTES:-2000}
ROOMS=${ROOMS:-100}
CONNECTIONS=${CONNECTIONS:-1000}
BROADCAST_CONNECTIONS=${BROADCAST_CONNECTIONS:-1000}
DURATION=${DURATION:-10s}
HOLD=${HOLD:-15s}
QUIET=${QUIET:-15s}
WAKE_OBJECTS=${WAKE_OBJECTS:-20}
WAKE_SAMPLES=${WAKE_SAMPLES:-100}
WAKE_DB_MB=${WAKE_DB_MB:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TORPOR_PORT=${TORPOR_PORT:-28787}
ADMIN_PORT=${ADMIN_PORT:-29090}
WORKERD_PORT=${WORKERD_PORT:-28788}
BUILD=${BUILD:-1}
app=loadtest/apps/bench-js
out=${1:-target/js-bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

if ! [ -x "$WORKERD" ]; then
  echo "js-bench.sh: no workerd at $WORKERD; install it from the package registry, outside the repo:" >&2
  echo "  mkdir -p /tmp/jsb-npm && cd /tmp/jsb-npm && npm install workerd" >&2
  echo "or point WORKERD at a workerd binary" >&2
  exit 69
fi
if [ "$BUILD" = 1 ]; then
  cargo build --release --locked -p torpor -p torpor-loadtest >&2
fi
# Each server and each client process holds up to IDLE_CONNECTIONS sockets;
# the servers inherit this.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# A prefix for server commands. Not a function: a backgrounded function is
# a subshell, and $! would be its pid, not the server's; taskset execs.
pin=()
if [ "$SERVER_CPU" != none ] && command -v taskset >/dev/null; then pin=(taskset -c "$SERVER_CPU"); fi

torpor_pid= workerd_pid= data=
stop_one() { # PID
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
stop_servers() {
  # SIGTERM to Torpor's supervisor stops its edges and workers; workerd is
  # one process.
  stop_one "$torpor_pid"; torpor_pid=
  stop_one "$workerd_pid"; workerd_pid=
  if [ -n "$data" ]; then rm -rf "$data"; data=; fi
}
trap stop_servers EXIT
# So that the EXIT trap runs when the session is interrupted too.
trap 'exit 130' INT TERM

wait_listening() { # NAME PID PORT LOG
  # A minute: the machine may be busy, and the servers run at its priority.
  for _ in $(seq 1 600); do
    if ! kill -0 "$2" 2>/dev/null; then break; fi
    # Any HTTP answer means it listens (the app says 404 off /bench/).
    if curl -s -o /dev/null "http://127.0.0.1:$3/" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "js-bench.sh: $1 did not start; see $4" >&2
  exit 1
}

start_servers() {
  data=$(mktemp -d)
  mkdir -p "$data/torpor" "$data/workerd"
  # hibernate_after is Torpor's default, 10 s, under `torpor dev`: the same
  # as workerd's eviction of an object whose sockets are all hibernatable.
  ${pin[@]+"${pin[@]}"} ./target/release/torpor dev "$app/wrangler.toml" \
    --http "127.0.0.1:$TORPOR_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
    --data-dir "$data/torpor" >"$out/torpor.out" 2>>"$out/torpor.err" &
  torpor_pid=$!
  ${pin[@]+"${pin[@]}"} "$WORKERD" serve "$app/workerd.capnp" \
    --socket-addr "http=127.0.0.1:$WORKERD_PORT" \
    --directory-path "do-storage=$data/workerd" >"$out/workerd.out" 2>>"$out/workerd.err" &
  workerd_pid=$!
  wait_listening torpor "$torpor_pid" "$TORPOR_PORT" "$out/torpor.err"
  wait_listening workerd "$workerd_pid" "$WORKERD_PORT" "$out/workerd.err"
}

loadtest() { # FLAGS...: the load generator on its own core
  if [ "$CLIENT_CPU" != none ] && command -v taskset >/dev/null; then
    taskset -c "$CLIENT_CPU" ./target/release/loadtest "$@"
  else
    ./target/release/loadtest "$@"
  fi
}

both=(--target torpor,external --url "ws://127.0.0.1:$TORPOR_PORT" --admin "127.0.0.1:$ADMIN_PORT")
common=(--server-cpu "$SERVER_CPU" --client-cpu "$CLIENT_CPU")

run_scenario() { # NAME RUN
  local name=$1 run=$2 file="$out/$1-run$2"
  start_servers
  local external=(--external-url "ws://127.0.0.1:$WORKERD_PORT" --external-pid "$workerd_pid")
  echo "js-bench.sh: $name run $run" >&2
  local status=0
  case $name in
    idle-attach)
      loadtest idle --connections "$IDLE_CONNECTIONS" --rooms "$ROOMS" \
        --attach-bytes "$ATTACH_BYTES" --hold "$HOLD" "${both[@]}" "${external[@]}" \
        "${common[@]}" --json "$file.json" >"$file.txt" || status=$? ;;
    echo)
      loadtest echo --connections "$CONNECTIONS" --rooms "$ROOMS" --duration "$DURATION" \
        "${both[@]}" "${external[@]}" "${common[@]}" --json "$file.json" >"$file.txt" || status=$? ;;
    broadcast)
      loadtest broadcast --connections "$BROADCAST_CONNECTIONS" --duration "$DURATION" \
        "${both[@]}" "${external[@]}" "${common[@]}" --json "$file.json" >"$file.txt" || status=$? ;;
    wake)
      # Not one run with two targets: wake takes one server at a time. The
      # same procedure on both (a fixed quiet spell, then recall to check
      # the instance was new), not Torpor's admin API, so neither is timed
      # differently.
      local flags=(--objects "$WAKE_OBJECTS" --samples "$WAKE_SAMPLES" --db-mb "$WAKE_DB_MB" --quiet "$QUIET")
      loadtest wake --url "ws://127.0.0.1:$TORPOR_PORT" "${flags[@]}" \
        --json "$file-torpor.json" >"$file-torpor.txt" || status=$?
      loadtest wake --target external --url "ws://127.0.0.1:$WORKERD_PORT" "${flags[@]}" \
        --json "$file-workerd.json" >"$file-workerd.txt" || status=$? ;;
    *) echo "js-bench.sh: unknown scenario $name" >&2; exit 64 ;;
  esac
  # A run with failures still writes its report; note it and go on.
  if [ "$status" != 0 ]; then
    echo "js-bench.sh: $name run $run reported problems (exit $status); see $file*.txt" >&2
  fi
  stop_servers
  # Let the kernel finish closing the last run's sockets.
  sleep 2
}

medians() { # NAME FILE-PATTERN-SUFFIX
  local files=()
  for run in $(seq 1 "$RUNS"); do
    [ -f "$out/$1-run$run$2.json" ] && files+=("$out/$1-run$run$2.json")
  done
  if [ "${#files[@]}" -gt 0 ]; then
    ./target/release/loadtest medians "${files[@]}" | tee "$out/$1$2-medians.txt"
  fi
}

# Runs interleaved: every scenario once, then every scenario again, so that
# a slow spell of the machine does not land on one scenario's runs only.
for run in $(seq 1 "$RUNS"); do
  for name in $SCENARIOS; do
    run_scenario "$name" "$run"
  done
done
for name in $SCENARIOS; do
  if [ "$name" = wake ]; then
    medians wake -torpor
    medians wake -workerd
  else
    medians "$name" ""
  fi
done
echo "js-bench.sh: results in $out (external = workerd)" >&2
