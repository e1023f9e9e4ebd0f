/*
 * _zyg: the C half of the zygote prototype (a CPython extension module).
 *
 * zygote.py (a python3 that has imported what it should share) calls
 * spawn() once per request. spawn() clones the zygote straight into fresh
 * user, pid, mount, net, ipc and uts namespaces (CLONE_NEWCGROUP comes
 * later, after the supervisor has attached the child to its cgroup), and
 * writes the child's id maps: uid/gid 1000 inside = uid K of the zygote's
 * own user namespace = host uid base + K, one per live sandbox, as today.
 *
 * The child is the sandbox's pid 1 (init). It never runs Python again: it
 * waits for "go" (the supervisor's cgroup attach is done), builds what
 * must be fresh per sandbox (a proc of its pid namespace with the host
 * entries masked, tmpfs /tmp, /home/user and /.capibox, hostname, lo),
 * forks the runner with glibc's fork() and reaps. The runner drops every
 * capability, sets no_new_privs, loads the product's seccomp filter and
 * returns into Python (spawn() returns None there) to run the code.
 *
 * The zygote never reads a request's content: code (and in a product,
 * files, environment, stdin) arrive as descriptors that only the child
 * reads. A fork copies the zygote's whole heap, so whatever the zygote
 * once held would be readable by every later sandbox.
 *
 * Not product code: a bench prototype (bench/zygote/README).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
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

#include "../../server/sandbox/seccomp.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

#define ZFLAGS \
	(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)

/* the same masks as server/sandbox/mounts.c */
static const char *const proc_masked_files[] = {
	"kcore",       "sysrq-trigger", "kallsyms",	 "keys",      "key-users",
	"timer_list",  "sched_debug",	"latency_stats", "kmsg",      "kpagecount",
	"kpageflags",  "kpagecgroup",	"config.gz",	 "modules",   "slabinfo",
	"vmallocinfo", "iomem",		"ioports",	 "buddyinfo", "pagetypeinfo",
};
static const char *const proc_masked_dirs[] = {"acpi", "scsi", "bus", "fs", "irq", "tty", "driver"};

/* what init reports on its report descriptor when the runner has ended */
struct zyg_report {
	int32_t type; /* 1 exit, 2 setup error */
	int32_t wstatus;
	int64_t setup_us;  /* go -> runner forked (init's wall) */
	int64_t setup_cpu; /* init's CPU for it */
	int64_t utime_us;  /* runner's */
	int64_t stime_us;
	int64_t maxrss_kb;
	int64_t run_us; /* runner forked -> reaped (init's wall) */
	char msg[128];
};

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int64_t cpu_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

static __attribute__((noreturn)) void init_fail(int rep, const char *what)
{
	struct zyg_report r;

	memset(&r, 0, sizeof(r));
	r.type = 2;
	snprintf(r.msg, sizeof(r.msg), "%s: %s", what, strerror(errno));
	if (write(rep, &r, sizeof(r)) < 0)
		_exit(3);
	_exit(2);
}

static int drop_caps(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];

	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			return -1;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -1;
	memset(data, 0, sizeof(data));
	return (int)syscall(SYS_capset, &hdr, data);
}

