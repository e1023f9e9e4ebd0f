#!/usr/bin/env bash
# Builds the zygote prototype into OUT (default /tmp/zyg):
#   OUT/parts            today's sandbox creation, step by step (product's mounts.c, seccomp.c)
#   OUT/zbench           the zygote's launcher and driver
#   OUT/lib/_zyg*.so     the zygote's C half (a CPython extension), with
#   OUT/lib/zygote.py    the zygote itself
# Needs gcc, libseccomp-dev and python3.11's headers (libpython3.11-dev).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
out=${1:-/tmp/zyg}
mkdir -p "$out/lib"
chmod 711 "$out"
cflags=(-O2 -g -Wall -Wextra -Werror -Wmissing-prototypes -Wshadow)
gcc "${cflags[@]}" -D_GNU_SOURCE -o "$out/parts" "$here/parts.c" \
	"$src/server/sandbox/mounts.c" "$src/server/sandbox/seccomp.c" -lseccomp
gcc "${cflags[@]}" -o "$out/zbench" "$here/zbench.c"
gcc "${cflags[@]}" -D_GNU_SOURCE -fPIC -c -o "$out/seccomp.o" "$src/server/sandbox/seccomp.c"
# Python.h defines _GNU_SOURCE itself
gcc "${cflags[@]}" -fPIC -shared -I/usr/include/python3.11 -o "$out/lib/_zyg.so" \
	"$here/_zyg.c" "$out/seccomp.o" -lseccomp
install -m 0644 "$here/zygote.py" "$out/lib/zygote.py"
echo "built in $out"
