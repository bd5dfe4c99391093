#!/usr/bin/env bash
# Lookout's traffic policies, benchmarked with wrk against baselines measured in the same run:
#   cache:      an upstream that takes 2 ms per request (/work), direct vs through a plain route
#               vs through a cached route (every request after the first a hit); and /small
#               through a cached route whose answers may not be stored (every request a miss,
#               its key marked as one not to wait on) vs the plain route;
#   rate limit: /small through a plain route vs a local limit vs a cluster-wide (Redis) limit,
#               each with a quota far above the load, so every request is checked and allowed;
#   composition: a route of three calls (two in parallel, the third using a field of the first)
#               to a small-JSON upstream, vs the plain route to the same upstream (one call).
# Lookout runs with --workers 1 and its store, access log and traces off, so the policies are
# what differs between the runs. Prints req/s, p50 and p99 and the ratios.
#
#   tests/bench/policies.sh              # 10 s per run
#   DURATION=30s tests/bench/policies.sh
#
# Needs wrk (apt install wrk) and redis-server (apt install redis-server) for the Redis case.
# This is a benchmark, not a test: nothing here passes or fails on a figure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"

start_bench_upstream

redis_port=""
if command -v redis-server >/dev/null; then
  redis_port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no >/dev/null & pids+=($!)
  wait_port "$redis_port"
fi

redis_section="" redis_route=""
if [ -n "$redis_port" ]; then
  redis_section="redis: { url: \"redis://127.0.0.1:$redis_port\" }"
  redis_route="  - { name: redis-limit, match: { prefix: /redis }, strip_prefix: /redis, upstream: bench,
      rate_limit: { rate: 1000000/s, burst: 1000000, cluster: true } }"
fi
lookout_port=$(free_port)
cat >"$work/lookout.yaml" <<YAML
listeners: { proxy: "127.0.0.1:$lookout_port", admin: "127.0.0.1:$(free_port)" }
access_log: { path: off }
analytics: { store: off }
$redis_section
upstreams:
  - { name: bench, instances: ["127.0.0.1:$upstream_port"] }
routes:
  - { name: cached, match: { prefix: /cached }, strip_prefix: /cached, upstream: bench, cache: { ttl: 60s } }
  - { name: uncacheable, match: { prefix: /missing }, strip_prefix: /missing, upstream: bench, cache: {} }
  - { name: local-limit, match: { prefix: /local }, strip_prefix: /local, upstream: bench,
      rate_limit: { rate: 1000000/s, burst: 1000000 } }
$redis_route
  - name: composed
    match: { path: /composed }
    compose:
      calls:
        - { name: a, upstream: bench, path: /json/a }
        - { name: b, upstream: bench, path: /json/b }
        - { name: c, upstream: bench, path: "/json/c/\${a.id}" }
  - { name: plain, upstream: bench }
YAML
RUST_LOG=warn "$target/release/lookout" run -c "$work/lookout.yaml" --workers 1 >/dev/null & pids+=($!)
wait_port "$lookout_port"

direct="http://127.0.0.1:$upstream_port"
lookout="http://127.0.0.1:$lookout_port"
declare -A rps=()
printf "\n%-34s %12s %10s %10s\n" "case (c=50)" "req/s" "p50 (us)" "p99 (us)"
run() { # label url
  read -r r a b < <(measure "$2" 50)
  rps[$1]=$r
  printf "%-34s %12s %10s %10s\n" "$1" "$r" "$a" "$b"
}
run "direct /work (2 ms upstream)" "$direct/work"
run "lookout plain /work" "$lookout/work"
run "lookout cached /work" "$lookout/cached/work"
run "direct /small" "$direct/small"
run "lookout plain /small" "$lookout/small"
run "lookout cached, all misses /small" "$lookout/missing/small"
run "lookout local limit /small" "$lookout/local/small"
[ -n "$redis_port" ] && run "lookout redis limit /small" "$lookout/redis/small"
run "direct /json" "$direct/json"
run "lookout plain /json" "$lookout/json"
run "lookout composition of 3 calls" "$lookout/composed"

ratio() { awk -v a="$2" -v b="$3" -v t="$1" 'BEGIN { printf "%-50s %.2fx\n", t, a/b }'; }
echo
ratio "cached route / direct to the 2 ms upstream" "${rps[lookout cached /work]}" "${rps[direct /work (2 ms upstream)]}"
ratio "cached route / plain route (2 ms upstream)" "${rps[lookout cached /work]}" "${rps[lookout plain /work]}"
ratio "cached route, every request a miss / plain route" "${rps[lookout cached, all misses /small]}" "${rps[lookout plain /small]}"
ratio "local limit / plain route" "${rps[lookout local limit /small]}" "${rps[lookout plain /small]}"
[ -n "$redis_port" ] && ratio "redis limit / plain route" "${rps[lookout redis limit /small]}" "${rps[lookout plain /small]}"
ratio "composition (3 calls) / plain route (1 call)" "${rps[lookout composition of 3 calls]}" "${rps[lookout plain /json]}"
calls=$(awk -v r="${rps[lookout composition of 3 calls]}" 'BEGIN { print r * 3 }')
ratio "upstream calls/s: composition / plain route" "$calls" "${rps[lookout plain /json]}"
true
