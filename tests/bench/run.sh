#!/usr/bin/env bash
# Lookout proxy benchmark: direct-to-upstream, nginx (1 worker; plain, and "nginx-fwd" with the
# header work Lookout does: forwarding headers, Via, a request id both ways), a bare hyper proxy
# ("bare": the parts Lookout is built on, with none of its work) and Lookout (--workers 1) in
# front of the same upstream, driven by wrk. Lookout runs four times: with events, store and
# traces off ("quiet"), with only the DuckDB store on ("stored"), with the store and traces at 10%
# to a live OTLP receiver ("observed": what the observability issue lists), and with the access
# log on top ("lookout": fully observed). Statistics and /metrics are always on.
#
# Each case is measured in rounds, every target once per round in turn, so that a slow spell of
# the machine hits all of them alike; while one gateway is measured, the others are stopped
# (SIGSTOP), so that none of their background work lands in another's window. Prints each round's
# req/s, the medians of req/s, p50, p99 and of the CPU time each proxy used per request (all its
# threads; the kernel's part of it; and the threads that do not serve requests: the event writer,
# the trace exporter), the CPU the OTLP receiver used per request of a traced gateway,
# the cost of observability and of the store (the median of the rounds' paired ratios, and their
# range: on a noisy machine a single round can be off by several percent; and the CPU it added
# per request), the ratios to nginx and to the bare proxy, the room the bare proxy leaves for
# Lookout's work at nginx's rate, and how many events and traces each gateway took and dropped.
#
#   tests/bench/run.sh                      # 3 rounds of 5 s per target and case
#   ROUNDS=5 DURATION=10s tests/bench/run.sh
#   ROUNDS=16 TARGETS="quiet stored" CASES="small c=50" tests/bench/run.sh   # one cost, more rounds
#   LOOKOUT=/tmp/lookout-before tests/bench/run.sh   # another build of the gateway, same baselines
#
# Needs wrk (apt install wrk); nginx is measured when installed (apt install nginx-light).
# This is a benchmark, not a test: nothing here passes or fails on a figure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
DURATION=${DURATION:-5s}
rounds=${ROUNDS:-3}
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"

start_bench_upstream

otlp_port=$(free_port)
"$target/release/otlp-sink" "127.0.0.1:$otlp_port" 2>/dev/null & pids+=($!)
sink_pid=$!
wait_port "$otlp_port"

declare -A ports=() admin_ports=() pid=()
start_lookout() { # name extra-config
  ports[$1]=$(free_port) admin_ports[$1]=$(free_port)
  cat >"$work/$1.yaml" <<YAML
listeners: { proxy: "127.0.0.1:${ports[$1]}", admin: "127.0.0.1:${admin_ports[$1]}" }
upstreams:
  - { name: bench, instances: ["127.0.0.1:$upstream_port"] }
routes:
  - { name: all, upstream: bench }
$2
YAML
  RUST_LOG=warn "${LOOKOUT:-$target/release/lookout}" run -c "$work/$1.yaml" --workers 1 >/dev/null & pids+=($!)
  pid[$1]=$!
  wait_port "${ports[$1]}"
}
traces="traces: { endpoint: \"http://127.0.0.1:$otlp_port\", sample_ratio: 0.1 }"
start_lookout quiet "access_log: { path: off }
analytics: { store: off }"
start_lookout stored "access_log: { path: off }
analytics: { store: \"$work/stored.duckdb\" }"
start_lookout observed "access_log: { path: off }
analytics: { store: \"$work/observed.duckdb\" }
$traces"
start_lookout lookout "access_log: { path: \"$work/lookout-access.jsonl\" }
analytics: { store: \"$work/lookout.duckdb\" }
$traces"

ports[bare]=$(free_port)
"$target/release/bench-bare-proxy" "127.0.0.1:${ports[bare]}" "127.0.0.1:$upstream_port" & pids+=($!)
pid[bare]=$!
wait_port "${ports[bare]}"

start_nginx
ports[direct]=$upstream_port
labels="direct bare quiet stored observed lookout"
if [ -n "$nginx_port" ]; then
  ports[nginx]=$nginx_port pid[nginx]=$nginx_worker
  ports[nginx-fwd]=$nginx_fwd_port pid[nginx-fwd]=$nginx_worker
  labels="direct nginx nginx-fwd bare quiet stored observed lookout"
fi

# TARGETS (names, space-separated) and CASES (names, comma-separated) pick some of the targets
# and cases; they are measured in the order above.
if [ -n "${TARGETS:-}" ]; then
  labels=$(for l in $labels; do case " $TARGETS " in *" $l "*) echo "$l" ;; esac; done | xargs)
fi
measured() { case " $labels " in *" $1 "*) ;; *) return 1 ;; esac; }