static int mount_proc_masked(void)
{
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(proc_masked_files) / sizeof(proc_masked_files[0]); i++) {
		char p[64];
		snprintf(p, sizeof(p), "/proc/%s", proc_masked_files[i]);
		if (access(p, F_OK) != 0)
			continue;
		if (mount("/dev/null", p, NULL, MS_BIND, NULL) < 0)
			return -1;
	}
	for (size_t i = 0; i < sizeof(proc_masked_dirs) / sizeof(proc_masked_dirs[0]); i++) {
		char p[64];
		snprintf(p, sizeof(p), "/proc/%s", proc_masked_dirs[i]);
		if (access(p, F_OK) != 0)
			continue;
		if (mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  "size=0,mode=0555") < 0)
			return -1;
	}
	if (mount("/proc/sys", "/proc/sys", NULL, MS_BIND | MS_REC, NULL) < 0 ||
	    mount(NULL, "/proc/sys", NULL,
		  MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return -1;
	return 0;
}

static int lo_up(void)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc = -1;

	if (s < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		rc = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	close(s);
	return rc;
}

/* Copies the code memfd to /.capibox/main.py (a fresh tmpfs, then read-only). */
static int place_code(int code_fd, unsigned tmpfs_mb)
{
	char buf[65536], opts[96];
	ssize_t n;
	off_t off = 0;
	int fd;

	if (mount("tmpfs", "/.capibox", "tmpfs", MS_NOSUID | MS_NODEV, "size=2m,mode=0755") < 0)
		return -1;
	fd = open("/.capibox/main.py", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
	if (fd < 0)
		return -1;
	while ((n = pread(code_fd, buf, sizeof(buf), off)) > 0) {
		if (write(fd, buf, (size_t)n) != n) {
			close(fd);
			return -1;
		}
		off += n;
	}
	close(fd);
	if (n < 0)
		return -1;
	if (mount(NULL, "/.capibox", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
		  NULL) < 0)
		return -1;
	snprintf(opts, sizeof(opts), "size=%um,mode=1777", tmpfs_mb);
	if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
		return -1;
	snprintf(opts, sizeof(opts), "size=%um,mode=0755,uid=1000,gid=1000", tmpfs_mb);
	if (mount("tmpfs", "/home/user", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
		return -1;
	return 0;
}

/* the runner: what is left before Python runs the user's code */
static int runner_lockdown(int in, int out, int err)
{
	char msg[160];
	struct rlimit rl;

	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		return -1;
	/* nothing of the zygote's descriptors survives (spawn kept only ours) */
	if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
		return -1;
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	/* python ignores SIGPIPE and handles SIGINT itself: as in a fresh start */
	signal(SIGPIPE, SIG_IGN);
	rl.rlim_cur = rl.rlim_max = 0;
	if (setrlimit(RLIMIT_CORE, &rl) < 0)
		return -1;
	rl.rlim_cur = rl.rlim_max = 1024;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	rl.rlim_cur = rl.rlim_max = 65;
	if (setrlimit(RLIMIT_NPROC, &rl) < 0)
		return -1;
	if (drop_caps() < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	if (seccomp_install(msg, sizeof(msg)) < 0) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/* Closes every descriptor except those in keep (as sandbox.c does). */
static void close_all_but(int *keep, size_t n)
{
	unsigned next = 0;

	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];
			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned)keep[i] > next)
			syscall(SYS_close_range, next, (unsigned)keep[i] - 1, 0);
		if ((unsigned)keep[i] + 1 > next)
			next = (unsigned)keep[i] + 1;
	}
	syscall(SYS_close_range, next, ~0U, 0);
}

/* pid 1 of the new sandbox; returns only in the runner */
static void child_main(int k, int fin, int fout, int ferr, int rep, int go, int code,
		       unsigned tmpfs_mb)
{
	struct zyg_report r;
	int64_t w, c;
	pid_t runner;
	char b;
	int status = 0;

	/* keep only our descriptors (the zygote's sockets and everything else go) */
	{
		int keep[] = {0, 1, 2, fin, fout, ferr, rep, go, code};
		close_all_but(keep, sizeof(keep) / sizeof(keep[0]));
	}
	signal(SIGCHLD, SIG_DFL); /* the zygote ignores it (auto-reap); init must wait */
	while (read(go, &b, 1) < 0 && errno == EINTR)
		;
	close(go);
	w = mono_us(), c = cpu_us();
	(void)k;
	/* now that the supervisor has attached us: our cgroup is our cgroup root */
	if (unshare(CLONE_NEWCGROUP) < 0)
		init_fail(rep, "unshare cgroup");
	if (setresgid(1000, 1000, 1000) < 0 || setresuid(1000, 1000, 1000) < 0)
		init_fail(rep, "setresuid");
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		init_fail(rep, "pdeathsig");
	if (mount_proc_masked() < 0)
		init_fail(rep, "proc");
	if (place_code(code, tmpfs_mb) < 0)
		init_fail(rep, "tmpfs");
	close(code);
	if (sethostname("sandbox", 7) < 0 || lo_up() < 0)
		init_fail(rep, "uts/net");
	if (chdir("/home/user") < 0)
		init_fail(rep, "chdir");
	runner = fork();
	if (runner < 0)
		init_fail(rep, "fork");
	if (runner == 0) {
		close(rep);
		if (runner_lockdown(fin, fout, ferr) < 0) {
			dprintf(2, "zygote runner: %s\n", strerror(errno));
			_exit(126);
		}
		PyOS_AfterFork_Child();
		return;
	}
	memset(&r, 0, sizeof(r));
	r.setup_us = mono_us() - w;
	r.setup_cpu = cpu_us() - c;
	w = mono_us();
	close(fin);
	close(fout);
	close(ferr);
	(void)drop_caps();
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, 0);
		if (p < 0 && errno == EINTR)
			continue;
		if (p < 0)
			break;
		if (p == runner) {
			status = st;
			break;
		}
	}
	r.run_us = mono_us() - w;
	{
		struct rusage ru;
		getrusage(RUSAGE_CHILDREN, &ru);
		r.utime_us = ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec;
		r.stime_us = ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec;
		r.maxrss_kb = ru.ru_maxrss;
	}
	r.type = 1;
	r.wstatus = status;
	if (write(rep, &r, sizeof(r)) < 0)
		_exit(3);
	_exit(0);
}

