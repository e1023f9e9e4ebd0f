#!/usr/bin/env bash
# Side-by-side latency of a tiny program: bare interpreter vs capibox, run
# interleaved in one sitting (machines here are noisy: compare ratios).
#
#   bench/compare.sh [BUILD_DIR] [ROUNDS] [COUNT]
#
# Starts its own capiboxd from BUILD_DIR (default ./build) on an ephemeral
# port, then for each round runs COUNT executions of each variant.
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
count=${3:-100}
bench="$build/capibox-bench"
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

"$build/capiboxd" --listen 127.0.0.1:0 --ready-file "$tmp/addr" 2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do [ -s "$tmp/addr" ] && break; sleep 0.1; done
addr=$(cat "$tmp/addr")

p50() { awk '/^latency/ {print $4}'; }
declare -A sum
variants=(bare-python capibox-python bare-node capibox-javascript bare-bash capibox-bash)
run_variant() {
	case $1 in
	bare-python) "$bench" --bare --clean-env -n "$count" -- /usr/bin/python3 -c 'print(1)' ;;
	bare-node) "$bench" --bare --clean-env -n "$count" -- /usr/bin/node -e 'console.log(1)' ;;
	bare-bash) "$bench" --bare --clean-env -n "$count" -- /bin/bash -c 'echo 1' ;;
	capibox-python) "$bench" -a "$addr" -n "$count" -l python -c 'print(1)' ;;
	capibox-javascript) "$bench" -a "$addr" -n "$count" -l javascript -c 'console.log(1)' ;;
	capibox-bash) "$bench" -a "$addr" -n "$count" -l bash -c 'echo 1' ;;
	esac
}
"$bench" --bare --clean-env -n 1 -w 0 -- /bin/true | head -1
for r in $(seq "$rounds"); do
	for v in "${variants[@]}"; do
		v50=$(run_variant "$v" | p50)
		printf 'round %d  %-20s p50 %7.2f ms\n' "$r" "$v" "$v50"
		sum[$v]=$(awk -v a="${sum[$v]:-0}" -v b="$v50" 'BEGIN {print a + b}')
	done
done
echo "mean of per-round p50 over $rounds rounds of $count:"
for lang in python node bash; do
	cb=capibox-$lang; [ "$lang" = node ] && cb=capibox-javascript
	awk -v b="${sum[bare-$lang]}" -v c="${sum[$cb]}" -v r="$rounds" -v l="$lang" \
		'BEGIN {printf "  %-8s bare %7.2f ms   capibox %7.2f ms   ratio %.2f\n", l, b/r, c/r, c/b}'
done
