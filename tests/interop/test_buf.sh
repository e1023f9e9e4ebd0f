#!/usr/bin/env bash
# buf (npm @bufbuild/buf) against the real capiboxd, with no .proto files:
# server reflection lists the services (v1 and v1alpha), lists SandboxService's
# methods, and buf curl calls grpc.health.v1 Check (no key), Health and
# Execute (with a key; without one UNAUTHENTICATED). Also `buf lint` over
# proto/. buf is installed into a cache directory; without npm or the
# registry the test is skipped (exit 77) with the reason.
#
# Environment: CAPIBOXD (the daemon), CAPIBOX_PROTO_DIR (proto/),
# CAPIBOX_NPM_CACHE (default ~/.cache/capibox-npm).
set -euo pipefail

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; [ -n "${tmp:-}" ] && [ -f "$tmp/log" ] && cat "$tmp/log"; exit 1; }

[ "$(id -u)" -eq 0 ] || skip "capiboxd must run as root"
command -v npm >/dev/null || skip "npm is not installed"
cache=${CAPIBOX_NPM_CACHE:-$HOME/.cache/capibox-npm}
mkdir -p "$cache"
buf=$cache/node_modules/.bin/buf
if ! "$buf" --version >/dev/null 2>&1; then
	timeout 300 npm install --silent --no-audit --no-fund --prefix "$cache" @bufbuild/buf@1 \
		>"$cache/npm.log" 2>&1 || skip "npm install @bufbuild/buf failed (no registry?): $(tail -n 3 "$cache/npm.log")"
fi
"$buf" --version >/dev/null 2>&1 || skip "buf does not run here"
echo "buf $("$buf" --version)"

echo "== buf lint proto/"
(cd "$CAPIBOX_PROTO_DIR" && "$buf" lint .) || fail "buf lint found problems in proto/"

tmp=$(mktemp -d /tmp/capibox-buf-XXXXXX)
chmod 711 "$tmp"
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

"$CAPIBOXD" keygen buf-test >"$tmp/key"
secret=$(sed -n 2p "$tmp/key")
sed -n 4p "$tmp/key" >"$tmp/keys"
chmod 600 "$tmp/keys"
setpriv --pdeathsig TERM -- "$CAPIBOXD" --listen 127.0.0.1:0 --ready-file "$tmp/addr" \
	--state-dir "$tmp/state" --uid-base $((7000000 + ($$ % 50) * 65536)) --keys "$tmp/keys" \
	>"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$tmp/addr" ] && break; sleep 0.1; done
[ -s "$tmp/addr" ] || fail "capiboxd did not start"
url=http://$(cat "$tmp/addr")
curl_() { timeout 60 "$buf" curl --protocol grpc --http2-prior-knowledge "$@"; }

echo "== list services (reflection v1, then v1alpha)"
services=$(curl_ --list-services "$url")
echo "$services"
for s in capibox.v1.SandboxService grpc.health.v1.Health grpc.reflection.v1.ServerReflection \
	grpc.reflection.v1alpha.ServerReflection; do
	grep -qx "$s" <<<"$services" || fail "list-services lacks $s"
done
# into a variable first: with pipefail, `buf ... | grep -q` fails when grep
# exits at the first match and buf then dies of SIGPIPE writing the rest
services=$(curl_ --reflect-protocol grpc-v1alpha --list-services "$url")
grep -qx capibox.v1.SandboxService <<<"$services" ||
	fail "v1alpha reflection does not list SandboxService"

echo "== describe SandboxService (its methods)"
methods=$(curl_ --list-methods "$url" | grep '^capibox.v1.SandboxService/')
echo "$methods"
for m in Execute Analyze Health; do
	grep -qx "capibox.v1.SandboxService/$m" <<<"$methods" || fail "SandboxService lacks $m"
done

echo "== grpc.health.v1 Check, no key"
out=$(curl_ "$url/grpc.health.v1.Health/Check")
echo "$out"
grep -q '"SERVING"' <<<"$out" || fail "Check is not SERVING"

echo "== Health with a key"
out=$(curl_ -H "authorization: Bearer $secret" "$url/capibox.v1.SandboxService/Health")
grep -q '"version"' <<<"$out" || fail "Health: $out"

echo "== Execute with a key"
out=$(curl_ -H "x-api-key: $secret" -d '{"language":"python","code":"print(6*7)"}' \
	"$url/capibox.v1.SandboxService/Execute")
echo "$out"
# stdout arrives base64-encoded, possibly in several chunks (print writes
# "42" and "\n" separately): decode each and join them
printed=$(sed -n 's/.*"data": "\([A-Za-z0-9+\/=]*\)".*/\1/p' <<<"$out" |
	while read -r chunk; do printf '%s' "$chunk" | base64 -d; done | od -An -c | tr -d ' ')
[ "$printed" = '42\n' ] || fail "Execute did not print 42 (got: $printed)"
grep -q REASON_EXITED <<<"$out" || fail "Execute did not finish with REASON_EXITED"

echo "== Execute without a key"
if out=$(curl_ -d '{"language":"python","code":"print(1)"}' \
	"$url/capibox.v1.SandboxService/Execute" 2>&1); then
	fail "Execute without a key succeeded: $out"
fi
grep -qi unauthenticated <<<"$out" || fail "Execute without a key: $out"
grep -q "$secret" "$tmp/log" && fail "the secret appears in the daemon's log"
echo "PASS"
