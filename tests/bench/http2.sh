#!/usr/bin/env bash
# HTTP/2 to upstreams (`protocol: http2`, as gRPC services need), benchmarked against baselines
# measured in the same run. bench-upstream serves the 13-byte /small over HTTP/1.1 and over
# HTTP/2 (h2c); clients are h2load (HTTP/2, 50 connections of 10 concurrent streams each) and
# wrk (HTTP/1.1, 50 connections):
#   direct:        the client straight to bench-upstream (h2 or h1, as the client speaks);
#   lookout h1:    through Lookout to the HTTP/1.1 port (pooled keep-alive connections);
#   lookout h2:    through Lookout to the HTTP/2 port (one shared connection, or, with
#                  `max_concurrent_streams: 100`, one per 100 streams in flight: 5);
#   nginx h2:      through nginx (1 worker; `http2` listener, `grpc_pass` to the HTTP/2 port),
#                  the usual way to put nginx in front of gRPC services.
# Lookout runs with --workers 1 and its store, access log and traces off. Prints req/s (and
# h2load's mean latency, or wrk's p50 and p99) and the ratios. A last case cuts bursts of
# calls off in flight beside a steady client, and counts what the steady client lost.
#
#   tests/bench/http2.sh              # 10 s per run
#   DURATION=30s tests/bench/http2.sh
#   LOOKOUT=/tmp/lookout-before tests/bench/http2.sh   # another build of the gateway
#
# Needs wrk and h2load (apt install wrk nghttp2-client); nginx (apt install nginx) is optional.
# This is a benchmark, not a test: nothing here passes or fails on a figure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"

command -v h2load >/dev/null || { echo "h2load is required: apt install nghttp2-client" >&2; exit 1; }
echo "building release binaries..."
target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build --release --quiet -p lookout-gateway -p lookout-tests --bins)
h1_port=$(free_port) h2_port=$(free_port)
"$target/release/bench-upstream" "127.0.0.1:$h1_port" "127.0.0.1:$h2_port" & pids+=($!)
wait_port "$h1_port"
wait_port "$h2_port"

lookout_port=$(free_port) admin_port=$(free_port)
cat >"$work/lookout.yaml" <<YAML
listeners: { proxy: "127.0.0.1:$lookout_port", admin: "127.0.0.1:$admin_port" }
access_log: { path: off }
analytics: { store: off }
upstreams:
  - { name: h1, instances: ["127.0.0.1:$h1_port"] }
  - { name: h2, instances: ["127.0.0.1:$h2_port"], protocol: http2 }
  - { name: h2-100, instances: ["127.0.0.1:$h2_port"], protocol: http2, max_concurrent_streams: 100 }
routes:
  - { name: via-h1, match: { prefix: /h1 }, strip_prefix: /h1, upstream: h1 }
  - { name: via-h2, match: { prefix: /h2/ }, strip_prefix: /h2, upstream: h2 }
  - { name: via-h2-100, match: { prefix: /h2-100/ }, strip_prefix: /h2-100, upstream: h2-100 }
YAML
RUST_LOG=warn "${LOOKOUT:-$target/release/lookout}" run -c "$work/lookout.yaml" --workers 1 >/dev/null & pids+=($!)
wait_port "$lookout_port"

nginx_port=""
if command -v nginx >/dev/null; then
  nginx_port=$(free_port)
  nginx_config "access_log off;" >"$work/nginx.conf"
  cat >>"$work/nginx.conf" <<NGINX
  # nginx sends one request at a time per upstream connection (it does not multiplex), so
  # the pool holds one per stream in flight: 500.
  upstream h2 { server 127.0.0.1:$h2_port; keepalive 512; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$nginx_port http2;
    http2_max_concurrent_streams 128;
    # By default a client connection ends after 1,000 requests, and h2load does not reconnect.
    keepalive_requests 1000000;
    location / { grpc_pass grpc://h2; }
  }
}
NGINX
  nginx -c "$work/nginx.conf" -p "$work/nginx" & pids+=($!)
  wait_port "$nginx_port"
fi

# Prints "req/s mean-latency-us others" for one h2load run of $duration after a 1 s warm-up:
# req/s counts 2xx answers only (h2load's own rate counts every answer, and a proxy that fails
# fast would look fast), and others is how many requests got another status, an error or a
# timeout.
measure_h2() {
  local url=$1 seconds=${duration%s}
  h2load -c 50 -m 10 -t 1 -D 1 "$url" >/dev/null 2>&1
  h2load -c 50 -m 10 -t 1 -D "$seconds" "$url" 2>/dev/null | awk -v seconds="$seconds" '
    function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return v*1000; if (v ~ /s$/) return v*1000000; return v }
    /^requests:/ { lost=$12+$14 }
    /^status codes:/ { ok=$3; others=$5+$7+$9 }
    /^time for request:/ { mean=us($6) }
    END { printf "%.0f %.0f %d\n", ok/seconds, mean, others+lost }'
}

