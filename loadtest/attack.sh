#!/usr/bin/env bash
# The "Under attack" measurements so far: `loadtest attack` once per kind
# against a node you started yourself (the shipped config, with your own
# data_dir), a pause between kinds so the node's handshake_timeout has let
# go of the last one's connections.
#
# Usage: loadtest/attack.sh [OUT_DIR]          (default target/attack/<time>)
# Environment (defaults in brackets):
#   URL [ws://127.0.0.1:8787]  ADMIN [127.0.0.1:9090]
#   KINDS [stalled-heads stalled-bodies keepalive-idle]
#   CONNECTIONS [10000]  DURATION [30s]  TRIES [100]  PAUSE [15]
#   LOADTEST_FLAGS  more flags for `loadtest attack` (word-split)
#
# Results: OUT_DIR/attack-<kind>.json (+ .html, .txt). A kind that misses
# the goal (exit 1) does not stop the others; the script exits 1 if any did.
set -euo pipefail
cd "$(dirname "$0")/.."

URL=${URL:-ws://127.0.0.1:8787}
ADMIN=${ADMIN:-127.0.0.1:9090}
KINDS=${KINDS:-stalled-heads stalled-bodies keepalive-idle}
CONNECTIONS=${CONNECTIONS:-10000}
DURATION=${DURATION:-30s}
TRIES=${TRIES:-100}
PAUSE=${PAUSE:-15}
OUT=${1:-target/attack/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

cargo build --release --locked -p torpor-loadtest
status=0
first=1
for kind in $KINDS; do
    [ "$first" = 1 ] || sleep "$PAUSE"
    first=0
    # shellcheck disable=SC2086 # LOADTEST_FLAGS is word-split on purpose
    target/release/loadtest attack --url "$URL" --admin "$ADMIN" --kind "$kind" \
        --connections "$CONNECTIONS" --duration "$DURATION" --tries "$TRIES" \
        --json "$OUT/attack-$kind.json" ${LOADTEST_FLAGS:-} \
        | tee "$OUT/attack-$kind.txt" || status=1
done
echo "results in $OUT"
exit "$status"
