#!/usr/bin/env bash
# Backups and weights on the request path, benchmarked with wrk against a baseline measured in
# the same run: one upstream instance alone ("alone"); the same with a backup standing by
# ("standing_by": the balancer looks at the first priority only); an upstream whose first
# choice is down by its health check, its backup serving ("failed_over": every pick passes over
# the first priority first); two instances of one weight ("even"), and of weights 3 and 1
# ("weighted": round robin reads the weighted cycle), and of one weight under a slow start
# whose window has passed ("slow_start": each pick asks each instance whether it still warms
# up); and "standing_by" and "failed_over" again with `overprovisioning: 1.4` ("spill_ready",
# "spilled": each pick counts each priority's instances available and draws a priority by their
# shares). Every instance is the same bench-upstream
# (as 127.0.0.1 and as localhost). Each case is measured in rounds, every case once per round
# in turn; prints each round's req/s, the medians of req/s, p50 and p99, and the ratios to
# "alone". Lookout runs with --workers 1 and its store, access log and traces off.
#
#   tests/bench/balancing.sh                   # 3 rounds of 5 s
#   ROUNDS=5 DURATION=10s tests/bench/balancing.sh
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
up="127.0.0.1:$upstream_port"
# Nothing listens there: the first choice of "failed over" fails its health checks.
down="127.0.0.1:$(free_port)"
check="health_check: { path: /small, interval: 200ms, unhealthy_threshold: 1 }"
echo "  - { name: all, upstream: bench }" >"$work/all.routes"
start_quiet_lookout alone "instances: [\"$up\"]" "$work/all.routes"
start_quiet_lookout standing_by "instances: [\"$up\"], backups: [\"localhost:$upstream_port\"]" "$work/all.routes"
start_quiet_lookout failed_over "instances: [\"$down\"], backups: [\"$up\"], $check" "$work/all.routes"
spill="overprovisioning: 1.4"
start_quiet_lookout spill_ready "instances: [\"$up\"], backups: [\"localhost:$upstream_port\"], $spill" \
  "$work/all.routes"
start_quiet_lookout spilled "instances: [\"$down\"], backups: [\"$up\"], $check, $spill" "$work/all.routes"
start_quiet_lookout even "instances: [\"$up\", \"localhost:$upstream_port\"]" "$work/all.routes"
start_quiet_lookout weighted "instances: [{ address: \"$up\", weight: 3 }, \"localhost:$upstream_port\"]" \
  "$work/all.routes"
start_quiet_lookout slow_start "instances: [\"$up\", \"localhost:$upstream_port\"], slow_start: 1s" "$work/all.routes"

declare -A url=()
cases=(alone standing_by failed_over spill_ready spilled even weighted slow_start)
for name in "${cases[@]}"; do url[$name]="http://127.0.0.1:${port[$name]}/small"; done
# Until its first check fails, "failed_over" (and "spilled") may try its first choice, and "slow_start" warms
# its instances up from its start: let the check run and the window pass.
sleep 1.2
for name in "${cases[@]}"; do warm_up "${url[$name]}" 50; done

declare -A by_round=() p50s=() p99s=() header=()
measure_rounds

print_against "alone" /alone 12