declare -A rps=()
printf "\n%-44s %12s %12s %10s\n" "HTTP/2 clients (h2load, 50 x 10 streams)" "2xx/s" "mean (us)" "not 2xx"
run_h2() { # label url
  read -r r m o < <(measure_h2 "$2")
  rps[$1]=$r
  printf "%-44s %12s %12s %10s\n" "$1" "$r" "$m" "$o"
}
run_h2 "direct (h2c)" "http://127.0.0.1:$h2_port/small"
run_h2 "lookout h1 upstream" "http://127.0.0.1:$lookout_port/h1/small"
run_h2 "lookout h2 upstream" "http://127.0.0.1:$lookout_port/h2/small"
run_h2 "lookout h2 upstream, 100 streams/conn" "http://127.0.0.1:$lookout_port/h2-100/small"
[ -n "$nginx_port" ] && run_h2 "nginx h2 upstream (grpc_pass)" "http://127.0.0.1:$nginx_port/small"

printf "\n%-44s %12s %12s %10s\n" "HTTP/1.1 clients (wrk, 50 connections)" "req/s" "p50 (us)" "p99 (us)"
run_h1() { # label url
  read -r r a b < <(measure "$2" 50)
  rps[$1]=$r
  printf "%-44s %12s %12s %10s\n" "$1" "$r" "$a" "$b"
}
run_h1 "direct (h1)" "http://127.0.0.1:$h1_port/small"
run_h1 "lookout h1 upstream, h1 client" "http://127.0.0.1:$lookout_port/h1/small"
run_h1 "lookout h2 upstream, h1 client" "http://127.0.0.1:$lookout_port/h2/small"

# Cancellations: a steady client (5 connections of 10 streams) while ten bursts of 500 streams
# are cut off in flight (h2load killed after 0.3 s). The gateway resets the bursts' upstream
# streams, and bench-upstream's HTTP/2 server, which guards against rapid resets as hyper's
# does, answers with a GOAWAY: the steady client's calls on that connection must not fail.
counter() { # metric name
  curl -s "http://127.0.0.1:$admin_port/metrics" |
    awk -v name="$1" '$1 ~ "^"name"\\{" && /upstream="h2"/ { sum += $2 } END { print sum+0 }'
}
cancellations() {
  local url="http://127.0.0.1:$lookout_port/h2/small" seconds=${duration%s}
  local opened refused
  opened=$(counter lookout_upstream_connections_opened_total)
  refused=$(counter lookout_upstream_streams_refused_total)
  h2load -c 5 -m 10 -t 1 -D "$seconds" "$url" >"$work/steady.out" 2>/dev/null &
  local steady=$!
  for _ in $(seq 10); do
    sleep "$(awk -v s="$seconds" 'BEGIN { print s / 12 }')"
    (timeout -s KILL 0.3 h2load -c 50 -m 10 -t 1 -D 5 "$url" >/dev/null 2>&1 || true) 2>/dev/null
  done
  wait "$steady"
  awk '/^status codes:/ { ok=$3; others=$5+$7+$9 } /^requests:/ { lost=$12+$14 }
    END { printf "%-44s %12s %12s\n", "steady client beside 10 cut-off bursts", ok, others+lost }' "$work/steady.out"
  printf "%-44s %12s\n" "upstream connections opened" "$(( $(counter lookout_upstream_connections_opened_total) - opened ))"
  printf "%-44s %12s\n" "streams refused by the upstream (sent again)" "$(( $(counter lookout_upstream_streams_refused_total) - refused ))"
}
printf "\n%-44s %12s %12s\n" "Cancellations (lookout h2 upstream)" "2xx" "not 2xx"
cancellations

ratio() { awk -v a="$2" -v b="$3" -v t="$1" 'BEGIN { printf "%-56s %.2fx\n", t, a/b }'; }
echo
ratio "h2 clients: lookout h2 upstream / lookout h1 upstream" "${rps[lookout h2 upstream]}" "${rps[lookout h1 upstream]}"
ratio "h2 clients: lookout h2 upstream / direct" "${rps[lookout h2 upstream]}" "${rps[direct (h2c)]}"
[ -n "$nginx_port" ] && ratio "h2 clients: lookout h2 upstream / nginx (grpc_pass)" "${rps[lookout h2 upstream]}" "${rps[nginx h2 upstream (grpc_pass)]}"
ratio "h1 clients: lookout h2 upstream / lookout h1 upstream" "${rps[lookout h2 upstream, h1 client]}" "${rps[lookout h1 upstream, h1 client]}"
true
