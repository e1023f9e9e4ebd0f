/*
 * One sandbox: clone into fresh namespaces (parent side), then, in the
 * child, an ordered list of checked setup steps, the runner and init.
 *
 * Identity: the child's only mapped ids are uid/gid 1000 inside <-> one
 * unprivileged host uid/gid per live sandbox. Host root (uid 0) is not
 * mapped, so the host's root-owned files are "nobody" inside and the
 * namespace's capabilities never reach them. The child keeps capabilities
 * over its own namespaces only long enough to mount; the runner drops all
 * of them (bounding set included) and sets no_new_privs before exec, so
 * user code is uid 1000 with an empty capability set and setuid binaries
 * gain nothing.
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../ipc.h"
#include "../proctitle.h"
#include "collect.h"
#include "payload.h"
#include "runners/python_zygote.h"
#include "seccomp.h"

/* init only: the request's collect globs (NULL: none), from the payload */
static char **collect_globs;

#define CLONE_FLAGS                                                                                \
	(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | \
	 CLONE_NEWCGROUP)

static int write_file_str(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* ---- child side --------------------------------------------------------- */

struct child {
	const struct sandbox_spec *spec;
	int report_fd;
	int sync_fd;
	int go_fd;    /* warm: the runner's end of the go pipe (its fd 3) */
	bool session; /* the take made the runner a session's (it loops over cells) */
	char err[160];
};

static void report(int fd, const struct sandbox_report *r)
{
	ssize_t n;

	do {
		n = write(fd, r, sizeof(*r));
	} while (n < 0 && errno == EINTR);
}

static __attribute__((noreturn)) void child_fail(struct child *c, unsigned step)
{
	struct sandbox_report r = {.type = SANDBOX_REPORT_ERROR, .step = step, .err = errno};

	snprintf(r.msg, sizeof(r.msg), "%s", c->err);
	report(c->report_fd, &r);
	_exit(1);
}

#define STEP_FAIL(c, ...)                                                                 \
	do {                                                                              \
		int saved_ = errno;                                                       \
		snprintf((c)->err, sizeof((c)->err), __VA_ARGS__);                        \
		size_t l_ = strlen((c)->err);                                             \
		snprintf((c)->err + l_, sizeof((c)->err) - l_, ": %s", strerror(saved_)); \
		errno = saved_;                                                           \
		return -1;                                                                \
	} while (0)

/* Waits until the supervisor has written our id maps. */
static int step_wait_maps(struct child *c)
{
	char b;
	ssize_t n;

	do {
		n = read(c->sync_fd, &b, 1);
	} while (n < 0 && errno == EINTR);
	if (n != 1) {
		errno = EPIPE;
		STEP_FAIL(c, "supervisor went away");
	}
	close(c->sync_fd);
	/* cgroup v1: join our groups ourselves, before anything runs */
	for (unsigned i = 0; i < c->spec->n_cgroup_tasks; i++) {
		if (write(c->spec->cgroup_tasks[i], "0", 1) != 1)
			STEP_FAIL(c, "join the sandbox's cgroup");
		close(c->spec->cgroup_tasks[i]);
	}
	return 0;
}

/* Becomes uid/gid 1000 with no supplementary groups. */
static int step_identity(struct child *c)
{
	if (setgroups(0, NULL) < 0 && errno != EPERM)
		STEP_FAIL(c, "setgroups");
	if (setresgid(SANDBOX_GID, SANDBOX_GID, SANDBOX_GID) < 0)
		STEP_FAIL(c, "setresgid");
	/* our old uid (host root) is not mapped here, so this does not clear the
	 * namespace capabilities we still need for mounting */
	if (setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID) < 0)
		STEP_FAIL(c, "setresuid");
	return 0;
}

/*
 * If the supervisor dies, so do we, and with us, as pid 1, the whole
 * sandbox. Set after the identity change: changing credentials clears the
 * parent-death signal. A supervisor that died before this point is seen as
 * an error on the report pipe, whose only reader it was.
 */
static int step_die_with_supervisor(struct child *c)
{
	struct pollfd p = {.fd = c->report_fd, .events = POLLOUT};

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		STEP_FAIL(c, "prctl PDEATHSIG");
	if (poll(&p, 1, 0) < 0 || (p.revents & (POLLERR | POLLHUP)))
		_exit(1);
	return 0;
}

static int step_mounts(struct child *c)
{
	if (mounts_setup(c->spec, c->err, sizeof(c->err)) < 0)
		return -1;
	return 0;
}

static int step_hostname(struct child *c)
{
	if (sethostname("sandbox", 7) < 0)
		STEP_FAIL(c, "sethostname");
	return 0;
}

/* Brings up lo in the empty network namespace: local servers work, nothing else. */
static int step_loopback(struct child *c)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		STEP_FAIL(c, "socket");
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		close(s);
		STEP_FAIL(c, "SIOCGIFFLAGS lo");
	}
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
		close(s);
		STEP_FAIL(c, "SIOCSIFFLAGS lo");
	}
	close(s);
	return 0;
}

/* Writes the runtime's runner as /.capibox/<runner_file>. */
static int write_runner(struct child *c)
{
	char path[128];
	size_t len;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", SANDBOX_CODE_DIR, c->spec->rt->runner_file);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
	if (fd < 0)
		STEP_FAIL(c, "create %s", path);
	len = strlen(c->spec->rt->runner);
	if (write(fd, c->spec->rt->runner, len) != (ssize_t)len) {
		close(fd);
		STEP_FAIL(c, "write %s", path);
	}
	close(fd);
	return 0;
}

