/*
 * The sandbox's filesystem. Runs in the child, inside its own user and mount
 * namespaces, as uid 1000 with capabilities over those namespaces only.
 *
 *   /            tmpfs, read-only once set up
 *   /usr, /lib*  read-only, nosuid, nodev binds of the host's (the runtimes)
 *   /bin, /sbin  symlinks into /usr where the host has merged /usr
 *   /etc         synthesized: passwd and group with the sandbox user, hosts,
 *                nsswitch; read-only binds of the few host entries runtimes
 *                need (dynamic linker cache, alternatives, fonts, python)
 *   /proc        fresh, of the sandbox's pid namespace; host-kernel entries
 *                (kcore, sysrq-trigger, kallsyms, ...) masked, sys read-only
 *   /dev         read-only tmpfs: null, zero, full, random, urandom; shm -> /tmp
 *   /tmp         size-capped tmpfs
 *   /home/user   size-capped tmpfs, the working directory
 *   /.capibox    the code file, read-only
 *
 * Nothing else of the host is reachable: no /root, /var, /run, /srv, no
 * host /etc (so no shadow, no keys), no server files or sockets.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox.h"

#define FAIL(...)                                                          \
	do {                                                               \
		int saved_ = errno;                                        \
		snprintf(err, errlen, __VA_ARGS__);                        \
		size_t l_ = strlen(err);                                   \
		snprintf(err + l_, errlen - l_, ": %s", strerror(saved_)); \
		return -1;                                                 \
	} while (0)

/* Host directories bound read-only when they exist and are not symlinks. */
static const char *const usr_dirs[] = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"};

/* Host /etc entries runtimes read; none holds a secret. */
static const char *const etc_binds[] = {
	"ld.so.cache",	"ld.so.conf", "ld.so.conf.d", "alternatives", "fonts",
	"matplotlibrc", "localtime",  "python3",      "python3.11",   "mime.types",
};

static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom"};

/*
 * /proc entries that describe or drive the host kernel rather than the
 * sandbox: files are covered with /dev/null, directories with an empty
 * read-only tmpfs (the set container runtimes mask, plus a few more).
 */
static const char *const proc_masked_files[] = {
	"kcore",       "sysrq-trigger", "kallsyms",	 "keys",      "key-users",
	"timer_list",  "sched_debug",	"latency_stats", "kmsg",      "kpagecount",
	"kpageflags",  "kpagecgroup",	"config.gz",	 "modules",   "slabinfo",
	"vmallocinfo", "iomem",		"ioports",	 "buddyinfo", "pagetypeinfo",
};
static const char *const proc_masked_dirs[] = {"acpi", "scsi", "bus", "fs", "irq", "tty", "driver"};

/*
 * Flags to keep when remounting a bind: a mount namespace owned by a user
 * namespace may not clear flags the host mount has (the kernel locks them),
 * so carry the host's nosuid/nodev/noexec/atime flags over (bubblewrap does
 * the same).
 */
static unsigned long host_flags(const char *path)
{
	struct statvfs sv;
	unsigned long f = 0;

	if (statvfs(path, &sv) < 0)
		return 0;
	if (sv.f_flag & ST_NOSUID)
		f |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV)
		f |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC)
		f |= MS_NOEXEC;
	if (sv.f_flag & ST_NOATIME)
		f |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME)
		f |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME)
		f |= MS_RELATIME;
	return f;
}

static int bind_ro(const char *src, const char *dst, char *err, size_t errlen)
{
	if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
		FAIL("bind %s", src);
	if (mount(NULL, dst, NULL,
		  MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | host_flags(dst),
		  NULL) < 0)
		FAIL("remount %s read-only", src);
	return 0;
}

static int write_text(const char *path, const char *text, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	size_t len = strlen(text);

	if (fd < 0)
		FAIL("create %s", path);
	if (write(fd, text, len) != (ssize_t)len) {
		close(fd);
		FAIL("write %s", path);
	}
	close(fd);
	return 0;
}

static int mount_tmpfs(const char *dst, const char *opts, unsigned long flags, char *err,
		       size_t errlen)
{
	if (mount("tmpfs", dst, "tmpfs", flags, opts) < 0)
		FAIL("mount tmpfs on %s", dst);
	return 0;
}

