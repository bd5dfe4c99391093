#!/usr/bin/env bash
# The cost of sending every request event as an OTLP log record (`access_log.otlp`), against
# baselines measured in the same run: the same Lookout (--workers 1, store off) with no event
# sink at all ("quiet": no events are built), with the JSON-lines access log written to a file
# ("jsonl"), and with OTLP log records sent to otlp-sink instead ("otlp"). Each case is measured
# in rounds with wrk (13-byte answers, 50 connections), every case once per round in turn;
# prints each case's median req/s, p99 and the whole process' CPU per request (all threads,
# from /proc), the ratios to "quiet" and "jsonl", and what became of the OTLP records (exported,
# failed, dropped at a full queue).
#
#   tests/bench/access-log-otlp.sh                   # 3 rounds of 5 s
#   ROUNDS=5 DURATION=10s tests/bench/access-log-otlp.sh
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
sink_port=$(free_port)
"$target/release/otlp-sink" "127.0.0.1:$sink_port" 2>/dev/null & pids+=($!)
wait_port "$sink_port"

declare -A access_log=(
  [quiet]="{ path: off }"
  [jsonl]="{ path: \"$work/access.jsonl\" }"
  [otlp]="{ path: off, otlp: { endpoint: \"http://127.0.0.1:$sink_port\" } }"
)
cases=(quiet jsonl otlp)
declare -A proxy=() admin=() pid=()
for name in "${cases[@]}"; do
  proxy[$name]=$(free_port)
  admin[$name]=$(free_port)
  cat >"$work/$name.yaml" <<YAML
listeners: { proxy: "127.0.0.1:${proxy[$name]}", admin: "127.0.0.1:${admin[$name]}" }
analytics: { store: off }
access_log: ${access_log[$name]}
upstreams:
  - { name: bench, instances: ["127.0.0.1:$upstream_port"] }
routes:
  - { name: all, upstream: bench }
YAML
  "$target/release/lookout" run -c "$work/$name.yaml" --workers 1 >/dev/null 2>&1 & pids+=($!)
  pid[$name]=$!
  wait_port "${proxy[$name]}"
  warm_up "http://127.0.0.1:${proxy[$name]}/small" 50
done

declare -A rps=() p99=() cpu=()
for round in $(seq "$rounds"); do
  printf 'round %d:' "$round"
  for name in "${cases[@]}"; do
    before=$(cpu_ticks "${pid[$name]}" | cut -d' ' -f1)
    read -r r _ p n < <(measure_window "http://127.0.0.1:${proxy[$name]}/small" 50)
    # Let the writer and the sender catch up: their CPU counts for the requests that made it.
    sleep 1
    after=$(cpu_ticks "${pid[$name]}" | cut -d' ' -f1)
    rps[$name]+="$r "
    p99[$name]+="$p "
    cpu[$name]+="$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }') "
    printf ' %s %s req/s' "$name" "$r"
  done
  echo
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf '%-6s %9s %9s %16s %10s %10s\n' case req/s p99_us cpu_us_per_req "vs quiet" "vs jsonl"
declare -A m_rps=() m_cpu=()
for name in "${cases[@]}"; do
  m_rps[$name]=$(median <<<"${rps[$name]}")
  m_cpu[$name]=$(median <<<"${cpu[$name]}")
done
for name in "${cases[@]}"; do
  awk -v n="$name" -v r="${m_rps[$name]}" -v p="$(median <<<"${p99[$name]}")" -v c="${m_cpu[$name]}" \
    -v rq="${m_rps[quiet]}" -v rj="${m_rps[jsonl]}" -v cq="${m_cpu[quiet]}" -v cj="${m_cpu[jsonl]}" 'BEGIN {
      printf "%-6s %9.0f %9.0f %16.2f %10s %10s\n", n, r, p, c,
        sprintf("%.3fx", r / rq), sprintf("%.3fx", r / rj)
      printf "%-6s %9s %9s %16s %10s %10s\n", "", "", "", "CPU:", sprintf("%+.2f us", c - cq), sprintf("%+.2f us", c - cj)
    }'
done
records=$(curl -s "http://127.0.0.1:${admin[otlp]}/metrics" | grep '^lookout_access_log_otlp_records_total' || true)
echo "otlp records: $(awk '{ sub(/.*result="/, ""); sub(/"}/, ""); printf "%s ", $0 }' <<<"$records")"
