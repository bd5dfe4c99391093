#!/usr/bin/env bash
# Response compression, benchmarked with wrk against baselines measured in the same run: an 18 KB
# JSON list (bench-upstream's `/text`) through nginx as a proxy, as it is and gzipped (level 6,
# zlib's default, which Lookout's gzip uses too), and through Lookout as it is, gzipped, in
# brotli (quality 4) and in zstd (level 3). Every client asks `Accept-Encoding` for the coding
# measured.
# Both proxies run one worker, Lookout with its store, access log and traces off, nginx without
# an access log, so compression is what differs between the runs. Each case is measured in rounds,
# every case once per round in turn; prints each round's req/s, the medians of req/s, p50 and p99,
# the bytes each answer took on the wire, and the ratios to nginx's gzip and to Lookout
# uncompressed.
#
#   tests/bench/compression.sh                     # 3 rounds of 5 s
#   ROUNDS=5 DURATION=10s tests/bench/compression.sh
#   LOOKOUT=/tmp/lookout-before tests/bench/compression.sh   # another build of the gateway
#
# Needs wrk and nginx (apt install wrk nginx-light), and curl for the sizes. This is a benchmark,
# not a test: nothing here passes or fails on a figure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
DURATION=${DURATION:-5s}
rounds=${ROUNDS:-3}
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"
command -v nginx >/dev/null || { echo "nginx is required: apt install nginx-light" >&2; exit 1; }

start_bench_upstream

lookout_port=$(free_port)
cat >"$work/lookout.yaml" <<YAML
$(quiet_lookout_head "$lookout_port")
upstreams:
  - { name: bench, instances: ["127.0.0.1:$upstream_port"] }
routes:
  - { name: compressed, match: { prefix: /compressed }, strip_prefix: /compressed, upstream: bench, compress: {} }
  - { name: plain, upstream: bench }
YAML
RUST_LOG=warn "${LOOKOUT:-$target/release/lookout}" run -c "$work/lookout.yaml" --workers 1 >/dev/null & pids+=($!)
wait_port "$lookout_port"

nginx_port=$(free_port)
{
  nginx_config "access_log off;"
  cat <<NGINX
  upstream bench { server 127.0.0.1:$upstream_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location /compressed/ {
      gzip on; gzip_comp_level 6; gzip_min_length 1024; gzip_types application/json; gzip_vary on;
      proxy_pass http://bench/; proxy_http_version 1.1; proxy_set_header Connection "";
    }
    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
} >"$work/nginx.conf"
nginx -c "$work/nginx.conf" & pids+=($!)
wait_port "$nginx_port"

declare -A url=(
  ["nginx, as it is"]="http://127.0.0.1:$nginx_port/text"
  ["nginx, gzip"]="http://127.0.0.1:$nginx_port/compressed/text"
  ["Lookout, as it is"]="http://127.0.0.1:$lookout_port/text"
  ["Lookout, gzip"]="http://127.0.0.1:$lookout_port/compressed/text"
  ["Lookout, br"]="http://127.0.0.1:$lookout_port/compressed/text"
  ["Lookout, zstd"]="http://127.0.0.1:$lookout_port/compressed/text"
)
declare -A header=(
  ["nginx, as it is"]="accept-encoding: gzip" ["nginx, gzip"]="accept-encoding: gzip"
  ["Lookout, as it is"]="accept-encoding: gzip" ["Lookout, gzip"]="accept-encoding: gzip"
  ["Lookout, br"]="accept-encoding: br" ["Lookout, zstd"]="accept-encoding: zstd"
)
cases=("nginx, as it is" "nginx, gzip" "Lookout, as it is" "Lookout, gzip" "Lookout, br" "Lookout, zstd")
declare -A size=()
for name in "${cases[@]}"; do
  size[$name]=$(curl -s -o /dev/null -w '%{size_download}' -H "${header[$name]}" "${url[$name]}")
  warm_up "${url[$name]}" 50 -H "${header[$name]}"
done

declare -A by_round=() p50s=() p99s=()
measure_rounds

printf "\n%-20s %9s %9s %9s %10s %12s %14s   %s\n" "case (c=50, 18 KB)" "req/s" "p50 (us)" "p99 (us)" "bytes" "/nginx gzip" "/Lookout plain" "req/s by round"
nginx_gzip=$(median <<<"${by_round[nginx, gzip]}")
lookout_plain=$(median <<<"${by_round[Lookout, as it is]}")
for name in "${cases[@]}"; do
  r=$(median <<<"${by_round[$name]}")
  printf "%-20s %9.0f %9.0f %9.0f %10s %11.2fx %13.2fx   %s\n" "$name" "$r" "$(median <<<"${p50s[$name]}")" \
    "$(median <<<"${p99s[$name]}")" "${size[$name]}" \
    "$(awk -v a="$r" -v b="$nginx_gzip" 'BEGIN { print a / b }')" \
    "$(awk -v a="$r" -v b="$lookout_plain" 'BEGIN { print a / b }')" "${by_round[$name]}"
done
