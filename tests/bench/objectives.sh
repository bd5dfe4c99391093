#!/usr/bin/env bash
# Service level objectives on the request path, benchmarked with wrk against a baseline measured
# in the same run: a route without an objective ("plain"), the same route with one that sets a
# latency ("objective": each request is judged by its failure and its duration, and counted met
# or missed), and one without a latency ("failures_only"). Each case is measured in rounds,
# every case once per round in turn; prints each round's req/s, the medians of req/s, p50 and
# p99, and the ratios to "plain". Lookout runs with --workers 1 and its store, access log and
# traces off.
#
#   tests/bench/objectives.sh                  # 3 rounds of 5 s
#   ROUNDS=5 DURATION=10s tests/bench/objectives.sh
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
upstream="instances: [\"127.0.0.1:$upstream_port\"]"
routes() { # the route's extra fields
  echo "  - { name: all, upstream: bench$1 }" >"$work/$2.routes"
  start_quiet_lookout "$2" "$upstream" "$work/$2.routes"
}
routes "" plain
routes ", slo: { objective: 99.9, latency: 300ms }" objective
routes ", slo: { objective: 99.9 }" failures_only

declare -A url=()
cases=(plain objective failures_only)
for name in "${cases[@]}"; do
  url[$name]="http://127.0.0.1:${port[$name]}/small"
  warm_up "${url[$name]}" 50
done

declare -A by_round=() p50s=() p99s=() header=()
measure_rounds

print_against "plain" /plain 14
