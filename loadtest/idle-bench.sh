#!/usr/bin/env bash
# Idle memory only: `loadtest idle` RUNS times, each against a freshly started
# Torpor (a node that already served a connection storm would hide its
# high-water mark), with and without a 2000-byte attachment per socket, then
# the median bytes per connection: the edges', and the whole node's
# (supervisor, edges and workers, once the objects have hibernated, as
# `loadtest idle` reports them). A thin wrapper around bench.sh, which
# reads the same environment (BASELINES=1 adds the baselines; EDGES defaults
# to one edge per 15000 connections, since each edge holds under 20000).
# Usage: loadtest/idle-bench.sh [CONNECTIONS] [RUNS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-15000}
SCENARIOS="idle idle-attach" \
IDLE_CONNECTIONS=$connections \
RUNS=${2:-3} \
BASELINES=${BASELINES:-0} \
EDGES=${EDGES:-$(( (connections + 14999) / 15000 ))} \
  exec loadtest/bench.sh "${3:-target/idle-bench}"
