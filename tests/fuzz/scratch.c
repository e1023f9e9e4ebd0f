/*
 * The fuzz targets' scratch directory: a private tmpfs that needs no
 * cleanup. Steps: a private mount namespace (as root; otherwise inside a
 * new user namespace), a tmpfs on a fresh directory under $TMPDIR or /tmp,
 * a descriptor to it, then the mount is detached and the directory removed.
 * The tmpfs stays reachable through the descriptor alone and is freed when
 * the process exits, however it exits. Where namespaces are not available
 * it falls back to a plain directory on disk (slower), removed at exit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

static char fallback_dir[PATH_MAX];

static void die(const char *what)
{
	fprintf(stderr, "scratch: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* A mount namespace of our own; as non-root, through a user namespace. */
static int private_mounts(void)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	char map[64];

	if (unshare(CLONE_NEWNS) == 0)
		goto private;
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		return -1;
	snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
	if (write_file("/proc/self/uid_map", map) < 0 ||
	    write_file("/proc/self/setgroups", "deny") < 0)
		return -1;
	snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
	if (write_file("/proc/self/gid_map", map) < 0)
		return -1;

      private:
	/* without this our tmpfs would propagate back into the host's namespace */
	return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

/* Empties the directory dfd (and closes dfd). One descriptor per level. */
static void clear_dir(int dfd)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;
	int removed;

	if (d == NULL)
		die("fdopendir");
	do {
		removed = 0;
		rewinddir(d);
		while ((de = readdir(d)) != NULL) {
			int sub;

			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (de->d_type != DT_DIR) {
				if (unlinkat(dfd, de->d_name, 0) == 0) {
					removed = 1;
					continue;
				}
				if (errno != EISDIR) /* EISDIR: d_type was DT_UNKNOWN */
					die("unlinkat");
			}
			sub = openat(dfd, de->d_name,
				     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				die("openat");
			clear_dir(sub);
			if (unlinkat(dfd, de->d_name, AT_REMOVEDIR) < 0)
				die("rmdir");
			removed = 1;
		}
	} while (removed); /* entries removed while reading may hide others */
	closedir(d);
}

static void remove_fallback(void)
{
	int fd = open(fallback_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		clear_dir(fd);
		rmdir(fallback_dir);
	}
}

void scratch_init(struct scratch *s)
{
	const char *tmp = getenv("TMPDIR");
	char dir[PATH_MAX];
	int tmpfs = 0;

	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	if (snprintf(dir, sizeof(dir), "%s/capibox-fuzz.XXXXXX", tmp) >= (int)sizeof(dir)) {
		errno = ENAMETOOLONG;
		die("TMPDIR");
	}
	if (mkdtemp(dir) == NULL)
		die("mkdtemp");
	if (private_mounts() == 0 &&
	    mount("capibox-fuzz", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "size=256m,mode=0700") == 0)
		tmpfs = 1;
	s->root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->root < 0)
		die("open scratch");
	if (tmpfs) {
		/* the descriptor keeps the tmpfs alive; nothing is left in /tmp */
		if (umount2(dir, MNT_DETACH) < 0 || rmdir(dir) < 0)
			die("detach scratch");
	} else {
		fprintf(stderr, "scratch: no private tmpfs (%s); using %s on disk\n",
			strerror(errno), dir);
		memcpy(fallback_dir, dir, sizeof(dir));
		atexit(remove_fallback);
	}
	if (mkdirat(s->root, "home", 0755) < 0)
		die("mkdir home");
	s->home = openat(s->root, "home", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->home < 0)
		die("open home");
	snprintf(s->code_path, sizeof(s->code_path), "/proc/self/fd/%d/code", s->root);
}

void scratch_clear(struct scratch *s)
{
	int fd;

	if (unlinkat(s->root, "code", 0) < 0 && errno != ENOENT)
		die("unlink code");
	fd = openat(s->home, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		die("open home");
	clear_dir(fd);
}
