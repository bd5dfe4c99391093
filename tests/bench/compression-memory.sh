#!/usr/bin/env bash
# The memory a response holds while Lookout compresses it: 200 clients at once each receive a
# text response that the upstream streams slowly (4 KiB every 100 ms), so every encoder stays
# alive, first uncompressed (the baseline: connections, buffers, requests in flight), then in
# each coding. Prints the gateway's resident memory in each case and, over the baseline, what
# one compressing response holds.
#
#   tests/bench/compression-memory.sh
#   CLIENTS=500 tests/bench/compression-memory.sh
#   LOOKOUT=/tmp/lookout-before tests/bench/compression-memory.sh   # another build of the gateway
#
# Needs python3. This is a benchmark, not a test: nothing here passes or fails on a figure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
clients=${CLIENTS:-200}
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"

echo "building release binaries..."
target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build --release --quiet -p lookout-gateway --bin lookout)

# An upstream that streams words slowly, closing when done (HTTP/1.0, no length).
upstream_port=$(free_port)
python3 - "$upstream_port" <<'PY' & pids+=($!)
import sys, time, random
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
words = "river glass winter orchard signal harbor lantern meadow copper echo garden atlas".split()
class Slow(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        rng = random.Random(7)
        try:
            for _ in range(300):
                self.wfile.write(" ".join(rng.choice(words) for _ in range(600)).encode()[:4096])
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass
    def log_message(self, *args):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
PY
wait_port "$upstream_port"

lookout_port=$(free_port)
cat >"$work/lookout.yaml" <<YAML
$(quiet_lookout_head "$lookout_port")
upstreams:
  - { name: slow, instances: ["127.0.0.1:$upstream_port"] }
routes:
  - { name: text, upstream: slow, compress: {} }
YAML
RUST_LOG=warn "${LOOKOUT:-$target/release/lookout}" run -c "$work/lookout.yaml" --workers 1 >/dev/null & pids+=($!)
lookout_pid=$!
wait_port "$lookout_port"

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$lookout_pid/status"; }

# Holds $clients responses open in $1 for 5 s (reading what arrives), then prints the gateway's
# resident memory at the end of that time, in KiB.
held() {
  python3 - "$lookout_port" "$clients" "$1" <<'PY' &
import asyncio, sys
port, clients, coding = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
async def one():
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /text HTTP/1.1\r\nhost: x\r\naccept-encoding: {coding}\r\n\r\n".encode())
    await writer.drain()
    try:
        await asyncio.wait_for(drain(reader), 7)
    except asyncio.TimeoutError:
        pass
    writer.close()
async def drain(reader):
    while await reader.read(65536):
        pass
async def main():
    await asyncio.gather(*(one() for _ in range(clients)))
asyncio.run(main())
PY
  local load=$!
  sleep 5
  rss_kib
  wait "$load"
  sleep 1
}

held identity >/dev/null # warms the allocator's arenas and the pool
printf "\n%-10s %14s %22s\n" "coding" "gateway RSS" "per response over plain"
plain=$(held identity)
printf "%-10s %11s KiB %22s\n" "identity" "$plain" "-"
for coding in zstd br gzip; do
  rss=$(held "$coding")
  printf "%-10s %11s KiB %18s KiB\n" "$coding" "$rss" "$(( (rss - plain) / clients ))"
done
