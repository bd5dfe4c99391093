#!/usr/bin/env bash
# The CPU of one scrape of /metrics (plain, and gzipped as Prometheus asks), and of one read of
# /admin/stats, and the exposition's bytes (plain, gzipped), with $CONNECTIONS client
# connections held open (default 2,000: the process metrics count the open file descriptors by
# listing /proc/self/fd) and $ROUTES routes (default 50), each called once so that its series
# exist. Given two binaries, each is measured in turn and the second's ratio to the first
# printed: an A/B of two builds (e.g. before and after the process and runtime metrics).
#
#   tests/bench/scrape.sh                                     # this tree's build
#   tests/bench/scrape.sh /tmp/lookout-before target/release/lookout
#
# Needs wrk (apt install wrk; the shared helpers check for it) and curl. This is a benchmark, not
# a test: nothing here passes or fails on a figure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
routes=${ROUTES:-50}
connections=${CONNECTIONS:-2000}
scrapes=${SCRAPES:-200}
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"
ulimit -n $((connections + 1024))

start_bench_upstream
binaries=("${@:-$target/release/lookout}")

# CPU time of process $1 so far, all threads, in ns.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ total += $1 } END { printf "%d\n", total }'; }

# Prints the CPU (ms) of one GET of admin path $3 on gateway pid $1 at admin port $2, with the
# curl options that follow.
per_request() {
  local pid=$1 port=$2 path=$3 before
  shift 3
  before=$(cpu_ns "$pid")
  for _ in $(seq "$scrapes"); do curl -s -o /dev/null "$@" "http://127.0.0.1:$port$path"; done
  awk -v d="$(($(cpu_ns "$pid") - before))" -v n="$scrapes" 'BEGIN { printf "%.3f\n", d / n / 1e6 }'
}

# Prints the bytes of one scrape at admin port $1, with the curl options that follow.
scrape_bytes() {
  local port=$1
  shift
  curl -s -o /dev/null -w '%{size_download}' "$@" "http://127.0.0.1:$port/metrics"
}

# Prints the CPU of one scrape and of one /admin/stats read of binary $1.
measure_binary() {
  local proxy admin gateway holder
  proxy=$(free_port)
  admin=$(free_port)
  {
    echo "listeners: { proxy: \"127.0.0.1:$proxy\", admin: \"127.0.0.1:$admin\" }"
    echo "access_log: { path: off }"
    echo "analytics: { store: off }"
    echo "limits: { max_connections: $((connections + 100)), idle_timeout: 10m, header_read_timeout: 10m }"
    bench_routes "$routes"
  } >"$work/scrape.yaml"
  "$1" run -c "$work/scrape.yaml" --workers 1 >/dev/null 2>&1 & pids+=($!)
  gateway=$!
  wait_port "$proxy"
  for route in $(seq "$routes"); do curl -s -o /dev/null "http://127.0.0.1:$proxy/r$route/x"; done
  # Idle client connections, held until killed.
  python3 - "$proxy" "$connections" <<'PY' & pids+=($!)
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
time.sleep(3600)
PY
  holder=$!
  local open=0
  for _ in $(seq 100); do
    open=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '$1 == "lookout_proxy_connections_open" { print $2 }')
    [ "${open%.*}" -lt "$connections" ] || break
    sleep 0.1
  done
  curl -s -o /dev/null "http://127.0.0.1:$admin/metrics"
  local gzip=(-H 'Accept-Encoding: gzip')
  echo "$(per_request "$gateway" "$admin" /metrics) $(per_request "$gateway" "$admin" /metrics "${gzip[@]}")" \
    "$(per_request "$gateway" "$admin" /admin/stats) $open" \
    "$(scrape_bytes "$admin") $(scrape_bytes "$admin" "${gzip[@]}")"
  kill "$holder" "$gateway" 2>/dev/null || true
  wait "$holder" "$gateway" 2>/dev/null || true
}

row='%-14s %10s %10s %10s %12s %11s %11s\n'
printf "$row" binary 'scrape ms' 'gzip ms' 'stats ms' 'connections' 'bytes' 'gzip bytes'
results=()
for binary in "${binaries[@]}"; do
  read -r scrape zipped stats open size zsize < <(measure_binary "$binary")
  results+=("$scrape $zipped $stats")
  printf "$row" "$(basename "$binary")" "$scrape" "$zipped" "$stats" "$open" "$size" "$zsize"
done
if [ "${#binaries[@]}" -ge 2 ]; then
  read -r a_scrape a_zipped a_stats <<<"${results[0]}"
  read -r b_scrape b_zipped b_stats <<<"${results[1]}"
  awk -v a="$a_scrape" -v b="$b_scrape" -v c="$a_zipped" -v d="$b_zipped" -v e="$a_stats" -v f="$b_stats" \
    'BEGIN { printf "%-14s %9.3fx %9.3fx %9.3fx\n", "ratio", b / a, d / c, f / e }'
fi
