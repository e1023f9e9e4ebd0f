#!/usr/bin/env bash
# Node.js interop: test_node.js (@grpc/grpc-js + @grpc/proto-loader from npm)
# against the real capiboxd started with an API key. The npm packages go into
# a cache directory under the build directory; without npm or the registry
# the test is skipped (exit 77) with the reason.
#
# Environment: CAPIBOXD (the daemon), CAPIBOX_PROTO_DIR (proto/),
# CAPIBOX_NODE_DEPS (where the npm packages are installed).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; [ -n "${tmp:-}" ] && [ -f "$tmp/log" ] && cat "$tmp/log"; exit 1; }

[ "$(id -u)" -eq 0 ] || skip "capiboxd must run as root"
command -v node >/dev/null || skip "node is not installed"
command -v npm >/dev/null || skip "npm is not installed"
deps=${CAPIBOX_NODE_DEPS:-$HOME/.cache/capibox-node}
mkdir -p "$deps"
# Pinned major versions: proto-loader 0.7 goes with grpc-js 1.x.
if ! (cd "$deps" && node -e 'require("@grpc/grpc-js"); require("@grpc/proto-loader")') \
	>/dev/null 2>&1; then
	timeout 300 npm install --loglevel=error --no-audit --no-fund --prefix "$deps" \
		@grpc/grpc-js@1 @grpc/proto-loader@0.7 >"$deps/npm.log" 2>&1 ||
		skip "npm install @grpc/grpc-js @grpc/proto-loader failed (no registry?): $(tail -n 3 "$deps/npm.log")"
fi
echo "node $(node --version), grpc-js $(cd "$deps" && node -p 'require("@grpc/grpc-js/package.json").version')"

tmp=$(mktemp -d /tmp/capibox-node-XXXXXX)
chmod 711 "$tmp"
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

"$CAPIBOXD" keygen node-test >"$tmp/key"
secret=$(sed -n 2p "$tmp/key")
sed -n 4p "$tmp/key" >"$tmp/keys"
chmod 600 "$tmp/keys"
setpriv --pdeathsig TERM -- "$CAPIBOXD" --listen 127.0.0.1:0 --ready-file "$tmp/addr" \
	--state-dir "$tmp/state" --uid-base $((60000000 + ($$ % 50) * 65536)) --keys "$tmp/keys" \
	--grace 2 >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -s "$tmp/addr" ] && break; sleep 0.1; done
[ -s "$tmp/addr" ] || fail "capiboxd did not start"

rc=0
CAPIBOX_ADDR=$(cat "$tmp/addr") CAPIBOX_TOKEN=$secret NODE_PATH=$deps/node_modules \
	timeout 300 node "$here/test_node.js" || rc=$?
[ "$rc" -eq 0 ] || fail "test_node.js exited $rc"
grep -q "$secret" "$tmp/log" && fail "the secret appears in the daemon's log"

kill "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" -eq 0 ] || fail "capiboxd exited $status on SIGTERM"
echo "PASS"
