/*
 * Control groups for sandboxes.
 *
 * Groups are named sb-<supervisor pid>-<serial>: several capiboxd (tests,
 * replicas) may share a machine. A group serves one supervisor slot's
 * sandboxes one after the other (cg_begin).
 *
 * v2: /sys/fs/cgroup/capibox/sb-<pid>-<serial>, with memory, pids and cpu enabled in
 *     capibox's subtree_control (capibox itself holds no process, as v2's
 *     no-internal-process rule wants). memory.max, memory.swap.max = 0,
 *     pids.max; memory.peak, memory.events (oom_kill), cpu.stat.
 * v1: /sys/fs/cgroup/{memory,pids,cpuacct}/capibox/sb-<pid>-<serial>.
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

/* Whether v1_ctrls[i] is mounted here (memory always is in v1 mode). */
static bool v1_ctrl_on(size_t i) { return (i != 1 || have_pids) && (i != 2 || have_cpu); }

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

/*
 * A group per supervisor slot, kept from one sandbox of the slot to the
 * next: its creation (a mkdir per hierarchy, its limits, its files opened)
 * and its removal (rmdir, then the kernel's teardown of each controller's
 * state in its workers) cost about 0.3 ms of CPU per execution, and a
 * removed memory group lingers in the kernel as long as any page is still
 * charged to it. A kept group is reset for its next sandbox (cg_begin): it
 * must be empty, its peak memory is reset, and its CPU time and OOM kills
 * are read as a baseline. Where the peak cannot be reset (cgroup v2 before
 * Linux 6.12) each sandbox gets a new group, as before.
 */
struct group {
	bool made;
	bool reusable;	 /* its peak memory can be reset */
	unsigned serial; /* in its name */
	uint64_t memory; /* its limits, as written */
	uint32_t procs;
	int stat_fds[CG_STAT_FDS];
	int live_fd; /* v1 pids.current / v2 cgroup.events: does anything live in it */
	int tasks_fds[CG_TASK_FDS]; /* v1: each hierarchy's tasks file (O_WRONLY) */
	int n_tasks;
	uint64_t cpu_base, oom_base; /* the counters at cg_begin */
};

static struct group *groups;
static unsigned n_groups;
static unsigned serials;