static int step_payload(struct child *c)
{
	char code_path[128];
	int dirfd;

	if (c->spec->warm)
		return 0; /* the code comes later, with the take */
	snprintf(code_path, sizeof(code_path), "%s/%s", SANDBOX_CODE_DIR, c->spec->rt->file_name);
	dirfd = open(SANDBOX_HOME, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		STEP_FAIL(c, "open %s", SANDBOX_HOME);
	if (payload_unpack(c->spec->payload_fd, code_path, dirfd, &collect_globs, c->err,
			   sizeof(c->err)) < 0) {
		close(dirfd);
		errno = EINVAL;
		return -1;
	}
	close(dirfd);
	/* a program of ours (Analyze's engine) rather than a script */
	if (c->spec->rt->code_mode != 0 && chmod(code_path, c->spec->rt->code_mode) < 0)
		STEP_FAIL(c, "chmod %s", code_path);
	close(c->spec->payload_fd);
	/* a runtime with a runner runs cold through it too (given the code's
	 * path): the same results and figures as a pooled run */
	if (c->spec->rt->runner != NULL)
		return write_runner(c);
	return 0;
}

/*
 * A pooled sandbox gets /.capibox as its own small tmpfs, holding the warm
 * runner now and the code at take time; init makes it read-only then.
 */
static int step_warm_runner(struct child *c)
{
	if (!c->spec->warm)
		return 0;
	if (mount("tmpfs", SANDBOX_CODE_DIR, "tmpfs", MS_NOSUID | MS_NODEV,
		  "size=2m,mode=0755,uid=1000,gid=1000") < 0)
		STEP_FAIL(c, "mount %s", SANDBOX_CODE_DIR);
	return write_runner(c);
}

static int step_seal(struct child *c)
{
	/* a zygote's child: the root is the zygote's, read-only already */
	if (c->spec->zygote) {
		if (chdir(SANDBOX_HOME) < 0)
			STEP_FAIL(c, "chdir %s", SANDBOX_HOME);
		return 0;
	}
	return mounts_seal_root(c->err, sizeof(c->err));
}

/* A zygote's child: the supervisor attached us to our cgroup before "go". */
static int step_cgroup_ns(struct child *c)
{
	if (unshare(CLONE_NEWCGROUP) < 0)
		STEP_FAIL(c, "unshare cgroup namespace");
	return 0;
}

static int step_zygote_mounts(struct child *c)
{
	return mounts_zygote_child(c->spec, c->err, sizeof(c->err));
}

struct step {
	const char *name;
	int (*run)(struct child *c);
};

static const struct step setup_steps[] = {
	{"wait for id maps", step_wait_maps},
	{"identity", step_identity},
	{"die with supervisor", step_die_with_supervisor},
	{"mounts", step_mounts},
	{"hostname", step_hostname},
	{"loopback", step_loopback},
	{"payload", step_payload},
	{"warm runner", step_warm_runner},
	{"seal root", step_seal},
};

/* A zygote's child: the root and its binds are the zygote's already. */
static const struct step zygote_steps[] = {
	{"wait for go", step_wait_maps}, {"cgroup namespace", step_cgroup_ns},
	{"identity", step_identity},	 {"die with zygote", step_die_with_supervisor},
	{"mounts", step_zygote_mounts},	 {"hostname", step_hostname},
	{"loopback", step_loopback},	 {"warm runner", step_warm_runner},
	{"seal root", step_seal},
};

/* ---- process titles in the zygote ---------------------------------------- */

/*
 * The zygote's children have python3's argument area: init shows
 * "capibox-init" and the runner its warm command line there, like the
 * processes of a sandbox made by the supervisor (ps, and tests, go by it).
 */
static char *title_start, *title_end;

/* Finds this process's argument area (fields 48 and 49 of its stat). */
static void zygote_title_init(void)
{
	char buf[2048], *p;
	unsigned long long start = 0, end = 0;
	ssize_t n;
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (p == NULL)
		return;
	/* field 3 (state) follows ") "; arg_start is field 48 */
	p += 2;
	for (int field = 3; field < 48 && p != NULL; field++) {
		p = strchr(p, ' ');
		if (p != NULL)
			p++;
	}
	if (p == NULL || sscanf(p, "%llu %llu", &start, &end) != 2 || end <= start)
		return;
	title_start = (char *)(uintptr_t)start;
	title_end = (char *)(uintptr_t)end;
}

/* Writes the len bytes of t (NULs separate arguments) as the command line. */
static void zygote_title_set(const char *t, size_t len)
{
	size_t room;

	if (title_start == NULL)
		return;
	room = (size_t)(title_end - title_start);
	memset(title_start, 0, room);
	memcpy(title_start, t, len < room ? len : room - 1);
}

/*
 * Empties the bounding set (what an exec could ever gain). The caps a
 * process holds are unchanged: init does this before it forks the runner,
 * off the take's path, and keeps what it needs until the take.
 */
static int drop_bounding_set(void)
{
	/* EINVAL: past the kernel's last capability (they are numbered
	 * without gaps) */
	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				break;
			return -1;
		}
	return 0;
}

/* Drops the ambient, effective, permitted and inheritable capabilities. */
static int clear_caps(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];

	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -1;
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -1;
	return 0;
}

/* Drops every capability: bounding set, ambient, then effective/permitted/inheritable. */
static int drop_caps(void) { return drop_bounding_set() < 0 ? -1 : clear_caps(); }

static int set_limit(int resource, uint64_t soft, uint64_t hard)
{
	struct rlimit rl = {.rlim_cur = soft, .rlim_max = hard};

	return setrlimit(resource, &rl);
}

static int set_limit_of(pid_t pid, int resource, uint64_t soft, uint64_t hard)
{
	struct rlimit rl = {.rlim_cur = soft, .rlim_max = hard};

	return prlimit(pid, resource, &rl, NULL);
}

/*
 * Builds argv with "{file}" replaced by the code path. A runtime with a
 * runner runs it ("{runner}": its path), warm with nothing more (the code
 * comes later), cold with the code path as its argument.
 */
static void build_argv(const struct runtime *rt, bool warm, const char *runner, const char *code,
		       char **argv)
{
	const char *const *tmpl = rt->runner != NULL ? rt->warm_argv : rt->argv;
	size_t i, max = RUNTIME_MAX_ARGS - (rt->runner != NULL && !warm ? 2 : 1);

	for (i = 0; i < max && tmpl[i]; i++)
		argv[i] = strcmp(tmpl[i], "{file}") == 0   ? (char *)code :
			  strcmp(tmpl[i], "{runner}") == 0 ? (char *)runner :
							     (char *)tmpl[i];
	if (rt->runner != NULL && !warm)
		argv[i++] = (char *)code;
	argv[i] = NULL;
}

/* Environment: a fixed base, the runtime's row, then the request's. */
static char **build_env(const struct sandbox_spec *spec)
{
	static const char *const base[] = {
		"PATH=/usr/local/bin:/usr/bin:/bin",
		("HOME=" SANDBOX_HOME),
		"USER=user",
		"LOGNAME=user",
		"LANG=C.UTF-8",
		"TMPDIR=/tmp",
		"TERM=dumb",
	};
	size_t nbase = sizeof(base) / sizeof(base[0]);
	size_t n = 0, cap = nbase + RUNTIME_MAX_ENV + spec->n_env + 1;
	char **env = calloc(cap, sizeof(char *));
	const char *p;

	if (env == NULL)
		return NULL;
	for (size_t i = 0; i < nbase; i++)
		env[n++] = (char *)base[i];
	for (size_t i = 0; i < RUNTIME_MAX_ENV && spec->rt->env[i]; i++)
		env[n++] = (char *)spec->rt->env[i];
	p = spec->env;
	for (uint32_t i = 0; i < spec->n_env; i++) {
		size_t namelen = (size_t)(strchr(p, '=') - p);
		/* a request entry replaces a base one of the same name */
		for (size_t k = 0; k < n; k++)
			if (strncmp(env[k], p, namelen + 1) == 0) {
				env[k] = env[--n];
				break;
			}
		env[n++] = (char *)p;
		p += strlen(p) + 1;
	}
	env[n] = NULL;
	return env;
}

/*
 * A runner step failed before exec: that is the sandbox's failure, not the
 * program's, so it goes to the supervisor as a setup error (not exit 127).
 */
static __attribute__((noreturn)) void runner_fail(struct child *c, const char *what)
{
	snprintf(c->err, sizeof(c->err), "runner: %s: %s", what, strerror(errno));
	child_fail(c, 100);
}

/* The runner: becomes the user's program. Returns only from a zygote (no exec). */
/*
 * RLIMIT_CPU's soft limit, in seconds, for ms of CPU time: rounded up, and
 * a second more where the cgroup's CPU time is checked (the rlimit is then
 * only a backstop). The hard limit is a second above it.
 */
static uint64_t cpu_limit_s(const struct sandbox_spec *spec, uint64_t ms)
{
	return (ms + 999) / 1000 + (spec->cpu_backstop ? 1 : 0);
}

