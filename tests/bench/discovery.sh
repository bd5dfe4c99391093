#!/usr/bin/env bash
# DNS service discovery on the request path, benchmarked with wrk against a baseline measured
# in the same run: the same upstream listed as an instance ("listed") and discovered through
# DNS ("discovered": `discover: { dns: localhost:PORT }`, which the system's resolver answers
# from /etc/hosts). A discovered upstream's instances sit behind an ArcSwap, loaded once per
# request (an atomic reference count taken and given back); a listed one is borrowed from the
# route. Each case is measured in rounds, every case once per round in turn; prints each
# round's req/s, the medians of req/s, p50 and p99, and the ratios to "listed".
# Lookout runs with --workers 1 and its store, access log and traces off.
#
#   tests/bench/discovery.sh                   # 3 rounds of 5 s
#   ROUNDS=5 DURATION=10s tests/bench/discovery.sh
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
echo "  - { name: all, upstream: bench }" >"$work/all.routes"
start_quiet_lookout listed "instances: [\"127.0.0.1:$upstream_port\"]" "$work/all.routes"
start_quiet_lookout discovered "discover: { dns: \"localhost:$upstream_port\" }" "$work/all.routes"

declare -A url=(
  [listed]="http://127.0.0.1:${port[listed]}/small"
  [discovered]="http://127.0.0.1:${port[discovered]}/small"
)
cases=(listed discovered)
# Until its first resolution ends a discovered upstream has no instance: wait for an answer.
for _ in $(seq 100); do curl -sf -o /dev/null "${url[discovered]}" && break; sleep 0.05; done
for name in "${cases[@]}"; do warm_up "${url[$name]}" 50; done

declare -A by_round=() p50s=() p99s=() header=()
measure_rounds

print_against "listed" /listed 12
