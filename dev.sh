#!/usr/bin/env bash
# The two commands a newcomer needs, plus the DuckDB library they depend on.
#   ./dev.sh demo   the gateway in demo mode: built-in upstreams, traffic, admin on 127.0.0.1:9901
#   ./dev.sh test   every test of the workspace (what CI runs)
#   ./dev.sh lib    only fetch libduckdb.so into .duckdb/ (done by the other two when missing)
set -euo pipefail
cd "$(dirname "$0")"

DUCKDB_VERSION=1.5.6
DUCKDB_PACKAGE="@duckdb/node-bindings-linux-x64@${DUCKDB_VERSION}-r.1"
DUCKDB_SHA256=3f4962cdd266eab2b479a5b5a4a6d063d279b2954ae814ed00385d553b747633
LIB_DIR=".duckdb/${DUCKDB_VERSION}"

# DuckDB's own prebuilt library, as shipped in its npm package for Node (the npm registry is
# reachable where GitHub releases may not be); checked against a known digest.
fetch_libduckdb() {
  if [ -f "$LIB_DIR/libduckdb.so" ] && echo "$DUCKDB_SHA256  $LIB_DIR/libduckdb.so" | sha256sum -c --status; then
    return
  fi
  local scratch
  scratch="$(mktemp -d)"
  (cd "$scratch" && npm pack --silent "$DUCKDB_PACKAGE" >/dev/null && tar xzf ./*.tgz package/libduckdb.so)
  echo "$DUCKDB_SHA256  $scratch/package/libduckdb.so" | sha256sum -c --status \
    || { echo "libduckdb.so from $DUCKDB_PACKAGE has an unexpected digest" >&2; exit 1; }
  mkdir -p "$LIB_DIR"
  mv "$scratch/package/libduckdb.so" "$LIB_DIR/libduckdb.so"
  rm -rf "$scratch"
}

case "${1:-}" in
  demo) fetch_libduckdb; shift; exec cargo run --release -p lookout-gateway -- demo "$@" ;;
  test) fetch_libduckdb; shift; exec cargo test --workspace --locked "$@" ;;
  lib) fetch_libduckdb ;;
  *) echo "usage: ./dev.sh demo|test|lib" >&2; exit 2 ;;
esac
