#!/usr/bin/env bash
# What authentication and TLS cost on the request path, in one sitting:
# three capiboxd on ephemeral ports, the same build and pools, differing
# only in transport and keys: plaintext without keys, plaintext with an
# API key, TLS with an API key (a throwaway CA and server certificate made
# with the openssl command). ROUNDS interleaved series of COUNT sequential
# python print(1) executions each (capibox-bench, with a 50 ms pause so a
# warm sandbox is ready, as in compare.sh's "warm"); prints every round's
# p50 and the medians and ratios.
#
#   bench/security_cost.sh [BUILD_DIR] [ROUNDS] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init "${1:-build}"
rounds=${2:-5}
count=${3:-100}

# keys: one key; its secret goes to the client
"$build/capiboxd" keygen bench >"$tmp/keygen"
secret=$(sed -n 2p "$tmp/keygen")
sed -n 4p "$tmp/keygen" >"$tmp/keys"
chmod 600 "$tmp/keys"
# TLS: a CA and a server certificate for 127.0.0.1 / localhost
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=bench-ca -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
	-keyout "$tmp/srv.key" -out "$tmp/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tmp/ext"
openssl x509 -req -in "$tmp/srv.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
	-CAcreateserial -days 1 -extfile "$tmp/ext" -out "$tmp/srv.pem" 2>/dev/null

start_daemon plain 2300000 --no-metrics
start_daemon keys 2400000 --no-metrics --keys "$tmp/keys"
start_daemon tls 2500000 --no-metrics --keys "$tmp/keys" --tls-cert "$tmp/srv.pem" \
	--tls-key "$tmp/srv.key"
wait_pools "$addr_plain"

series() { # name, then capibox-bench client flags
	local name=$1
	shift
	"$bench" -l python -c 'print(1)' -n "$count" -w 5 --pause 50 "$@" >"$tmp/out" ||
		{ cat "$tmp/out" >&2; exit 1; }
	awk '/^latency/ {print $4}' <"$tmp/out" >>"$tmp/$name.p50"
	printf '  %-6s p50 %s ms\n' "$name" "$(tail -1 "$tmp/$name.p50")"
}
for r in $(seq "$rounds"); do
	echo "round $r"
	series plain -a "$addr_plain"
	series keys -a "$addr_keys" --token "$secret"
	series tls -a "localhost:${addr_tls##*:}" --token "$secret" --tls --ca "$tmp/ca.pem"
done
median() { sort -n "$1" | awk '{v[NR] = $1} END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mp=$(median "$tmp/plain.p50")
mk=$(median "$tmp/keys.p50")
mt=$(median "$tmp/tls.p50")
awk -v p="$mp" -v k="$mk" -v t="$mt" 'BEGIN {
	printf "median of round p50s (ms): plaintext %s  +API key %s (%.2fx)  +TLS %s (%.2fx)\n",
		p, k, k / p, t, t / p }'
