/*
 * parts: where the time of making one of today's sandboxes goes.
 *
 * Re-enacts sandbox_spawn() (server/sandbox/sandbox.c) step by step, with
 * the product's own mounts_setup(), mounts_seal_root() and
 * seccomp_install() linked in, and times each step: wall (CLOCK_MONOTONIC)
 * and CPU (the thread's CPU clock of whoever runs the step; the
 * interpreter's from its rusage). Not product code: a bench prototype.
 *
 *   parts ROOT_DIR N [python|none] [cg]
 *
 * ROOT_DIR: an empty directory the sandbox uids can traverse (mode 0711
 * parents). "cg" adds the cgroup v1 steps (mkdir + limits + attach of the
 * memory, pids and cpuacct groups /sys/fs/cgroup/X/capibox-zygote/p-PID,
 * then rmdir). Host uids 6100000 + i % 64.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../server/sandbox/sandbox.h"
#include "../../server/sandbox/seccomp.h"

#define FLAGS7                                                                                     \
	(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | \
	 CLONE_NEWCGROUP)
#define UID_BASE 6100000u
#define MAXN 2000

enum part {
	P_CLONE,     /* parent: clone() with the 7 flags */
	P_MAPS,	     /* parent: uid_map, setgroups, gid_map */
	P_CG_MKDIR,  /* parent: 3 x mkdir + memory/pids limits */
	P_CG_ATTACH, /* parent: 3 x write cgroup.procs */
	P_IDENTITY,  /* child: setgroups, setresgid, setresuid */
	P_MOUNTS,    /* child: mounts_setup() incl. pivot_root */
	P_NET_UTS,   /* child: hostname, lo up */
	P_SEAL,	     /* child: root read-only */
	P_FORK,	     /* child: fork of the runner (init side) */
	P_DROP,	     /* runner: rlimits, caps, no_new_privs */
	P_SECCOMP,   /* runner: seccomp_install() */
	P_EXEC,	     /* release -> interpreter ready (wall), interpreter CPU */
	P_EXIT,	     /* interpreter ready -> init reaped by us */
	P_CG_RMDIR,  /* parent: 3 x rmdir */
	P_TOTAL,     /* clone -> interpreter ready */
	NPARTS
};
static const char *const part_name[NPARTS] = {
	"clone (7 namespaces)", "uid/gid maps",	   "cgroup v1 mkdir+limits",
	"cgroup v1 attach",	"identity",	   "mounts + pivot_root",
	"hostname + lo",	"seal root ro",	   "fork runner",
	"rlimits+caps+nnp",	"seccomp load",	   "exec python to ready",
	"exit + reap",		"cgroup v1 rmdir", "TOTAL clone->ready",
};

struct times {
	long wall[NPARTS]; /* us */
	long cpu[NPARTS];  /* us */
};

static long now_us(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

#define MONO() now_us(CLOCK_MONOTONIC)
#define TCPU() now_us(CLOCK_THREAD_CPUTIME_ID)

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

static const char *const ctrls[] = {"memory", "pids", "cpuacct"};

static int drop_caps(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];

	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			return -1;
	memset(data, 0, sizeof(data));
	return (int)syscall(SYS_capset, &hdr, data);
}

/* child side record, sent to the parent over the report pipe */
struct child_rec {
	long wall[NPARTS], cpu[NPARTS];
	long py_cpu_us;
	int err;
	char msg[160];
};

static void lo_up(void)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		die("lo");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		die("lo up");
	close(s);
}

