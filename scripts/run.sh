#!/usr/bin/env bash
# Command 1 of the README: install, build, start capiboxd and run the three
# demo scenarios through the capibox CLI, then keep the server running in
# the foreground (Ctrl-C stops it).
#
#   sudo ./scripts/run.sh
#
# Environment:
#   RUN_DEMO_ONLY=1   stop the server after the demo instead of keeping it
#   CAPIBOX_LISTEN    address to listen on (default 127.0.0.1:50051)
#   CI=true           no colours
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
build="$repo/build"
listen=${CAPIBOX_LISTEN:-127.0.0.1:50051}

if [ -t 1 ] && [ "${CI:-}" != "true" ] && [ -z "${NO_COLOR:-}" ]; then
	bold=$'\e[1m' dim=$'\e[2m' green=$'\e[32m' red=$'\e[31m' reset=$'\e[0m'
else
	bold='' dim='' green='' red='' reset=''
fi

heading() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
say() { printf '%s\n' "$*"; }
die() {
	printf '%srun.sh: %s%s\n' "$red" "$*" "$reset" >&2
	exit 1
}

# capiboxd makes user, pid, mount and network namespaces for every sandbox.
if [ "$(id -u)" -ne 0 ]; then
	die "capiboxd must run as root (it creates namespaces): use sudo ./scripts/run.sh"
fi

heading "Installing packages"
scripts/deps.sh

heading "Building (build/)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target capiboxd capibox_cli --parallel "$(nproc)" >"$build/build.log" 2>&1 ||
	{ cat "$build/build.log" >&2; die "build failed (log above, also in build/build.log)"; }
say "built build/capiboxd and build/capibox"

# --- the daemon --------------------------------------------------------------
tmp=$(mktemp -d /tmp/capibox-run.XXXXXX)
log="$build/capiboxd.log"
daemon_pid=

stop_daemon() {
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -s "${1:-TERM}" "$daemon_pid" 2>/dev/null || true
	fi
}