/*
 * spawn(k, stdin, stdout, stderr, report, go, code, tmpfs_mb)
 *   zygote: returns (pid, pidfd, clone_us, maps_us)
 *   runner: returns None
 */
static PyObject *zyg_spawn(PyObject *self, PyObject *args)
{
	int k, fin, fout, ferr, rep, go, code, pidfd = -1;
	unsigned tmpfs_mb;
	char path[64], map[64];
	int64_t t0, t1, t2;
	long pid;

	(void)self;
	if (!PyArg_ParseTuple(args, "iiiiiiiI", &k, &fin, &fout, &ferr, &rep, &go, &code,
			      &tmpfs_mb))
		return NULL;
	t0 = mono_us();
	PyOS_BeforeFork();
	/* raw clone behaves like fork here: the zygote is single-threaded
	 * (zygote.py checks), and the child never returns to Python; its own
	 * child, the runner, is made by glibc's fork() */
	pid = syscall(SYS_clone, ZFLAGS | CLONE_PIDFD | SIGCHLD, NULL, &pidfd, NULL, NULL);
	if (pid == 0) {
		child_main(k, fin, fout, ferr, rep, go, code, tmpfs_mb);
		Py_RETURN_NONE; /* the runner */
	}
	PyOS_AfterFork_Parent();
	if (pid < 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	t1 = mono_us();
	snprintf(map, sizeof(map), "1000 %d 1\n", k);
	snprintf(path, sizeof(path), "/proc/%ld/uid_map", pid);
	if (write_file(path, map) < 0)
		goto fail;
	snprintf(path, sizeof(path), "/proc/%ld/setgroups", pid);
	if (write_file(path, "deny") < 0)
		goto fail;
	snprintf(path, sizeof(path), "/proc/%ld/gid_map", pid);
	if (write_file(path, map) < 0)
		goto fail;
	t2 = mono_us();
	return Py_BuildValue("(liLL)", pid, pidfd, (long long)(t1 - t0), (long long)(t2 - t1));
fail:
	PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
	kill((pid_t)pid, SIGKILL);
	close(pidfd);
	return NULL;
}

/* threads(): the number of threads of this process (must be 1 to clone safely) */
static PyObject *zyg_threads(PyObject *self, PyObject *noargs)
{
	char buf[4096], *p;
	ssize_t n;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

	(void)self, (void)noargs;
	if (fd < 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	buf[n] = '\0';
	p = strstr(buf, "\nThreads:");
	return PyLong_FromLong(p ? strtol(p + 9, NULL, 10) : -1);
}

static PyMethodDef methods[] = {
	{"spawn", zyg_spawn, METH_VARARGS, "clone a sandbox from this zygote"},
	{"threads", zyg_threads, METH_NOARGS, "threads of this process"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "_zyg", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__zyg(void);
PyMODINIT_FUNC PyInit__zyg(void) { return PyModule_Create(&module); }
