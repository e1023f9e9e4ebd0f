#!/usr/bin/env bash
# Installs the Debian 12 packages capibox needs to build, test and run.
#
# Idempotent and quiet: when every package is already installed (checked with
# dpkg-query) apt is not touched at all, so this is cheap to call from
# run.sh and test.sh every time. Installing needs root.
set -euo pipefail

packages=(
	# build
	build-essential cmake pkg-config
	libgrpc-dev protobuf-compiler libprotobuf-dev
	libprotobuf-c-dev protobuf-c-compiler protobuf-compiler-grpc
	libcmocka-dev libseccomp-dev libcap-dev libjson-c-dev
	# API keys (SHA-256, RAND_bytes) and TLS checks: OpenSSL's libcrypto
	libssl-dev
	# Prometheus metrics: the HTTP listener (server/metrics.c)
	libmicrohttpd-dev
	# the config file: an INI parser (server/config_file.c)
	libinih-dev
	# the python zygote's extension (server/zygote/)
	python3-dev
	# runtimes offered to sandboxed code (python with the data stack, node, bash)
	python3 python3-numpy python3-pandas python3-matplotlib nodejs
	# Python interop test (Debian's grpcio; stubs come from protobuf-compiler-grpc)
	python3-grpcio python3-protobuf
	# tests and checks (python3-yaml: the deploy/ files' structure check)
	procps iproute2 clang-format valgrind python3-yaml
	# TLS tests make throwaway certificates
	openssl
	# fuzz targets (scripts/fuzz.sh): clang with the libFuzzer and sanitizer runtimes
	clang libclang-rt-dev
)
# npm, for the buf and Node.js interop tests (they fetch @bufbuild/buf and
# @grpc/grpc-js from the npm registry, and skip with a reason without it).
# Debian's nodejs comes without npm; NodeSource's nodejs has its own and
# conflicts with Debian's npm package: add it only when there is none.
if ! command -v npm >/dev/null 2>&1; then
	packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	if [ "$status" != "install ok installed" ]; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "deps: all ${#packages[@]} packages present"
	exit 0
fi

echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: installing packages needs root: run as root or with sudo" >&2
	exit 1
fi

# apt's progress output would bury the interesting part of run.sh and test.sh:
# keep it in a log and show it only when something fails.
log=$(mktemp /tmp/capibox-deps.XXXXXX.log)
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
	>"$log" 2>&1; then
	cat "$log" >&2
	echo "deps: apt-get failed (log above, also in $log)" >&2
	exit 1
fi
rm -f "$log"
echo "deps: done"
