#!/usr/bin/env bash
# The cost of pushing the metrics over OTLP (`metrics.otlp`), against a baseline measured in the
# same run: two Lookouts with the same $ROUTES routes (default 50), each route called once per
# method and status so that its series exist, one scraped only ("scraped"), one pushing every
# second to otlp-sink ("pushed"), one doing so gzipped ("gzipped") and one with zstd ("zstd").
# They then sit idle for
# $WINDOW seconds (default 30): the CPU
# each spends in that time (all threads, from /proc's schedstat, in ns), the pushes made, and so
# the CPU of one push (rendering the exposition, reading it back, building the export, sending
# it), and what that is at the default 10 s interval. The baseline is the CPU of one scrape of
# the same exposition (20 scrapes of "scraped", one after another): the push's ratio to it is
# what reading the text back and building the export add. Also prints the exposition's size and
# series.
#
#   tests/bench/metrics-push.sh
#   ROUTES=200 WINDOW=60 tests/bench/metrics-push.sh
#
# Needs wrk (apt install wrk; the shared helpers check for it) and curl. This is a benchmark, not
# a test: nothing here passes or fails on a figure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
routes=${ROUTES:-50}
window=${WINDOW:-30}
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"

start_bench_upstream
sink_port=$(free_port)
"$target/release/otlp-sink" "127.0.0.1:$sink_port" 2>/dev/null & pids+=($!)
wait_port "$sink_port"

# CPU time of process $1 so far, all threads, in ns.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ total += $1 } END { printf "%d\n", total }'; }

declare -A proxy=() admin=() pid=()
declare -A push=(
  [pushed]="metrics: { otlp: { endpoint: \"http://127.0.0.1:$sink_port\", interval: 1s } }"
  [gzipped]="metrics: { otlp: { endpoint: \"http://127.0.0.1:$sink_port\", interval: 1s, compression: gzip } }"
  [zstd]="metrics: { otlp: { endpoint: \"http://127.0.0.1:$sink_port\", interval: 1s, compression: zstd } }"
)
cases=(scraped pushed gzipped zstd)
for name in "${cases[@]}"; do
  proxy[$name]=$(free_port)
  admin[$name]=$(free_port)
  {
    echo "listeners: { proxy: \"127.0.0.1:${proxy[$name]}\", admin: \"127.0.0.1:${admin[$name]}\" }"
    echo "access_log: { path: off }"
    echo "analytics: { store: off }"
    [ "$name" = scraped ] || echo "${push[$name]}"
    bench_routes "$routes"
  } >"$work/$name.yaml"
  "$target/release/lookout" run -c "$work/$name.yaml" --workers 1 >/dev/null 2>&1 & pids+=($!)
  pid[$name]=$!
  wait_port "${proxy[$name]}"
  for route in $(seq "$routes"); do
    for method in GET POST; do
      curl -s -o /dev/null -X "$method" "http://127.0.0.1:${proxy[$name]}/r$route/x"
    done
  done
done

declare -A used=()
for name in "${cases[@]}"; do used[$name]=$(cpu_ns "${pid[$name]}"); done
sleep "$window"
for name in "${cases[@]}"; do used[$name]=$(($(cpu_ns "${pid[$name]}") - ${used[$name]})); done

exposition=$(curl -s "http://127.0.0.1:${admin[pushed]}/metrics")
families=$(grep -c '^# TYPE ' <<<"$exposition")
series=$(grep -vc '^#' <<<"$exposition")
pushes_of() { curl -s "http://127.0.0.1:${admin[$1]}/metrics" | awk -v r="$2" '$1 == "lookout_metrics_pushes_total{result=\"" r "\"}" { print $2 }'; }
pushes=$(pushes_of pushed ok)
failed=$(pushes_of pushed failed)
zipped=$(pushes_of gzipped ok)
zstd_pushes=$(pushes_of zstd ok)
scrapes=20
before=$(cpu_ns "${pid[scraped]}")
for _ in $(seq "$scrapes"); do curl -s -o /dev/null "http://127.0.0.1:${admin[scraped]}/metrics"; done
scraping=$(($(cpu_ns "${pid[scraped]}") - before))

echo "$routes routes: /metrics has $families families, $series series, $(wc -c <<<"$exposition") bytes"
echo "idle for ${window}s: pushes ok $pushes (gzipped $zipped, zstd $zstd_pushes), failed $failed; CPU scraped $((used[scraped] / 1000000)) ms, pushed $((used[pushed] / 1000000)) ms, gzipped $((used[gzipped] / 1000000)) ms, zstd $((used[zstd] / 1000000)) ms"
awk -v s="${used[scraped]}" -v p="${used[pushed]}" -v g="${used[gzipped]}" -v d="${used[zstd]}" -v n="$pushes" \
  -v z="$zipped" -v y="$zstd_pushes" -v c="$scraping" -v k="$scrapes" 'BEGIN {
  push = (p - s) / n / 1e6
  zip = (g - s) / z / 1e6
  zst = (d - s) / y / 1e6
  scrape = c / k / 1e6
  printf "one scrape %.2f ms of CPU; one push %.2f ms (%.2fx a scrape); at the default 10 s interval %.3f%% of a core\n",
    scrape, push, push / scrape, push / 10000 * 100
  printf "one gzipped push %.2f ms (%.2fx a plain push); one zstd push %.2f ms (%.2fx)\n", zip, zip / push, zst, zst / push
}'