static void run_runner(struct child *c)
{
	const struct sandbox_spec *spec = c->spec;
	const struct exec_limits *l = &spec->limits;
	char code_path[128], runner_path[128], *argv[RUNTIME_MAX_ARGS], msg[160];
	char **env;
	sigset_t none;
	uint64_t cpu_s = cpu_limit_s(spec, l->cpu_time_ms);

	snprintf(code_path, sizeof(code_path), "%s/%s", SANDBOX_CODE_DIR, spec->rt->file_name);
	snprintf(runner_path, sizeof(runner_path), "%s/%s", SANDBOX_CODE_DIR,
		 spec->rt->runner_file != NULL ? spec->rt->runner_file : "");
	build_argv(spec->rt, spec->warm, runner_path, code_path, argv);
	env = spec->zygote ? NULL : build_env(spec);
	if (env == NULL && !spec->zygote)
		runner_fail(c, "environment");
	if (spec->zygote) {
		/* what a warm runner's command line is: argv joined by NULs */
		char title[256];
		size_t off = 0;
		for (size_t i = 0; argv[i] != NULL && off < sizeof(title); i++) {
			int k = snprintf(title + off, sizeof(title) - off, "%s", argv[i]);
			if (k < 0 || (size_t)k >= sizeof(title) - off)
				break;
			off += (size_t)k + 1;
		}
		zygote_title_set(title, off);
		/* and the name an exec would give it ("python3", not init's) */
		{
			const char *base = strrchr(argv[0], '/');
			(void)prctl(PR_SET_NAME, base != NULL ? base + 1 : argv[0], 0, 0, 0);
		}
	}

	/* the supervisor's mask and ignored signals must not reach user code */
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	if (dup2(spec->stdin_fd, 0) < 0 || dup2(spec->stdout_fd, 1) < 0 ||
	    dup2(spec->stderr_fd, 2) < 0)
		runner_fail(c, "dup2");
	lseek(0, 0, SEEK_SET);
	/* a warm runner also keeps the go pipe, as fd 3, until it is told what
	 * to run (then it closes it before any user code); every runner gets
	 * the events pipe's write end as fd 4: results and figures go to the
	 * front there, as untrusted bytes like its output. Both move above 4
	 * first, so neither lands on the other's number; dup2 to a different
	 * number clears close-on-exec. */
	if (spec->warm) {
		int go = fcntl(c->go_fd, F_DUPFD_CLOEXEC, 5);
		if (go < 0 || dup2(go, 3) < 0)
			runner_fail(c, "go pipe");
	}
	if (spec->events_fd >= 0) {
		int ev = fcntl(spec->events_fd, F_DUPFD_CLOEXEC, 5);
		if (ev < 0 || dup2(ev, 4) < 0)
			runner_fail(c, "events pipe");
	}
	/* nothing of the server leaks in: only 0, 1, 2, the events pipe (4)
	 * and, warm, the go pipe (3) survive exec (the report pipe stays
	 * usable until then, for the failures below) */
	if (!spec->warm && spec->events_fd >= 0 &&
	    syscall(SYS_close_range, 3, 3, CLOSE_RANGE_CLOEXEC) < 0)
		runner_fail(c, "close_range");
	if (syscall(SYS_close_range,
		    spec->events_fd >= 0 ? 5 :
		    spec->warm		 ? 4 :
					   3,
		    ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		runner_fail(c, "close_range");

	if (set_limit(RLIMIT_CORE, 0, 0) < 0)
		runner_fail(c, "setrlimit RLIMIT_CORE");
	if (set_limit(RLIMIT_FSIZE, l->max_file_bytes, l->max_file_bytes) < 0)
		runner_fail(c, "setrlimit RLIMIT_FSIZE");
	if (set_limit(RLIMIT_NOFILE, 1024, 1024) < 0)
		runner_fail(c, "setrlimit RLIMIT_NOFILE");
	/* SIGXCPU at the limit (reported as CPU timeout), SIGKILL a second later */
	if (set_limit(RLIMIT_CPU, cpu_s, cpu_s + 1) < 0)
		runner_fail(c, "setrlimit RLIMIT_CPU");
	/* counted per user namespace: init plus max_processes */
	if (set_limit(RLIMIT_NPROC, (uint64_t)l->max_processes + 1,
		      (uint64_t)l->max_processes + 1) < 0)
		runner_fail(c, "setrlimit RLIMIT_NPROC");
	if (drop_caps() < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		runner_fail(c, "dropping privileges");
	/* last: from here on the policy holds for the program and its children
	 * (the program was built before the clone that made us, see
	 * sandbox_spawn and sandbox_zygote_serve) */
	if (seccomp_apply(msg, sizeof(msg)) < 0) {
		errno = EINVAL;
		runner_fail(c, msg);
	}
	if (spec->zygote) {
		/* an exec'd runner is dumpable again (its /proc/self files
		 * are its own, as for any process); our identity change made
		 * us not, and there is no exec to undo it */
		if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
			runner_fail(c, "dumpable");
		/* no exec to close them: close what exec would (the report
		 * pipe; exec_sync, whose EOF tells init our limits are set) */
		if (syscall(SYS_close_range, spec->events_fd >= 0 ? 5 : 4, ~0U, 0) < 0)
			runner_fail(c, "close_range");
		return;
	}
	execve(argv[0], argv, env);
	runner_fail(c, argv[0]);
}

/* Reports the runner's end (it died while waiting in the pool) and exits. */
static __attribute__((noreturn)) void report_exit(struct child *c, int status)
{
	struct sandbox_report r = {.type = SANDBOX_REPORT_EXIT, .wstatus = status};

	report(c->report_fd, &r);
	_exit(0);
}

/* CPU time process pid (in our pid namespace) has used, in ms; 0 if unknown. */
static uint64_t runner_cpu_ms(pid_t pid)
{
	struct timespec ts;
	clockid_t clk;

	/* its CPU clock: one call, where /proc/PID/stat took an open, a read
	 * and a parse */
	if (clock_getcpuclockid(pid, &clk) != 0 || clock_gettime(clk, &ts) < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Writes all of buf to fd. */
static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * A pooled sandbox's init between start and request: reports WARM, waits
 * on its control socket for the take (the supervisor forwards the front's
 * IPC_TAKE with the payload), unpacks the code and files, makes /.capibox
 * read-only, lowers the runner's limits to the request's and tells the
 * runner what to run. The runner dying meanwhile is reported as its exit.
 */
static void wait_for_take(struct child *c, pid_t runner, int go_w)
{
	struct sandbox_report warm = {.type = SANDBOX_REPORT_WARM};
	union ipc_msg *m = malloc(IPC_MAX_PACKET);
	int fds[IPC_SPAWN_FDS] = {-1, -1, -1, -1, -1}, status, dirfd;
	const struct exec_limits *l;
	const char *why = NULL;
	char path[128], head[200];
	uint64_t cpu_s;
	sigset_t chld;
	int sfd;
	ssize_t n;

	if (m == NULL) {
		snprintf(c->err, sizeof(c->err), "out of memory");
		child_fail(c, 97);
	}
	/* SIGCHLD is blocked (inherited from the supervisor): a signalfd tells
	 * us at once when the runner dies while we wait */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		snprintf(c->err, sizeof(c->err), "signalfd: %s", strerror(errno));
		child_fail(c, 96);
	}
	report(c->report_fd, &warm);
	for (;;) {
		struct pollfd p[2] = {{.fd = c->spec->control_fd, .events = POLLIN},
				      {.fd = sfd, .events = POLLIN}};
		int rc = poll(p, 2, -1);
		if (waitpid(runner, &status, WNOHANG) == runner)
			report_exit(c, status); /* the interpreter did not survive its start */
		if (rc < 0 && errno != EINTR) {
			snprintf(c->err, sizeof(c->err), "poll: %s", strerror(errno));
			child_fail(c, 96);
		}
		if (rc > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			break;
		if (rc > 0 && (p[1].revents & POLLIN)) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) > 0)
				;
		}
	}
	close(sfd);
	n = ipc_read(c->spec->control_fd, m, fds, &why);
	if (n == 0)
		_exit(0); /* the pool let us go: exiting ends the runner too */
	if (n < 0 || m->type != IPC_TAKE) {
		snprintf(c->err, sizeof(c->err), "bad take: %s", n < 0 ? why : "not a TAKE");
		child_fail(c, 95);
	}
	close(c->spec->control_fd);
	snprintf(path, sizeof(path), "%s/%s", SANDBOX_CODE_DIR, c->spec->rt->file_name);
	dirfd = open(SANDBOX_HOME, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0 ||
	    payload_unpack(fds[0], path, dirfd, &collect_globs, c->err, sizeof(c->err)) < 0)
		child_fail(c, 94);
	close(dirfd);
	close(fds[0]);
	/* a per-mount flag (MS_BIND): cheap, where remounting the tmpfs itself
	 * read-only would sync and wait */
	if (mount(NULL, SANDBOX_CODE_DIR, NULL,
		  MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) {
		snprintf(c->err, sizeof(c->err), "remount %s read-only: %s", SANDBOX_CODE_DIR,
			 strerror(errno));
		child_fail(c, 93);
	}
	/* the pool started the runner with the maxima; lowering needs no
	 * privilege, and the runner can never raise them again */
	l = &m->take.limits;
	/* RLIMIT_CPU counts the runner's whole life: add what its start took,
	 * which is not the request's (the cgroup check, which bills only the
	 * request, is the precise one; this is the backstop) */
	cpu_s = cpu_limit_s(c->spec, l->cpu_time_ms + runner_cpu_ms(runner));
	/* ...but never above what the runner has (run_runner set the pool's,
	 * the maxima): raising a hard limit takes a privilege we lack, and a
	 * request at the maximum CPU time would fail on it */
	if (cpu_s > cpu_limit_s(c->spec, c->spec->limits.cpu_time_ms))
		cpu_s = cpu_limit_s(c->spec, c->spec->limits.cpu_time_ms);
	if (set_limit_of(runner, RLIMIT_FSIZE, l->max_file_bytes, l->max_file_bytes) < 0 ||
	    set_limit_of(runner, RLIMIT_CPU, cpu_s, cpu_s + 1) < 0 ||
	    set_limit_of(runner, RLIMIT_NPROC, (uint64_t)l->max_processes + 1,
			 (uint64_t)l->max_processes + 1) < 0) {
		snprintf(c->err, sizeof(c->err), "prlimit: %s", strerror(errno));
		child_fail(c, 92);
	}
	/* a session's runner keeps running cells: it may ask us to collect
	 * files after each (wait_runner), which we send on the events pipe */
	for (uint32_t off = 0; off < m->take.env_len;) {
		const char *e = m->take.env + off;
		size_t left = m->take.env_len - off, len = strnlen(e, left);
		if (len > sizeof(SANDBOX_SESSION_ENV) &&
		    memcmp(e, SANDBOX_SESSION_ENV "=", sizeof(SANDBOX_SESSION_ENV)) == 0)
			c->session = true;
		off += (uint32_t)len + 1;
	}
	/* user code starts on the write below: from here on we hold no
	 * capability (nothing after needs one), and we are not dumpable */
	if (clear_caps() < 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		snprintf(c->err, sizeof(c->err), "dropping capabilities: %s", strerror(errno));
		child_fail(c, 88);
	}
	snprintf(head, sizeof(head), "%s\n%u\n", path, m->take.env_len);
	/* the runner reads exactly this much; the socket stays open both ways
	 * for what it tells us later (wait_runner) */
	if (write_full(go_w, head, strlen(head)) < 0 ||
	    write_full(go_w, m->take.env, m->take.env_len) < 0) {
		snprintf(c->err, sizeof(c->err), "go: %s", strerror(errno));
		child_fail(c, 91);
	}
	free(m);
}

/* The number of collect globs. */
static size_t count_globs(void)
{
	size_t n = 0;

	while (collect_globs != NULL && collect_globs[n] != NULL)
		n++;
	return n;
}

/*
 * After the run: ends every other process of the sandbox, then sends the
 * files matching the collect globs on the events pipe. The walk's own rules
 * (no symlink followed, regular files only, bounded) are in collect.c; here
 * it must be sure nothing runs any more: a process still writing could
 * change a file under the walk, or swap a checked file for a symlink.
 */
static void collect_files(struct child *c)
{
	struct collect_stats st;
	int home;

	/* we are pid 1 and every process of the sandbox has our uid: kill(-1)
	 * reaches them all (not us). Reaping until ECHILD is the proof none is
	 * left, orphans included (they are reparented to us); killing again in
	 * the loop catches a child forked while the first signal went out */
	for (;;) {
		pid_t p;
		(void)kill(-1, SIGKILL);
		p = waitpid(-1, NULL, 0);
		if (p < 0 && errno == EINTR)
			continue;
		if (p < 0)
			break;
	}
	/* the front closing its end must not kill us mid-frame (pid 1 has no
	 * default action anyway: this makes it explicit) */
	signal(SIGPIPE, SIG_IGN);
	home = open(SANDBOX_HOME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (home < 0)
		return;
	/* a failure (the front went away) ends the artifacts; Finished comes as
	 * always from the supervisor */
	(void)!collect_run(home, (const char *const *)collect_globs, count_globs(),
			   c->spec->events_fd, COLLECT_BUDGET, &st);
	close(home);
	close(c->spec->events_fd);
}

/* Reads exactly len bytes from fd; false on EOF or error. */
static bool read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/*
 * A session's cell asked for files (the 'G' message: u32 length, then its
 * globs, each ended by NUL): sends them on the events pipe as the one-shot
 * collect does, then answers 'k' (or 'e': the pipe failed, or the message
 * was not one we send). Processes of the session may still run while the
 * walk does: collect.c's walk never follows a symlink or leaves the working
 * directory whatever they do; what they change is their own files.
 */
static bool session_collect(struct child *c, int chan)
{
	static char body[COLLECT_MAX_GLOBS * (COLLECT_MAX_GLOB_LEN + 1)];
	const char *globs[COLLECT_MAX_GLOBS];
	struct collect_stats st;
	size_t n = 0, off = 0;
	uint32_t len;
	char answer = 'e';
	int home;

	if (!read_full(chan, &len, sizeof(len)) || len > sizeof(body) ||
	    !read_full(chan, body, len))
		return false;
	while (off < len && n < COLLECT_MAX_GLOBS) {
		size_t gl = strnlen(body + off, len - off);
		if (off + gl == len || collect_glob_check(body + off, gl) != NULL)
			break; /* not NUL-ended, or not a glob the front lets through */
		globs[n++] = body + off;
		off += gl + 1;
	}
	home = open(SANDBOX_HOME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (off == len && home >= 0 && c->spec->events_fd >= 0 &&
	    collect_run(home, globs, n, c->spec->events_fd, COLLECT_BUDGET, &st) == 0)
		answer = 'k';
	if (home >= 0)
		close(home);
	return write_full(chan, &answer, 1) == 0;
}

/*
 * Waits for the runner's end. A warm runner talks to us on the go socket
 * (chan) once it has its take: 'X' and its exit code when a one-shot
 * program ended (its output already closed, it is exiting: we need not
 * wait for the kernel to tear the interpreter down, a few hundred
 * microseconds of freeing memory here); 'G' when a session's cell wants
 * files collected. Returns true with *status made from the code, or false
 * with *status the runner's wait status once it is reaped (killed,
 * crashed, a session's end, or no message). The code is the program's to
 * forge, like its exit code: forging it only ends its own run early.
 */
static bool wait_runner(struct child *c, pid_t runner, int chan, int *status)
{
	sigset_t chld;
	int sfd = -1;

	if (chan >= 0) {
		/* SIGCHLD is blocked (inherited from the supervisor) */
		sigemptyset(&chld);
		sigaddset(&chld, SIGCHLD);
		sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
		if (sfd < 0)
			chan = -1; /* fall back to waiting */
	}
	while (chan >= 0) {
		struct pollfd p[2] = {{.fd = chan, .events = POLLIN},
				      {.fd = sfd, .events = POLLIN}};
		struct signalfd_siginfo si;
		unsigned char msg[2];

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents != 0) {
			if (!read_full(chan, msg, 1))
				break; /* EOF: the runner is gone or let go of us */
			if (msg[0] == 'X' && read_full(chan, msg + 1, 1)) {
				close(sfd);
				*status = msg[1] << 8; /* as W_EXITCODE(code, 0) */
				return true;
			}
			if (msg[0] == 'G' && c->session && session_collect(c, chan))
				continue;
			break; /* not a message of ours: wait for the reap */
		}
		while (read(sfd, &si, sizeof(si)) > 0)
			;
		for (;;) {
			pid_t w = waitpid(-1, status, WNOHANG);
			if (w == runner) {
				close(sfd);
				return false;
			}
			if (w <= 0)
				break;
		}
	}
	if (sfd >= 0)
		close(sfd);
	for (;;) {
		pid_t w = waitpid(-1, status, 0);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 || w == runner)
			break; /* w < 0: no children left (cannot happen before the runner) */
	}
	return false;
}

/*
 * pid 1 of the sandbox: set up, start the runner, reap, report. Returns
 * only in the runner of a zygote's sandbox (which then goes back to Python).
 */
static void run_init(struct child *c)
{
	struct sandbox_report r = {.type = SANDBOX_REPORT_READY};
	const struct step *steps = c->spec->zygote ? zygote_steps : setup_steps;
	size_t nsteps = c->spec->zygote ? sizeof(zygote_steps) / sizeof(zygote_steps[0]) :
					  sizeof(setup_steps) / sizeof(setup_steps[0]);
	struct rusage ru;
	pid_t runner;
	int status = 0, go_w = -1, exec_sync[2] = {-1, -1};

	/* a session and process group of the sandbox's own: none of the
	 * daemon's (nor its terminal), and the group the supervisor raises
	 * the priority of at the take */
	if (setsid() < 0) {
		snprintf(c->err, sizeof(c->err), "setsid: %s", strerror(errno));
		child_fail(c, 90);
	}
	/* a pooled sandbox is made at the lowest priority, from its first
	 * step: its setup and its interpreter's start must not slow down code
	 * that is running; the take restores it (lowering one's own priority
	 * needs no privilege) */
	if (c->spec->warm && !c->spec->at_once)
		(void)setpriority(PRIO_PROCESS, 0, 19);
	if (c->spec->zygote) {
		zygote_title_set("capibox-init", sizeof("capibox-init"));
		(void)prctl(PR_SET_NAME, "capibox-init", 0, 0, 0);
	} else {
		proctitle_set("capibox-init");
	}
	for (size_t i = 0; i < nsteps; i++) {
		if (steps[i].run(c) < 0) {
			char msg[160];
			snprintf(msg, sizeof(msg), "%s", c->err);
			snprintf(c->err, sizeof(c->err), "setup step \"%s\" failed: %.110s",
				 steps[i].name, msg);
			child_fail(c, (unsigned)i);
		}
	}
	if (c->spec->warm) {
		int go[2];
		/* exec_sync: its write end is close-on-exec in the runner, so its
		 * EOF says the runner has set its limits and exec'd. go is a
		 * socket: the take goes down it, the runner's "done" line up */
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, go) < 0 ||
		    pipe2(exec_sync, O_CLOEXEC) < 0) {
			snprintf(c->err, sizeof(c->err), "go pipe: %s", strerror(errno));
			child_fail(c, 98);
		}
		c->go_fd = go[0];
		go_w = go[1];
	}
	/* the runner inherits it empty; ours goes now, not on the take's path
	 * (one prctl per capability) */
	if (drop_bounding_set() < 0) {
		snprintf(c->err, sizeof(c->err), "drop the bounding set: %s", strerror(errno));
		child_fail(c, 89);
	}
	runner = fork();
	if (runner < 0) {
		snprintf(c->err, sizeof(c->err), "fork runner: %s", strerror(errno));
		child_fail(c, 99);
	}
	if (runner == 0) {
		run_runner(c);
		return; /* a zygote's runner: back to Python */
	}

	/* init keeps no output ends: EOF reaches the front when the code's
	 * processes are gone */
	close(c->spec->stdin_fd);
	close(c->spec->stdout_fd);
	close(c->spec->stderr_fd);
	/* ...but the events pipe's write end when files are to be collected
	 * (pooled: we learn whether at the take); the front waits for its EOF,
	 * so Finished comes after the artifacts */
	if (c->spec->events_fd >= 0 && !c->spec->warm && collect_globs == NULL)
		close(c->spec->events_fd);
	if (c->spec->warm) {
		char b;
		close(c->go_fd);
		close(exec_sync[1]);
		/* a take lowers the runner's limits: only once it has set its own
		 * (lowering the hard limits first would make its raise fail) */
		while (read(exec_sync[0], &b, 1) < 0 && errno == EINTR)
			;
		close(exec_sync[0]);
		/* the interpreter starts while we wait for a request */
		wait_for_take(c, runner, go_w);
		if (c->spec->events_fd >= 0 && collect_globs == NULL && !c->session)
			close(c->spec->events_fd);
	}
	/* user code runs with our uid: make sure it cannot trace or signal us
	 * into doing anything (pid 1 ignores signals it has no handler for;
	 * the bounding set went before the fork; a pooled sandbox's init did
	 * this before it let the runner go, in wait_for_take) */
	if (!c->spec->warm) {
		(void)clear_caps();
		(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	}
	report(c->report_fd, &r);

	/* files to collect: their walk needs every process gone first, so the
	 * early end buys nothing (collect_files reaps them all) */
	if (go_w >= 0 && collect_globs != NULL) {
		close(go_w);
		go_w = -1;
	}
	if (wait_runner(c, runner, go_w, &status)) {
		/* the runner is exiting: end everything else now. After kill(-1)
		 * no process of ours returns to user space (a fork racing with it
		 * fails, its parent having SIGKILL pending), so no code of the
		 * sandbox runs from here: the front may be told. Reaping follows;
		 * our own exit then ends the pid namespace. */
		(void)kill(-1, SIGKILL);
		memset(&r, 0, sizeof(r));
		r.type = SANDBOX_REPORT_DONE;
		r.wstatus = status;
		r.utime_us = runner_cpu_ms(runner) * 1000;
		report(c->report_fd, &r);
		for (;;) {
			pid_t p;
			(void)kill(-1, SIGKILL);
			p = waitpid(-1, NULL, 0);
			if (p < 0 && errno == EINTR)
				continue;
			if (p < 0)
				break;
		}
		_exit(0);
	}
	if (go_w >= 0)
		close(go_w);
	memset(&r, 0, sizeof(r));
	r.type = SANDBOX_REPORT_EXIT;
	r.wstatus = status;
	if (getrusage(RUSAGE_CHILDREN, &ru) == 0) {
		r.utime_us = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec;
		r.stime_us = (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
		r.maxrss_kb = (uint64_t)ru.ru_maxrss;
	}
	report(c->report_fd, &r);
	if (collect_globs != NULL && c->spec->events_fd >= 0)
		collect_files(c);
	/* exiting as pid 1 makes the kernel kill everything left in the sandbox */
	_exit(0);
}

/* Closes every descriptor except those in keep. */
static void close_all_but(int *keep, size_t n)
{
	unsigned next = 0;

	/* sort (n is tiny), then close the gaps between kept descriptors */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];
			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned)keep[i] > next)
			syscall(SYS_close_range, next, (unsigned)keep[i] - 1, 0);
		next = (unsigned)keep[i] + 1;
	}
	syscall(SYS_close_range, next, ~0U, 0);
}

