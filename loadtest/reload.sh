#!/usr/bin/env bash
# A deploy rehearsed under load: a node runs binary A from a copy in a
# temporary directory; `loadtest reload` holds its sockets and traffic while
# binary B (a build with another TORPOR_BUILD label) is renamed over the copy
# and `torpor reload` swaps the workers (DEPLOY=upgrade: `torpor upgrade`
# swaps the edges); then the medians of RUNS runs.
#
# Usage: loadtest/reload.sh [OUT_DIR]        (default target/DEPLOY/<time>)
# Environment (defaults in brackets):
#   DEPLOY   reload (the workers) or upgrade (the edges) [reload]
#   NODE_A   binary the node starts with [target/release/torpor, built here]
#   NODE_B   binary swapped in [target/reload-b/release/torpor, built here
#            with TORPOR_BUILD=b]
#   EXPECT_VERSION  what objects must answer after a reload [B's own
#            `describe`]; not for an upgrade, which keeps the workers
#   CONFIG_TEMPLATE [config/torpor.toml]: the config the node's is made from
#   RUNS [3]  EDGES [2]  WORKERS [2]  HIBERNATE_AFTER [2s]
#   CONNECTIONS [10000]  ROOMS [20]
#   SERVER_CPU [0]  CLIENT_CPU [1]   taskset -c lists (none: not pinned)
#   HTTP_PORT [28787]  ADMIN_PORT [29090]  (not bench.sh's, so both can run;
#            below the ephemeral range, so no client socket takes them)
#   LOADTEST_FLAGS  more flags for `loadtest reload` (word-split)
#
# Results: OUT_DIR/DEPLOY-run<N>.json (+ .html, .txt), the node's output in
# OUT_DIR/node-run<N>.{out,err}, the machine's CPU counters (/proc/stat)
# before and after each run in OUT_DIR/stat-run<N>.txt, medians in
# OUT_DIR/DEPLOY-medians.txt.
# Only the processes this script starts are stopped, by pid (trap EXIT), on
# failure too; each run gets its own temporary directory, removed after.
set -euo pipefail
cd "$(dirname "$0")/.."

DEPLOY=${DEPLOY:-reload}
case "$DEPLOY" in
  reload | upgrade) ;;
  *) echo "reload.sh: DEPLOY=$DEPLOY is not reload or upgrade" >&2; exit 64 ;;
