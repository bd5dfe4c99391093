# Helpers shared by the benchmark scripts (sourced, not run): a scratch folder and the processes
# started, both cleaned up on exit; free ports; the release build and the benchmark upstream; a wrk
# measurement.

duration=${DURATION:-10s}
work=$(mktemp -d)
pids=()
cleanup() {
  # A stopped process (see run.sh) takes no SIGTERM until it is continued.
  for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null && kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# Prints "req/s p50 p99" (latencies in microseconds) for one wrk run; further arguments go to
# wrk (e.g. -H 'authorization: Bearer ...').
measure() {
  warm_up "$@"
  measure_window "$@" | cut -d' ' -f1-3
}

# A short wrk run first: connections, pools and caches warm.
warm_up() {
  local url=$1 conns=$2
  shift 2
  wrk -t1 -c"$conns" -d1s "$@" "$url" >/dev/null 2>&1
}

# Prints "req/s p50 p99 requests" for one wrk run of $duration (no warm-up).
measure_window() {
  local url=$1 conns=$2
  shift 2
  wrk -t1 -c"$conns" -d"$duration" --latency "$@" "$url" | awk '
    function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return v*1000; if (v ~ /s$/) return v*1000000; return v }
    /Requests\/sec/ { rps=$2 }
    / requests in / { n=$1 }
    /^ +50%/ { p50=us($2) }
    /^ +99%/ { p99=us($2) }
    END { printf "%.0f %.0f %.0f %d\n", rps, p50, p99, n }'
}

# The CPU time (in clock ticks) process $1 has used so far, all its threads; or, with a thread id
# as $2, that thread's alone: user and system together, then system (the kernel's part) alone.
cpu_ticks() {
  local stat="/proc/$1/stat"
  [ -z "${2:-}" ] || stat="/proc/$1/task/$2/stat"
  awk '{ print $14 + $15, $15 }' "$stat"
}

# Builds the release binaries into $target and starts bench-upstream on $upstream_port.
start_bench_upstream() {
  command -v wrk >/dev/null || { echo "wrk is required: apt install wrk" >&2; exit 1; }
  echo "building release binaries..."
  target=${CARGO_TARGET_DIR:-$root/target}
  (cd "$root" && cargo build --release --quiet -p lookout-gateway -p lookout-tests --bins)
  upstream_port=$(free_port)
  "$target/release/bench-upstream" "127.0.0.1:$upstream_port" & pids+=($!)
  wait_port "$upstream_port"
}

# Prints an upstream of bench-upstream and $1 routes, r1 to rN, each matching /rN/ and rewriting
# the path to /small: a config with many routes' series, for the scrape and push benchmarks.
bench_routes() {
  echo "upstreams:"
  echo "  - { name: bench, instances: [\"127.0.0.1:$upstream_port\"] }"
  echo "routes:"
  for route in $(seq "$1"); do
    echo "  - { name: r$route, match: { prefix: /r$route/ }, upstream: bench, rewrite: /small }"
  done
}

# Prints the start of an nginx config for one worker in the foreground, its files under
# $work/nginx, up to the opening of its http block, which gets $1 (its access log setting); the
# caller writes the rest of the block and closes it.
nginx_config() {
  mkdir -p "$work/nginx"
  cat <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  $1
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
NGINX
}

