#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang into build-fuzz/ and
# runs each for a number of executions or a time, under ASan+UBSan. Prints
# executions, executions/s and the result per target; exits non-zero when any
# target crashed, leaked, timed out or ran out of memory, naming the input
# that did it and how to replay it.
#
#   scripts/fuzz.sh                     # 1,000,000 executions of each target
#   scripts/fuzz.sh -r 100000 -t 30     # what scripts/test.sh runs
#   scripts/fuzz.sh -t 3600 payload     # one target for an hour
#
# Options:
#   -r RUNS     executions per target (default 1000000; 0 = no limit, needs -t)
#   -t SECONDS  stop each target after this long (default: no time limit)
#   -n          no build: use build-fuzz/ as it is
#   TARGET...   execute health ipc payload analyze (default: all five)
# Environment: FUZZ_ARGS (more libFuzzer flags, e.g. "-jobs=2 -workers=2"),
# JOBS (parallel build jobs).
#
# Working corpora grow in build-fuzz/corpus/TARGET (seeded from the committed
# tests/fuzz/corpus/TARGET); crash inputs land in build-fuzz/artifacts/TARGET/,
# full logs in build-fuzz/logs/TARGET.log.
set -euo pipefail

cd "$(dirname "$0")/.."
all_targets=(execute health ipc payload analyze)
runs=1000000
seconds=0
build=1

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
	exit 2
}
while getopts "r:t:nh" opt; do
	case $opt in
	r) runs=$OPTARG ;;
	t) seconds=$OPTARG ;;
	n) build=0 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
	[[ " ${all_targets[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target $t (${all_targets[*]})" >&2; exit 2; }
done
[[ $runs =~ ^[0-9]+$ && $seconds =~ ^[0-9]+$ ]] || usage
if [ "$runs" -eq 0 ] && [ "$seconds" -eq 0 ]; then
	echo "fuzz.sh: -r 0 needs a time limit (-t SECONDS)" >&2
	exit 2
fi

out="build-fuzz"
if [ "$build" -eq 1 ]; then
	scripts/deps.sh
	# A separate tree: clang, coverage and sanitizers never touch build/.
	cmake -S . -B "$out" -DCMAKE_C_COMPILER=clang -DCAPIBOX_FUZZ=ON -DBUILD_TESTING=OFF \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	if ! grep -q '^CAPIBOX_FUZZ:BOOL=ON' "$out/CMakeCache.txt" ||
		[ ! -f "$out/tests/fuzz/Makefile" ]; then
		echo "fuzz.sh: CMakeLists.txt does not include tests/fuzz with CAPIBOX_FUZZ=ON" \
			"(see tests/fuzz/README.md)" >&2
		exit 1
	fi
	cmake --build "$out" --target fuzz --parallel "${JOBS:-$(nproc)}"
fi

# halt on the first report; the process exit code says it (libFuzzer adds
# its own leak check per input when mallocs and frees do not balance)
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p "$out/logs"
failed=()
summary=()
for t in "${targets[@]}"; do
	bin=$out/tests/fuzz/fuzz_$t
	corpus=$out/corpus/$t
	artifacts=$out/artifacts/$t
	log=$out/logs/$t.log
	[ -x "$bin" ] || { echo "fuzz.sh: $bin is missing (build first, or drop -n)" >&2; exit 1; }
	mkdir -p "$corpus" "$artifacts"
	args=(-print_final_stats=1 -timeout=30 -rss_limit_mb=2048 "-artifact_prefix=$artifacts/")
	if [ "$runs" -gt 0 ]; then args+=("-runs=$runs"); fi
	if [ "$seconds" -gt 0 ]; then args+=("-max_total_time=$seconds"); fi
	# shellcheck disable=SC2206 # FUZZ_ARGS is a list of flags on purpose
	args+=(${FUZZ_ARGS:-})
	printf '==> fuzz_%s %s\n' "$t" "${args[*]}"
	start=$(date +%s.%N)
	rc=0
	"$bin" "${args[@]}" "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
	elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	# libFuzzer's own average is whole seconds (0 for a short run): ours is not
	rate=$(awk -v n="${execs:-0}" -v s="$elapsed" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }')
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 || true)
	if [ "$rc" -eq 0 ]; then
		result=ok
	else
		result="FAILED (exit $rc)"
		failed+=("$t")
		# The report: from the sanitizer's or our own first line to its summary.
		first=$(grep -n -m1 -E '^==[0-9]+==ERROR|^FUZZ_CHECK failed|runtime error:|^ALARM|out-of-memory' \
			"$log" | cut -d: -f1 || true)
		sed -n "${first:-1},\$p" "$log" | head -n 60 || true
		for a in "$artifacts"/*; do
			[ -f "$a" ] || continue
			printf 'input: %s (%s bytes)\n  replay: %s %s\n' "$a" "$(stat -c %s "$a")" "$bin" "$a"
		done
	fi
	line=$(printf '%-8s %12s execs %9s exec/s %6ss  %-10s %s' "$t" "${execs:-?}" "${rate:-?}" \
		"$elapsed" "${cov:-}" "$result")
	echo "$line"
	summary+=("$line")
done

printf '\nfuzz summary (logs in %s/logs/)\n' "$out"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
	echo "fuzz.sh: failed: ${failed[*]}" >&2
	exit 1
fi