esac
RUNS=${RUNS:-3}
EDGES=${EDGES:-2}
WORKERS=${WORKERS:-2}
HIBERNATE_AFTER=${HIBERNATE_AFTER:-2s}
CONNECTIONS=${CONNECTIONS:-10000}
ROOMS=${ROOMS:-20}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
HTTP_PORT=${HTTP_PORT:-28787}
ADMIN_PORT=${ADMIN_PORT:-29090}
CONFIG_TEMPLATE=${CONFIG_TEMPLATE:-config/torpor.toml}
LOADTEST_FLAGS=${LOADTEST_FLAGS:-}
out=${1:-target/$DEPLOY/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

cargo build --release --locked -p torpor-loadtest >&2
if [ -z "${NODE_A:-}" ]; then
  cargo build --release --locked -p torpor >&2
  NODE_A=target/release/torpor
fi
if [ -z "${NODE_B:-}" ]; then
  TORPOR_BUILD=b cargo build --release --locked -p torpor --target-dir target/reload-b >&2
  NODE_B=target/reload-b/release/torpor
fi
version_of() { # BINARY: the version its hidden `describe` reports
  "$1" describe | sed -n 's/.*"version":"\([^"]*\)".*/\1/p'
}
version_a=$(version_of "$NODE_A")
version_b=$(version_of "$NODE_B")
EXPECT_VERSION=${EXPECT_VERSION:-$version_b}
# Even an upgrade needs B to differ: else nothing tells A's edges from B's.
if [ "$version_a" = "$version_b" ]; then
  echo "reload.sh: A and B both answer $version_a; build B with another TORPOR_BUILD" >&2
  exit 64
fi
echo "reload.sh: $NODE_A ($version_a) → $NODE_B ($version_b)" >&2

# 10,000 sockets over 2 edges is 5,000 descriptors an edge; the hard limit
# (20,000 here) cannot be raised, but the soft one can be raised to it.
ulimit -n "$(ulimit -Hn)"
limit=$(ulimit -n)
if [ "$limit" != unlimited ] && [ $(( CONNECTIONS / EDGES + 1000 )) -ge "$limit" ]; then
  echo "reload.sh: $CONNECTIONS sockets over $EDGES edges need more than $limit descriptors an edge; raise EDGES" >&2
  exit 64
fi

pin() { # CPUS COMMAND...: under taskset when asked for and present
  local cpus=$1; shift
  if [ "$cpus" != none ] && command -v taskset >/dev/null; then taskset -c "$cpus" "$@"; else "$@"; fi
}

node_pid=
node_dir=
started_pids=
admin_get() { # PATH: one admin GET, empty on failure (bounded by curl's timeout)
  curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT$1" 2>/dev/null || true
}
stop_node() {
  if [ -n "$node_pid" ]; then
    # The node's processes as it lists them now (workers were replaced
    # mid-run), to be sure none outlives the supervisor.
    local pids
    pids=$(admin_get /admin/node | grep -o '"pid":[0-9]*' | cut -d: -f2 || true)
    kill "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
    for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
    # The processes it started with that it no longer lists (an upgrade
    # replaced the edges): one still running from the node's directory is an
    # old edge that never exited.
    for pid in $started_pids; do
      case " ${pids//$'\n'/ } " in *" $pid "*) continue ;; esac
      case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
        "$node_dir"/*)
          echo "reload.sh: process $pid (from the node's start) still running; killed" >&2
          kill -9 "$pid" 2>/dev/null || true ;;
      esac
    done
    node_pid=
    started_pids=
  fi
  if [ -n "$node_dir" ]; then rm -rf "$node_dir"; node_dir=; fi
}
trap stop_node EXIT

start_node() { # RUN
  node_dir=$(mktemp -d)
  # A copy, so that renaming B over it leaves NODE_A as it was.
  cp "$NODE_A" "$node_dir/torpor"
  cp "$NODE_B" "$node_dir/torpor.new"
  # Everything in the file, flags for nothing: a reload re-reads the file,
  # and refuses a change to `listen`.
  sed -e "s|^data_dir = .*|data_dir = \"$node_dir/data\"|" \
      -e "s/^edges = .*/edges = $EDGES/" \
      -e "s/^bench_routes = .*/bench_routes = true/" \
      -e "s/^workers = .*/workers = $WORKERS/" \
      -e "s/^hibernate_after = .*/hibernate_after = \"$HIBERNATE_AFTER\"/" \
      -e "s/^http = .*/http = \"127.0.0.1:$HTTP_PORT\"/" \
      -e "s/^admin = .*/admin = \"127.0.0.1:$ADMIN_PORT\"/" \
      "$CONFIG_TEMPLATE" >"$node_dir/node.toml"
  for key in "edges = $EDGES" "bench_routes = true" "http = \"127.0.0.1:$HTTP_PORT\"" "admin = \"127.0.0.1:$ADMIN_PORT\""; do
    if ! grep -qF "$key" "$node_dir/node.toml"; then
      echo "reload.sh: $CONFIG_TEMPLATE has no line to set $key" >&2
      exit 1
    fi
  done
  cp "$node_dir/node.toml" "$out/node.toml"
  local cmd=("$node_dir/torpor" --config "$node_dir/node.toml")
  # taskset execs, so $! is the supervisor's pid (not a subshell's).
  if [ "$SERVER_CPU" != none ] && command -v taskset >/dev/null; then
    cmd=(taskset -c "$SERVER_CPU" "${cmd[@]}")
  fi
  "${cmd[@]}" >"$out/node-run$1.out" 2>"$out/node-run$1.err" &
  node_pid=$!
  for _ in $(seq 1 100); do
    if grep -q "torpor ready" "$out/node-run$1.out"; then
      started_pids=$(admin_get /admin/node | grep -o '"pid":[0-9]*' | cut -d: -f2 || true)
      return 0
    fi
    kill -0 "$node_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "reload.sh: torpor did not start: $(tail -1 "$out/node-run$1.err")" >&2
  exit 1
}

failed=0
for run in $(seq 1 "$RUNS"); do
  start_node "$run"
  file="$out/$DEPLOY-run$run"
  reload_cmd="mv -f '$node_dir/torpor.new' '$node_dir/torpor' && '$node_dir/torpor' $DEPLOY --config '$node_dir/node.toml' --admin 127.0.0.1:$ADMIN_PORT"
  if [ "$DEPLOY" = reload ]; then
    deploy_flags=(--expect-version "$EXPECT_VERSION")
  else
    deploy_flags=(--deploy upgrade)
  fi
  echo "reload.sh: run $run" >&2
  # The machine's CPU counters around the run: with the report's node and
  # client CPU, they tell whether anything else was running meanwhile.
  head -1 /proc/stat >"$out/stat-run$run.txt"
  # shellcheck disable=SC2086 # LOADTEST_FLAGS is meant to be word-split
  if ! pin "$CLIENT_CPU" ./target/release/loadtest reload \
      --url "ws://127.0.0.1:$HTTP_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
      --connections "$CONNECTIONS" --rooms "$ROOMS" \
      --client-cpu "$CLIENT_CPU" \
      --reload-cmd "$reload_cmd" "${deploy_flags[@]}" \
      $LOADTEST_FLAGS --json "$file.json" >"$file.txt"; then
    echo "reload.sh: run $run failed; see $file.txt and $out/node-run$run.err" >&2
    failed=1
  fi
  head -1 /proc/stat >>"$out/stat-run$run.txt"
  stop_node
  # Let the kernel finish closing the last run's sockets.
  sleep 2
done

files=()
for run in $(seq 1 "$RUNS"); do
  [ -f "$out/$DEPLOY-run$run.json" ] && files+=("$out/$DEPLOY-run$run.json")
done
if [ "${#files[@]}" -gt 0 ]; then
  ./target/release/loadtest medians "${files[@]}" | tee "$out/$DEPLOY-medians.txt"
fi
echo "reload.sh: results in $out" >&2
exit "$failed"
