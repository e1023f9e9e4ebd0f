#!/usr/bin/env bash
# The whole issue-4 suite in one sitting, in the order of docs/BENCHMARKS.md:
# print(1) latency (compare.sh), throughput at concurrency 8
# (throughput.sh), import pandas (compare.sh ... pandas), streaming
# (stream.sh), idle memory (memory.sh). Each part starts its own daemons.
#
#   sudo bench/suite.sh [BUILD_DIR] [ROUNDS] | tee bench.log
#
# Run it when the machine is quiet: every part prints the load average
# next to its figures.
set -euo pipefail
here=$(dirname "$0")
build=${1:-build}
rounds=${2:-3}
part() { printf '\n=== %s (%s, load %s)\n' "$1" "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
part "print(1) latency"
"$here/compare.sh" "$build" "$rounds" 100
part "throughput at concurrency 8"
"$here/throughput.sh" "$build" 10 8 "$rounds"
part "import pandas + groupby"
"$here/compare.sh" "$build" "$rounds" 20 pandas
part "streaming 1 GiB"
"$here/stream.sh" "$build" 1024 "$rounds"
part "idle memory, default pools"
"$here/memory.sh" "$build"