/* Binds what the runtimes need from /usr and friends, mirroring merged-/usr symlinks. */
static int setup_usr(char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof(usr_dirs) / sizeof(usr_dirs[0]); i++) {
		char host[64], target[256];
		struct stat st;
		ssize_t n;

		snprintf(host, sizeof(host), "/%s", usr_dirs[i]);
		if (lstat(host, &st) < 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			n = readlink(host, target, sizeof(target) - 1);
			if (n < 0)
				FAIL("readlink %s", host);
			target[n] = '\0';
			if (symlink(target, usr_dirs[i]) < 0)
				FAIL("symlink %s", usr_dirs[i]);
		} else if (S_ISDIR(st.st_mode)) {
			if (mkdir(usr_dirs[i], 0755) < 0)
				FAIL("mkdir %s", usr_dirs[i]);
			if (bind_ro(host, usr_dirs[i], err, errlen) < 0)
				return -1;
		}
	}
	return 0;
}

static int setup_etc(char *err, size_t errlen)
{
	if (mkdir("etc", 0755) < 0)
		FAIL("mkdir etc");
	if (write_text("etc/passwd",
		       "root:x:0:0:root:/root:/usr/sbin/nologin\n"
		       "user:x:1000:1000:user:/home/user:/bin/bash\n"
		       "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		       err, errlen) < 0 ||
	    write_text("etc/group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n", err, errlen) <
		    0 ||
	    write_text("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tsandbox\n",
		       err, errlen) < 0 ||
	    write_text("etc/hostname", "sandbox\n", err, errlen) < 0 ||
	    write_text("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n", err,
		       errlen) < 0 ||
	    write_text("etc/resolv.conf", "# no network in the sandbox\n", err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(etc_binds) / sizeof(etc_binds[0]); i++) {
		char host[128], dst[128];
		struct stat st;

		snprintf(host, sizeof(host), "/etc/%s", etc_binds[i]);
		snprintf(dst, sizeof(dst), "etc/%s", etc_binds[i]);
		if (stat(host, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (mkdir(dst, 0755) < 0)
				FAIL("mkdir %s", dst);
		} else if (S_ISREG(st.st_mode)) {
			if (write_text(dst, "", err, errlen) < 0)
				return -1;
		} else {
			continue;
		}
		if (bind_ro(host, dst, err, errlen) < 0)
			return -1;
	}
	return 0;
}

static int setup_dev(char *err, size_t errlen)
{
	if (mkdir("dev", 0755) < 0)
		FAIL("mkdir dev");
	if (mount_tmpfs("dev", "size=64k,mode=0755", MS_NOSUID | MS_NOEXEC, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(dev_nodes) / sizeof(dev_nodes[0]); i++) {
		char host[64], dst[64];

		snprintf(host, sizeof(host), "/dev/%s", dev_nodes[i]);
		snprintf(dst, sizeof(dst), "dev/%s", dev_nodes[i]);
		if (write_text(dst, "", err, errlen) < 0)
			return -1;
		/* a bind of the host node: mknod is impossible (and unwanted) here */
		if (mount(host, dst, NULL, MS_BIND, NULL) < 0)
			FAIL("bind %s", host);
	}
	if (symlink("/proc/self/fd", "dev/fd") < 0 || symlink("/proc/self/fd/0", "dev/stdin") < 0 ||
	    symlink("/proc/self/fd/1", "dev/stdout") < 0 ||
	    symlink("/proc/self/fd/2", "dev/stderr") < 0)
		FAIL("symlink in dev");
	/* POSIX shared memory and semaphores (python multiprocessing) live in
	 * /tmp's size-capped tmpfs: no third writable place */
	if (symlink("/tmp", "dev/shm") < 0)
		FAIL("symlink dev/shm");
	if (mount(NULL, "dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
		  NULL) < 0)
		FAIL("remount dev read-only");
	return 0;
}

/*
 * Covers what proc must not show: a file with /dev/null, a directory with
 * an empty read-only tmpfs. One tmpfs serves every directory (the others
 * are binds of it: a tmpfs per directory cost each sandbox six more
 * superblocks to make and tear down). A path this kernel lacks is skipped
 * (mount says ENOENT: no separate lookup first).
 */
static int mask_proc(char *err, size_t errlen)
{
	char empty[64] = "";

	for (size_t i = 0; i < sizeof(proc_masked_files) / sizeof(proc_masked_files[0]); i++) {
		char path[64];
		snprintf(path, sizeof(path), "proc/%s", proc_masked_files[i]);
		if (mount("/dev/null", path, NULL, MS_BIND, NULL) < 0 && errno != ENOENT)
			FAIL("mask %s", path);
	}
	for (size_t i = 0; i < sizeof(proc_masked_dirs) / sizeof(proc_masked_dirs[0]); i++) {
		char path[64];
		int rc;

		snprintf(path, sizeof(path), "proc/%s", proc_masked_dirs[i]);
		if (empty[0] == '\0')
			rc = mount("tmpfs", path, "tmpfs",
				   MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
				   "size=0,mode=0555");
		else
			rc = mount(empty, path, NULL, MS_BIND, NULL);
		if (rc < 0 && errno != ENOENT)
			FAIL("mask %s", path);
		if (rc == 0 && empty[0] == '\0')
			snprintf(empty, sizeof(empty), "%s", path);
	}
	/* runtimes read /proc/sys (e.g. vm.overcommit_memory): readable, never
	 * writable, whatever the file modes say */
	if (bind_ro("proc/sys", "proc/sys", err, errlen) < 0)
		return -1;
	return 0;
}

int mounts_setup(const struct sandbox_spec *spec, char *err, size_t errlen)
{
	char opts[128];

	/* nothing we mount may propagate back to the host */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		FAIL("make / private");
	if (mount_tmpfs(spec->root_dir, "size=4m,mode=0755", MS_NOSUID | MS_NODEV, err, errlen) < 0)
		return -1;
	if (chdir(spec->root_dir) < 0)
		FAIL("chdir %s", spec->root_dir);
	if (setup_usr(err, errlen) < 0 || setup_etc(err, errlen) < 0)
		return -1;
	if (mkdir("proc", 0555) < 0)
		FAIL("mkdir proc");
	/* a fresh proc of the sandbox's own pid namespace: host processes are
	 * not in it */
	if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		FAIL("mount proc");
	/* the zygote's proc stays fully visible: a child in a less privileged
	 * user namespace may mount its own proc only when one is (each child
	 * covers it with its own, masked, before anything runs) */
	if ((!spec->zygote && mask_proc(err, errlen) < 0) || setup_dev(err, errlen) < 0)
		return -1;
	if (mkdir("tmp", 01777) < 0 || chmod("tmp", 01777) < 0)
		FAIL("mkdir tmp");
	snprintf(opts, sizeof(opts), "size=%" PRIu64 ",mode=1777", spec->tmpfs_bytes);
	if (mount_tmpfs("tmp", opts, MS_NOSUID | MS_NODEV, err, errlen) < 0)
		return -1;
	if (mkdir("home", 0755) < 0 || mkdir("home/user", 0755) < 0)
		FAIL("mkdir home/user");
	/* (the zygote's namespace may not map uid 1000: its children mount
	 * their own /home/user anyway) */
	if (spec->zygote)
		snprintf(opts, sizeof(opts), "size=%" PRIu64 ",mode=0755", spec->tmpfs_bytes);
	else
		snprintf(opts, sizeof(opts), "size=%" PRIu64 ",mode=0755,uid=%d,gid=%d",
			 spec->tmpfs_bytes, SANDBOX_UID, SANDBOX_GID);
	if (mount_tmpfs("home/user", opts, MS_NOSUID | MS_NODEV, err, errlen) < 0)
		return -1;
	if (mkdir(&SANDBOX_CODE_DIR[1], 0755) < 0)
		FAIL("mkdir %s", SANDBOX_CODE_DIR);

	/* switch root; the old root is detached so no path leads back to it */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		FAIL("pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		FAIL("detach old root");
	if (chdir("/") < 0)
		FAIL("chdir /");
	return 0;
}

int mounts_seal_root(char *err, size_t errlen)
{
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) <
	    0)
		FAIL("remount / read-only");
	if (chdir(SANDBOX_HOME) < 0)
		FAIL("chdir %s", SANDBOX_HOME);
	return 0;
}

int mounts_zygote_child(const struct sandbox_spec *spec, char *err, size_t errlen)
{
	char opts[128];

	if (chdir("/") < 0)
		FAIL("chdir /");
	/* over the zygote's: a proc of our own pid namespace, masked */
	if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		FAIL("mount proc");
	if (mask_proc(err, errlen) < 0)
		return -1;
	snprintf(opts, sizeof(opts), "size=%" PRIu64 ",mode=1777", spec->tmpfs_bytes);
	if (mount_tmpfs("tmp", opts, MS_NOSUID | MS_NODEV, err, errlen) < 0)
		return -1;
	snprintf(opts, sizeof(opts), "size=%" PRIu64 ",mode=0755,uid=%d,gid=%d", spec->tmpfs_bytes,
		 SANDBOX_UID, SANDBOX_GID);
	if (mount_tmpfs("home/user", opts, MS_NOSUID | MS_NODEV, err, errlen) < 0)
		return -1;
	return 0;
}
