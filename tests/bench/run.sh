#!/usr/bin/env bash
# Lookout proxy benchmark: direct-to-upstream, nginx (1 worker) and Lookout (--workers 1) in front
# of the same upstream, driven by wrk. Lookout runs three times: fully observed ("lookout": every
# request in the DuckDB store and the access log, traces at 10% to a live OTLP receiver), with
# only the store on ("stored"), and with events, store and traces off ("quiet"). Prints req/s,
# p50 and p99 for each, the cost of observability and of the store, the Lookout/nginx ratios,
# and how many events the store took and dropped.
#
#   tests/bench/run.sh                # 10 s per run
#   DURATION=30s tests/bench/run.sh
#
# Needs wrk (apt install wrk); nginx is measured when installed (apt install nginx-light).
# This is a benchmark, not a test: nothing here passes or fails on a figure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"

start_bench_upstream

otlp_port=$(free_port)
"$target/release/otlp-sink" "127.0.0.1:$otlp_port" 2>/dev/null & pids+=($!)
wait_port "$otlp_port"

# Lookout twice: observability fully on (request events to a file, traces at 10% to a live OTLP
# receiver; statistics and /metrics are always on) and off (no events, no traces).
declare -A admin_ports=()
start_lookout() { # name port extra-config
  admin_ports[$1]=$(free_port)
  cat >"$work/$1.yaml" <<YAML
listeners: { proxy: "127.0.0.1:$2", admin: "127.0.0.1:${admin_ports[$1]}" }
upstreams:
  - { name: bench, instances: ["127.0.0.1:$upstream_port"] }
routes:
  - { name: all, upstream: bench }
$3
YAML
  RUST_LOG=warn "$target/release/lookout" run -c "$work/$1.yaml" --workers 1 >/dev/null & pids+=($!)
  wait_port "$2"
}
lookout_port=$(free_port)
start_lookout lookout "$lookout_port" "access_log: { path: \"$work/lookout-access.jsonl\" }
analytics: { store: \"$work/lookout.duckdb\" }
traces: { endpoint: \"http://127.0.0.1:$otlp_port\", sample_ratio: 0.1 }"
stored_port=$(free_port)
start_lookout stored "$stored_port" "access_log: { path: off }
analytics: { store: \"$work/stored.duckdb\" }"
quiet_port=$(free_port)
start_lookout quiet "$quiet_port" "access_log: { path: off }
analytics: { store: off }"

start_nginx

printf "\n%-22s %-8s %12s %10s %10s\n" "case" "target" "req/s" "p50 (us)" "p99 (us)"
for case in "small c=50:/small:50" "large c=50:/large:50" "small c=1:/small:1"; do
  IFS=: read -r name path conns <<<"$case"
  declare -A rps=() p50=() p99=()
  targets="direct:$upstream_port quiet:$quiet_port stored:$stored_port lookout:$lookout_port"
  [ -n "$nginx_port" ] && targets="direct:$upstream_port nginx:$nginx_port quiet:$quiet_port stored:$stored_port lookout:$lookout_port"
  for t in $targets; do
    IFS=: read -r label port <<<"$t"
    read -r r a b < <(measure "http://127.0.0.1:$port$path" "$conns")
    rps[$label]=$r p50[$label]=$a p99[$label]=$b
    printf "%-22s %-8s %12s %10s %10s\n" "$name" "$label" "$r" "$a" "$b"
  done
  awk -v n="$name" -v on="${rps[lookout]}" -v off="${rps[quiet]}" -v p_on="${p99[lookout]}" -v p_off="${p99[quiet]}" 'BEGIN {
    printf "%-22s observability cost: req/s %+.1f%%, p99 %+d us (lookout = fully on, quiet = off)\n", n, (on/off-1)*100, p_on-p_off }'
  awk -v n="$name" -v on="${rps[stored]}" -v off="${rps[quiet]}" -v p_on="${p99[stored]}" -v p_off="${p99[quiet]}" 'BEGIN {
    printf "%-22s store cost: req/s %+.1f%%, p99 %+d us (stored = DuckDB store on, quiet = off)\n", n, (on/off-1)*100, p_on-p_off }'
  if [ -n "$nginx_port" ]; then
    awk -v n="$name" -v lr="${rps[lookout]}" -v nr="${rps[nginx]}" -v l99="${p99[lookout]}" -v n99="${p99[nginx]}" -v d99="${p99[direct]}" 'BEGIN {
      printf "%-22s lookout/nginx req/s = %.2fx; added p99 over direct: lookout %+d us, nginx %+d us\n", n, lr/nr, l99-d99, n99-d99 }'
  fi
  unset rps p50 p99
done

# The store keeps up or says what it dropped (the queue drops rather than slow the proxy).
sleep 2
for name in stored lookout; do
  curl -s "http://127.0.0.1:${admin_ports[$name]}/admin/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin); q = s["analytics"]; st = s["store"]
name = sys.argv[1]
print("%-8s events: accepted %d, dropped at the queue %d, stored %d, lost by the store %d; writer raised from idle %d times"
      % (name, q["accepted"], q["dropped"], st["events_written"], st["events_lost"], q["writer_raised"]))' "$name"
done