# Waits for the daemon and returns its exit status. wait returns early (with
# a status above 128) when a trapped signal arrives; the daemon then is still
# shutting down, so wait again until it is really gone.
wait_daemon() {
	local rc
	while :; do
		rc=0
		wait "$daemon_pid" || rc=$?
		if [ "$rc" -gt 128 ] && kill -0 "$daemon_pid" 2>/dev/null; then
			continue
		fi
		return "$rc"
	done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		stop_daemon TERM
		wait_daemon || true
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP # terminal closed: do not leave the daemon behind

heading "Starting capiboxd on $listen"
# setsid: a Ctrl-C on the terminal reaches only this script, which forwards it
# once; the daemon never sees the same signal twice.
setsid "$build/capiboxd" --listen "$listen" --ready-file "$tmp/addr" 2>"$log" &
daemon_pid=$!

for _ in $(seq 1 600); do
	[ -s "$tmp/addr" ] && break
	if ! kill -0 "$daemon_pid" 2>/dev/null; then
		cat "$log" >&2
		die "capiboxd exited before serving (log above, also in build/capiboxd.log);" \
			"if the port is taken, try CAPIBOX_LISTEN=127.0.0.1:50052 $0"
	fi
	sleep 0.1
done
[ -s "$tmp/addr" ] || { cat "$log" >&2; die "capiboxd did not become ready within 60 s"; }
addr=$(cat "$tmp/addr")
export CAPIBOX_TARGET="$addr"
say "capiboxd (pid $daemon_pid) is serving on $addr; its log is build/capiboxd.log"

# --- the demo -----------------------------------------------------------------
# run_scenario EXPECTED DISPLAY -- CMD...: shows the command, runs it with its
# output streaming to the terminal, then checks that EXPECTED (a fixed string)
# appears in what it printed.
run_scenario() {
	local expected=$1 shown=$2
	shift 3
	printf '%s$ %s%s\n' "$dim" "$shown" "$reset"
	if ! "$@" | tee "$tmp/out"; then
		printf '%slast lines of build/capiboxd.log:%s\n' "$dim" "$reset" >&2
		tail -n 20 "$log" >&2
		die "the command failed"
	fi
	if ! grep -qF -- "$expected" "$tmp/out"; then
		die "expected output \"$expected\" not seen"
	fi
	printf '%sok%s\n' "$green" "$reset"
}

heading "Demo 1/5: numpy, [1,2,3,4,5] * 2"
code='import numpy as np; print(np.array([1,2,3,4,5])*2)'
run_scenario "[ 2  4  6  8 10]" "build/capibox exec -l python -c '$code'" -- \
	"$build/capibox" exec -l python -c "$code"

heading "Demo 2/5: examples/sales.csv (20 rows) uploaded, pandas means"
code='
import pandas as pd
df = pd.read_csv("sales.csv")
print(f"rows: {len(df)}")
print(f"mean sales: {df.sales.mean():.2f}")
print(f"mean customers: {df.customers.mean():.2f}")
'
run_scenario "mean customers: 69.10" \
	"build/capibox exec -l python -f examples/sales.csv -c '$code'" -- \
	"$build/capibox" exec -l python -f examples/sales.csv -c "$code"
grep -qF "mean sales: 547.25" "$tmp/out" || die 'expected output "mean sales: 547.25" not seen'

heading "Demo 3/5: the sales plotted; the open figure comes back as a PNG"
code='
import pandas as pd
df = pd.read_csv("sales.csv")
ax = df.plot(x="date", y=["sales", "customers"], secondary_y="customers", title="sales and customers")
print(f"plotted {len(df)} days")
'
rm -rf "$build/demo"
run_scenario "plotted 20 days" \
	"build/capibox exec -l python -f examples/sales.csv --out build/demo -c '$code'" -- \
	"$build/capibox" exec -l python -f examples/sales.csv --out "$build/demo" -c "$code"
[ "$(head -c 8 "$build/demo/figure-1.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
	die "no PNG figure at build/demo/figure-1.png"
say "the chart: build/demo/figure-1.png ($(stat -c %s "$build/demo/figure-1.png") bytes)"

heading "Demo 4/5: Analyze: typed statistics of the same CSV, parsed in a sandbox"
run_scenario "547.25" "build/capibox analyze examples/sales.csv --columns sales,customers" -- \
	"$build/capibox" analyze examples/sales.csv --columns sales,customers

heading "Demo 5/5: deep health check (a canary run per runtime)"
run_scenario "canary ok" "build/capibox health --deep" -- "$build/capibox" health --deep

heading "Demo done"
if [ "${RUN_DEMO_ONLY:-}" = "1" ]; then
	say "RUN_DEMO_ONLY=1: stopping capiboxd"
	trap - INT TERM HUP
	stop_daemon TERM
	rc=0
	wait_daemon || rc=$?
	daemon_pid=
	[ "$rc" -eq 0 ] || { cat "$log" >&2; die "capiboxd exited with status $rc"; }
	say "capiboxd stopped (exit 0)"
	exit 0
fi

cat <<EOF

capiboxd keeps serving on $addr (pid $daemon_pid). From another terminal try:
  build/capibox exec -l python -c 'print(6 * 7)'
  build/capibox exec -l javascript -c 'console.log([1, 2, 3].map(x => x * x))'
  build/capibox exec -l bash -c 'uname -a; id'
  build/capibox analyze examples/sales.csv --group-by region --agg sales:mean,customers:sum
  build/capibox health --deep
Its log follows. Press Ctrl-C to stop it.

EOF

# Forward Ctrl-C / SIGTERM to the daemon, which drains and exits 0. A closed
# terminal (SIGHUP) stops it too.
trap 'stop_daemon INT' INT
trap 'stop_daemon TERM' TERM
trap 'stop_daemon TERM' HUP
tail -n 0 -f --pid="$daemon_pid" "$log" &
rc=0
wait_daemon || rc=$?
daemon_pid=
wait || true # the tail ends with the daemon
if [ "$rc" -eq 0 ]; then
	say "capiboxd stopped (exit 0)"
else
	die "capiboxd exited with status $rc"
fi
