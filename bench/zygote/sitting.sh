#!/usr/bin/env bash
# shellcheck disable=SC2154 # addr_warm, pid_warm: set by start_daemon (lib.sh)
# One sitting, interleaved: bare python3, today's warm pool (capiboxd over
# gRPC) and the zygote prototype (bench/zygote, driven directly, no gRPC),
# for print(1) latency, throughput at -j 8 and import pandas + groupby;
# then today's sandbox creation step by step (parts) and idle memory.
#
#   sudo bench/zygote/sitting.sh BUILD_DIR [ROUNDS] [OUT]
#
# BUILD_DIR holds capiboxd, capibox-supervisor, capibox-bench and capibox
# (a RelWithDebInfo build); OUT (default /tmp/zyg) is where build.sh puts
# the prototype. The daemon gets --uid-base 6200000, the zygote uses host
# uids 6100000..6100064 and cgroups capibox-zygote/; everything is removed
# at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/../lib.sh"
bench_init "${1:-build}"
rounds=${2:-3}
out=${3:-/tmp/zyg}
"$here/build.sh" "$out" >/dev/null
mkdir -p "$tmp/zstate"
chmod 711 "$tmp/zstate"
zb=("$out/zbench" "$out/lib" "$tmp/zstate")

pandas_code='import pandas as pd
df = pd.DataFrame({"k": [i % 7 for i in range(1000)], "v": range(1000)})
print(df.groupby("k")["v"].sum().sum())'

start_daemon warm 6200000 --pool python=8 --pool javascript=0
wait_pools "$addr_warm"

zlat() { awk '/end to end/ { print $6, $10 }'; } # p50 p99
zrate() { awk '/executions\/s/ { for (i = 1; i <= NF; i++) if ($(i) == "executions/s") print $(i - 1) }'; }
blat() { # p50 p99 of a capibox-bench run on stdin; its phases are kept in $tmp/phases
	local o
	o=$(cat)
	printf '%s\n' "$o" | sed -n 's/^\(phases\|server\)/    \1/p' >"$tmp/phases"
	echo "$(printf '%s\n' "$o" | lat_field p50) $(printf '%s\n' "$o" | lat_field p99)"
}

declare -A sum
add() { sum[$1]=$(awk -v a="${sum[$1]:-0}" -v b="$2" 'BEGIN { print a + b }'); }
row() { # KEY LINE-from-a-tool
	printf '  %-26s %s   load %s\n' "$1" "$2" "$(loadavg)"
}

"$bench" --bare -n 1 -w 0 -- /bin/true | head -1
echo "rounds: $rounds; load at start $(loadavg)"
for r in $(seq "$rounds"); do
	echo "round $r: print(1), sequential (p50 p99 ms)"
	v=$("$bench" --bare --clean-env -w 2 -n 100 -- /usr/bin/python3 -c 'print(1)' | blat)
	row bare "$v"; add bare50 "${v% *}"; add bare99 "${v#* }"
	wait_pools "$addr_warm"
	v=$("$bench" -a "$addr_warm" -w 2 -n 100 -l python -c 'print(1)' | blat)
	row "pool, back to back" "$v"; add pool50 "${v% *}"; add pool99 "${v#* }"
	[ "$r" = "$rounds" ] && cat "$tmp/phases"
	v=$("${zb[@]}" none -w 3 -n 100 --cg | zlat)
	row "zygote, back to back" "$v"; add zyg50 "${v% *}"; add zyg99 "${v#* }"
	v=$("$bench" --bare --clean-env -w 2 -n 100 --pause 50 -- /usr/bin/python3 -c 'print(1)' | blat)
	row "bare, pause 50" "$v"; add barep50 "${v% *}"; add barep99 "${v#* }"
	wait_pools "$addr_warm"
	v=$("$bench" -a "$addr_warm" -w 2 -n 100 --pause 50 -l python -c 'print(1)' | blat)
	row "pool, pause 50" "$v"; add poolp50 "${v% *}"; add poolp99 "${v#* }"
	[ "$r" = "$rounds" ] && cat "$tmp/phases"
	v=$("${zb[@]}" none -w 3 -n 100 --pause 50 --cg | zlat)
	row "zygote, pause 50" "$v"; add zygp50 "${v% *}"; add zygp99 "${v#* }"
	# the zygote filling a small pool (2 spawned and attached ahead, one
	# spawned after each run): the cgroup v1 attach leaves the request path
	v=$("${zb[@]}" none -w 3 -n 100 --pause 50 --cg --prefork 2 | zlat)
	row "zygote prefork 2, pause 50" "$v"; add zygpf50 "${v% *}"; add zygpf99 "${v#* }"
	v=$("${zb[@]}" none -w 3 -n 100 --cg --prefork 2 | zlat)
	row "zygote prefork 2, b2b" "$v"; add zygpfb50 "${v% *}"; add zygpfb99 "${v#* }"

	echo "round $r: throughput, -j 8, fresh sandbox each (executions/s)"
	v=$("$bench" --bare --clean-env -w 8 -j 8 -d 10 -- /usr/bin/python3 -c 'print(1)' | rate_field)
	row bare "$v"; add barej "$v"
	wait_pools "$addr_warm"
	v=$("$bench" -a "$addr_warm" -w 8 -j 8 -d 10 -l python -c 'print(1)' | rate_field)
	row "pool (8)" "$v"; add poolj "$v"
	"${zb[@]}" none -w 8 -j 8 -n 1500 --cg >"$tmp/zj"
	v=$(zrate <"$tmp/zj")
	row "zygote" "$v"; add zygj "$v"
	[ "$r" = "$rounds" ] && sed 's/^/    /' "$tmp/zj"

	echo "round $r: import pandas + groupby, sequential (p50 p99 ms)"
	v=$("$bench" --bare --clean-env -w 2 -n 20 -- /usr/bin/python3 -c "$pandas_code" | blat)
	row bare "$v"; add barepd50 "${v% *}"; add barepd99 "${v#* }"
	wait_pools "$addr_warm"
	v=$("$bench" -a "$addr_warm" -w 2 -n 20 -l python -c "$pandas_code" | blat)
	row "pool" "$v"; add poolpd50 "${v% *}"; add poolpd99 "${v#* }"
	"${zb[@]}" pandas -w 3 -n 20 --cg -c "$pandas_code" --expect '499500
