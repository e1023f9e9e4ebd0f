#!/usr/bin/env bash
# CPU per execution at concurrency J, and which processes spend it: the
# machine's busy time (/proc/stat) over a J-concurrent series of python
# print(1) runs, fresh sandbox each, divided by the executions, and its
# split by process role from `perf record -a` samples (bench/cpu_roles.py:
# the client, the front, the supervisor, the zygotes' clones, sandbox
# inits, runners, kernel threads). On 2 cores, throughput is about
# 2 / (CPU per execution): this says where it goes.
#
#   sudo bench/cpu.sh [BUILD_DIR] [SECONDS] [J] [capiboxd flags...]
#
# The figures include perf's own sampling (a few per cent). Needs perf
# (apt-get install linux-perf) and root.
set -euo pipefail
here=$(dirname "$0")
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_init "${1:-build}"
secs=${2:-10}
conc=${3:-8}
shift 3 || shift $#
command -v perf >/dev/null || { echo "perf not found (apt-get install linux-perf)" >&2; exit 1; }

start_daemon c 2450000 --pool python=8 --pool javascript=0 "$@"
wait_pools "$addr_c"
busy() { awk 'NR == 1 { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
"$bench" --bare -n 1 -w 0 -- /bin/true | head -1
echo "capiboxd --pool python=8 --pool javascript=0 $*; python print(1), -j $conc, $secs s; load $(loadavg)"
b0=$(busy)
perf record -q -a -F 499 -o "$tmp/perf.data" -- \
	"$bench" -a "$addr_c" -w 0 -d "$secs" -j "$conc" >"$tmp/out" 2>/dev/null
b1=$(busy)
grep -E '^(throughput|latency|warm)' "$tmp/out"
n=$(sed -n 's/.*(\([0-9]*\) ok.*/\1/p' "$tmp/out")
ticks=$(getconf CLK_TCK)
python3 "$here/cpu_roles.py" "$tmp/perf.data" "$pid_c" "$tmp/c.log" \
	"$(awk -v a="$b0" -v b="$b1" -v t="$ticks" 'BEGIN { print (b - a) / t }')" "$n"
