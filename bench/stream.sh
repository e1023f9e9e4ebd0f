#!/usr/bin/env bash
# Streaming throughput: a python program writes MIB MiB (default 1024) to
# stdout in 1 MiB blocks; the client (capibox-bench) reads every byte. Prints
# MiB/s end to end (call start to end of stream, interpreter start
# included) and the memory of capiboxd and its supervisor during the run:
# VmRSS before, the peak of VmRSS sampled every 10 ms, and the growth.
# Same sitting, for comparison: the same program run bare with its stdout
# read through a pipe by capibox-bench (--bare --read-output), the floor.
#
#   sudo bench/stream.sh [BUILD_DIR] [MIB] [ROUNDS]
#
# The daemon runs with default pools (the run takes a warm python sandbox);
# the request raises max_output_bytes (default 16 MiB) with --max-output.
set -euo pipefail
here=$(dirname "$0")
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_init "${1:-build}"
mib=${2:-1024}
rounds=${3:-3}

code="import sys
b = b'x' * (1 << 20)
w = sys.stdout.buffer.write
for _ in range($mib): w(b)"
limit=$(((mib + 1) * 1024 * 1024))

start_daemon d 2500000
wait_pools "$addr_d"
sup=$(supervisor_of "$pid_d")
[ -n "$sup" ] || { echo "no supervisor under $pid_d" >&2; exit 1; }

"$bench" --bare -n 1 -w 0 -- /bin/true | head -1
echo "python writes $mib MiB in 1 MiB blocks; $rounds rounds"
for r in $(seq "$rounds"); do
	"$bench" --bare --clean-env --read-output -n 1 -w 0 -- /usr/bin/python3 -c "$code" \
		>"$tmp/bare" || { cat "$tmp/bare" >&2; exit 1; }
	printf 'round %d  bare     %s  load %s\n' "$r" \
		"$(awk '/^stdout/ {print $6, "MiB/s"}' "$tmp/bare")" "$(loadavg)"

	wait_pools "$addr_d"
	d0=$(proc_kib "$pid_d" status VmRSS)
	s0=$(proc_kib "$sup" status VmRSS)
	sample_peak "$pid_d" "$tmp/peak_d" &
	sd=$!
	sample_peak "$sup" "$tmp/peak_s" &
	ss=$!
	"$bench" -a "$addr_d" -n 1 -w 0 --max-output "$limit" --wall-ms 300000 -c "$code" \
		>"$tmp/cb" || { cat "$tmp/cb" >&2; exit 1; }
	kill "$sd" "$ss" 2>/dev/null || true
	wait "$sd" "$ss" 2>/dev/null || true
	d1=$(cat "$tmp/peak_d")
	s1=$(cat "$tmp/peak_s")
	printf 'round %d  capibox  %s  (%s)  capiboxd RSS %d -> peak %d KiB (+%d)  supervisor %d -> %d KiB (+%d)  load %s\n' \
		"$r" "$(awk '/^stdout/ {print $6, "MiB/s"}' "$tmp/cb")" \
		"$(awk '/^warm/ {print ($3 == 1 ? "warm" : "cold")}' "$tmp/cb")" \
		"$d0" "$d1" $((d1 - d0)) "$s0" "$s1" $((s1 - s0)) "$(loadavg)"
done
echo "capiboxd VmHWM at the end (peak since start): $(proc_kib "$pid_d" status VmHWM) KiB"
grep -E '^(latency|phases|server|stdout)' "$tmp/cb" | sed 's/^/last capibox run: /'
