/*
 * Control groups for sandboxes.
 *
 * Groups are named sb-<supervisor pid>-<execution id>: several capiboxd
 * (tests, replicas) may share a machine.
 *
 * v2: /sys/fs/cgroup/capibox/sb-<pid>-<id>, with memory, pids and cpu enabled in
 *     capibox's subtree_control (capibox itself holds no process, as v2's
 *     no-internal-process rule wants). memory.max, memory.swap.max = 0,
 *     pids.max; memory.peak, memory.events (oom_kill), cpu.stat.
 * v1: /sys/fs/cgroup/{memory,pids,cpuacct}/capibox/sb-<pid>-<id>.
 *     memory.limit_in_bytes and memory.memsw.limit_in_bytes (swap off, when
 *     swap accounting exists), pids.max; memory.max_usage_in_bytes,
 *     memory.oom_control (oom_kill), cpuacct.usage.
 * Memory charged includes the sandbox's tmpfs pages: files written to
 * /home/user and /tmp count against the memory limit.
 */
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../log.h"

static char cg_root[256] = "/sys/fs/cgroup";

static enum cg_mode mode = CG_NONE;
static bool v1_memsw; /* swap accounting present */
static bool have_pids;
static bool have_cpu;

static const char *const v1_ctrls[] = {"memory", "pids", "cpuacct"};

static int write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, val, strlen(val));
	if (n < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	close(fd);
	return n == (ssize_t)strlen(val) ? 0 : -1;
}

