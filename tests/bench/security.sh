#!/usr/bin/env bash
# Lookout's edge security, benchmarked with wrk against baselines measured in the same run: /small
# through a plain route, through a route with JWT (RS256, PEM key) + authorization (a required
# scope and claim) + the attack filter (blocking; path and query checked) — with the verified-token
# cache (one client repeating its token) and without (every request pays the RSA check, as with
# a new token each time) —, and through nginx's
# plain proxy; then over HTTPS (an ECDSA P-256 certificate made here with openssl), both on
# keep-alive connections and with a new connection (a full handshake) per request, against nginx
# with the same certificate. The token is minted here with openssl from the test fixture key.
# Lookout runs with --workers 1 and its store, access log and traces off. Prints req/s, p50 and
# p99 and the ratios.
#
#   tests/bench/security.sh              # 10 s per run
#   DURATION=30s tests/bench/security.sh
#
# Needs wrk (apt install wrk) and openssl; nginx is measured when installed (apt install nginx-light).
# This is a benchmark, not a test: nothing here passes or fails on a figure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"

start_bench_upstream
tls_cert="$work/bench.pem" tls_key="$work/bench.key"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$tls_key" -out "$tls_cert" 2>/dev/null
start_nginx

keys="$root/tests/fixtures/jwt"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
header=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
claims=$(printf '{"sub":"bench","iss":"bench-idp","aud":"bench","exp":%d,"scope":"books:read","tier":"gold"}' \
  "$(($(date +%s) + 3600))" | b64url)
signature=$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -sign "$keys/rsa-a.key" -binary | b64url)
token="$header.$claims.$signature"

lookout_port=$(free_port)
cat >"$work/lookout.yaml" <<YAML
listeners: { proxy: "127.0.0.1:$lookout_port", admin: "127.0.0.1:$(free_port)" }
access_log: { path: off }
analytics: { store: off }
jwt_providers:
  - { name: bench, algorithms: [RS256], key_file: "$keys/rsa-a.pub", issuer: bench-idp, audiences: [bench] }
  - { name: uncached, algorithms: [RS256], key_file: "$keys/rsa-a.pub", issuer: bench-idp, audiences: [bench], verified_cache: 0 }
upstreams:
  - { name: bench, instances: ["127.0.0.1:$upstream_port"] }
routes:
  - name: guarded
    match: { prefix: /guarded }
    strip_prefix: /guarded
    upstream: bench
    auth: { jwt: bench, scopes: ["books:read"], claims: { tier: [gold] } }
    security: { attack_filter: { mode: block } }
  - name: verify-each
    match: { prefix: /verify-each }
    strip_prefix: /verify-each
    upstream: bench
    auth: { jwt: uncached, scopes: ["books:read"], claims: { tier: [gold] } }
    security: { attack_filter: { mode: block } }
  - { name: plain, upstream: bench }
YAML
RUST_LOG=warn "$target/release/lookout" run -c "$work/lookout.yaml" --workers 1 >/dev/null & pids+=($!)
wait_port "$lookout_port"

# The same gateway with HTTPS on its proxy listener.
tls_port=$(free_port)
sed -e "s/127.0.0.1:$lookout_port/127.0.0.1:$tls_port/" -e "s/admin: \"127.0.0.1:[0-9]*\"/admin: \"127.0.0.1:$(free_port)\"/" \
  "$work/lookout.yaml" >"$work/lookout-tls.yaml"
printf 'tls: { certificates: [{ cert: "%s", key: "%s" }] }\n' "$tls_cert" "$tls_key" >>"$work/lookout-tls.yaml"
RUST_LOG=warn "$target/release/lookout" run -c "$work/lookout-tls.yaml" --workers 1 >/dev/null & pids+=($!)
wait_port "$tls_port"

lookout="http://127.0.0.1:$lookout_port"
check=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" "$lookout/guarded/small?q=dune")
[ "$check" = 200 ] || { echo "the guarded route answered $check, not 200" >&2; exit 1; }

declare -A rps=() p99=()
printf "\n%-40s %12s %10s %10s\n" "case (c=50)" "req/s" "p50 (us)" "p99 (us)"
run() { # label url [wrk args]
  local label=$1 url=$2
  shift 2
  read -r r a b < <(measure "$url" 50 "$@")
  rps[$label]=$r p99[$label]=$b
  printf "%-40s %12s %10s %10s\n" "$label" "$r" "$a" "$b"
}
run "direct /small" "http://127.0.0.1:$upstream_port/small?q=dune"
[ -n "$nginx_port" ] && run "nginx plain /small" "http://127.0.0.1:$nginx_port/small?q=dune"
run "lookout plain /small" "$lookout/small?q=dune"
run "lookout JWT RS256 + authz + attack filter" "$lookout/guarded/small?q=dune" -H "authorization: Bearer $token"
run "same, every token verified (no cache)" "$lookout/verify-each/small?q=dune" -H "authorization: Bearer $token"
[ -n "$nginx_tls_port" ] && run "nginx https /small" "https://localhost:$nginx_tls_port/small?q=dune"
run "lookout https /small" "https://localhost:$tls_port/small?q=dune"
[ -n "$nginx_tls_port" ] && run "nginx https, handshake per request" "https://localhost:$nginx_tls_port/small?q=dune" -H "connection: close"
run "lookout https, handshake per request" "https://localhost:$tls_port/small?q=dune" -H "connection: close"

ratio() { awk -v a="$2" -v b="$3" -v t="$1" 'BEGIN { printf "%-50s %.2fx\n", t, a/b }'; }
echo
ratio "guarded / plain route (req/s)" "${rps[lookout JWT RS256 + authz + attack filter]}" "${rps[lookout plain /small]}"
ratio "guarded / plain route (p99)" "${p99[lookout JWT RS256 + authz + attack filter]}" "${p99[lookout plain /small]}"
ratio "guarded, no cache / plain route (req/s)" "${rps[same, every token verified (no cache)]}" "${rps[lookout plain /small]}"
ratio "lookout https / plain (req/s)" "${rps[lookout https /small]}" "${rps[lookout plain /small]}"
if [ -n "$nginx_port" ]; then
  ratio "lookout plain / nginx plain (req/s)" "${rps[lookout plain /small]}" "${rps[nginx plain /small]}"
  ratio "guarded / nginx plain (req/s)" "${rps[lookout JWT RS256 + authz + attack filter]}" "${rps[nginx plain /small]}"
  ratio "lookout https / nginx https (req/s)" "${rps[lookout https /small]}" "${rps[nginx https /small]}"
  ratio "handshakes: lookout / nginx (req/s)" "${rps[lookout https, handshake per request]}" "${rps[nginx https, handshake per request]}"
fi
