#!/usr/bin/env bash
# The python zygotes on and off, side by side (docs/ZYGOTE.md): three
# daemons with a pool of 8 python sandboxes that differ only in how python
# sandboxes are made -- exec'd interpreters (--zygote off); the default,
# a lean zygote for the pool and one that has imported numpy and pandas
# for code that imports them (zon); the lean zygote alone
# (--zygote-preload "": znone) -- and bare python3, interleaved per round:
# print(1) back to back and after a 50 ms pause, executions/s at -j 8, and
# import pandas + groupby.
#
#   sudo bench/zygote.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
here=$(dirname "$0")
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_init "${1:-build}"
rounds=${2:-2}
start_daemon zon 2700000 --pool python=8 --pool javascript=0
start_daemon zoff 2800000 --pool python=8 --pool javascript=0 --zygote off
start_daemon znone 2900000 --pool python=8 --pool javascript=0 --zygote-preload ""
wait_pools "$addr_zon"
wait_pools "$addr_zoff"
wait_pools "$addr_znone"
pandas='import pandas as pd
df = pd.DataFrame({"k": [i % 7 for i in range(1000)], "v": range(1000)})
print(df.groupby("k")["v"].sum().sum())'
"$bench" --bare -n 1 -w 0 -- /bin/true | head -1
one() { # LABEL ARGS...: runs capibox-bench, prints one summary line
	local label=$1
	shift
	"$bench" "$@" >"$tmp/out" 2>&1 || {
		cat "$tmp/out"
		echo "$label failed"
		exit 1
	}
	printf '%-28s p50 %8s p99 %8s  rate %7s/s  %s  load %s\n' "$label" \
		"$(lat_field p50 <"$tmp/out")" "$(lat_field p99 <"$tmp/out")" \
		"$(rate_field <"$tmp/out")" "$(w=$(warm_field <"$tmp/out") && echo ${w:+warm $w})" \
		"$(loadavg)"
}
for r in $(seq "$rounds"); do
	echo "== round $r"
	one "bare print(1) b2b" --bare --clean-env -n 100 -w 5 -- /usr/bin/python3 -c 'print(1)'
	for v in zoff zon znone; do
		a=addr_$v
		wait_pools "${!a}"
		one "$v print(1) b2b" -a "${!a}" -n 100 -w 0
	done
	one "bare print(1) pause50" --bare --clean-env -n 100 -w 5 --pause 50 -- /usr/bin/python3 -c 'print(1)'
	for v in zoff zon znone; do
		a=addr_$v
		wait_pools "${!a}"
		one "$v print(1) pause50" -a "${!a}" -n 100 -w 0 --pause 50
	done
	one "bare -j8" --bare --clean-env -w 2 -d 10 -j 8 -- /usr/bin/python3 -c 'print(1)'
	for v in zoff zon znone; do
		a=addr_$v
		wait_pools "${!a}"
		one "$v -j8" -a "${!a}" -w 0 -d 10 -j 8
	done
	one "bare pandas" --bare --clean-env -n 20 -w 2 -- /usr/bin/python3 -c "$pandas"
	for v in zoff zon znone; do
		a=addr_$v
		wait_pools "${!a}"
		one "$v pandas pause50" -a "${!a}" -n 20 -w 0 --pause 50 -c "$pandas"
	done
done
