#!/usr/bin/env bash
# Side-by-side latency of one small program, in one sitting and interleaved
# (machines here are noisy: compare the ratios of one run, not absolute
# times across runs):
#
#   bare     the interpreter started directly (capibox-bench --bare
#            --clean-env): no isolation at all, the floor a user sees today
#   bwrap    the same under bubblewrap with every namespace, the sandbox a
#            user would script by hand (see bwrap_argv in bench/lib.sh)
#   cold     capibox, a daemon with pools off (--pool python=0
#            --pool javascript=0): every run makes its sandbox on the request
#   bare-p50 bare with the same --pause 50 as "warm": an idle gap between
#            runs can slow a start (caches, CPU frequency), so "warm" is
#            compared with this as well
#   warm     capibox, a second daemon with pools (--pool python=4
#            --pool javascript=2), measured with --pause 50 (50 ms of
#            unmeasured think time between runs, as in an agent loop) so the
#            pool has refilled before each run
#   warm-b2b the warm daemon back to back, no pause: the pool drains as fast
#            as it refills, the "warm" column shows how many runs found a
#            pooled sandbox
#
# for python, node and bash (bash has no pool: it starts in about a
# millisecond, so there is no warm column for it).
#
#   sudo bench/compare.sh [BUILD_DIR] [ROUNDS] [COUNT] [print|pandas]
#
# "pandas" runs only python, with `import pandas` and a small groupby
# instead of print(1). Needs root (capiboxd) and bubblewrap: when bwrap is
# missing the script installs the Debian package bubblewrap with apt-get.
set -euo pipefail
here=$(dirname "$0")
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_init "${1:-build}"
rounds=${2:-3}
count=${3:-100}
snippet=${4:-print}
need_bwrap

py_code='print(1)'
langs=(python node bash)
if [ "$snippet" = pandas ]; then
	py_code='import pandas as pd
df = pd.DataFrame({"k": [i % 7 for i in range(1000)], "v": range(1000)})
print(df.groupby("k")["v"].sum().sum())'
	langs=(python)
fi

start_daemon cold 2300000 --pool python=0 --pool javascript=0
start_daemon warm 2400000 --pool python=4 --pool javascript=2
wait_pools "$addr_warm"

# interp LANG: sets argv to the interpreter command line of LANG's snippet
interp() {
	case $1 in
	python) argv=(/usr/bin/python3 -c) ;;
	node) argv=(/usr/bin/node -e) ;;
	bash) argv=(/bin/bash -c) ;;
	esac
}
code_of() {
	case $1 in
	python) printf '%s' "$py_code" ;;
	node) printf '%s' 'console.log(1)' ;;
	bash) printf '%s' 'echo 1' ;;
	esac
}
capibox_lang() { [ "$1" = node ] && echo javascript || echo "$1"; }

run_variant() { # LANG VARIANT: one series, its capibox-bench output in $tmp/out
	local lang=$1 code argv
	code=$(code_of "$lang")
	interp "$lang"
	case $2 in
	bare) "$bench" --bare --clean-env -w 2 -n "$count" -- "${argv[@]}" "$code" ;;
	bare-p50) "$bench" --bare --clean-env -w 2 -n "$count" --pause 50 -- "${argv[@]}" "$code" ;;
	bwrap) "$bench" --bare --clean-env -w 2 -n "$count" -- "${bwrap_argv[@]}" \
		"${argv[@]}" "$code" ;;
	cold) "$bench" -a "$addr_cold" -w 2 -n "$count" -l "$(capibox_lang "$lang")" -c "$code" ;;
	warm)
		wait_pools "$addr_warm"
		"$bench" -a "$addr_warm" -w 2 -n "$count" --pause 50 -l "$(capibox_lang "$lang")" \
			-c "$code"
		;;
	warm-b2b)
		wait_pools "$addr_warm"
		"$bench" -a "$addr_warm" -w 2 -n "$count" -l "$(capibox_lang "$lang")" -c "$code"
		;;
	esac >"$tmp/out" || { cat "$tmp/out" >&2; echo "$lang $2 failed" >&2; exit 1; }
}

variants_of() { [ "$1" = bash ] && echo bare bwrap cold || echo bare bwrap cold bare-p50 warm warm-b2b; }

declare -A s50 s99 warm
"$bench" --bare -n 1 -w 0 -- /bin/true | head -1
echo "snippet: $snippet; $rounds rounds of $count runs per variant; load at start $(loadavg)"
for r in $(seq "$rounds"); do
	for lang in "${langs[@]}"; do
		for v in $(variants_of "$lang"); do
			run_variant "$lang" "$v"
			p50=$(lat_field p50 <"$tmp/out")
			p99=$(lat_field p99 <"$tmp/out")
			w=$(warm_field <"$tmp/out")
			printf 'round %d  %-6s %-9s p50 %8.2f  p99 %8.2f ms  %s  load %s\n' "$r" \
				"$lang" "$v" "$p50" "$p99" "${w:+warm $w}" "$(loadavg)"
			# where the time of a capibox run goes, shown once
			if [ "$r" = "$rounds" ]; then
				sed -n 's/^\(phases\|server\)/         \1/p' "$tmp/out"
			fi
			k="$lang/$v"
			s50[$k]=$(awk -v a="${s50[$k]:-0}" -v b="$p50" 'BEGIN {print a + b}')
			s99[$k]=$(awk -v a="${s99[$k]:-0}" -v b="$p99" 'BEGIN {print a + b}')
			if [ -n "$w" ]; then
				warm[$k]=$(awk -v a="${warm[$k]:-0/0}" -v b="$w" 'BEGIN {
					split(a, x, "/"); split(b, y, "/"); print x[1] + y[1] "/" x[2] + y[2] }')
			fi
		done
	done
done

echo
echo "mean over $rounds rounds of $count runs, load at end $(loadavg): p50 / p99 ms (p50 ratio to bare)"
echo
echo "| runtime | bare | bwrap | capibox cold | bare, pause 50 ms | capibox warm, pause 50 ms | capibox warm, back to back |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for lang in "${langs[@]}"; do
	row="| $lang"
	bare50=$(awk -v s="${s50[$lang/bare]}" -v r="$rounds" 'BEGIN {print s / r}')
	for v in bare bwrap cold bare-p50 warm warm-b2b; do
		k="$lang/$v"
		if [ -z "${s50[$k]:-}" ]; then
			row="$row | -"
			continue
		fi
		cell=$(awk -v a="${s50[$k]}" -v b="${s99[$k]}" -v r="$rounds" -v base="$bare50" \
			'BEGIN {printf "%.2f / %.2f (%.2f)", a / r, b / r, a / r / base}')
		[ -n "${warm[$k]:-}" ] && cell="$cell, warm ${warm[$k]}"
		row="$row | $cell"
	done
	echo "$row |"
done
