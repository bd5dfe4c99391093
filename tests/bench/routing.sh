#!/usr/bin/env bash
# Routing a large table, benchmarked with wrk against a baseline measured in the same run: a
# gateway with one route ("one route"); one with 1,000 prefix routes all under /api/v1/
# (/api/v1/r0 ... /api/v1/r999), asked for the first of them and for the last; and one with
# 1,000 routes with first segments of their own (/r0 ... /r999), asked for the last. A route
# index that only looked at the first segment would try every /api/v1/ route one by one for
# the last of them.
# Lookout runs with --workers 1 and its store, access log and traces off, so the route table is
# what differs between the runs. Each case is measured in rounds, every case once per round in
# turn; prints each round's req/s, the medians of req/s, p50 and p99, and the ratios to the
# one-route gateway.
#
#   tests/bench/routing.sh                     # 3 rounds of 5 s
#   ROUNDS=5 DURATION=10s tests/bench/routing.sh
#   LOOKOUT=/tmp/lookout-before tests/bench/routing.sh   # another build of the gateway
#
# Needs wrk (apt install wrk). This is a benchmark, not a test: nothing here passes or fails on
# a figure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
DURATION=${DURATION:-5s}
rounds=${ROUNDS:-3}
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"

start_bench_upstream

declare -A port=()
table() { # prefix-of-each-route
  for i in $(seq 0 999); do
    echo "  - { name: r$i, match: { prefix: $1$i }, strip_prefix: $1$i, upstream: bench }"
  done
  echo "  - { name: rest, upstream: bench }"
}
echo "  - { name: all, upstream: bench }" >"$work/one.routes"
table /api/v1/r >"$work/shared.routes"
table /r >"$work/distinct.routes"
for table in one shared distinct; do
  start_quiet_lookout "$table" "instances: [\"127.0.0.1:$upstream_port\"]" "$work/$table.routes"
done

declare -A url=(
  ["one route"]="http://127.0.0.1:${port[one]}/small"
  ["1,000 under /api/v1/: the first"]="http://127.0.0.1:${port[shared]}/api/v1/r0/small"
  ["1,000 under /api/v1/: the last"]="http://127.0.0.1:${port[shared]}/api/v1/r999/small"
  ["1,000 first segments: the last"]="http://127.0.0.1:${port[distinct]}/r999/small"
)
cases=("one route" "1,000 under /api/v1/: the first" "1,000 under /api/v1/: the last" "1,000 first segments: the last")
for name in "${cases[@]}"; do warm_up "${url[$name]}" 50; done

declare -A by_round=() p50s=() p99s=() header=()
measure_rounds

print_against "one route" /one 34
