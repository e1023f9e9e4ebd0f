#!/usr/bin/env bash
# Command 2 of the README (and CI, through .ci/run): install, build, run every
# test, then again under ASan+UBSan, and check formatting.
#
#   sudo ./scripts/test.sh
#
# Stages: packages -> clang-format check -> build/ + ctest -> build-asan/
# (-DCAPIBOX_SANITIZE=ON) + ctest -> a short run of each fuzz target
# (build-fuzz/, clang + libFuzzer). Exits non-zero when any stage fails. A
# formatting failure is reported at the end so the tests still run.
#
# Environment: CI=true (no colours), JOBS (parallel build jobs, default nproc).
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
jobs=${JOBS:-$(nproc)}

if [ -t 1 ] && [ "${CI:-}" != "true" ] && [ -z "${NO_COLOR:-}" ]; then
	bold=$'\e[1m' red=$'\e[31m' reset=$'\e[0m'
else
	bold='' red='' reset=''
fi
stage() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
fail() {
	printf '%stest.sh: %s%s\n' "$red" "$*" "$reset" >&2
	exit 1
}

# Sandboxes need root (namespaces, uid mappings). Without it the tests that
# need it skip with a reason instead of passing silently.
if [ "$(id -u)" -ne 0 ]; then
	printf '%stest.sh: not root: tests that need namespaces will be skipped%s\n' "$red" "$reset" >&2
fi

stage "Packages"
scripts/deps.sh

stage "clang-format check (server/ client/ tests/ bench/)"
# Generated protobuf code lives in the build trees, outside these directories.
fmt_failed=0
mapfile -t sources < <(find server client tests bench -type f \( -name '*.c' -o -name '*.h' \) | sort)
unformatted=()
for f in "${sources[@]}"; do
	clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
done
if [ "${#unformatted[@]}" -eq 0 ]; then
	echo "${#sources[@]} files formatted as .clang-format says"
else
	fmt_failed=1
	# The first file's diff shows what is wrong; the list says where.
	clang-format "${unformatted[0]}" | diff -u "${unformatted[0]}" - | head -n 40 || true
	printf '%s\n' "${unformatted[@]}"
	echo "clang-format: ${#unformatted[@]} of ${#sources[@]} files differ from .clang-format" \
		"(fix: clang-format -i FILE...); the tests run anyway" >&2
fi

stage "Build (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build --parallel "$jobs"

stage "Tests (build/)"
# Serial on purpose: the integration tests check behaviour with time in it
# (streaming gaps, wall-time limits) and each starts its own daemon; two cores
# shared between several of them would make those checks flaky.
ctest --test-dir build --output-on-failure

stage "Build with ASan+UBSan (build-asan/)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCAPIBOX_SANITIZE=ON
cmake --build build-asan --parallel "$jobs"

# The zygote's module cannot be built instrumented (docs/ZYGOTE.md,
# "Sanitizer builds"): the regular build's goes next to the instrumented
# supervisor, so the front and supervisor are tested with the zygote too.
if [ -f build/_capibox_zygote.so ]; then
	cp build/_capibox_zygote.so build-asan/
fi

stage "Tests under ASan+UBSan (build-asan/)"
# The daemon, the CLI and the test programs are instrumented and inherit these.
# The sandboxed programs never see them: a sandbox's environment holds only
# what the runtime table and the request set.
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:strict_string_checks=1:check_initialization_order=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$repo/tests/lsan.supp:print_suppressions=0
ctest --test-dir build-asan --output-on-failure

stage "Fuzz: a short run of each target (build-fuzz/)"
# 100k executions or 30 s per target, whichever comes first; the long run is
# scripts/fuzz.sh on its own (tests/fuzz/README.md). The committed seeds
# include inputs that once crashed, so a regression fails here at once.
fuzz_failed=0
scripts/fuzz.sh -r 100000 -t 30 || fuzz_failed=1

if [ "$fuzz_failed" -ne 0 ]; then
	printf '%stest.sh: %s%s\n' "$red" "fuzz stage failed (see above; crash inputs are in build-fuzz/artifacts/)" "$reset" >&2
fi
if [ "$fmt_failed" -ne 0 ]; then
	fail "clang-format check failed (see above)"
fi
if [ "$fuzz_failed" -ne 0 ]; then
	exit 1
fi
