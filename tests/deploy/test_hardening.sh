#!/bin/bash
# deploy.hardening: capiboxd works under the hardening deploy/capiboxd.service
# asks systemd for, and the directives the unit leaves out for a reason do
# break it. The machines this runs on need not boot systemd, so the unit's
# effects are rebuilt by hand in a private mount namespace:
#
#   ProtectSystem=strict   the root file system read-only; RuntimeDirectory
#                          (the state directory) and /tmp stay writable
#   ProtectHome=yes        empty read-only /home and /root
#   SystemCallFilter=, RestrictAddressFamilies=, RestrictRealtime=,
#   NoNewPrivileges=       deploy_sdfilter (sdfilter.c), with the calls
#                          `systemd-analyze syscall-filter` lists for the
#                          unit's groups
#
# Then, as a sandbox user would see it: python (numpy), javascript and bash
# run, a deep health check passes, and sandboxed code inherits the socket
# restriction (AF_ALG refused). Last, ProtectKernelTunables's over-mount of
# /proc/sys is added and every run must fail with "mount proc" (why the unit
# does not set it).
#
# Usage: test_hardening.sh CAPIBOXD CAPIBOX SDFILTER. Exit 77 (skipped, the
# reason printed) without root, unshare or a capiboxd that can start.
set -u

capiboxd=$1 capibox=$2 sdfilter=$3
skip() {
	echo "SKIP: $*"
	exit 77
}
fail() {
	echo "FAIL: $*"
	[ -n "${W:-}" ] && [ -f "$W/log" ] && { echo "--- capiboxd log"; tail -n 30 "$W/log"; }
	exit 1
}

if [ "${CAPIBOX_HARDENING_INNER:-}" != 1 ]; then
	[ "$(id -u)" -eq 0 ] || skip "needs root (capiboxd creates namespaces)"
	command -v unshare >/dev/null || skip "no unshare (util-linux)"
	for f in "$capiboxd" "$capibox" "$sdfilter"; do
		[ -x "$f" ] || fail "$f is not built"
	done
	# a writable scratch directory and a state directory on the root file
	# system (as /run/capibox is), both removed afterwards
	export W S
	W=$(mktemp -d /tmp/capibox-hardening.XXXXXX) || fail "mktemp"
	S=$(mktemp -d /run/capibox-hardening.XXXXXX 2>/dev/null || mktemp -d /var/tmp/capibox-hardening.XXXXXX) ||
		fail "mktemp state dir"
	chmod 0711 "$S"
	# the calls the unit's SystemCallFilter= denies, as this systemd defines them
	groups="@clock @cpu-emulation @module @obsolete @raw-io @reboot @swap"
	unit_groups=$(sed -n 's/^SystemCallFilter=~//p' "$(dirname "$0")/../../deploy/capiboxd.service")
	[ "$unit_groups" = "$groups" ] || fail "the unit's SystemCallFilter=~$unit_groups is not the one tested ($groups)"
	if command -v systemd-analyze >/dev/null; then
		# shellcheck disable=SC2086
		calls=$(systemd-analyze syscall-filter $groups 2>/dev/null | grep -v '^[@#]' | tr -d ' ' | grep . | sort -u | paste -sd,)
	fi
	export CAPIBOX_DENY=${calls:-reboot,kexec_load,kexec_file_load,swapon,swapoff,init_module,finit_module,delete_module,clock_settime,settimeofday,adjtimex,clock_adjtime,iopl,ioperm,modify_ldt}
	export CAPIBOX_HARDENING_INNER=1
	rc=0
	unshare -m --propagation private bash "$0" "$@" || rc=$?
	rm -rf "$W" "$S"
	exit "$rc"
fi

# --- inside the private mount namespace ------------------------------------
mount --bind "$S" "$S" || fail "bind $S"             # RuntimeDirectory=: writable
mount --bind /tmp /tmp || fail "bind /tmp"           # PrivateTmp=: a writable /tmp
mount -o remount,bind,ro / || fail "remount / read-only"  # ProtectSystem=strict
for d in /home /root; do                              # ProtectHome=yes
	[ -d "$d" ] && mount -t tmpfs -o ro,mode=0700 tmpfs "$d"
done
if touch /usr/.capibox-hardening 2>/dev/null; then
	rm -f /usr/.capibox-hardening
	fail "the root file system is still writable"
fi

uid_base=$((3000000000 + ($$ % 10000) * 65536))
addr=

start() { # start NAME: capiboxd under the unit's filters; sets addr and pid
	rm -f "$W/addr"
	"$sdfilter" -d "$CAPIBOX_DENY" -- "$capiboxd" --listen 127.0.0.1:0 --ready-file "$W/addr" \
		--state-dir "$S" --uid-base "$uid_base" --uid-count 256 --max-live 4 --no-metrics \
		--grace 2 2>"$W/log" &
	pid=$!
	for _ in $(seq 1 300); do
		[ -s "$W/addr" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ ! -s "$W/addr" ]; then
		# a machine without namespaces or cgroups is not this test's business
		if grep -qE "refusing to start: memory and process limits|the supervisor did not start" "$W/log"; then
			cat "$W/log"
			skip "capiboxd cannot start sandboxes on this machine (log above)"
		fi
		fail "capiboxd did not start ($1)"
	fi
	addr=$(cat "$W/addr")
}

stop() {
	kill -TERM "$pid" 2>/dev/null
	wait "$pid"
	local rc=$?
	[ "$rc" -eq 0 ] || fail "capiboxd exited with $rc"
}

run() { # run EXPECTED LANG CODE: the output must contain EXPECTED
	local out
	out=$("$capibox" -a "$addr" exec -l "$2" -c "$3" 2>&1)
	case "$out" in
	*"$1"*) echo "ok: $2: $1" ;;
	*) fail "$2: expected \"$1\", got: $out" ;;
	esac
}

start hardened
grep -h '^sdfilter:' "$W/log"
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$pid/status" || fail "no_new_privs is not set"
run "numpy 6" python 'import numpy as np; print("numpy", np.arange(4).sum())'
run "node 3" javascript 'console.log("node", 1 + 2)'
run "bash wrote" bash 'echo hi > /home/user/f && echo bash wrote'
run "alg refused: 97" python '
import socket
try:
    socket.socket(38, socket.SOCK_SEQPACKET)  # AF_ALG
    print("alg allowed")
except OSError as e:
    print("alg refused:", e.errno)'
"$capibox" -a "$addr" health --deep >"$W/health" 2>&1 || { cat "$W/health"; fail "health --deep"; }
grep -q "canary ok" "$W/health" || fail "health --deep: $(cat "$W/health")"
echo "ok: health --deep"
stop

# ProtectKernelTunables= over-mounts /proc/sys: the kernel then refuses a
# fresh /proc in a sandbox's user namespace
mount --bind /proc/sys /proc/sys || fail "bind /proc/sys"
mount -o remount,bind,ro /proc/sys || fail "remount /proc/sys read-only"
start tunables
run "mount proc" python 'print(1)'
stop
echo "PASS"
