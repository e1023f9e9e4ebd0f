#!/usr/bin/env bash
# A/B latency of two capiboxd builds in one sitting, interleaved: e.g. the
# cost of a change, measured against the commit before it.
#
#   bench/ab.sh BUILD_A BUILD_B [ROUNDS] [COUNT] [LANG] [CODE]
#
# Starts each build's capiboxd on an ephemeral port (distinct state dirs and
# uid ranges) and alternates COUNT-execution series of capibox-bench (from
# BUILD_B) against A and B. Prints per-round p50 and the mean ratio B/A.
#
#   AB_PAUSE=MS   a pause of MS between runs (the sandbox pool is full and
#                 the machine idle when each run starts)
#   AB_J=N        throughput instead: N concurrent clients for 5 s per
#                 series (COUNT is then ignored); prints executions/s
set -euo pipefail
a=$1 b=$2
rounds=${3:-5}
count=${4:-100}
lang=${5:-python}
code=${6:-print(1)}
bench="$b/capibox-bench"
tmp=$(mktemp -d)
chmod 711 "$tmp" # sandboxes mount their root under the state dirs in here
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf --one-file-system "$tmp"' EXIT

start() { # build name uid-base
	"$1/capiboxd" --listen 127.0.0.1:0 --ready-file "$tmp/$2.addr" \
		--state-dir "$tmp/$2.state" --uid-base "$3" 2>"$tmp/$2.log" &
	pids+=($!)
}
start "$a" a 2100000
start "$b" b 2200000
for _ in $(seq 100); do [ -s "$tmp/a.addr" ] && [ -s "$tmp/b.addr" ] && break; sleep 0.1; done
p50() { awk '/^latency/ {print $4}'; }
rate() { awk '/^throughput/ {print $2}'; }
unit=ms what=p50
[ -n "${AB_J:-}" ] && unit=/s what=rate
series() { # addr: one series; a failed execution fails the script
	if [ -n "${AB_J:-}" ]; then
		"$bench" -a "$1" -d 5 -w 20 -j "$AB_J" -l "$lang" -c "$code" >"$tmp/out" ||
			{ cat "$tmp/out" >&2; exit 1; }
		rate <"$tmp/out"
		return
	fi
	"$bench" -a "$1" -n "$count" -l "$lang" -c "$code" ${AB_PAUSE:+--pause "$AB_PAUSE"} \
		>"$tmp/out" || { cat "$tmp/out" >&2; exit 1; }
	p50 <"$tmp/out"
}
sa=0 sb=0
"$bench" --bare -n 1 -w 0 -- /bin/true | head -1
for r in $(seq "$rounds"); do
	va=$(series "$(cat "$tmp/a.addr")")
	vb=$(series "$(cat "$tmp/b.addr")")
	printf 'round %d  A %s %7.2f %s   B %s %7.2f %s\n' "$r" "$what" "$va" "$unit" "$what" "$vb" "$unit"
	sa=$(awk -v x="$sa" -v y="$va" 'BEGIN {print x + y}')
	sb=$(awk -v x="$sb" -v y="$vb" 'BEGIN {print x + y}')
done
awk -v a="$sa" -v b="$sb" -v r="$rounds" \
	-v w="$what" -v u="$unit" \
	'BEGIN {printf "mean %s: A %.2f %s  B %.2f %s  B/A %.3f  (B - A %+.2f %s)\n", w, a/r, u, b/r, u, b/a, (b-a)/r, u}'
