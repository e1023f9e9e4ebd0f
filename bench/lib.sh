# shellcheck shell=bash
# shellcheck disable=SC2034 # build, bench, tmp, bwrap_argv: for the scripts that source this
# Helpers the bench scripts source: a scratch directory, daemons on
# ephemeral ports with their own state dirs and uid ranges, pool waits,
# memory readings. Not a program of its own.
#
# Every daemon gets --state-dir under one mode-0711 scratch directory: the
# sandboxes mount their root there and their uid must be able to traverse
# the parents (mktemp makes 0700).

bench_init() { # BUILD_DIR
	build=$1
	bench="$build/capibox-bench"
	if [ ! -x "$bench" ] || [ ! -x "$build/capiboxd" ]; then
		echo "no capibox-bench/capiboxd in $build: build first" >&2
		exit 1
	fi
	[ "$(id -u)" = 0 ] || { echo "capiboxd needs root (namespaces, cgroups)" >&2; exit 1; }
	tmp=$(mktemp -d /tmp/capibox-bench.XXXXXX)
	chmod 711 "$tmp"
	daemon_pids=()
	trap bench_cleanup EXIT
}

bench_cleanup() {
	local p
	for p in "${daemon_pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	# never follow a mount that might still be there into the host
	rm -rf --one-file-system "$tmp"
}

# start_daemon NAME UID_BASE [capiboxd flags...]: sets addr_NAME and pid_NAME
start_daemon() {
	local name=$1 uid=$2 p i
	shift 2
	"$build/capiboxd" --listen 127.0.0.1:0 --ready-file "$tmp/$name.addr" \
		--state-dir "$tmp/$name.state" --uid-base "$uid" --grace 1 "$@" \
		2>"$tmp/$name.log" &
	p=$!
	daemon_pids+=("$p")
	for i in $(seq 200); do
		[ -s "$tmp/$name.addr" ] && break
		kill -0 "$p" 2>/dev/null || { cat "$tmp/$name.log" >&2; exit 1; }
		sleep 0.05
	done
	[ -s "$tmp/$name.addr" ] || { echo "capiboxd $name did not come up" >&2; exit 1; }
	printf -v "addr_$name" '%s' "$(cat "$tmp/$name.addr")"
	printf -v "pid_$name" '%s' "$p"
}

# wait_pools ADDR: until every runtime's pool holds its target idle (max 30 s)
wait_pools() {
	local _
	for _ in $(seq 300); do
		"$build/capibox" -a "$1" health 2>/dev/null |
			awk '$2 == "idle" { if ($3 != $7) bad = 1; n++ } END { exit !(n > 0 && !bad) }' &&
			return 0
		sleep 0.1
	done
	echo "pools of $1 did not fill in 30 s" >&2
	return 1
}

# field KEY: the value after "KEY" on a capibox-bench result read from stdin
# (e.g. field p50 on the latency line)
lat_field() { awk -v k="$1" '/^latency/ { for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }'; }
rate_field() { awk '/^throughput/ { print $2 }'; }
warm_field() { awk '/^warm sandboxes/ { print $3 "/" $5 }'; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# proc_kib PID FILE KEY: a kB figure from /proc/PID/FILE (status or smaps_rollup)
proc_kib() { awk -v k="$3:" '$1 == k { print $2; exit }' "/proc/$1/$2" 2>/dev/null; }

# the typical hand-written bubblewrap sandbox: every namespace, a read-only
# /usr, fresh /proc, /dev and /tmp, nothing else of the host but
# /etc/alternatives (Debian reaches e.g. libblas.so.3, which numpy needs,
# through it)
bwrap_argv=(/usr/bin/bwrap --unshare-all --die-with-parent --ro-bind /usr /usr
	--symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64
	--ro-bind /etc/alternatives /etc/alternatives
	--proc /proc --dev /dev --tmpfs /tmp --chdir /tmp)

need_bwrap() {
	command -v bwrap >/dev/null && return 0
	echo "bwrap missing: apt-get install -y bubblewrap" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y bubblewrap >&2 ||
		{ echo "cannot install bubblewrap" >&2; exit 1; }
}

# sample_peak PID OUT: writes to OUT the largest VmRSS (kB) of PID seen
# every 10 ms, until PID goes away or the sampler is killed; run it in the
# background. Sleeps with read -t on a private fifo: no fork per sample.
sample_peak() {
	local pid=$1 out=$2 max=0 k v fd
	rm -f "$out.fifo"
	mkfifo "$out.fifo"
	exec {fd}<>"$out.fifo"
	rm -f "$out.fifo" # the open descriptor is all it needs
	echo 0 >"$out"
	while [ -r "/proc/$pid/status" ]; do
		while read -r k v _; do
			if [ "$k" = VmRSS: ]; then
				[ "$v" -gt "$max" ] && { max=$v; echo "$max" >"$out"; }
				break
			fi
		done <"/proc/$pid/status" 2>/dev/null || break
		read -r -t 0.01 -u "$fd" _ || true
	done
}

# supervisor_of PID: the capiboxd supervisor child of daemon PID
supervisor_of() { pgrep -P "$1" -f '^capiboxd: supervisor' | head -1; }