gateways="quiet stored observed lookout"
# Runs gateway $1 (none for another target) and stops the others: idle, a gateway still runs its
# timers (rollups, housekeeping, the metrics' upkeep), on the cores the target measured needs.
run_only() {
  for g in $gateways; do
    if [ "$g" = "$1" ]; then kill -CONT "${pid[$g]}"; else kill -STOP "${pid[$g]}"; fi
  done
}
# A gateway just measured gets two seconds alone to finish its work before it is stopped: to
# write its last events (committed within a second) and send its last spans (an export cut off
# by a stop would time out once continued, and count as failed). Its CPU is read after that.
settle() { case " $gateways " in *" $1 "*) sleep 2 ;; esac; }
ticks_per_second=$(getconf CLK_TCK)
# Microseconds of CPU per request: $1 clock ticks over $2 requests (ticks are usually 10 ms, so a
# 5 s window is precise to about 1%).
per_request() { awk -v t="$1" -v n="$2" -v hz="$ticks_per_second" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }'; }
# "all kernel serving" CPU ticks of target $1 so far: all its threads, the kernel's part of that,
# and the thread that serves requests (a Lookout gateway with --workers 1 and the bare proxy serve
# on their main thread; nginx's worker is a process of one thread).
cpu_of() {
  if [ -z "${pid[$1]:-}" ]; then echo "0 0 0"; return; fi
  echo "$(cpu_ticks "${pid[$1]}") $(cpu_ticks "${pid[$1]}" "${pid[$1]}" | cut -d' ' -f1)"
}
# CPU ticks the OTLP receiver has used so far: it shares the cores with what is measured, and
# works only for the traced gateways.
sink_ticks() { cpu_ticks "$sink_pid" | cut -d' ' -f1; }

# Each round's req/s of target $1 divided by target $2's in the same round.
paired_ratios() {
  paste <(echo "${rps[$1]}" | tr ' ' '\n') <(echo "${rps[$2]}" | tr ' ' '\n') \
    | awk 'NF == 2 { printf "%.5f ", $1 / $2 }'
}
paired_ratio() { paired_ratios "$1" "$2" | median; }
# The lowest and the highest of those ratios: how far apart the rounds were.
paired_spread() { paired_ratios "$1" "$2" | tr ' ' '\n' | grep . | sort -g | sed -n '1p;$p' | tr '\n' ' '; }

# The req/s of each measured target of $3... against target $1's, paired by round (median), with
# $2 after "median over the rounds" to say what the ratio stands for.
print_ratios() {
  local base=$1 meaning=$2 on
  shift 2
  for on in "$@"; do
    measured "$on" || continue
    awk -v n="$name" -v t="$on" -v b="$base" -v m="$meaning" -v r="$(paired_ratio "$on" "$base")" 'BEGIN {
      printf "%-14s %-9s / %s req/s = %.2fx (median over the rounds%s)\n", n, t, b, r, m }'
  done
}

# The room the bare proxy leaves for Lookout's work at nginx's rate. A proxy with --workers 1
# serves at about the rate its serving thread's CPU per request allows (the other threads run at
# idle priority), so the gap between nginx's CPU per request and the bare proxy's is what
# Lookout's work on that thread may cost for it to keep up with nginx; then what each gateway's
# serving thread used above the bare proxy's (medians over the rounds).
print_room() {
  local serving="" g
  for g in quiet observed lookout; do
    measured "$g" || continue
    serving+=" $g $(paste <(echo "${cpu[$g]}" | tr ' ' '\n') <(echo "${bg[$g]}" | tr ' ' '\n') \
      | awk 'NF == 2 { printf "%.2f ", $1 - $2 }' | median)"
  done
  # Rounded by the same printf as the table's columns, so that the figures match them.
  awk -v n="$name" -v x="$(printf "%.2f" "$(echo "${cpu[nginx]}" | median)")" \
    -v b="$(printf "%.2f" "$(echo "${cpu[bare]}" | median)")" \
    -v s="$serving" 'BEGIN {
    printf "%-14s %-9s room at nginx'"'"'s rate: nginx used %.2f us of CPU per request, the bare proxy %.2f (%+.2f us of room)",
      n, "bare", x, b, x - b
    k = split(s, v, " ")
    if (k) printf "; serving thread above the bare proxy:"
    for (i = 1; i < k; i += 2) printf "%s %s %+.2f us", (i > 1 ? "," : ""), v[i], v[i + 1] - b
    printf "\n" }'
}

printf "\n%-14s %-9s %9s %9s %9s %9s %9s %9s   %s\n" "case" "target" "req/s" "p50 (us)" "p99 (us)" \
  "cpu (us)" "sys (us)" "bg (us)" "req/s by round"