/*
 * Writes a new user namespace's maps (the child of pid, waiting for them):
 * uid_map, then "deny" to setgroups when deny (needed before an
 * unprivileged writer's gid_map), then gid_map. Returns 0, or -1 with errno
 * and *what naming the file that failed.
 */
static int id_maps(pid_t pid, const char *uid_map, const char *gid_map, bool deny,
		   const char **what)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
	*what = "uid_map";
	if (write_file_str(path, uid_map) < 0)
		return -1;
	if (deny) {
		snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
		*what = "setgroups";
		if (write_file_str(path, "deny") < 0)
			return -1;
	}
	snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
	*what = "gid_map";
	return write_file_str(path, gid_map);
}

/* Closes what is open of a spawn's report and sync pipes. */
static void close_pipes(int rep[2], int sync[2])
{
	for (int i = 0; i < 2; i++) {
		if (rep[i] >= 0)
			close(rep[i]);
		if (sync[i] >= 0)
			close(sync[i]);
	}
}

/* ---- parent side -------------------------------------------------------- */

pid_t sandbox_spawn(const struct sandbox_spec *spec, int *report_fd, bool *into_cgroup, char *err,
		    size_t errlen)
{
	int rep[2] = {-1, -1}, sync[2] = {-1, -1};
	char map[64], gmap[64];
	const char *what;
	pid_t pid;

	/* the seccomp program is built here once per supervisor, not in each
	 * child (libseccomp's build is most of a filter's cost); the child
	 * inherits it. Without it no sandbox may start. */
	if (seccomp_prepare(err, errlen) < 0)
		goto fail;
	if (pipe2(rep, O_CLOEXEC) < 0 || pipe2(sync, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	/* raw clone without a new stack behaves like fork: fine in the
	 * single-threaded supervisor. With a cgroup v2 directory, clone3 puts the
	 * child into its cgroup atomically: it is never outside it, not even
	 * for the moments before an attach */
	pid = -1;
	if (spec->cgroup_fd >= 0) {
		struct clone_args ca;
		memset(&ca, 0, sizeof(ca));
		ca.flags = CLONE_FLAGS | CLONE_INTO_CGROUP;
		ca.exit_signal = SIGCHLD;
		ca.cgroup = (uint64_t)spec->cgroup_fd;
		pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
		if (pid < 0 && errno != ENOSYS && errno != E2BIG && errno != EINVAL) {
			snprintf(err, errlen, "clone3: %s", strerror(errno));
			goto fail;
		}
		if (pid >= 0)
			*into_cgroup = true;
	}
	if (pid < 0) /* no clone3 (or no CLONE_INTO_CGROUP): clone, then attach */
		pid = (pid_t)syscall(SYS_clone, CLONE_FLAGS | SIGCHLD, NULL, NULL, NULL, NULL);
	if (pid < 0) {
		snprintf(err, errlen, "clone: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0) {
		struct child c = {.spec = spec, .report_fd = rep[1], .sync_fd = sync[0]};
		int keep[] = {rep[1],
			      sync[0],
			      spec->payload_fd,
			      spec->stdin_fd,
			      spec->stdout_fd,
			      spec->stderr_fd,
			      spec->events_fd >= 0 ? spec->events_fd : rep[1],
			      spec->warm ? spec->control_fd : rep[1],
			      spec->n_cgroup_tasks > 0 ? spec->cgroup_tasks[0] : rep[1],
			      spec->n_cgroup_tasks > 1 ? spec->cgroup_tasks[1] : rep[1],
			      spec->n_cgroup_tasks > 2 ? spec->cgroup_tasks[2] : rep[1]};
		/* a copy of the supervisor: drop everything of it (its IPC socket,
		 * other sandboxes' pipes, epoll and timers) but what we need */
		close_all_but(keep, sizeof(keep) / sizeof(keep[0]));
		/* hold 0, 1 and 2 so no descriptor opened later lands there and is
		 * overwritten when the runner sets up its standard streams */
		if (open("/dev/null", O_RDWR) != 0 || dup2(0, 1) != 1 || dup2(0, 2) != 2)
			_exit(1);
		run_init(&c);
		_exit(127); /* not reached: only a zygote's runner returns */
	}
	close(rep[1]);
	close(sync[0]);
	rep[1] = sync[0] = -1;

	/* inside uid/gid 1000 is this sandbox's own host uid; nothing else maps */
	snprintf(map, sizeof(map), "%d %u 1\n", SANDBOX_UID, spec->host_uid);
	snprintf(gmap, sizeof(gmap), "%d %u 1\n", SANDBOX_GID, spec->host_uid);
	if (id_maps(pid, map, gmap, true, &what) < 0) {
		snprintf(err, errlen, "write %s: %s", what, strerror(errno));
		goto kill;
	}
	if (spec->before_release != NULL &&
	    spec->before_release(spec->hook_arg, pid, *into_cgroup, err, errlen) < 0)
		goto kill;
	if (write(sync[1], "g", 1) != 1) {
		snprintf(err, errlen, "release child: %s", strerror(errno));
		goto kill;
	}
	close(sync[1]);
	if (fcntl(rep[0], F_SETFL, O_NONBLOCK) < 0) {
		snprintf(err, errlen, "fcntl: %s", strerror(errno));
		sync[1] = -1;
		goto kill;
	}
	*report_fd = rep[0];
	return pid;
kill:
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
fail:
	close_pipes(rep, sync);
	return -1;
}

/* ---- the zygote ----------------------------------------------------------- */

#define ZYGOTE_FLAGS \
	(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
#define ZYGOTE_DIR SANDBOX_CODE_DIR

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

_Static_assert(ZYGOTE_SPAWN_MAX_FDS <= IPC_MAX_FDS, "a spawn's descriptors fit one packet");

/* One packet with nfds (<= ZYGOTE_SPAWN_MAX_FDS) descriptors; 0 or -1 (errno). */
static int zyg_send(int sock, const struct zygote_msg *m, const int *fds, size_t nfds)
{
	return ipc_send_packet(sock, m, sizeof(*m), fds, nfds);
}

/*
 * One packet into m with its descriptors (CLOEXEC) into fds; *nfds their
 * number. Returns the packet's length, 0 at EOF, -1 (errno). A packet that
 * was not whole (truncated, too many descriptors: the extra ones closed)
 * comes back with a length no packet has: the caller checks, and closes
 * what it rejects.
 */
static ssize_t zyg_recv(int sock, struct zygote_msg *m, int *fds, size_t *nfds)
{
	const char *bad;
	ssize_t n;

	memset(m, 0, sizeof(*m));
	n = ipc_recv_packet(sock, m, sizeof(*m), fds, ZYGOTE_SPAWN_MAX_FDS, nfds, &bad);
	if (n > 0 && bad != NULL)
		return (ssize_t)sizeof(*m) + 1;
	return n;
}

static int copy_fd_to(int src, const char *path, mode_t mode, char *err, size_t errlen)
{
	char buf[65536];
	off_t off = 0;
	ssize_t n;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);

	if (fd < 0) {
		snprintf(err, errlen, "create %s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = pread(src, buf, sizeof(buf), off)) > 0) {
		if (write_full(fd, buf, (size_t)n) < 0) {
			snprintf(err, errlen, "write %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		off += n;
	}
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "read the zygote extension: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int write_str_to(const char *path, const char *text, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);

	if (fd < 0 || write_full(fd, text, strlen(text)) < 0) {
		snprintf(err, errlen, "write %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* The zygote process between clone and exec (host side: our clone). */
static __attribute__((noreturn)) void zygote_launch_child(const struct sandbox_spec *spec, int sock,
							  int sync_fd, int so_fd,
							  const char *preload)
{
	char err[200], zpath[128], rpath[128], *argv[RUNTIME_MAX_ARGS + 2], **env;
	const struct runtime *rt = spec->rt;
	size_t n;
	sigset_t none;
	char b;
	int keep[] = {sock, sync_fd, so_fd, 2};

	/* nothing of the supervisor but our socket and its log (stderr) */
	close_all_but(keep, sizeof(keep) / sizeof(keep[0]));
	if (open("/dev/null", O_RDWR) != 0 || dup2(0, 1) != 1)
		_exit(1);
	while (read(sync_fd, &b, 1) < 0 && errno == EINTR)
		;
	close(sync_fd);
	/* root of our user namespace: capabilities over it (and over the
	 * namespaces of our children), none on the host */
	if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) {
		snprintf(err, sizeof(err), "setresuid: %s", strerror(errno));
		goto fail;
	}
	/* the supervisor's death ends us, and with us (pid 1 of our pid
	 * namespace) every sandbox we made */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
		snprintf(err, sizeof(err), "parent death signal: %s", strerror(errno));
		goto fail;
	}
	if (mounts_setup(spec, err, sizeof(err)) < 0)
		goto fail;
	if (sethostname("sandbox", 7) < 0) {
		snprintf(err, sizeof(err), "sethostname: %s", strerror(errno));
		goto fail;
	}
	if (mount("tmpfs", ZYGOTE_DIR, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0755") < 0) {
		snprintf(err, sizeof(err), "mount %s: %s", ZYGOTE_DIR, strerror(errno));
		goto fail;
	}
	snprintf(zpath, sizeof(zpath), "%s/zygote.py", ZYGOTE_DIR);
	snprintf(rpath, sizeof(rpath), "%s/%s", ZYGOTE_DIR, rt->runner_file);
	if (copy_fd_to(so_fd, ZYGOTE_DIR "/_capibox_zygote.so", 0555, err, sizeof(err)) < 0 ||
	    write_str_to(zpath, runner_python_zygote, err, sizeof(err)) < 0 ||
	    write_str_to(rpath, rt->runner, err, sizeof(err)) < 0)
		goto fail;
	close(so_fd);
	if (mount(NULL, ZYGOTE_DIR, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
		  NULL) < 0) {
		snprintf(err, sizeof(err), "remount %s read-only: %s", ZYGOTE_DIR, strerror(errno));
		goto fail;
	}
	if (mounts_seal_root(err, sizeof(err)) < 0)
		goto fail;
	/* the root's tmpfs itself read-only, not only its mount: its files
	 * (/etc/passwd, ...) belong to our uid 0, which the children do not
	 * map, so a write would be refused as EACCES before the mount's
	 * EROFS; the file system's own flag is checked first, as a sandbox
	 * made by the supervisor answers */
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) {
		snprintf(err, sizeof(err), "remount the root file system read-only: %s",
			 strerror(errno));
		goto fail;
	}
	/* the warm runner's command (zygote.py in its place) and environment
	 * (exactly: zygote.py sets what it needs for its preload itself, so a
	 * clone's /proc/self/environ shows what a warm runner's does) */
	build_argv(rt, true, zpath, "", argv);
	for (n = 0; argv[n] != NULL; n++)
		;
	argv[n++] = (char *)(preload[0] ? preload : "-");
	argv[n] = NULL;
	env = build_env(spec);
	if (env == NULL) {
		snprintf(err, sizeof(err), "environment: out of memory");
		goto fail;
	}
	if (sock != 3 && dup2(sock, 3) != 3) {
		snprintf(err, sizeof(err), "dup2: %s", strerror(errno));
		goto fail;
	}
	if (syscall(SYS_close_range, 4, ~0U, 0) < 0) {
		snprintf(err, sizeof(err), "close_range: %s", strerror(errno));
		goto fail;
	}
	/* the supervisor's blocked and ignored signals are not the zygote's */
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, sizeof(err), "no_new_privs: %s", strerror(errno));
		goto fail;
	}
	execve(argv[0], argv, env);
	snprintf(err, sizeof(err), "exec %s: %s", argv[0], strerror(errno));
fail:
	dprintf(2, "capibox zygote: start failed: %s\n", err);
	_exit(1);
}

pid_t sandbox_zygote_start(const struct sandbox_spec *spec, uint32_t zygote_uid, uint32_t uid_base,
			   uint32_t n_uids, int so_fd, const char *preload, int *sock, char *err,
			   size_t errlen)
{
	int sv[2] = {-1, -1}, sync[2] = {-1, -1};
	char map[96];
	const char *what;
	pid_t pid = -1;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 ||
	    pipe2(sync, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "socketpair/pipe: %s", strerror(errno));
		goto fail;
	}
	/* like sandbox_spawn: raw clone is a fork in the single-threaded supervisor */
	pid = (pid_t)syscall(SYS_clone, ZYGOTE_FLAGS | SIGCHLD, NULL, NULL, NULL, NULL);
	if (pid < 0) {
		snprintf(err, errlen, "clone: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0) {
		close(sv[0]);
		close(sync[1]);
		zygote_launch_child(spec, sv[1], sync[0], so_fd, preload);
	}
	close(sv[1]);
	close(sync[0]);
	sv[1] = sync[0] = -1;
	/* uid 0 is the zygote's own host uid; 1..n the sandboxes' (uid_base..) */
	snprintf(map, sizeof(map), "0 %u 1\n1 %u %u\n", zygote_uid, uid_base, n_uids);
	if (id_maps(pid, map, map, false, &what) < 0) {
		snprintf(err, errlen, "write %s: %s", what, strerror(errno));
		goto kill;
	}
	if (write(sync[1], "g", 1) != 1) {
		snprintf(err, errlen, "release zygote: %s", strerror(errno));
		goto kill;
	}
	close(sync[1]);
	*sock = sv[0];
	return pid;
kill:
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
fail:
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0)
			close(sv[i]);
		if (sync[i] >= 0)
			close(sync[i]);
	}
	return -1;
}

/* The host pid of a pidfd (its fdinfo's "Pid:"), or -1. */
pid_t sandbox_pidfd_pid(int pidfd)
{
	char path[64], buf[512], *p;
	ssize_t n;
	long pid;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, "\nPid:");
	if (p == NULL)
		return -1;
	pid = strtol(p + 5, NULL, 10);
	return pid > 0 ? (pid_t)pid : -1;
}

int sandbox_zygote_send(int zsock, const struct sandbox_spec *spec, uint32_t uid_index, uint64_t id,
			struct zygote_pending *zp, char *err, size_t errlen)
{
	int rep[2] = {-1, -1}, sync[2] = {-1, -1};
	struct zygote_msg m;

	zp->id = id;
	zp->report_r = zp->sync_w = -1;
	if (pipe2(rep, O_CLOEXEC) < 0 || pipe2(sync, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		close_pipes(rep, sync);
		return -1;
	}
	memset(&m, 0, sizeof(m));
	m.type = ZYGOTE_SPAWN;
	m.runtime = (uint32_t)(spec->rt - runtime_at(0));
	m.uid_index = uid_index;
	m.id = id;
	m.tmpfs_bytes = spec->tmpfs_bytes;
	m.limits = spec->limits;
	m.at_once = spec->at_once;
	m.n_cgroup = spec->n_cgroup_tasks;
	{
		int fds[ZYGOTE_SPAWN_MAX_FDS] = {spec->stdin_fd,  spec->stdout_fd, spec->stderr_fd,
						 spec->events_fd, rep[1],	   spec->control_fd,
						 sync[0]};
		int rc;

		for (unsigned i = 0; i < spec->n_cgroup_tasks; i++)
			fds[ZYGOTE_SPAWN_FDS + i] = spec->cgroup_tasks[i];
		rc = zyg_send(zsock, &m, fds, ZYGOTE_SPAWN_FDS + spec->n_cgroup_tasks);
		if (rc < 0) {
			snprintf(err, errlen, "zygote: send: %s", strerror(errno));
			close_pipes(rep, sync);
			return -2;
		}
	}
	close(rep[1]); /* the child's ends: the zygote has them now */
	close(sync[0]);
	zp->report_r = rep[0];
	zp->sync_w = sync[1];
	return 0;
}

int sandbox_zygote_recv(int zsock, int wait_ms, uint64_t *id, int *pidfd, char *err, size_t errlen)
{
	struct pollfd p = {.fd = zsock, .events = POLLIN};
	int got[ZYGOTE_SPAWN_MAX_FDS], pr;
	struct zygote_msg m;
	size_t ngot = 0;
	ssize_t n;

	*pidfd = -1;
	do {
		pr = poll(&p, 1, wait_ms);
	} while (pr < 0 && errno == EINTR);
	if (pr == 0)
		return 0;
	if (pr < 0) {
		snprintf(err, errlen, "zygote: poll: %s", strerror(errno));
		return -1;
	}
	n = zyg_recv(zsock, &m, got, &ngot);
	*id = m.id;
	if (n == (ssize_t)sizeof(m) && m.type == ZYGOTE_SPAWNED && ngot == 1) {
		*pidfd = got[0];
		return ZYGOTE_SPAWNED;
	}
	for (size_t i = 0; i < ngot; i++)
		close(got[i]);
	if (n == (ssize_t)sizeof(m) && ngot == 0 && m.type == ZYGOTE_FAILED) {
		m.msg[sizeof(m.msg) - 1] = '\0';
		snprintf(err, errlen, "zygote: %s", m.msg);
		return ZYGOTE_FAILED;
	}
	if (n == (ssize_t)sizeof(m) && ngot == 0 && m.type == ZYGOTE_READY)
		return ZYGOTE_READY;
	snprintf(err, errlen, "zygote: %s", n == 0 ? "it closed its socket" : "bad answer");
	return -1;
}

int sandbox_zygote_go(struct zygote_pending *zp, int *report_fd, char *err, size_t errlen)
{
	if (write(zp->sync_w, "g", 1) != 1) {
		snprintf(err, errlen, "release child: %s", strerror(errno));
		return -1;
	}
	if (fcntl(zp->report_r, F_SETFL, O_NONBLOCK) < 0) {
		snprintf(err, errlen, "fcntl: %s", strerror(errno));
		return -1;
	}
	close(zp->sync_w);
	zp->sync_w = -1;
	*report_fd = zp->report_r;
	zp->report_r = -1;
	return 0;
}

void sandbox_zygote_drop(struct zygote_pending *zp)
{
	if (zp->report_r >= 0)
		close(zp->report_r);
	if (zp->sync_w >= 0)
		close(zp->sync_w);
	zp->report_r = zp->sync_w = -1;
}

/* In the zygote's new child: becomes its init. Returns only in its runner. */
static void zygote_child(const struct zygote_msg *m, int *fds, size_t nfds)
{
	static struct sandbox_spec spec;
	struct child c;
	sigset_t mask;

	/* nothing of the zygote's: not its socket, not its stderr (the
	 * supervisor's log) */
	close_all_but(fds, nfds);
	if (open("/dev/null", O_RDWR) != 0 || dup2(0, 1) != 1 || dup2(0, 2) != 2)
		_exit(1);
	/* init's signals as the supervisor's clone has them: default
	 * dispositions, SIGCHLD (taken with a signalfd) and the terminal's
	 * signals blocked */
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_SETMASK, &mask, NULL);
	memset(&spec, 0, sizeof(spec));
	spec.rt = runtime_at(m->runtime);
	spec.limits = m->limits;
	spec.tmpfs_bytes = m->tmpfs_bytes;
	spec.payload_fd = -1;
	spec.stdin_fd = fds[0];
	spec.stdout_fd = fds[1];
	spec.stderr_fd = fds[2];
	spec.events_fd = fds[3];
	spec.control_fd = fds[5];
	spec.cgroup_fd = -1;
	spec.warm = true;
	spec.zygote = true;
	spec.at_once = m->at_once != 0;
	spec.n_cgroup_tasks = m->n_cgroup;
	for (unsigned i = 0; i < m->n_cgroup; i++)
		spec.cgroup_tasks[i] = fds[ZYGOTE_SPAWN_FDS + i];
	memset(&c, 0, sizeof(c));
	c.spec = &spec;
	c.report_fd = fds[4];
	c.sync_fd = fds[6];
	run_init(&c);
}

static void zyg_answer(int sock, const struct zygote_msg *req, uint32_t type, int err,
		       const char *what, int fd)
{
	struct zygote_msg a;

	memset(&a, 0, sizeof(a));
	a.type = type;
	a.id = req != NULL ? req->id : 0;
	a.err = err;
	if (what != NULL)
		snprintf(a.msg, sizeof(a.msg), "%s: %s", what, strerror(err));
	/* a failed answer makes the supervisor replace us; nothing to add */
	(void)zyg_send(sock, &a, &fd, fd >= 0 ? 1 : 0);
}

/* Writes the child's maps: uid/gid 1000 inside = uid index k of ours. */
static int zyg_maps(pid_t pid, uint32_t k, const char **what)
{
	char map[64], gmap[64];

	snprintf(map, sizeof(map), "%d %u 1\n", SANDBOX_UID, k);
	snprintf(gmap, sizeof(gmap), "%d %u 1\n", SANDBOX_GID, k);
	return id_maps(pid, map, gmap, true, what);
}

int sandbox_zygote_serve(int sock, void (*before_fork)(void), void (*after_fork_parent)(void))
{
	struct zygote_msg m;

	zygote_title_init();
	memset(&m, 0, sizeof(m));
	m.type = ZYGOTE_READY;
	if (zyg_send(sock, &m, NULL, 0) < 0)
		return -1;
	for (;;) {
		int fds[ZYGOTE_SPAWN_MAX_FDS], pidfd = -1;
		const char *what = NULL;
		const struct runtime *rt;
		char msg[128];
		size_t nfds = 0;
		ssize_t n = zyg_recv(sock, &m, fds, &nfds);
		long pid;
		int e;

		if (n == 0)
			return 0;
		if (n < 0)
			return -1;
		rt = runtime_at(m.runtime);
		if (n != (ssize_t)sizeof(m) || m.type != ZYGOTE_SPAWN ||
		    m.n_cgroup > SANDBOX_CGROUP_FDS || nfds != ZYGOTE_SPAWN_FDS + m.n_cgroup ||
		    rt == NULL || rt->runner == NULL || m.uid_index == 0) {
			for (size_t i = 0; i < nfds; i++)
				close(fds[i]);
			zyg_answer(sock, &m, ZYGOTE_FAILED, EINVAL, "bad request", -1);
			continue;
		}
		/* the seccomp program, built once per zygote for all its
		 * children (the zygote itself stays unfiltered): without it
		 * this sandbox fails */
		if (seccomp_prepare(msg, sizeof(msg)) < 0) {
			e = errno;
			dprintf(2, "capibox zygote: %s\n", msg); /* the supervisor's log */
			for (size_t i = 0; i < nfds; i++)
				close(fds[i]);
			zyg_answer(sock, &m, ZYGOTE_FAILED, e, "build the seccomp filter", -1);
			continue;
		}
		/* raw clone behaves like fork here: we are single-threaded
		 * (zygote.py checks) */
		before_fork();
		pid = syscall(SYS_clone, ZYGOTE_FLAGS | CLONE_PIDFD | SIGCHLD, NULL, &pidfd, NULL,
			      NULL);
		if (pid == 0) {
			zygote_child(&m, fds, nfds);
			return 1; /* the runner */
		}
		e = errno;
		after_fork_parent();
		if (pid < 0)
			zyg_answer(sock, &m, ZYGOTE_FAILED, e, "clone", -1);
		else if (zyg_maps((pid_t)pid, m.uid_index, &what) < 0) {
			e = errno;
			kill((pid_t)pid, SIGKILL);
			zyg_answer(sock, &m, ZYGOTE_FAILED, e, what, -1);
		} else {
			zyg_answer(sock, &m, ZYGOTE_SPAWNED, 0, NULL, pidfd);
		}
		if (pidfd >= 0)
			close(pidfd);
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
	}
}