# Starts nginx (1 worker, its process id in $nginx_worker) as a proxy to bench-upstream on
# $nginx_port, when nginx is installed; $nginx_port stays empty otherwise. The same worker also
# serves $nginx_fwd_port, where nginx does the header work Lookout does on every request: the
# client's Host kept, X-Forwarded-For/-Proto/-Host, Forwarded, Via and a request id made and
# sent both ways. With $tls_cert and $tls_key set, it also serves HTTPS on $nginx_tls_port.
start_nginx() {
  nginx_port="" nginx_fwd_port="" nginx_tls_port=""
  command -v nginx >/dev/null || return 0
  nginx_port=$(free_port) nginx_fwd_port=$(free_port)
  local proxying='proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # nginx'"'"'s best showing here: buffering on, with buffers that hold a 64 KiB response
      # (buffering off, or the default 4 KiB buffers, roughly halve or quarter its large-body rate).
      proxy_buffering on;
      proxy_buffers 16 16k;
      proxy_buffer_size 16k;'
  local location="location / {
      $proxying
    }"
  local forwarding='location / {
      '"$proxying"'
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header Forwarded "for=$remote_addr;proto=$scheme";
      proxy_set_header Via "1.1 nginx";
      proxy_set_header X-Request-Id $request_id;
      add_header Via "1.1 nginx" always;
      add_header X-Request-Id $request_id always;
    }'
  local tls_server=""
  if [ -n "${tls_cert:-}" ]; then
    nginx_tls_port=$(free_port)
    tls_server="server {
    listen 127.0.0.1:$nginx_tls_port ssl;
    ssl_certificate $tls_cert;
    ssl_certificate_key $tls_key;
    ssl_protocols TLSv1.2 TLSv1.3;
    $location
  }"
  fi
  nginx_config "access_log $work/nginx/access.log;" >"$work/nginx.conf"
  cat >>"$work/nginx.conf" <<NGINX
  upstream bench { server 127.0.0.1:$upstream_port; keepalive 128; }
  server {
    listen 127.0.0.1:$nginx_port;
    $location
  }
  server {
    listen 127.0.0.1:$nginx_fwd_port;
    $forwarding
  }
  $tls_server
}
NGINX
  nginx -c "$work/nginx.conf" -p "$work/nginx" & pids+=($!)
  local master=$!
  wait_port "$nginx_port"
  # The one worker process, which does all the proxying (forked by the master once it listens).
  nginx_worker=""
  for _ in $(seq 100); do
    # Tested by its value: a pipeline's status is head's, not pgrep's, without pipefail.
    nginx_worker=$(pgrep -P "$master" | head -1 || true)
    [ -z "$nginx_worker" ] || break
    sleep 0.05
  done
}

# The median of the numbers on stdin, one per line or spaced.
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Measures every case of "${cases[@]}" once per round, in turn, for $rounds rounds of wrk at 50
# connections, appending each round's req/s, p50 and p99 to by_round, p50s and p99s (associative
# arrays the caller declares, as url, and header when a case sends one: `name: value`).
measure_rounds() {
  local name r a b
  for _ in $(seq "$rounds"); do
    for name in "${cases[@]}"; do
      local args=()
      [ -z "${header[$name]:-}" ] || args=(-H "${header[$name]}")
      read -r r a b _ < <(measure_window "${url[$name]}" 50 "${args[@]}")
      by_round[$name]+="$r "
      p50s[$name]+="$a "
      p99s[$name]+="$b "
    done
  done
}

# Prints the start of a Lookout config whose proxy listens on port $1 (its admin on a free port),
# with its store, access log and traces off, so that what a benchmark varies is what it measures.
quiet_lookout_head() {
  cat <<YAML
listeners: { proxy: "127.0.0.1:$1", admin: "127.0.0.1:$(free_port)" }
access_log: { path: off }
analytics: { store: off }
YAML
}

# Starts a quiet Lookout (--workers 1) named $1 in front of bench-upstream: its one upstream
# `bench` with the fields $2, and the routes in file $3. Its proxy port goes in port[$1] (an
# associative array the caller declares).
start_quiet_lookout() {
  port[$1]=$(free_port)
  {
    quiet_lookout_head "${port[$1]}"
    echo "upstreams:"
    echo "  - { name: bench, $2 }"
    echo "routes:"
    cat "$3"
  } >"$work/$1.yaml"
  RUST_LOG=warn "${LOOKOUT:-$target/release/lookout}" run -c "$work/$1.yaml" --workers 1 >/dev/null & pids+=($!)
  wait_port "${port[$1]}"
}

# Prints the medians over the rounds of each case of "${cases[@]}" (req/s, p50, p99), its req/s
# as a ratio to case $1's (the column headed $2), and each round's req/s; case names padded to
# $3 characters.
print_against() {
  local name r base
  printf "\n%-${3}s %10s %10s %10s %8s   %s\n" "case (c=50)" "req/s" "p50 (us)" "p99 (us)" "$2" "req/s by round"
  base=$(median <<<"${by_round[$1]}")
  for name in "${cases[@]}"; do
    r=$(median <<<"${by_round[$name]}")
    printf "%-${3}s %10.0f %10.0f %10.0f %7.3fx   %s\n" "$name" "$r" "$(median <<<"${p50s[$name]}")" \
      "$(median <<<"${p99s[$name]}")" "$(awk -v a="$r" -v b="$base" 'BEGIN { print a / b }')" "${by_round[$name]}"
  done
}
