#!/usr/bin/env bash
# Instructions per request on the serving path, counted by valgrind's callgrind. Wall-clock
# figures on a shared 2-core VM wander by several percent from run to run; an instruction count
# does not, so a change's cost to the request path shows even when it is a fraction of a
# percent (it does not see cache misses or contention: the wrk benchmarks do). Each case runs one
# Lookout under callgrind (--workers 1, store and access log off) in front of bench-upstream,
# sends $REQUESTS requests (GETs, but for `kept`) of /small over one keep-alive connection, and divides the inclusive
# instructions of the proxy's connection task (`Connection::run`, which holds every request's
# phases) by the requests. Cases: one instance (`quiet`); every request traced to otlp-sink
# (`traced`: spans built and queued, and each request offered as its duration bucket's
# exemplar); a backup standing by (`backup`); and the same with `overprovisioning: 1.4`
# (`spill`: each pick counts each priority's instances available and draws a priority); and PUTs
# of a 1 KiB body that a retry may send again (`kept`: `retry.same_instance`, so the body is
# recorded as it is sent; a build before bodies were retried streams it plainly); and `panic`
# (`panic_threshold_percent: 50`: each pick counts its priority's instances available to see
# whether it is in panic; a build without the field refuses the config: no figure). Given two
# binaries, each case is counted for both and the second's ratio to the first printed: an A/B of
# two builds.
#
#   tests/bench/instructions.sh                                          # this tree's build
#   tests/bench/instructions.sh /tmp/lookout-before target/release/lookout
#
# Needs valgrind (apt install valgrind). This is a benchmark, not a test.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
requests=${REQUESTS:-3000}
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"
command -v valgrind >/dev/null || { echo "valgrind is required: apt install valgrind" >&2; exit 1; }

start_bench_upstream
sink_port=$(free_port)
"$target/release/otlp-sink" "127.0.0.1:$sink_port" 2>/dev/null & pids+=($!)
wait_port "$sink_port"
binaries=("${@:-$target/release/lookout}")

declare -A fields=(
  [quiet]=""
  [traced]=""
  [backup]=", backups: [\"localhost:$upstream_port\"]"
  [spill]=", backups: [\"localhost:$upstream_port\"], overprovisioning: 1.4"
  [kept]=", retry: { same_instance: true }"
  [panic]=", panic_threshold_percent: 50"
)
traces="traces: { endpoint: \"http://127.0.0.1:$sink_port\", sample_ratio: 1.0 }"

# Prints the instructions per request of binary $1 in case $2.
count() {
  local binary=$1 case=$2 port
  port=$(free_port)
  {
    quiet_lookout_head "$port"
    echo "upstreams:"
    echo "  - { name: bench, instances: [\"127.0.0.1:$upstream_port\"]${fields[$case]} }"
    echo "routes:"
    echo "  - { name: all, upstream: bench }"
    echo "shutdown: { drain_timeout: 1s }"
    [ "$case" != traced ] || echo "$traces"
  } >"$work/$case.yaml"
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/$case.out" \
    "$binary" run -c "$work/$case.yaml" --workers 1 >/dev/null 2>"$work/$case.err" &
  local gateway=$!
  # Under valgrind the gateway starts some fifty times slower. One that exits first refused the
  # case's config (an older build without its field): no figure.
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$gateway" 2>/dev/null || { echo "–"; return; }
    sleep 0.1
  done
  python3 - "$port" "$requests" "$case" <<'PY'
import http.client, sys
port, count, case = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
method, body = ("PUT", b"x" * 1024) if case == "kept" else ("GET", None)
connection = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(count):
    connection.request(method, "/small", body=body)
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
PY
  kill -TERM "$gateway"
  wait "$gateway" || true
  callgrind_annotate --inclusive=yes "$work/$case.out" 2>/dev/null |
    awk -v n="$requests" '/proxy_listener::Connection::run::\{\{closure\}\} \[/ && !found {
      found = 1; gsub(",", "", $1); printf "%.0f\n", $1 / n }'
}

printf '%-8s' case
for binary in "${binaries[@]}"; do printf ' %14s' "$(basename "$binary")"; done
[ "${#binaries[@]}" -lt 2 ] || printf ' %8s' ratio
echo
for case in quiet traced backup spill kept panic; do
  printf '%-8s' "$case"
  counts=()
  for binary in "${binaries[@]}"; do
    counts+=("$(count "$binary" "$case")")
    printf ' %14s' "${counts[-1]}"
  done
  [ "${#binaries[@]}" -lt 2 ] || awk -v a="${counts[0]}" -v b="${counts[1]}" \
    'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf " %7.3fx", b / a; else printf " %8s", "–" }'
  echo
done