static __attribute__((noreturn)) void child(const char *root, int sync_r, int rep_w, int ready_w,
					    int python)
{
	struct sandbox_spec spec = {.root_dir = root, .tmpfs_bytes = 128u << 20};
	struct child_rec r;
	long w, c;
	char b, err[200];
	int xs[2];
	pid_t runner;

	memset(&r, 0, sizeof(r));
	if (read(sync_r, &b, 1) != 1)
		_exit(1);
	w = MONO(), c = TCPU();
	if (setgroups(0, NULL) < 0 && errno != EPERM)
		die("setgroups");
	if (setresgid(1000, 1000, 1000) < 0 || setresuid(1000, 1000, 1000) < 0)
		die("setresuid");
	r.wall[P_IDENTITY] = MONO() - w, r.cpu[P_IDENTITY] = TCPU() - c;
	w = MONO(), c = TCPU();
	if (mounts_setup(&spec, err, sizeof(err)) < 0) {
		fprintf(stderr, "mounts: %s\n", err);
		_exit(1);
	}
	r.wall[P_MOUNTS] = MONO() - w, r.cpu[P_MOUNTS] = TCPU() - c;
	w = MONO(), c = TCPU();
	if (sethostname("sandbox", 7) < 0)
		die("sethostname");
	lo_up();
	r.wall[P_NET_UTS] = MONO() - w, r.cpu[P_NET_UTS] = TCPU() - c;
	w = MONO(), c = TCPU();
	if (mounts_seal_root(err, sizeof(err)) < 0) {
		fprintf(stderr, "seal: %s\n", err);
		_exit(1);
	}
	r.wall[P_SEAL] = MONO() - w, r.cpu[P_SEAL] = TCPU() - c;
	/* the runner reports its own steps through xs */
	if (pipe2(xs, O_CLOEXEC) < 0)
		die("pipe");
	w = MONO(), c = TCPU();
	runner = fork();
	if (runner < 0)
		die("fork");
	if (runner == 0) {
		long t[4];
		t[0] = MONO(), t[1] = TCPU();
		struct rlimit rl = {0, 0};
		setrlimit(RLIMIT_CORE, &rl);
		rl.rlim_cur = rl.rlim_max = 1024;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (drop_caps() < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			die("drop");
		t[2] = MONO() - t[0], t[3] = TCPU() - t[1];
		t[0] = MONO(), t[1] = TCPU();
		if (seccomp_install(err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			_exit(1);
		}
		t[0] = MONO() - t[0], t[1] = TCPU() - t[1];
		long out[4] = {t[2], t[3], t[0], t[1]};
		if (write(xs[1], out, sizeof(out)) != sizeof(out))
			_exit(1);
		if (dup2(ready_w, 3) != 3)
			_exit(1);
		if (python) {
			char *argv[] = {"/usr/bin/python3", "-u", "-c",
					"import os, atexit, gc, threading\nos.write(3, b'r')\n",
					NULL};
			char *envp[] = {"PATH=/usr/bin:/bin", "HOME=/home/user", "LANG=C.UTF-8",
					NULL};
			execve(argv[0], argv, envp);
		} else {
			char *argv[] = {"/bin/true", NULL};
			if (write(3, "r", 1) != 1)
				_exit(1);
			execve(argv[0], argv, NULL);
		}
		_exit(127);
	}
	r.wall[P_FORK] = MONO() - w, r.cpu[P_FORK] = TCPU() - c;
	close(xs[1]);
	close(ready_w);
	{
		long out[4];
		if (read(xs[0], out, sizeof(out)) != sizeof(out))
			_exit(1);
		r.wall[P_DROP] = out[0], r.cpu[P_DROP] = out[1];
		r.wall[P_SECCOMP] = out[2], r.cpu[P_SECCOMP] = out[3];
	}
	{
		int st;
		struct rusage ru;
		while (waitpid(runner, &st, 0) < 0 && errno == EINTR)
			;
		getrusage(RUSAGE_CHILDREN, &ru);
		r.py_cpu_us = ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec +
			      ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec;
	}
	if (write(rep_w, &r, sizeof(r)) != sizeof(r))
		_exit(1);
	_exit(0);
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return x < y ? -1 : x > y;
}

/* sorts v; returns its q-quantile (0.5: median) */
static long quant(long *v, int n, double q)
{
	qsort(v, (size_t)n, sizeof(long), cmp_long);
	return v[(int)(q * (n - 1) + 0.5)];
}

int main(int argc, char **argv)
{
	static struct times t[MAXN];
	int n, python = 1, cg = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: parts ROOT_DIR N [python|none] [cg]\n");
		return 2;
	}
	n = (int)strtol(argv[2], NULL, 10);
	if (n < 1 || n > MAXN)
		return 2;
	if (argc > 3 && strcmp(argv[3], "none") == 0)
		python = 0;
	if (argc > 4 && strcmp(argv[4], "cg") == 0)
		cg = 1;
	if (cg)
		for (size_t k = 0; k < 3; k++) {
			char p[256];
			snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/capibox-zygote", ctrls[k]);
			if (mkdir(p, 0755) < 0 && errno != EEXIST)
				die(p);
		}
	for (int i = 0; i < n; i++) {
		int sync[2], rep[2], ready[2], st;
		long w, c, w_release, w_ready;
		char path[256], map[64], b;
		struct child_rec r;
		unsigned uid = UID_BASE + (unsigned)(i % 64);
		pid_t pid;

		memset(&t[i], 0, sizeof(t[i]));
		if (pipe2(sync, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0 ||
		    pipe2(ready, O_CLOEXEC) < 0)
			die("pipe");
		w = MONO(), c = TCPU();
		pid = (pid_t)syscall(SYS_clone, FLAGS7 | SIGCHLD, NULL, NULL, NULL, NULL);
		if (pid < 0)
			die("clone");
		if (pid == 0) {
			close(sync[1]);
			close(rep[0]);
			close(ready[0]);
			child(argv[1], sync[0], rep[1], ready[1], python);
		}
		t[i].wall[P_CLONE] = MONO() - w, t[i].cpu[P_CLONE] = TCPU() - c;
		close(sync[0]);
		close(rep[1]);
		close(ready[1]);
		w = MONO(), c = TCPU();
		snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
		snprintf(map, sizeof(map), "1000 %u 1\n", uid);
		if (write_str(path, map) < 0)
			die("uid_map");
		snprintf(path, sizeof(path), "/proc/%d/setgroups", pid);
		if (write_str(path, "deny") < 0)
			die("setgroups");
		snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
		if (write_str(path, map) < 0)
			die("gid_map");
		t[i].wall[P_MAPS] = MONO() - w, t[i].cpu[P_MAPS] = TCPU() - c;
		if (cg) {
			w = MONO(), c = TCPU();
			for (size_t k = 0; k < 3; k++) {
				snprintf(path, sizeof(path),
					 "/sys/fs/cgroup/%s/capibox-zygote/p-%d", ctrls[k], pid);
				if (mkdir(path, 0755) < 0)
					die(path);
			}
			snprintf(path, sizeof(path),
				 "/sys/fs/cgroup/memory/capibox-zygote/p-%d/memory.limit_in_bytes",
				 pid);
			if (write_str(path, "536870912") < 0)
				die(path);
			snprintf(path, sizeof(path),
				 "/sys/fs/cgroup/pids/capibox-zygote/p-%d/pids.max", pid);
			if (write_str(path, "65") < 0)
				die(path);
			t[i].wall[P_CG_MKDIR] = MONO() - w, t[i].cpu[P_CG_MKDIR] = TCPU() - c;
			w = MONO(), c = TCPU();
			snprintf(map, sizeof(map), "%d", pid);
			for (size_t k = 0; k < 3; k++) {
				snprintf(path, sizeof(path),
					 "/sys/fs/cgroup/%s/capibox-zygote/p-%d/cgroup.procs",
					 ctrls[k], pid);
				if (write_str(path, map) < 0)
					die(path);
			}
			t[i].wall[P_CG_ATTACH] = MONO() - w, t[i].cpu[P_CG_ATTACH] = TCPU() - c;
		}
		w_release = MONO();
		if (write(sync[1], "g", 1) != 1)
			die("release");
		close(sync[1]);
		if (read(ready[0], &b, 1) != 1) {
			fprintf(stderr, "child %d never got ready\n", i);
			exit(1);
		}
		w_ready = MONO();
		close(ready[0]);
		if (read(rep[0], &r, sizeof(r)) != sizeof(r))
			die("report");
		close(rep[0]);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		t[i].wall[P_EXIT] = MONO() - w_ready;
		for (int p = P_IDENTITY; p <= P_SECCOMP; p++)
			t[i].wall[p] = r.wall[p], t[i].cpu[p] = r.cpu[p];
		{
			long before = 0;
			for (int p = P_IDENTITY; p <= P_SECCOMP; p++)
				before += r.wall[p];
			t[i].wall[P_EXEC] = w_ready - w_release - before;
		}
		t[i].cpu[P_EXEC] = r.py_cpu_us;
		t[i].wall[P_TOTAL] = w_ready - (w_release - t[i].wall[P_CLONE] - t[i].wall[P_MAPS] -
						t[i].wall[P_CG_MKDIR] - t[i].wall[P_CG_ATTACH]);
		if (cg) {
			w = MONO(), c = TCPU();
			for (size_t k = 0; k < 3; k++) {
				snprintf(path, sizeof(path),
					 "/sys/fs/cgroup/%s/capibox-zygote/p-%d", ctrls[k], pid);
				while (rmdir(path) < 0) {
					if (errno != EBUSY)
						die(path);
					usleep(100);
				}
			}
			t[i].wall[P_CG_RMDIR] = MONO() - w, t[i].cpu[P_CG_RMDIR] = TCPU() - c;
		}
	}
	printf("%-24s %10s %10s %10s   (%d runs, us; runner=%s)\n", "part", "wall p50", "wall p90",
	       "cpu p50", n, python ? "python3" : "/bin/true");
	for (int p = 0; p < NPARTS; p++) {
		static long v[MAXN], u[MAXN];
		if (!cg && (p == P_CG_MKDIR || p == P_CG_ATTACH || p == P_CG_RMDIR))
			continue;
		for (int i = 0; i < n; i++)
			v[i] = t[i].wall[p], u[i] = t[i].cpu[p];
		printf("%-24s %10ld %10ld %10ld\n", part_name[p], quant(v, n, 0.5),
		       quant(v, n, 0.9), quant(u, n, 0.5));
	}
	if (cg)
		for (size_t k = 0; k < 3; k++) {
			char p[256];
			snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/capibox-zygote", ctrls[k]);
			rmdir(p);
		}
	return 0;
}
