#!/usr/bin/env bash
# Throughput at concurrency J: python print(1), J runs in flight at a time
# for SECONDS each, a fresh process (bare, bwrap) or a fresh sandbox
# (capibox) per run, interleaved in one sitting:
#
#   bare   J concurrent `python3 -c 'print(1)'` (capibox-bench --bare
#          --clean-env -j J): no isolation, the floor
#   bwrap  the same under bubblewrap (bench/lib.sh bwrap_argv)
#   cold   capibox with pools off
#   warm   capibox with --pool python=POOL (default 8): back to back, so the
#          pool drains as fast as it refills; "warm" shows the share of runs
#          that found a pooled sandbox
#
#   sudo bench/throughput.sh [BUILD_DIR] [SECONDS] [J] [ROUNDS] [POOL]
#
# Prints executions/s per round and the mean ratio to bare. Needs root and
# bubblewrap (installed with apt-get when missing).
set -euo pipefail
here=$(dirname "$0")
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_init "${1:-build}"
secs=${2:-10}
conc=${3:-8}
rounds=${4:-3}
pool=${5:-8}
need_bwrap

start_daemon cold 2300000 --pool python=0 --pool javascript=0
start_daemon warm 2400000 --pool python="$pool" --pool javascript=0
wait_pools "$addr_warm"

py=(/usr/bin/python3 -c 'print(1)')
run_variant() {
	case $1 in
	bare) "$bench" --bare --clean-env -w 2 -d "$secs" -j "$conc" -- "${py[@]}" ;;
	bwrap) "$bench" --bare --clean-env -w 2 -d "$secs" -j "$conc" -- "${bwrap_argv[@]}" "${py[@]}" ;;
	cold) "$bench" -a "$addr_cold" -w 2 -d "$secs" -j "$conc" ;;
	warm)
		wait_pools "$addr_warm"
		"$bench" -a "$addr_warm" -w 0 -d "$secs" -j "$conc"
		;;
	esac >"$tmp/out" || { cat "$tmp/out" >&2; echo "$1 failed" >&2; exit 1; }
}

declare -A sum
variants=(bare bwrap cold warm)
"$bench" --bare -n 1 -w 0 -- /bin/true | head -1
echo "python print(1), concurrency $conc, $secs s per series, $rounds rounds, warm pool $pool"
for r in $(seq "$rounds"); do
	for v in "${variants[@]}"; do
		run_variant "$v"
		rate=$(rate_field <"$tmp/out")
		p50=$(lat_field p50 <"$tmp/out")
		w=$(warm_field <"$tmp/out")
		printf 'round %d  %-6s %7.1f executions/s  (latency p50 %7.2f ms)  %s  load %s\n' \
			"$r" "$v" "$rate" "$p50" "${w:+warm $w}" "$(loadavg)"
		sum[$v]=$(awk -v a="${sum[$v]:-0}" -v b="$rate" 'BEGIN {print a + b}')
	done
done
echo
echo "mean executions/s over $rounds rounds (ratio to bare), load at end $(loadavg):"
for v in "${variants[@]}"; do
	awk -v s="${sum[$v]}" -v b="${sum[bare]}" -v r="$rounds" -v v="$v" \
		'BEGIN {printf "  %-6s %7.1f  (%.2f)\n", v, s / r, s / b}'
done