for case in "small c=50:/small:50" "large c=50:/large:50" "small c=1:/small:1"; do
  IFS=: read -r name path conns <<<"$case"
  case ",${CASES:-$name}," in *",$name,"*) ;; *) continue ;; esac
  declare -A rps=() p50=() p99=() cpu=() sys=() bg=() sink=()
  for round in $(seq "$rounds"); do
    for label in $labels; do
      url="http://127.0.0.1:${ports[$label]}$path"
      run_only "$label"
      warm_up "$url" "$conns"
      read -r all_before kernel_before serving_before < <(cpu_of "$label")
      sink_before=$(sink_ticks)
      read -r r a b n < <(measure_window "$url" "$conns")
      settle "$label"
      read -r all_after kernel_after serving_after < <(cpu_of "$label")
      rps[$label]+="$r " p50[$label]+="$a " p99[$label]+="$b "
      cpu[$label]+="$(per_request $((all_after - all_before)) "$n") "
      sys[$label]+="$(per_request $((kernel_after - kernel_before)) "$n") "
      bg[$label]+="$(per_request $((all_after - all_before - serving_after + serving_before)) "$n") "
      sink[$label]+="$(per_request $(($(sink_ticks) - sink_before)) "$n") "
    done
  done
  for label in $labels; do
    cpu_columns=$(printf "%.2f %.2f %.2f" "$(echo "${cpu[$label]}" | median)" \
      "$(echo "${sys[$label]}" | median)" "$(echo "${bg[$label]}" | median)")
    [ -n "${pid[$label]:-}" ] || cpu_columns="- - -"
    read -r c k g <<<"$cpu_columns"
    printf "%-14s %-9s %9.0f %9.0f %9.0f %9s %9s %9s   %s\n" "$name" "$label" "$(echo "${rps[$label]}" | median)" \
      "$(echo "${p50[$label]}" | median)" "$(echo "${p99[$label]}" | median)" "$c" "$k" "$g" "${rps[$label]}"
  done
  for on in observed lookout; do
    measured "$on" || continue
    printf "%-14s %-9s the OTLP receiver used %.2f us of CPU per request (median over the rounds)\n" \
      "$name" "$on" "$(echo "${sink[$on]}" | median)"
  done
  for on in stored observed lookout; do
    measured "$on" && measured quiet || continue
    awk -v n="$name" -v t="$on" -v r="$(paired_ratio "$on" quiet)" -v s="$(paired_spread "$on" quiet)" \
      -v c="$(echo "${cpu[$on]}" | median) $(echo "${cpu[quiet]}" | median)" \
      -v g="$(echo "${bg[$on]}" | median) $(echo "${bg[quiet]}" | median)" 'BEGIN {
      split(s, x, " "); split(c, cpu, " "); split(g, bg, " ")
      printf "%-14s %-9s cost against quiet: req/s %+.1f%% (median over the rounds; rounds %+.1f%% to %+.1f%%);",
        n, t, (r - 1) * 100, (x[1] - 1) * 100, (x[2] - 1) * 100
      printf " CPU per request %+.2f us (serving thread %+.2f us, other threads %+.2f us)\n", cpu[1] - cpu[2],
        (cpu[1] - bg[1]) - (cpu[2] - bg[2]), bg[1] - bg[2] }'
  done
  measured bare && print_ratios bare ": Lookout's own work per request" quiet
  if measured nginx; then
    print_ratios nginx "" bare quiet observed lookout
    measured bare && print_room
  fi
  measured nginx-fwd && print_ratios nginx-fwd ": nginx doing Lookout's header work" quiet observed lookout
  unset rps p50 p99 cpu sys bg sink
done

# The store and the exporter keep up or say what they dropped (their queues drop rather than slow
# the proxy).
for g in $gateways; do kill -CONT "${pid[$g]}"; done
sleep 2
for name in stored observed lookout; do
  measured "$name" || continue
  curl -s "http://127.0.0.1:${admin_ports[$name]}/admin/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin); q = s["analytics"]; st = s["store"]; t = s.get("traces")
name = sys.argv[1]
print("%-8s events: accepted %d, dropped at the queue %d, stored %d, lost by the store %d; writer raised from idle %d times"
      % (name, q["accepted"], q["dropped"], st["events_written"], st["events_lost"], q["writer_raised"]))
if t:
    print("%-8s traces: queued %d, dropped at the queue %d; spans exported %d, failed %d; exporter raised from idle %d times"
          % (name, t["queued"], t["dropped"], t["spans_exported"], t["spans_failed"], t["exporter_raised"]))' "$name"
done
