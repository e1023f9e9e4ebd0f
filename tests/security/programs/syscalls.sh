# The same refusals through the usual tools.
try() {
	if "$@" >/dev/null 2>&1; then echo "$1 SUCCEEDED"; else echo "$1 refused"; fi
}
try unshare --user --map-root-user true
try unshare --net true
try nsenter --target 1 --mount true
try mount -t tmpfs none /tmp
try umount /proc
try chroot / true
echo still running