' >"$tmp/zp"
	v=$(zlat <"$tmp/zp")
	row "zygote (pandas)" "$v"; add zygpd50 "${v% *}"; add zygpd99 "${v#* }"
	[ "$r" = "$rounds" ] && sed 's/^/    /' "$tmp/zp"
done

m() { awk -v s="${sum[$1]}" -v r="$rounds" 'BEGIN { printf "%.2f", s / r }'; }
ratio() { awk -v a="${sum[$1]}" -v b="${sum[$2]}" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "means over $rounds rounds (load at end $(loadavg))"
echo
echo "| | bare | pool (today) | zygote | pool / bare | zygote / bare |"
echo "| --- | --- | --- | --- | --- | --- |"
echo "| print(1) p50 / p99 ms, back to back | $(m bare50) / $(m bare99) | $(m pool50) / $(m pool99) | $(m zyg50) / $(m zyg99) | $(ratio pool50 bare50) | $(ratio zyg50 bare50) |"
echo "| print(1) p50 / p99 ms, pause 50 ms | $(m barep50) / $(m barep99) | $(m poolp50) / $(m poolp99) | $(m zygp50) / $(m zygp99) | $(ratio poolp50 barep50) | $(ratio zygp50 barep50) |"
echo "| print(1), zygote prefork 2: back to back / pause 50, p50 / p99 ms | | | $(m zygpfb50) / $(m zygpfb99), $(m zygpf50) / $(m zygpf99) | | $(ratio zygpfb50 bare50), $(ratio zygpf50 barep50) |"
echo "| executions/s at -j 8 | $(m barej) | $(m poolj) | $(m zygj) | $(ratio poolj barej) | $(ratio zygj barej) |"
echo "| pandas + groupby p50 / p99 ms | $(m barepd50) / $(m barepd99) | $(m poolpd50) / $(m poolpd99) | $(m zygpd50) / $(m zygpd99) | $(ratio poolpd50 barepd50) | $(ratio zygpd50 barepd50) |"

echo
echo "today's sandbox creation, step by step (parts, 50 runs, cgroup v1):"
"$out/parts" "$tmp/zstate" 50 python cg | sed 's/^/    /'

echo
echo "idle memory: zygote (none, pandas) with 3 idle sandboxes each"
"${zb[@]}" none --idle 3 --cg | sed 's/^/    /'
"${zb[@]}" pandas --idle 3 --cg | sed 's/^/    /'
echo "idle memory: today's pooled python sandboxes (pool 8), RSS / PSS / private MiB"
sup=$(supervisor_of "$pid_warm")
for init in $(pgrep -P "$sup"); do
	runner=$(pgrep -P "$init" | head -1)
	for p in $init $runner; do
		awk -v p="$p" -v c="$(tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-40)" '
			/^Rss:/ { r = $2 } /^Pss:/ { s = $2 } /^Private_(Clean|Dirty):/ { v += $2 }
			END { printf "    %-7s %-40s %6.1f %6.1f %6.1f\n", p, c, r / 1024, s / 1024, v / 1024 }' \
			"/proc/$p/smaps_rollup"
	done
done
