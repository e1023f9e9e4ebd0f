#!/usr/bin/env bash
# capiboxd under valgrind (memcheck): a few executions of each kind, an
# Analyze, a deep health check, a refused request, then SIGTERM. Passes when
# the daemon exits 0 with no memory error and no definite leak (valgrind's
# --error-exitcode). The supervisor is not traced (it is spawned, and
# valgrind does not follow it): the sandboxes it clones are ordinary code.
#
# Environment (set by tests/valgrind/CMakeLists.txt): CAPIBOXD, CAPIBOX_CLI,
# CAPIBOX_SALES (examples/sales.csv). Exit 77 (skip) without root or valgrind.
set -euo pipefail
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "capiboxd needs root (namespaces)"
command -v valgrind >/dev/null || skip "valgrind is not installed"

tmp=$(mktemp -d /tmp/capibox-valgrind.XXXXXX)
chmod 711 "$tmp" # sandboxes mount their root under the state dir in here
pid=
cleanup() {
	[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	wait 2>/dev/null || true
	rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	--show-leak-kinds=definite --num-callers=40 --log-file="$tmp/valgrind.log" \
	"$CAPIBOXD" --listen 127.0.0.1:0 --ready-file "$tmp/addr" --state-dir "$tmp/state" \
	--uid-base 6900000 --no-metrics --grace 5 2>"$tmp/capiboxd.log" &
pid=$!
for _ in $(seq 600); do
	[ -s "$tmp/addr" ] && break
	kill -0 "$pid" 2>/dev/null || { cat "$tmp/capiboxd.log" "$tmp/valgrind.log"; exit 1; }
	sleep 0.1
done
[ -s "$tmp/addr" ] || { echo "capiboxd under valgrind did not come up in 60 s"; exit 1; }
addr=$(cat "$tmp/addr")
cli() { "$CAPIBOX_CLI" -a "$addr" "$@"; }

out=$(cli exec -l python -c 'print(6 * 7)')
[ "$out" = 42 ] || { echo "python: got '$out'"; exit 1; }
out=$(cli exec -l bash -c 'echo hi')
[ "$out" = hi ] || { echo "bash: got '$out'"; exit 1; }
out=$(cli exec -l javascript -c 'console.log(1 + 1)')
[ "$out" = 2 ] || { echo "javascript: got '$out'"; exit 1; }
# a run that fails, one that times out, one cut at its output limit
cli exec -l python -c 'raise SystemExit(3)' && { echo "exit 3 expected"; exit 1; } || true
cli exec -l python --timeout 300 -c 'while True: pass' && { echo "timeout expected"; exit 1; } || true
cli analyze "$CAPIBOX_SALES" --json >"$tmp/analyze.json"
grep -q '547.25' "$tmp/analyze.json" || { echo "analyze: no 547.25"; cat "$tmp/analyze.json"; exit 1; }
cli exec -l cobol -c 'x' 2>/dev/null && { echo "cobol accepted"; exit 1; } || true
cli health --deep >/dev/null

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
echo "capiboxd under valgrind exited $rc"
grep -E "ERROR SUMMARY|definitely lost" "$tmp/valgrind.log" || true
if [ "$rc" != 0 ]; then
	cat "$tmp/valgrind.log"
	tail -50 "$tmp/capiboxd.log"
	exit 1
fi
