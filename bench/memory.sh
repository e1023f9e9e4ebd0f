#!/usr/bin/env bash
# Idle memory: RSS and PSS (from /proc/PID/smaps_rollup) of capiboxd, its
# supervisor ("capiboxd: supervisor"), the python zygotes when there are,
# and each idle warm sandbox (its "capibox-init" plus the runner under it:
# the supervisor's children, or the zygote's), per runtime, once the pools
# are full and nothing runs.
#
#   sudo bench/memory.sh [BUILD_DIR] [capiboxd flags...]
#
# Without flags the daemon runs with its default pools (python 2,
# javascript 1). PSS divides each shared page among the processes that map
# it (interpreter text, libraries): the fair share of one sandbox. RSS
# counts shared pages in full for every process.
set -euo pipefail
here=$(dirname "$0")
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_init "${1:-build}"
shift || true

start_daemon m 2550000 "$@"
wait_pools "$addr_m"
# one execution first, so the figures include what a first request loads
"$build/capibox" -a "$addr_m" exec -l bash -c 'true'
# cycle the python pool, so that its idle sandboxes are refills (the first
# ones may be started before the zygote is ready); one at a time with a
# pause, so the pool does not grow past its target
"$bench" -a "$addr_m" -n 8 -w 0 --pause 200 >/dev/null
wait_pools "$addr_m"
sleep 1
sup=$(supervisor_of "$pid_m")

row() { # LABEL PID...: the summed Rss and Pss of the PIDs
	local label=$1 p rss=0 pss=0
	shift
	for p in "$@"; do
		rss=$((rss + $(proc_kib "$p" smaps_rollup Rss)))
		pss=$((pss + $(proc_kib "$p" smaps_rollup Pss)))
	done
	printf '%-44s %8.1f %8.1f\n' "$label" "$(awk -v k="$rss" 'BEGIN {print k / 1024}')" \
		"$(awk -v k="$pss" 'BEGIN {print k / 1024}')"
}

"$bench" --bare -n 1 -w 0 -- /bin/true | head -1
echo "capiboxd ${*:-(default pools)}; load $(loadavg)"
printf '%-44s %8s %8s\n' process "RSS MiB" "PSS MiB"
row "capiboxd (pid $pid_m)" "$pid_m"
row "supervisor (pid $sup)" "$sup"
row "capiboxd + supervisor" "$pid_m" "$sup"
zygotes=$(pgrep -P "$sup" -f '/.capibox/zygote.py' || true)
for z in $zygotes; do
	# the argument names the preload: "-" for the lean zygote
	kind=$(tr '\0' ' ' <"/proc/$z/cmdline" | awk '{print $NF}')
	row "python zygote $kind (pid $z)" "$z"
done
for init in $(pgrep -P "$sup" -x capibox-init) $(for z in $zygotes; do pgrep -P "$z" -x capibox-init; done); do
	kids=$(pgrep -P "$init" | tr '\n' ' ')
	runner=$(for k in $kids; do tr '\0' ' ' <"/proc/$k/cmdline"; done)
	case $runner in
	*python*) lang=python ;;
	*node*) lang=javascript ;;
	*) lang="?" ;;
	esac
	row "  init $init" "$init"
	# shellcheck disable=SC2086
	row "  runner ${runner% }" $kids
	# shellcheck disable=SC2086
	row "sandbox $lang (init + runner)" "$init" $kids
done