static int read_str(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

static uint64_t read_u64(const char *path)
{
	char buf[64];

	if (read_str(path, buf, sizeof(buf)) < 0)
		return 0;
	return strtoull(buf, NULL, 10);
}

/* read_str on an open descriptor: the file read again from its start. */
static int pread_str(int fd, char *buf, size_t len)
{
	ssize_t n = pread(fd, buf, len - 1, 0);

	if (n < 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

/*
 * A figure from fd when open, else from dir/file: the value of "key N" in a
 * flat-keyed file (memory.events, cpu.stat, oom_control), or with key NULL
 * the number the file holds.
 */
static uint64_t read_stat(int fd, const char *dir, const char *file, const char *key)
{
	char buf[4096], path[320], *p;
	size_t klen;
	int rc;

	if (fd >= 0) {
		rc = pread_str(fd, buf, sizeof(buf));
	} else {
		snprintf(path, sizeof(path), "%s/%s", dir, file);
		rc = read_str(path, buf, sizeof(buf));
	}
	if (rc < 0)
		return 0;
	if (key == NULL)
		return strtoull(buf, NULL, 10);
	klen = strlen(key);
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, klen) == 0 && p[klen] == ' ')
			return strtoull(p + klen + 1, NULL, 10);
	return 0;
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* cg_root + "/" + rel, in buf. */
static const char *at_root(char *buf, size_t len, const char *rel)
{
	snprintf(buf, len, "%s/%s", cg_root, rel);
	return buf;
}

bool cg_cpu_accounted(void) { return mode == CG_V2 || (mode == CG_V1 && have_cpu); }

static void remove_dir(const char *dir);

/* Removes groups left by supervisors that are gone (a crash, a kill -9). */
static void remove_stale(const char *parent)
{
	DIR *d = opendir(parent);
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		char path[512], proc[64];
		int pid;
		if (sscanf(de->d_name, "sb-%d-", &pid) != 1)
			continue;
		snprintf(proc, sizeof(proc), "/proc/%d", pid);
		if (pid == getpid() || access(proc, F_OK) == 0)
			continue; /* a live supervisor's (ours or another daemon's) */
		snprintf(path, sizeof(path), "%s/%s", parent, de->d_name);
		/* its processes may still be dying (they follow their supervisor) */
		remove_dir(path);
	}
	closedir(d);
}

enum cg_mode cg_init(const char *root, char *desc, size_t desclen)
{
	char path[512], buf[256];

	if (root != NULL)
		snprintf(cg_root, sizeof(cg_root), "%s", root);
	if (exists(at_root(path, sizeof(path), "cgroup.controllers"))) {
		if (read_str(path, buf, sizeof(buf)) < 0 || strstr(buf, "memory") == NULL) {
			snprintf(desc, desclen, "cgroup v2 without the memory controller");
			return mode = CG_NONE;
		}
		have_pids = strstr(buf, "pids") != NULL;
		have_cpu = strstr(buf, "cpu") != NULL;
		if (mkdir(at_root(path, sizeof(path), "capibox"), 0755) < 0 && errno != EEXIST) {
			snprintf(desc, desclen, "cgroup v2: mkdir %.200s: %s", path,
				 strerror(errno));
			return mode = CG_NONE;
		}
		snprintf(buf, sizeof(buf), "+memory%s%s", have_pids ? " +pids" : "",
			 have_cpu ? " +cpu" : "");
		if (write_str(at_root(path, sizeof(path), "cgroup.subtree_control"), buf) < 0 ||
		    write_str(at_root(path, sizeof(path), "capibox/cgroup.subtree_control"), buf) <
			    0) {
			snprintf(desc, desclen, "cgroup v2: enabling controllers: %s",
				 strerror(errno));
			return mode = CG_NONE;
		}
		remove_stale(at_root(path, sizeof(path), "capibox"));
		snprintf(desc, desclen, "cgroup v2 (memory%s%s)", have_pids ? ", pids" : "",
			 have_cpu ? ", cpu" : "");
		return mode = CG_V2;
	}
	if (exists(at_root(path, sizeof(path), "memory/memory.limit_in_bytes"))) {
		char missing[64] = "";
		for (size_t i = 0; i < sizeof(v1_ctrls) / sizeof(v1_ctrls[0]); i++) {
			if (!exists(at_root(path, sizeof(path), v1_ctrls[i]))) {
				size_t l = strlen(missing);
				snprintf(missing + l, sizeof(missing) - l, " %s", v1_ctrls[i]);
				continue;
			}
			snprintf(buf, sizeof(buf), "%s/capibox", v1_ctrls[i]);
			if (mkdir(at_root(path, sizeof(path), buf), 0755) < 0 && errno != EEXIST) {
				snprintf(desc, desclen, "cgroup v1: mkdir %.200s: %s", path,
					 strerror(errno));
				return mode = CG_NONE;
			}
			remove_stale(path);
		}
		have_pids = exists(at_root(path, sizeof(path), "pids/capibox"));
		have_cpu = exists(at_root(path, sizeof(path), "cpuacct/capibox"));
		v1_memsw = exists(
			at_root(path, sizeof(path), "memory/capibox/memory.memsw.limit_in_bytes"));
		snprintf(desc, desclen, "cgroup v1 (memory%s%s%s)%s%s", v1_memsw ? "+swap" : "",
			 have_pids ? ", pids" : "", have_cpu ? ", cpuacct" : "",
			 missing[0] ? "; missing:" : "", missing);
		return mode = CG_V1;
	}
	snprintf(desc, desclen,
		 "no usable cgroups under %.200s: memory and process limits "
		 "are rlimit-only",
		 cg_root);
	return mode = CG_NONE;
}

static void group_path(char *buf, size_t len, const char *ctrl, uint64_t id)
{
	if (mode == CG_V2)
		snprintf(buf, len, "%.180s/capibox/sb-%d-%" PRIu64, cg_root, (int)getpid(), id);
	else
		snprintf(buf, len, "%.150s/%.16s/capibox/sb-%d-%" PRIu64, cg_root, ctrl,
			 (int)getpid(), id);
}

static int set_file(const char *dir, const char *file, const char *val, char *err, size_t errlen)
{
	char path[320];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (write_str(path, val) < 0) {
		snprintf(err, errlen, "cgroup: write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int cg_create(uint64_t id, uint64_t memory_bytes, uint32_t max_processes, char *err, size_t errlen)
{
	char dir[256], val[32], pids[32];

	if (mode == CG_NONE)
		return 0;
	snprintf(val, sizeof(val), "%" PRIu64, memory_bytes);
	/* pids.max counts the sandbox's init too */
	snprintf(pids, sizeof(pids), "%" PRIu32, max_processes + 1);
	if (mode == CG_V2) {
		group_path(dir, sizeof(dir), NULL, id);
		if (mkdir(dir, 0755) < 0) {
			snprintf(err, errlen, "cgroup: mkdir %s: %s", dir, strerror(errno));
			return -1;
		}
		if (set_file(dir, "memory.max", val, err, errlen) < 0 ||
		    set_file(dir, "memory.swap.max", "0", err, errlen) < 0 ||
		    (have_pids && set_file(dir, "pids.max", pids, err, errlen) < 0))
			goto fail;
		return 0;
	}
	for (size_t i = 0; i < sizeof(v1_ctrls) / sizeof(v1_ctrls[0]); i++) {
		if ((i == 1 && !have_pids) || (i == 2 && !have_cpu))
			continue;
		group_path(dir, sizeof(dir), v1_ctrls[i], id);
		if (mkdir(dir, 0755) < 0) {
			snprintf(err, errlen, "cgroup: mkdir %s: %s", dir, strerror(errno));
			goto fail;
		}
	}
	group_path(dir, sizeof(dir), "memory", id);
	/* limit before memsw limit: memsw must never be below the limit */
	if (set_file(dir, "memory.limit_in_bytes", val, err, errlen) < 0 ||
	    (v1_memsw && set_file(dir, "memory.memsw.limit_in_bytes", val, err, errlen) < 0) ||
	    set_file(dir, "memory.swappiness", "0", err, errlen) < 0)
		goto fail;
	if (have_pids) {
		group_path(dir, sizeof(dir), "pids", id);
		if (set_file(dir, "pids.max", pids, err, errlen) < 0)
			goto fail;
	}
	return 0;
fail:
	cg_destroy(id);
	return -1;
}

int cg_set_limits(uint64_t id, uint64_t memory_bytes, uint32_t max_processes, char *err,
		  size_t errlen)
{
	char dir[256], val[32], pids[32], path[320];

	if (mode == CG_NONE)
		return 0;
	snprintf(val, sizeof(val), "%" PRIu64, memory_bytes);
	snprintf(pids, sizeof(pids), "%" PRIu32, max_processes + 1);
	if (mode == CG_V2) {
		group_path(dir, sizeof(dir), NULL, id);
		return set_file(dir, "memory.max", val, err, errlen) < 0 ||
				       (have_pids &&
					set_file(dir, "pids.max", pids, err, errlen) < 0) ?
			       -1 :
			       0;
	}
	group_path(dir, sizeof(dir), "memory", id);
	snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", dir);
	/* memsw must never be below the limit: lower the limit first, raise
	 * memsw first */
	if (memory_bytes <= read_u64(path)) {
		if (set_file(dir, "memory.limit_in_bytes", val, err, errlen) < 0 ||
		    (v1_memsw &&
		     set_file(dir, "memory.memsw.limit_in_bytes", val, err, errlen) < 0))
			return -1;
	} else if ((v1_memsw &&
		    set_file(dir, "memory.memsw.limit_in_bytes", val, err, errlen) < 0) ||
		   set_file(dir, "memory.limit_in_bytes", val, err, errlen) < 0) {
		return -1;
	}
	if (have_pids) {
		group_path(dir, sizeof(dir), "pids", id);
		if (set_file(dir, "pids.max", pids, err, errlen) < 0)
			return -1;
	}
	return 0;
}

int cg_attach(uint64_t id, pid_t pid, char *err, size_t errlen)
{
	char dir[256], val[32];

	/* v1: the sandbox's init joins its groups itself (cg_open_tasks) */
	if (mode != CG_V2)
		return 0;
	snprintf(val, sizeof(val), "%d", (int)pid);
	group_path(dir, sizeof(dir), NULL, id);
	return set_file(dir, "cgroup.procs", val, err, errlen);
}

int cg_open_tasks(uint64_t id, int fds[CG_TASK_FDS])
{
	char dir[256], path[320];
	int n = 0;

	if (mode != CG_V1)
		return 0;
	for (size_t i = 0; i < sizeof(v1_ctrls) / sizeof(v1_ctrls[0]); i++) {
		if ((i == 1 && !have_pids) || (i == 2 && !have_cpu))
			continue;
		group_path(dir, sizeof(dir), v1_ctrls[i], id);
		snprintf(path, sizeof(path), "%s/tasks", dir);
		fds[n] = open(path, O_WRONLY | O_CLOEXEC);
		if (fds[n] < 0) {
			int e = errno;
			while (n > 0)
				close(fds[--n]);
			errno = e;
			return -1;
		}
		n++;
	}
	return n;
}

int cg_open(uint64_t id)
{
	char dir[256];

	if (mode != CG_V2)
		return -1;
	group_path(dir, sizeof(dir), NULL, id);
	return open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

void cg_kill(uint64_t id)
{
	char dir[256], path[320];

	if (mode != CG_V2)
		return;
	group_path(dir, sizeof(dir), NULL, id);
	snprintf(path, sizeof(path), "%s/cgroup.kill", dir);
	/* absent before Linux 5.14: killing init is enough there */
	if (write_str(path, "1") < 0 && errno != ENOENT)
		log_warn("cgroup: %s", path);
}

/* Where each figure is: controller (v1), file, key (NULL: the file is the number). */
static const struct {
	const char *v1_ctrl, *v1_file, *v1_key, *v2_file, *v2_key;
} stat_files[CG_STAT_FDS] = {
	[CG_STAT_CPU] = {"cpuacct", "cpuacct.usage", NULL, "cpu.stat", "usage_usec"},
	[CG_STAT_PEAK] = {"memory", "memory.max_usage_in_bytes", NULL, "memory.peak", NULL},
	[CG_STAT_OOM] = {"memory", "memory.oom_control", "oom_kill", "memory.events", "oom_kill"},
};

static void stat_path(uint64_t id, int which, char *dir, size_t dirlen, const char **file,
		      const char **key)
{
	if (mode == CG_V2) {
		group_path(dir, dirlen, NULL, id);
		*file = stat_files[which].v2_file;
		*key = stat_files[which].v2_key;
	} else {
		group_path(dir, dirlen, stat_files[which].v1_ctrl, id);
		*file = stat_files[which].v1_file;
		*key = stat_files[which].v1_key;
	}
}

static uint64_t stat_of(uint64_t id, const int fds[CG_STAT_FDS], int which)
{
	char dir[256];
	const char *file, *key;

	if (mode == CG_NONE || (mode == CG_V1 && which == CG_STAT_CPU && !have_cpu))
		return 0;
	stat_path(id, which, dir, sizeof(dir), &file, &key);
	return read_stat(fds[which], dir, file, key);
}

void cg_open_stats(uint64_t id, int fds[CG_STAT_FDS])
{
	char dir[256], path[320];
	const char *file, *key;

	for (int i = 0; i < CG_STAT_FDS; i++) {
		fds[i] = -1;
		if (mode == CG_NONE || (mode == CG_V1 && i == CG_STAT_CPU && !have_cpu))
			continue;
		stat_path(id, i, dir, sizeof(dir), &file, &key);
		snprintf(path, sizeof(path), "%s/%s", dir, file);
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
	}
}

void cg_close_stats(int fds[CG_STAT_FDS])
{
	for (int i = 0; i < CG_STAT_FDS; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

void cg_read_usage(uint64_t id, const int fds[CG_STAT_FDS], struct cg_usage *u)
{
	memset(u, 0, sizeof(*u));
	u->peak_memory_bytes = stat_of(id, fds, CG_STAT_PEAK);
	u->oom_killed = stat_of(id, fds, CG_STAT_OOM) > 0;
	u->cpu_us = cg_cpu_us(id, fds);
}

uint64_t cg_cpu_us(uint64_t id, const int fds[CG_STAT_FDS])
{
	uint64_t v = stat_of(id, fds, CG_STAT_CPU);

	return mode == CG_V1 ? v / 1000 : v; /* v1: cpuacct.usage is in nanoseconds */
}

static void remove_dir(const char *dir)
{
	/* the last processes may still be leaving the group for a moment */
	for (int i = 0; i < 100; i++) {
		struct timespec ts = {0, 1000000};
		if (rmdir(dir) == 0 || errno == ENOENT)
			return;
		if (errno != EBUSY)
			break;
		nanosleep(&ts, NULL);
	}
	log_warn("cgroup: rmdir %s", dir);
}

void cg_destroy(uint64_t id)
{
	char dir[256];

	if (mode == CG_V2) {
		group_path(dir, sizeof(dir), NULL, id);
		remove_dir(dir);
	} else if (mode == CG_V1) {
		for (size_t i = 0; i < sizeof(v1_ctrls) / sizeof(v1_ctrls[0]); i++) {
			group_path(dir, sizeof(dir), v1_ctrls[i], id);
			remove_dir(dir); /* (ENOENT: a controller this host lacks) */
		}
	}
}
