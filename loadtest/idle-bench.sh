#!/usr/bin/env bash
# Runs `loadtest idle` RUNS times against a fresh `torpor` each time (a node
# that already served a connection storm would hide its high-water mark),
# with and without an attachment, and prints the median bytes per connection.
# Usage: loadtest/idle-bench.sh [CONNECTIONS] [RUNS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-15000}
runs=${2:-3}
out=${3:-target/idle-bench}
mkdir -p "$out"
cargo build --release --locked -p torpor-gateway -p torpor-loadtest >&2

node_pid=
stop_node() { if [ -n "$node_pid" ]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; node_pid=; fi; }
trap stop_node EXIT

for attach in 0 2000; do
  for run in $(seq 1 "$runs"); do
    rm -rf "$out/data"
    TORPOR_DATA_DIR="$out/data" ./target/release/torpor --config config/torpor.toml >"$out/node.out" 2>"$out/node.err" &
    node_pid=$!
    for _ in $(seq 1 100); do grep -q "torpor ready" "$out/node.out" && break; sleep 0.1; done
    ./target/release/loadtest idle --connections "$connections" --rooms 100 \
      --attach-bytes "$attach" --processes 4 --hold 5s \
      --json "$out/idle-$connections-a$attach-run$run.json" >"$out/idle-$connections-a$attach-run$run.txt"
    stop_node
    sleep 1
  done
  python3 - "$out" "$connections" "$attach" "$runs" <<'PY'
import json, statistics, sys
out, n, attach, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
reports = [json.load(open(f"{out}/idle-{n}-a{attach}-run{r}.json")) for r in range(1, runs + 1)]
for key in ["connections_opened", "connections_failed", "edge_rss_before_bytes", "edge_rss_after_bytes",
            "bytes_per_connection", "bytes_per_connection_beyond_attachment", "open_seconds"]:
    values = [r[key] for r in reports]
    print(f"attach={attach} {key}: median {statistics.median(values)} of {values}")
PY
done
