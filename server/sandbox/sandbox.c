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
#include <unistd.h>

#include "../ipc.h"
#include "../proctitle.h"
#include "collect.h"
#include "payload.h"
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
	int go_fd; /* warm: the runner's end of the go pipe (its fd 3) */
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

static int step_seal(struct child *c) { return mounts_seal_root(c->err, sizeof(c->err)); }

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

/* Drops every capability: bounding set, ambient, then effective/permitted/inheritable. */
static int drop_caps(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];

	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			return -1;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -1;
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -1;
	return 0;
}

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

/* The runner: becomes the user's program. Never returns. */
static __attribute__((noreturn)) void run_runner(struct child *c)
{
	const struct sandbox_spec *spec = c->spec;
	const struct exec_limits *l = &spec->limits;
	char code_path[128], runner_path[128], *argv[RUNTIME_MAX_ARGS], msg[160];
	char **env;
	sigset_t none;
	uint64_t cpu_s = (l->cpu_time_ms + 999) / 1000;

	snprintf(code_path, sizeof(code_path), "%s/%s", SANDBOX_CODE_DIR, spec->rt->file_name);
	snprintf(runner_path, sizeof(runner_path), "%s/%s", SANDBOX_CODE_DIR,
		 spec->rt->runner_file != NULL ? spec->rt->runner_file : "");
	build_argv(spec->rt, spec->warm, runner_path, code_path, argv);
	env = build_env(spec);
	if (env == NULL)
		runner_fail(c, "environment");

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
	/* last: from here on the policy holds for the program and its children */
	if (seccomp_install(msg, sizeof(msg)) < 0) {
		errno = EINVAL;
		runner_fail(c, msg);
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
	char path[64], buf[1024], *p;
	unsigned long long utime = 0, stime = 0;
	long hz = sysconf(_SC_CLK_TCK);
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 || hz <= 0)
		return 0;
	buf[n] = '\0';
	/* after "(comm)": state, then fields 4..13, then utime and stime */
	p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				&utime, &stime) != 2)
		return 0;
	return (utime + stime) * 1000 / (unsigned long long)hz;
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
	cpu_s = (l->cpu_time_ms + runner_cpu_ms(runner) + 999) / 1000;
	if (set_limit_of(runner, RLIMIT_FSIZE, l->max_file_bytes, l->max_file_bytes) < 0 ||
	    set_limit_of(runner, RLIMIT_CPU, cpu_s, cpu_s + 1) < 0 ||
	    set_limit_of(runner, RLIMIT_NPROC, (uint64_t)l->max_processes + 1,
			 (uint64_t)l->max_processes + 1) < 0) {
		snprintf(c->err, sizeof(c->err), "prlimit: %s", strerror(errno));
		child_fail(c, 92);
	}
	snprintf(head, sizeof(head), "%s\n%u\n", path, m->take.env_len);
	if (write_full(go_w, head, strlen(head)) < 0 ||
	    write_full(go_w, m->take.env, m->take.env_len) < 0) {
		snprintf(c->err, sizeof(c->err), "go: %s", strerror(errno));
		child_fail(c, 91);
	}
	close(go_w);
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

/* pid 1 of the sandbox: set up, start the runner, reap, report. */
static __attribute__((noreturn)) void run_init(struct child *c)
{
	struct sandbox_report r = {.type = SANDBOX_REPORT_READY};
	struct rusage ru;
	pid_t runner;
	int status = 0, go_w = -1, exec_sync[2] = {-1, -1};

	proctitle_set("capibox-init");
	for (size_t i = 0; i < sizeof(setup_steps) / sizeof(setup_steps[0]); i++) {
		if (setup_steps[i].run(c) < 0) {
			char msg[160];
			snprintf(msg, sizeof(msg), "%s", c->err);
			snprintf(c->err, sizeof(c->err), "setup step \"%s\" failed: %.110s",
				 setup_steps[i].name, msg);
			child_fail(c, (unsigned)i);
		}
	}
	if (c->spec->warm) {
		int go[2];
		/* a pooled sandbox starts at the lowest priority: its start must
		 * not slow down code that is running; the take restores it
		 * (lowering one's own priority needs no privilege) */
		(void)setpriority(PRIO_PROCESS, 0, 19);
		/* exec_sync: its write end is close-on-exec in the runner, so its
		 * EOF says the runner has set its limits and exec'd */
		if (pipe2(go, O_CLOEXEC) < 0 || pipe2(exec_sync, O_CLOEXEC) < 0) {
			snprintf(c->err, sizeof(c->err), "go pipe: %s", strerror(errno));
			child_fail(c, 98);
		}
		c->go_fd = go[0];
		go_w = go[1];
	}
	runner = fork();
	if (runner < 0) {
		snprintf(c->err, sizeof(c->err), "fork runner: %s", strerror(errno));
		child_fail(c, 99);
	}
	if (runner == 0)
		run_runner(c);

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
		if (c->spec->events_fd >= 0 && collect_globs == NULL)
			close(c->spec->events_fd);
	}
	/* user code runs with our uid: make sure it cannot trace or signal us
	 * into doing anything (pid 1 ignores signals it has no handler for) */
	(void)drop_caps();
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	report(c->report_fd, &r);

	for (;;) {
		pid_t p = waitpid(-1, &status, 0);
		if (p < 0 && errno == EINTR)
			continue;
		if (p < 0)
			break; /* no children left (cannot happen before the runner) */
		if (p == runner)
			break;
	}
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

/* ---- parent side -------------------------------------------------------- */

pid_t sandbox_spawn(const struct sandbox_spec *spec, int *report_fd, bool *into_cgroup, char *err,
		    size_t errlen)
{
	int rep[2] = {-1, -1}, sync[2] = {-1, -1};
	char path[64], map[64];
	pid_t pid;

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
			      spec->warm ? spec->control_fd : rep[1]};
		/* a copy of the supervisor: drop everything of it (its IPC socket,
		 * other sandboxes' pipes, epoll and timers) but what we need */
		close_all_but(keep, sizeof(keep) / sizeof(keep[0]));
		/* hold 0, 1 and 2 so no descriptor opened later lands there and is
		 * overwritten when the runner sets up its standard streams */
		if (open("/dev/null", O_RDWR) != 0 || dup2(0, 1) != 1 || dup2(0, 2) != 2)
			_exit(1);
		run_init(&c);
	}
	close(rep[1]);
	close(sync[0]);
	rep[1] = sync[0] = -1;

	/* inside uid/gid 1000 is this sandbox's own host uid; nothing else maps */
	snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
	snprintf(map, sizeof(map), "%d %u 1\n", SANDBOX_UID, spec->host_uid);
	if (write_file_str(path, map) < 0) {
		snprintf(err, errlen, "write uid_map: %s", strerror(errno));
		goto kill;
	}
	snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
	if (write_file_str(path, "deny") < 0) {
		snprintf(err, errlen, "write setgroups: %s", strerror(errno));
		goto kill;
	}
	snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
	snprintf(map, sizeof(map), "%d %u 1\n", SANDBOX_GID, spec->host_uid);
	if (write_file_str(path, map) < 0) {
		snprintf(err, errlen, "write gid_map: %s", strerror(errno));
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
	for (int i = 0; i < 2; i++) {
		if (rep[i] >= 0)
			close(rep[i]);
		if (sync[i] >= 0)
			close(sync[i]);
	}
	return -1;
}