static void group_path(char *buf, size_t len, const char *ctrl, const struct group *gr)
{
	if (mode == CG_V2)
		snprintf(buf, len, "%.180s/capibox/sb-%d-%u", cg_root, (int)getpid(), gr->serial);
	else
		snprintf(buf, len, "%.150s/%.16s/capibox/sb-%d-%u", cg_root, ctrl, (int)getpid(),
			 gr->serial);
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

int cg_setup(unsigned n)
{
	groups = calloc(n, sizeof(*groups));
	if (groups == NULL)
		return -1;
	n_groups = n;
	for (unsigned i = 0; i < n; i++) {
		groups[i].live_fd = -1;
		for (int k = 0; k < CG_STAT_FDS; k++)
			groups[i].stat_fds[k] = -1;
	}
	return 0;
}

static struct group *group_at(unsigned g)
{
	return mode != CG_NONE && g < n_groups && groups[g].made ? &groups[g] : NULL;
}

/* Where each figure is: controller (v1), file, key (NULL: the file is the number). */
static const struct {
	const char *v1_ctrl, *v1_file, *v1_key, *v2_file, *v2_key;
} stat_files[CG_STAT_FDS] = {
	[CG_STAT_CPU] = {"cpuacct", "cpuacct.usage", NULL, "cpu.stat", "usage_usec"},
	[CG_STAT_PEAK] = {"memory", "memory.max_usage_in_bytes", NULL, "memory.peak", NULL},
	[CG_STAT_OOM] = {"memory", "memory.oom_control", "oom_kill", "memory.events", "oom_kill"},
};

static void stat_path(const struct group *gr, int which, char *dir, size_t dirlen,
		      const char **file, const char **key)
{
	if (mode == CG_V2) {
		group_path(dir, dirlen, NULL, gr);
		*file = stat_files[which].v2_file;
		*key = stat_files[which].v2_key;
	} else {
		group_path(dir, dirlen, stat_files[which].v1_ctrl, gr);
		*file = stat_files[which].v1_file;
		*key = stat_files[which].v1_key;
	}
}

/* A figure as the group's counter has it (no baseline taken off). */
static uint64_t stat_of(const struct group *gr, int which)
{
	char dir[256];
	const char *file, *key;

	if (mode == CG_V1 && which == CG_STAT_CPU && !have_cpu)
		return 0;
	stat_path(gr, which, dir, sizeof(dir), &file, &key);
	return read_stat(gr->stat_fds[which], dir, file, key);
}

/*
 * Opens what a group is read through: its figures (the peak read-write:
 * a write resets it; where the kernel does not allow that, the group is
 * not reusable), whether anything lives in it, and on v1 its tasks files.
 */
static int group_open(struct group *gr)
{
	char dir[256], path[320];
	const char *file, *key;

	for (int i = 0; i < CG_STAT_FDS; i++) {
		if (mode == CG_V1 && i == CG_STAT_CPU && !have_cpu)
			continue;
		stat_path(gr, i, dir, sizeof(dir), &file, &key);
		snprintf(path, sizeof(path), "%s/%s", dir, file);
		if (i == CG_STAT_PEAK) {
			gr->stat_fds[i] = open(path, O_RDWR | O_CLOEXEC);
			gr->reusable = gr->stat_fds[i] >= 0;
			if (gr->stat_fds[i] >= 0)
				continue;
		}
		gr->stat_fds[i] = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (mode == CG_V2)
		group_path(dir, sizeof(dir), NULL, gr);
	else
		group_path(dir, sizeof(dir), have_pids ? "pids" : "memory", gr);
	snprintf(path, sizeof(path), "%s/%s", dir,
		 mode == CG_V2 ? "cgroup.events" :
		 have_pids     ? "pids.current" :
				 "tasks");
	gr->live_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (gr->live_fd < 0)
		gr->reusable = false;
	gr->n_tasks = 0;
	if (mode != CG_V1)
		return 0;
	for (size_t i = 0; i < sizeof(v1_ctrls) / sizeof(v1_ctrls[0]); i++) {
		if (!v1_ctrl_on(i))
			continue;
		group_path(dir, sizeof(dir), v1_ctrls[i], gr);
		snprintf(path, sizeof(path), "%s/tasks", dir);
		gr->tasks_fds[gr->n_tasks] = open(path, O_WRONLY | O_CLOEXEC);
		if (gr->tasks_fds[gr->n_tasks] < 0)
			return -1;
		gr->n_tasks++;
	}
	return 0;
}

static void group_close(struct group *gr)
{
	for (int i = 0; i < CG_STAT_FDS; i++)
		if (gr->stat_fds[i] >= 0) {
			close(gr->stat_fds[i]);
			gr->stat_fds[i] = -1;
		}
	if (gr->live_fd >= 0)
		close(gr->live_fd);
	gr->live_fd = -1;
	while (gr->n_tasks > 0)
		close(gr->tasks_fds[--gr->n_tasks]);
}

/* Closes and removes group gr (its processes must be gone). */
static void group_remove(struct group *gr)
{
	char dir[256];

	group_close(gr);
	if (mode == CG_V2) {
		group_path(dir, sizeof(dir), NULL, gr);
		remove_dir(dir);
	} else {
		for (size_t i = 0; i < sizeof(v1_ctrls) / sizeof(v1_ctrls[0]); i++) {
			group_path(dir, sizeof(dir), v1_ctrls[i], gr);
			remove_dir(dir); /* (ENOENT: a controller this host lacks) */
		}
	}
	gr->made = false;
}

/* Whether nothing lives in gr any more (a process leaving is still counted). */
static bool group_empty(const struct group *gr)
{
	char buf[256];
	const char *p;

	if (gr->live_fd < 0 || pread_str(gr->live_fd, buf, sizeof(buf)) < 0)
		return false;
	if (mode == CG_V2) /* cgroup.events: "populated 0" */
		return (p = strstr(buf, "populated ")) != NULL && p[10] == '0';
	return have_pids ? strtoull(buf, NULL, 10) == 0 : buf[0] == '\0';
}

/* Writes gr's limits where they differ from what it has. */
static int group_limits(struct group *gr, uint64_t memory_bytes, uint32_t max_processes, char *err,
			size_t errlen)
{
	char dir[256], val[32], pids[32];

	snprintf(val, sizeof(val), "%" PRIu64, memory_bytes);
	/* pids.max counts the sandbox's init too */
	snprintf(pids, sizeof(pids), "%" PRIu32, max_processes + 1);
	if (mode == CG_V2) {
		group_path(dir, sizeof(dir), NULL, gr);
		if (gr->memory != memory_bytes && set_file(dir, "memory.max", val, err, errlen) < 0)
			return -1;
		gr->memory = memory_bytes;
		if (have_pids && gr->procs != max_processes &&
		    set_file(dir, "pids.max", pids, err, errlen) < 0)
			return -1;
		gr->procs = max_processes;
		return 0;
	}
	group_path(dir, sizeof(dir), "memory", gr);
	/* memsw must never be below the limit: lower the limit first, raise
	 * memsw first */
	if (gr->memory == memory_bytes) {
		/* as it is */
	} else if (memory_bytes < gr->memory) {
		if (set_file(dir, "memory.limit_in_bytes", val, err, errlen) < 0 ||
		    (v1_memsw &&
		     set_file(dir, "memory.memsw.limit_in_bytes", val, err, errlen) < 0))
			return -1;
	} else if ((v1_memsw &&
		    set_file(dir, "memory.memsw.limit_in_bytes", val, err, errlen) < 0) ||
		   set_file(dir, "memory.limit_in_bytes", val, err, errlen) < 0) {
		return -1;
	}
	gr->memory = memory_bytes;
	if (have_pids && gr->procs != max_processes) {
		group_path(dir, sizeof(dir), "pids", gr);
		if (set_file(dir, "pids.max", pids, err, errlen) < 0)
			return -1;
	}
	gr->procs = max_processes;
	return 0;
}

/* Makes group gr, new, with its limits. */
static int group_make(struct group *gr, uint64_t memory_bytes, uint32_t max_processes, char *err,
		      size_t errlen)
{
	char dir[256];

	gr->serial = ++serials;
	gr->made = true;
	/* a new group's limits are the kernel's "max": write them all */
	gr->memory = UINT64_MAX;
	gr->procs = UINT32_MAX;
	if (mode == CG_V2) {
		group_path(dir, sizeof(dir), NULL, gr);
		if (mkdir(dir, 0755) < 0) {
			snprintf(err, errlen, "cgroup: mkdir %s: %s", dir, strerror(errno));
			gr->made = false;
			return -1;
		}
		if (set_file(dir, "memory.swap.max", "0", err, errlen) < 0)
			goto fail;
	} else {
		for (size_t i = 0; i < sizeof(v1_ctrls) / sizeof(v1_ctrls[0]); i++) {
			if (!v1_ctrl_on(i))
				continue;
			group_path(dir, sizeof(dir), v1_ctrls[i], gr);
			if (mkdir(dir, 0755) < 0) {
				snprintf(err, errlen, "cgroup: mkdir %s: %s", dir, strerror(errno));
				goto fail;
			}
		}
		group_path(dir, sizeof(dir), "memory", gr);
		if (set_file(dir, "memory.swappiness", "0", err, errlen) < 0)
			goto fail;
	}
	if (group_limits(gr, memory_bytes, max_processes, err, errlen) < 0)
		goto fail;
	if (group_open(gr) < 0) {
		snprintf(err, errlen, "cgroup: open a tasks file: %s", strerror(errno));
		goto fail;
	}
	return 0;
fail:
	group_remove(gr);
	return -1;
}

int cg_begin(unsigned g, uint64_t memory_bytes, uint32_t max_processes, char *err, size_t errlen)
{
	struct group *gr;
	char ignored[160];

	if (mode == CG_NONE)
		return 0;
	if (g >= n_groups) {
		snprintf(err, errlen, "cgroup: no group %u", g);
		return -1;
	}
	gr = &groups[g];
	/* a kept group: empty, its limits the request's, its peak reset; if
	 * any of that fails, a new group instead */
	if (gr->made &&
	    (!gr->reusable || !group_empty(gr) ||
	     group_limits(gr, memory_bytes, max_processes, ignored, sizeof(ignored)) < 0 ||
	     pwrite(gr->stat_fds[CG_STAT_PEAK], "0", 1, 0) != 1))
		group_remove(gr);
	if (!gr->made && group_make(gr, memory_bytes, max_processes, err, errlen) < 0)
		return -1;
	gr->cpu_base = stat_of(gr, CG_STAT_CPU);
	gr->oom_base = stat_of(gr, CG_STAT_OOM);
	return 0;
}

void cg_end(unsigned g)
{
	struct group *gr = group_at(g);

	if (gr != NULL && !gr->reusable)
		group_remove(gr);
}

void cg_remove_all(void)
{
	for (unsigned g = 0; g < n_groups; g++)
		if (groups[g].made)
			group_remove(&groups[g]);
}

int cg_set_limits(unsigned g, uint64_t memory_bytes, uint32_t max_processes, char *err,
		  size_t errlen)
{
	struct group *gr = group_at(g);

	return gr == NULL ? 0 : group_limits(gr, memory_bytes, max_processes, err, errlen);
}

int cg_attach(unsigned g, pid_t pid, char *err, size_t errlen)
{
	struct group *gr = group_at(g);
	char dir[256], val[32];

	/* v1: the sandbox's init joins its groups itself (cg_open_tasks) */
	if (mode != CG_V2 || gr == NULL)
		return 0;
	snprintf(val, sizeof(val), "%d", (int)pid);
	group_path(dir, sizeof(dir), NULL, gr);
	return set_file(dir, "cgroup.procs", val, err, errlen);
}

int cg_open_tasks(unsigned g, int fds[CG_TASK_FDS])
{
	struct group *gr = group_at(g);
	int n = 0;

	if (mode != CG_V1 || gr == NULL)
		return 0;
	for (; n < gr->n_tasks; n++) {
		fds[n] = fcntl(gr->tasks_fds[n], F_DUPFD_CLOEXEC, 0);
		if (fds[n] < 0) {
			int e = errno;
			while (n > 0)
				close(fds[--n]);
			errno = e;
			return -1;
		}
	}
	return n;
}

int cg_open(unsigned g)
{
	struct group *gr = group_at(g);
	char dir[256];

	if (mode != CG_V2 || gr == NULL)
		return -1;
	group_path(dir, sizeof(dir), NULL, gr);
	return open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

void cg_kill(unsigned g)
{
	struct group *gr = group_at(g);
	char dir[256], path[320];

	if (mode != CG_V2 || gr == NULL)
		return;
	group_path(dir, sizeof(dir), NULL, gr);
	snprintf(path, sizeof(path), "%s/cgroup.kill", dir);
	/* absent before Linux 5.14: killing init is enough there */
	if (write_str(path, "1") < 0 && errno != ENOENT)
		log_warn("cgroup: %s", path);
}

void cg_read_usage(unsigned g, struct cg_usage *u)
{
	const struct group *gr = group_at(g);

	memset(u, 0, sizeof(*u));
	if (gr == NULL)
		return;
	u->peak_memory_bytes = stat_of(gr, CG_STAT_PEAK);
	u->oom_killed = stat_of(gr, CG_STAT_OOM) > gr->oom_base;
	u->cpu_us = cg_cpu_us(g);
}

uint64_t cg_cpu_us(unsigned g)
{
	const struct group *gr = group_at(g);
	uint64_t v;

	if (gr == NULL)
		return 0;
	v = stat_of(gr, CG_STAT_CPU);
	v = v > gr->cpu_base ? v - gr->cpu_base : 0;
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
