/*
 * Integration test harness; see harness.h.
 *
 * The daemon is started with posix_spawn, not fork: test binaries start
 * daemons after gRPC's threads are running (shutdown tests start one per
 * test), and forking a threaded gRPC process is not safe. posix_spawn execs
 * at once. setpriv --pdeathsig makes a daemon stop when the test binary dies
 * (ctest timeout), so no stray capiboxd outlives a run.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include "harness.h"

extern char **environ;

#define MAX_DAEMONS 32

static int env_state = -1; /* -1 unknown, 0 cannot run, 1 can run */
static char env_reason[256];
static char *tmpdirs[MAX_DAEMONS]; /* every tmpdir made, for harness_finish */
static size_t n_tmpdirs;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "harness: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	abort();
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		die("out of memory (%zu bytes)", n);
	return q;
}

double harness_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void harness_sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/*
 * capiboxd creates user, pid, mount and net namespaces: that needs root (or
 * at least CAP_SYS_ADMIN) and a kernel that allows them. Probe in a child so
 * the test process itself stays in its namespaces.
 */
bool harness_init(void)
{
	pid_t pid;
	int status;

	if (env_state >= 0)
		return env_state == 1;
	env_state = 0;
	if (geteuid() != 0) {
		snprintf(env_reason, sizeof(env_reason), "capiboxd must run as root (euid is %u)",
			 (unsigned)geteuid());
		return false;
	}
	pid = fork();
	if (pid == -1)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
			    CLONE_NEWIPC | CLONE_NEWUTS) == -1)
			_exit(10 + (errno & 0x7f));
		_exit(0);
	}
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		int e = WIFEXITED(status) ? WEXITSTATUS(status) - 10 : 0;

		snprintf(env_reason, sizeof(env_reason),
			 "cannot create user/pid/mount/net namespaces here: %s",
			 e > 0 ? strerror(e) : "probe failed");
		return false;
	}
	/* A missing capiboxd is a build failure, not a reason to skip: start fails. */
	env_state = 1;
	return true;
}

const char *harness_skip_reason(void) { return env_reason[0] ? env_reason : "unknown"; }

static int read_file(const char *path, char *buf, size_t len)
{
	int fd;
	ssize_t n;
	size_t got = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return -1;
	while (got + 1 < len) {
		n = read(fd, buf + got, len - 1 - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return (int)got;
}

char *harness_daemon_log(const struct daemon *d)
{
	FILE *f = fopen(d->log_file, "re");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;
	char tmp[4096];

	buf = xrealloc(NULL, 1);
	buf[0] = '\0';
	if (f == NULL)
		return buf;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			buf = xrealloc(buf, cap);
		}
		memcpy(buf + len, tmp, n);
		len += n;
		buf[len] = '\0';
	}
	fclose(f);
	return buf;
}

void harness_daemon_dump_log(const struct daemon *d)
{
	FILE *f;
	char line[4096];

	if (d->log_file[0] == '\0')
		return;
	printf("----- capiboxd log (%s) -----\n", d->log_file);
	f = fopen(d->log_file, "re");
	if (f == NULL) {
		printf("(cannot open: %s)\n", strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f) != NULL)
		fputs(line, stdout);
	fclose(f);
	printf("----- end of capiboxd log -----\n");
	fflush(stdout);
}

/* The daemon writes its address once it serves; wait until it is complete. */
static int wait_ready(struct daemon *d, int timeout_ms)
{
	double end = harness_now() + timeout_ms / 1000.0;
	char prev[sizeof(d->addr)] = "";
	char cur[sizeof(d->addr)];

	while (harness_now() < end) {
		int status;
		pid_t w = waitpid(d->pid, &status, WNOHANG);

		if (w == d->pid) {
			d->exited = true;
			d->status = status;
			printf("harness: capiboxd exited before it was ready (status 0x%x)\n",
			       status);
			return -1;
		}
		if (read_file(d->ready_file, cur, sizeof(cur)) > 0) {
			cur[strcspn(cur, "\r\n")] = '\0';
			/* Same content twice in a row: the write is complete. */
			if (cur[0] != '\0' && strcmp(cur, prev) == 0) {
				snprintf(d->addr, sizeof(d->addr), "%s", cur);
				return 0;
			}
			snprintf(prev, sizeof(prev), "%s", cur);
		}
		harness_sleep_ms(20);
	}
	printf("harness: no ready file %s after %d ms\n", d->ready_file, timeout_ms);
	return -1;
}

void harness_remove_at_finish(const char *path)
{
	if (n_tmpdirs == MAX_DAEMONS)
		die("more than %d directories to remove", MAX_DAEMONS);
	tmpdirs[n_tmpdirs] = strdup(path);
	if (tmpdirs[n_tmpdirs] == NULL)
		die("out of memory");
	n_tmpdirs++;
}

int harness_daemon_start(struct daemon *d, const struct daemon_opts *opts)
{
	static const struct daemon_opts none;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t empty, deflt;
	const char *argv[64];
	char **envp;
	char grace[16], uid_base[16], secret_env[128];
	size_t argc = 0, n_env = 0, i;
	char *colon, *end;
	char err[256];
	struct capibox_connect_opts copts = {0};
	int rc;

	if (opts == NULL)
		opts = &none;
	memset(d, 0, sizeof(*d));
	snprintf(d->tmpdir, sizeof(d->tmpdir), "/tmp/capibox-integ-XXXXXX");
	if (mkdtemp(d->tmpdir) == NULL)
		die("mkdtemp: %s", strerror(errno));
	harness_remove_at_finish(d->tmpdir);
	snprintf(d->state_dir, sizeof(d->state_dir), "%s/state", d->tmpdir);
	snprintf(d->ready_file, sizeof(d->ready_file), "%s/addr", d->tmpdir);
	snprintf(d->log_file, sizeof(d->log_file), "%s/capiboxd.log", d->tmpdir);
	/*
	 * The sandbox's mount point lives under the state dir and is reached
	 * by the sandbox's unprivileged host uid: the dir must be traversable
	 * (mkdtemp makes it 0700). The log file itself stays 0600.
	 */
	if (chmod(d->tmpdir, 0711) == -1)
		die("chmod %s: %s", d->tmpdir, strerror(errno));
	/*
	 * Binaries of one run differ by slot; runs from other checkouts on
	 * the same machine (another build dir) most likely differ by pid.
	 */
	d->uid_base = 3000000u + ((unsigned)(getpid() % 100) * 8u + opts->uid_slot % 8u) *
					 (HARNESS_UID_COUNT + HARNESS_UID_GAP);
	snprintf(d->secret, sizeof(d->secret), "s3cr3t-%ld-%ld", (long)getpid(), (long)time(NULL));
	snprintf(grace, sizeof(grace), "%u", opts->grace_s ? opts->grace_s : 2);
	snprintf(uid_base, sizeof(uid_base), "%u", (unsigned)d->uid_base);
	snprintf(secret_env, sizeof(secret_env), "%s=%s", HARNESS_SECRET_NAME, d->secret);

	if (access("/usr/bin/setpriv", X_OK) == 0) {
		argv[argc++] = "/usr/bin/setpriv";
		argv[argc++] = "--pdeathsig";
		argv[argc++] = "TERM";
		argv[argc++] = "--";
	}
	argv[argc++] = CAPIBOXD_PATH;
	argv[argc++] = "--listen";
	argv[argc++] = opts->listen ? opts->listen : "127.0.0.1:0";
	argv[argc++] = "--ready-file";
	argv[argc++] = d->ready_file;
	argv[argc++] = "--grace";
	argv[argc++] = grace;
	argv[argc++] = "--state-dir";
	argv[argc++] = d->state_dir;
	argv[argc++] = "--uid-base";
	argv[argc++] = uid_base;
	for (i = 0; opts->extra != NULL && opts->extra[i] != NULL && argc < 63; i++)
		argv[argc++] = opts->extra[i];
	argv[argc] = NULL;

	/* The daemon's environment: ours plus a secret the sandbox must not see. */
	while (environ[n_env] != NULL)
		n_env++;
	envp = xrealloc(NULL, (n_env + 2) * sizeof(*envp));
	for (i = 0; i < n_env; i++)
		envp[i] = environ[i];
	envp[n_env] = secret_env;
	envp[n_env + 1] = NULL;

	if (posix_spawn_file_actions_init(&fa) != 0 || posix_spawnattr_init(&attr) != 0)
		die("posix_spawn init");
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, d->log_file,
					 O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	/* A clean signal state, whatever the test process blocked or ignored. */
	sigemptyset(&empty);
	sigemptyset(&deflt);
	sigaddset(&deflt, SIGTERM);
	sigaddset(&deflt, SIGINT);
	sigaddset(&deflt, SIGPIPE);
	sigaddset(&deflt, SIGCHLD);
	posix_spawnattr_setsigmask(&attr, &empty);
	posix_spawnattr_setsigdefault(&attr, &deflt);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

	rc = posix_spawn(&d->pid, argv[0], &fa, &attr, (char *const *)argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(envp);
	if (rc != 0) {
		printf("harness: posix_spawn %s: %s\n", argv[0], strerror(rc));
		d->pid = 0;
		return -1;
	}
	if (wait_ready(d, 20000) == -1)
		goto fail;

	colon = strrchr(d->addr, ':');
	if (strncmp(d->addr, "unix:", 5) != 0 && colon != NULL) {
		unsigned long p;

		errno = 0;
		p = strtoul(colon + 1, &end, 10);
		if (errno != 0 || *end != '\0' || p == 0 || p > 65535) {
			printf("harness: bad address in ready file: \"%s\"\n", d->addr);
			goto fail;
		}
		d->port = (unsigned)p;
	}
	if (opts->client != NULL)
		copts = *opts->client;
	d->client = capibox_connect(d->addr, &copts, err, sizeof(err));
	if (d->client == NULL) {
		printf("harness: capibox_connect %s: %s\n", d->addr, err);
		goto fail;
	}
	return 0;
fail:
	harness_daemon_dump_log(d);
	harness_daemon_kill(d);
	return -1;
}

void harness_daemon_signal(struct daemon *d, int sig)
{
	if (d->pid > 0 && !d->exited)
		kill(d->pid, sig);
}

int harness_daemon_wait(struct daemon *d, int timeout_ms)
{
	double end = harness_now() + timeout_ms / 1000.0;
	int status;

	if (d->pid <= 0)
		return -1;
	if (d->exited)
		return 0;
	do {
		pid_t w = waitpid(d->pid, &status, WNOHANG);

		if (w == d->pid) {
			d->exited = true;
			d->status = status;
			return 0;
		}
		if (w == -1 && errno != EINTR)
			die("waitpid %ld: %s", (long)d->pid, strerror(errno));
		harness_sleep_ms(10);
	} while (harness_now() < end);
	return -1;
}

int harness_daemon_stop(struct daemon *d)
{
	if (d->client != NULL) {
		capibox_close(d->client);
		d->client = NULL;
	}
	if (d->pid <= 0)
		return -1;
	harness_daemon_signal(d, SIGTERM);
	if (harness_daemon_wait(d, 20000) == -1) {
		printf("harness: capiboxd did not exit within 20 s of SIGTERM; killing it\n");
		harness_daemon_kill(d);
		return -1;
	}
	d->pid = 0;
	if (WIFEXITED(d->status))
		return WEXITSTATUS(d->status);
	if (WIFSIGNALED(d->status))
		return 128 + WTERMSIG(d->status);
	return -1;
}

void harness_daemon_kill(struct daemon *d)
{
	if (d->client != NULL) {
		capibox_close(d->client);
		d->client = NULL;
	}
	if (d->pid > 0 && !d->exited) {
		kill(d->pid, SIGKILL);
		while (waitpid(d->pid, &d->status, 0) == -1 && errno == EINTR)
			;
		d->exited = true;
	}
	d->pid = 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

int harness_finish(int rc)
{
	size_t i;
	bool keep = getenv("CAPIBOX_TEST_KEEP") != NULL;
	char log[256];

	for (i = 0; i < n_tmpdirs; i++) {
		struct stat st;

		snprintf(log, sizeof(log), "%s/capiboxd.log", tmpdirs[i]);
		if (rc != 0 && stat(log, &st) == 0) {
			struct daemon tmp;

			memset(&tmp, 0, sizeof(tmp));
			snprintf(tmp.log_file, sizeof(tmp.log_file), "%s/capiboxd.log", tmpdirs[i]);
			harness_daemon_dump_log(&tmp);
		}
		/* FTW_MOUNT: never descend into a mount a broken daemon left behind. */
		if (!keep)
			nftw(tmpdirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
		free(tmpdirs[i]);
	}
	n_tmpdirs = 0;
	if (rc == 0 && env_state == 0) {
		printf("SKIPPED: %s\n", harness_skip_reason());
		return 77;
	}
	return rc == 0 ? 0 : 1;
}

/* --- executions ------------------------------------------------------------- */

static void append(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *data, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap : 4096;

		while (c < *len + n + 1)
			c *= 2;
		*buf = xrealloc(*buf, c);
		*cap = c;
	}
	if (n > 0)
		memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
}

static void copy_str(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

static int run_cb(const struct capibox_event *ev, void *arg)
{
	struct run *r = arg;
	double t = harness_now() - r->t0;

	r->n_events++;
	if (r->n_finished > 0)
		r->order_ok = false;
	if (r->n_events == 1 && ev->kind != CAPIBOX_EVENT_STARTED)
		r->order_ok = false;
	switch (ev->kind) {
	case CAPIBOX_EVENT_STARTED:
		r->n_started++;
		if (r->n_events != 1)
			r->order_ok = false;
		copy_str(r->sandbox_id, sizeof(r->sandbox_id), ev->u.started.sandbox_id);
		copy_str(r->language, sizeof(r->language), ev->u.started.language);
		copy_str(r->backend, sizeof(r->backend), ev->u.started.backend);
		r->queued_us = ev->u.started.queued_us;
		r->start_us = ev->u.started.start_us;
		r->t_started = t;
		break;
	case CAPIBOX_EVENT_STDOUT:
	case CAPIBOX_EVENT_STDERR: {
		bool out = ev->kind == CAPIBOX_EVENT_STDOUT;
		struct run_chunk *c;

		if (r->n_chunks == r->cap_chunks) {
			r->cap_chunks = r->cap_chunks ? r->cap_chunks * 2 : 64;
			r->chunks = xrealloc(r->chunks, r->cap_chunks * sizeof(*r->chunks));
		}
		c = &r->chunks[r->n_chunks++];
		c->kind = ev->kind;
		c->off = out ? r->out_len : r->err_len;
		c->len = ev->u.output.len;
		c->t = t;
		if (ev->u.output.len > r->max_chunk)
			r->max_chunk = ev->u.output.len;
		if (out)
			append(&r->out, &r->out_len, &r->out_cap, ev->u.output.data,
			       ev->u.output.len);
		else
			append(&r->err, &r->err_len, &r->err_cap, ev->u.output.data,
			       ev->u.output.len);
		break;
	}
	case CAPIBOX_EVENT_FINISHED:
		r->n_finished++;
		r->reason = ev->u.finished.reason;
		r->exit_code = ev->u.finished.exit_code;
		r->signal = ev->u.finished.signal;
		r->wall_time_us = ev->u.finished.wall_time_us;
		r->cpu_time_us = ev->u.finished.cpu_time_us;
		r->peak_memory_bytes = ev->u.finished.peak_memory_bytes;
		r->stdout_bytes = ev->u.finished.stdout_bytes;
		r->stderr_bytes = ev->u.finished.stderr_bytes;
		copy_str(r->message, sizeof(r->message), ev->u.finished.message);
		r->t_finished = t;
		break;
	default: break;
	}
	if (r->hook != NULL)
		return r->hook(ev, r, r->hook_arg);
	return 0;
}

int harness_run(struct daemon *d, const struct capibox_exec_request *req, struct run *r)
{
	run_hook hook = r->hook;
	void *hook_arg = r->hook_arg;

	memset(r, 0, sizeof(*r));
	r->hook = hook;
	r->hook_arg = hook_arg;
	r->order_ok = true;
	r->t_started = r->t_finished = -1;
	/* Both streams always have a buffer, so tests can strstr them. */
	append(&r->out, &r->out_len, &r->out_cap, NULL, 0);
	append(&r->err, &r->err_len, &r->err_cap, NULL, 0);
	if (d->client == NULL) {
		r->rc = r->st.code = CAPIBOX_UNAVAILABLE;
		snprintf(r->st.message, sizeof(r->st.message),
			 "harness: no client (daemon not running)");
		return r->rc;
	}
	r->t0 = harness_now();
	r->rc = capibox_execute(d->client, req, run_cb, r, &r->st);
	r->t_end = harness_now() - r->t0;
	return r->rc;
}

int harness_run_code(struct daemon *d, const char *language, const char *code, struct run *r)
{
	struct capibox_exec_request req = {.language = language, .code = code};

	return harness_run(d, &req, r);
}

void harness_run_free(struct run *r)
{
	free(r->out);
	free(r->err);
	free(r->chunks);
	r->out = r->err = NULL;
	r->chunks = NULL;
}

static void print_head(const char *name, const uint8_t *buf, size_t len)
{
	size_t show = len > 2000 ? 2000 : len;

	printf("  %s (%zu bytes)%s:\n", name, len, len > show ? ", first 2000" : "");
	if (show > 0)
		printf("    |%.*s|\n", (int)show, (const char *)buf);
}

void harness_run_print(const struct run *r)
{
	printf("run: rc=%d status=%d \"%s\" after %.3f s\n", r->rc, r->st.code, r->st.message,
	       r->t_end);
	printf("  events=%d started=%d finished=%d order_ok=%d chunks=%zu max_chunk=%zu\n",
	       r->n_events, r->n_started, r->n_finished, r->order_ok, r->n_chunks, r->max_chunk);
	if (r->n_started)
		printf("  started: sandbox_id=\"%s\" language=\"%s\" backend=\"%s\" queued_us=%llu start_us=%llu at %.3f s\n",
		       r->sandbox_id, r->language, r->backend, (unsigned long long)r->queued_us,
		       (unsigned long long)r->start_us, r->t_started);
	print_head("stdout", r->out, r->out_len);
	print_head("stderr", r->err, r->err_len);
	if (r->n_finished)
		printf("  finished: reason=%d (%s) exit_code=%d signal=%d wall_us=%llu cpu_us=%llu peak_mem=%llu "
		       "stdout_bytes=%llu stderr_bytes=%llu message=\"%s\" at %.3f s\n",
		       r->reason, capibox_reason_name(r->reason), r->exit_code, r->signal,
		       (unsigned long long)r->wall_time_us, (unsigned long long)r->cpu_time_us,
		       (unsigned long long)r->peak_memory_bytes,
		       (unsigned long long)r->stdout_bytes, (unsigned long long)r->stderr_bytes,
		       r->message, r->t_finished);
	fflush(stdout);
}

double harness_run_time_of(const struct run *r, int kind, const char *needle)
{
	const uint8_t *buf = kind == CAPIBOX_EVENT_STDOUT ? r->out : r->err;
	size_t len = kind == CAPIBOX_EVENT_STDOUT ? r->out_len : r->err_len;
	const uint8_t *p;
	size_t last, i;

	if (buf == NULL || needle[0] == '\0')
		return -1;
	p = memmem(buf, len, needle, strlen(needle));
	if (p == NULL)
		return -1;
	last = (size_t)(p - buf) + strlen(needle) - 1;
	for (i = 0; i < r->n_chunks; i++) {
		const struct run_chunk *c = &r->chunks[i];

		if (c->kind == kind && c->off <= last && last < c->off + c->len)
			return c->t;
	}
	return -1;
}

/* --- host inspection -------------------------------------------------------- */

static bool is_pid_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static pid_t pid_of(const char *s) { return (pid_t)strtol(s, NULL, 10); }

size_t harness_find_procs(const char *needle, pid_t *pids, size_t max)
{
	DIR *dir = opendir("/proc");
	struct dirent *de;
	size_t n = 0;

	if (dir == NULL)
		die("opendir /proc: %s", strerror(errno));
	while ((de = readdir(dir)) != NULL) {
		char path[300], cmd[4096];
		int len, i;

		if (!is_pid_name(de->d_name) || pid_of(de->d_name) == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
		len = read_file(path, cmd, sizeof(cmd));
		if (len <= 0)
			continue;
		for (i = 0; i < len; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		if (strstr(cmd, needle) != NULL) {
			if (n < max)
				pids[n] = pid_of(de->d_name);
			n++;
		}
	}
	closedir(dir);
	return n;
}

uid_t harness_proc_uid(pid_t pid)
{
	char path[64], buf[4096];
	const char *p;
	unsigned long uid;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if (read_file(path, buf, sizeof(buf)) <= 0)
		return (uid_t)-1;
	p = strstr(buf, "\nUid:");
	if (p == NULL)
		return (uid_t)-1;
	errno = 0;
	uid = strtoul(p + 5, NULL, 10);
	if (errno != 0)
		return (uid_t)-1;
	return (uid_t)uid;
}

/* The cgroup path of hierarchy hier ("4:memory") in a /proc/<pid>/cgroup text, or NULL. */
static const char *cgroup_of(const char *text, const char *hier, char *buf, size_t len)
{
	const char *line = text, *nl;
	size_t hl = strlen(hier);

	for (; *line != '\0'; line = nl + 1) {
		nl = strchr(line, '\n');
		if (nl == NULL)
			nl = line + strlen(line);
		if ((size_t)(nl - line) > hl && strncmp(line, hier, hl) == 0 && line[hl] == ':') {
			snprintf(buf, len, "%.*s", (int)(nl - line - hl - 1), line + hl + 1);
			return buf;
		}
		if (*nl == '\0')
			break;
	}
	return NULL;
}

size_t harness_proc_cgroups(pid_t pid, char (*dirs)[256], size_t max)
{
	char path[64], theirs[4096], ours[4096];
	const char *line, *nl;
	size_t n = 0;

	snprintf(path, sizeof(path), "/proc/%ld/cgroup", (long)pid);
	if (read_file(path, theirs, sizeof(theirs)) <= 0 ||
	    read_file("/proc/self/cgroup", ours, sizeof(ours)) <= 0)
		return 0;
	for (line = theirs; *line != '\0' && n < max; line = nl + 1) {
		/* "4:memory:/capibox/sb-1", "9:name=systemd:/", "0::/x" */
		char hier[128], ctrl[128], cg[256], mine[256], dir[512];
		const char *c1, *c2;
		struct stat st;

		nl = strchr(line, '\n');
		if (nl == NULL)
			break;
		c1 = memchr(line, ':', (size_t)(nl - line));
		c2 = c1 ? memchr(c1 + 1, ':', (size_t)(nl - c1 - 1)) : NULL;
		if (c2 == NULL)
			continue;
		snprintf(hier, sizeof(hier), "%.*s", (int)(c2 - line), line);
		snprintf(ctrl, sizeof(ctrl), "%.*s", (int)(c2 - c1 - 1), c1 + 1);
		snprintf(cg, sizeof(cg), "%.*s", (int)(nl - c2 - 1), c2 + 1);
		if (strcmp(cg, "/") == 0 ||
		    (cgroup_of(ours, hier, mine, sizeof(mine)) != NULL && strcmp(mine, cg) == 0))
			continue;
		if (ctrl[0] == '\0')
			snprintf(dir, sizeof(dir), "/sys/fs/cgroup/unified%s", cg);
		else if (strncmp(ctrl, "name=", 5) == 0)
			snprintf(dir, sizeof(dir), "/sys/fs/cgroup/%s%s", ctrl + 5, cg);
		else
			snprintf(dir, sizeof(dir), "/sys/fs/cgroup/%s%s", ctrl, cg);
		if (ctrl[0] == '\0' && stat(dir, &st) != 0)
			snprintf(dir, sizeof(dir), "/sys/fs/cgroup%s", cg); /* pure cgroup v2 */
		if (stat(dir, &st) != 0 || strlen(dir) >= 256)
			continue;
		memcpy(dirs[n++], dir, strlen(dir) + 1);
	}
	return n;
}

size_t harness_cgroup_pids(const char *dir, pid_t *pids, size_t max)
{
	char path[320], buf[16384], *p, *end;
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	if (read_file(path, buf, sizeof(buf)) <= 0)
		return 0;
	for (p = buf;; p = end) {
		long pid = strtol(p, &end, 10);
		if (end == p)
			break;
		if (n < max)
			pids[n] = (pid_t)pid;
		n++;
	}
	return n;
}

/* The first of pids that cgroup directory dir holds, or 0. */
static pid_t group_holds(const char *dir, const pid_t *pids, size_t npids)
{
	pid_t in[256];
	size_t n = harness_cgroup_pids(dir, in, 256);

	for (size_t k = 0; k < n && k < 256; k++)
		for (size_t i = 0; i < npids; i++)
			if (pids[i] == in[k])
				return in[k];
	return 0;
}

bool harness_wait_groups_without(char (*dirs)[256], size_t n, const pid_t *pids, size_t npids,
				 int timeout_ms)
{
	double end = harness_now() + timeout_ms / 1000.0;
	size_t i, left;

	for (;;) {
		for (i = 0, left = 0; i < n; i++)
			if (group_holds(dirs[i], pids, npids) != 0)
				left++;
		if (left == 0)
			return true;
		if (harness_now() >= end)
			break;
		harness_sleep_ms(10);
	}
	for (i = 0; i < n; i++) {
		pid_t p = group_holds(dirs[i], pids, npids);
		if (p != 0)
			printf("still holds pid %ld: %s\n", (long)p, dirs[i]);
	}
	return false;
}

long harness_proc_rss_kib(pid_t pid)
{
	char path[64], buf[4096];
	const char *p;
	long kib;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if (read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	p = strstr(buf, "\nVmRSS:");
	if (p == NULL)
		return -1;
	errno = 0;
	kib = strtol(p + 7, NULL, 10);
	return errno == 0 ? kib : -1;
}

size_t harness_procs_in_uid_range(uid_t lo, uid_t hi, pid_t *pids, size_t max)
{
	DIR *dir = opendir("/proc");
	struct dirent *de;
	size_t n = 0;

	if (dir == NULL)
		die("opendir /proc: %s", strerror(errno));
	while ((de = readdir(dir)) != NULL) {
		uid_t uid;

		if (!is_pid_name(de->d_name))
			continue;
		uid = harness_proc_uid(pid_of(de->d_name));
		if (uid == (uid_t)-1 || uid < lo || uid >= hi)
			continue;
		if (n < max)
			pids[n] = pid_of(de->d_name);
		n++;
	}
	closedir(dir);
	return n;
}

bool harness_proc_alive(pid_t pid)
{
	char path[64];
	struct stat st;

	/* A zombie still counts: the sandbox's parent has not cleaned it up. */
	snprintf(path, sizeof(path), "/proc/%ld", (long)pid);
	return stat(path, &st) == 0;
}

bool harness_wait_no_procs(const char *needle, int timeout_ms)
{
	double end = harness_now() + timeout_ms / 1000.0;
	pid_t p;

	for (;;) {
		if (harness_find_procs(needle, &p, 1) == 0)
			return true;
		if (harness_now() >= end)
			return false;
		harness_sleep_ms(20);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char *harness_mounts(void)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	char **lines = NULL;
	size_t n = 0, cap = 0, total = 1, off = 0, i;
	char *out;

	if (f == NULL)
		die("open mountinfo: %s", strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		/* id parent major:minor root mountpoint options ... - fstype source superopts */
		char root[4096], mnt[4096], fstype[256], source[4096];
		const char *sep = strstr(line, " - ");
		char buf[16384];

		if (sep == NULL || sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 ||
		    sscanf(sep + 3, "%255s %4095s", fstype, source) != 2)
			continue;
		snprintf(buf, sizeof(buf), "%s %s %s %s", mnt, fstype, source, root);
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			lines = xrealloc(lines, cap * sizeof(*lines));
		}
		lines[n] = strdup(buf);
		if (lines[n] == NULL)
			die("out of memory");
		total += strlen(buf) + 1;
		n++;
	}
	fclose(f);
	qsort(lines, n, sizeof(*lines), cmp_str);
	out = xrealloc(NULL, total);
	for (i = 0; i < n; i++) {
		size_t l = strlen(lines[i]);

		memcpy(out + off, lines[i], l);
		out[off + l] = '\n';
		off += l + 1;
		free(lines[i]);
	}
	out[off] = '\0';
	free(lines);
	return out;
}

/* --- raw gRPC calls --------------------------------------------------------- */

static grpc_event cq_wait(grpc_completion_queue *cq, int64_t ms)
{
	gpr_timespec dl =
		gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));

	return grpc_completion_queue_next(cq, dl, NULL);
}

int harness_raw_call(const char *target, const char *method, const void *req, size_t len,
		     int64_t deadline_ms, struct raw_result *out)
{
	return harness_raw_call_opts(target, method, req, len, deadline_ms, NULL, out);
}

static char *file_slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0, n;
	char tmp[4096];

	if (f == NULL)
		die("open %s: %s", path, strerror(errno));
	buf = xrealloc(NULL, 1);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
		buf = xrealloc(buf, len + n + 1);
		memcpy(buf + len, tmp, n);
		len += n;
	}
	buf[len] = '\0';
	fclose(f);
	return buf;
}

static grpc_channel_credentials *raw_creds(const struct raw_opts *o)
{
	grpc_ssl_pem_key_cert_pair pair;
	grpc_channel_credentials *creds;
	char *ca = NULL;

	if (o == NULL || !o->tls)
		return grpc_insecure_credentials_create();
	if (o->ca_file)
		ca = file_slurp(o->ca_file);
	if (o->cert_file) {
		pair.cert_chain = file_slurp(o->cert_file);
		pair.private_key = file_slurp(o->key_file);
	}
	creds = grpc_ssl_credentials_create(ca, o->cert_file ? &pair : NULL, NULL, NULL);
	free(ca);
	if (o->cert_file) {
		free((char *)pair.cert_chain);
		free((char *)pair.private_key);
	}
	return creds;
}

int harness_command(const char *const *argv, char **out)
{
	posix_spawn_file_actions_t fa;
	int pfd[2], status, rc;
	pid_t pid;
	size_t len = 0;
	char tmp[4096];
	ssize_t n;

	if (pipe2(pfd, O_CLOEXEC) == -1)
		die("pipe2: %s", strerror(errno));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	*out = xrealloc(NULL, 1);
	(*out)[0] = '\0';
	if (rc != 0) {
		printf("harness: posix_spawn %s: %s\n", argv[0], strerror(rc));
		close(pfd[0]);
		return -1;
	}
	for (;;) {
		n = read(pfd[0], tmp, sizeof(tmp));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		*out = xrealloc(*out, len + (size_t)n + 1);
		memcpy(*out + len, tmp, (size_t)n);
		len += (size_t)n;
		(*out)[len] = '\0';
	}
	close(pfd[0]);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int harness_raw_call_opts(const char *target, const char *method, const void *req, size_t len,
			  int64_t deadline_ms, const struct raw_opts *o, struct raw_result *out)
{
	grpc_channel_credentials *creds;
	grpc_metadata md = {0};
	grpc_arg arg;
	grpc_channel_args chargs = {0, NULL};
	grpc_channel *ch;
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_slice mslice, details = grpc_empty_slice();
	grpc_metadata_array init_md, trail_md;
	grpc_byte_buffer *send = NULL, *recv = NULL;
	grpc_status_code code = GRPC_STATUS_UNKNOWN;
	grpc_op ops[4];
	grpc_event ev;
	size_t nops = 0;
	int64_t wait_ms = deadline_ms + 5000;
	gpr_timespec deadline;

	memset(out, 0, sizeof(*out));
	grpc_init();
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);
	creds = raw_creds(o);
	if (o != NULL && o->server_name != NULL) {
		arg.type = GRPC_ARG_STRING;
		arg.key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
		arg.value.string = (char *)o->server_name;
		chargs.num_args = 1;
		chargs.args = &arg;
	}
	ch = grpc_channel_create(target, creds, &chargs);
	grpc_channel_credentials_release(creds);
	cq = grpc_completion_queue_create_for_next(NULL);
	mslice = grpc_slice_from_copied_string(method);
	deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
				gpr_time_from_millis(deadline_ms, GPR_TIMESPAN));
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, mslice, NULL,
					deadline, NULL);
	grpc_slice_unref(mslice);

	memset(ops, 0, sizeof(ops));
	if (o != NULL && o->md_key != NULL) {
		md.key = grpc_slice_from_static_string(o->md_key);
		md.value = grpc_slice_from_static_string(o->md_value);
		ops[nops].data.send_initial_metadata.count = 1;
		ops[nops].data.send_initial_metadata.metadata = &md;
	}
	ops[nops++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (req != NULL) {
		grpc_slice s = grpc_slice_from_copied_buffer(req, len);

		send = grpc_raw_byte_buffer_create(&s, 1);
		grpc_slice_unref(s);
		ops[nops].op = GRPC_OP_SEND_MESSAGE;
		ops[nops++].data.send_message.send_message = send;
	}
	ops[nops++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[nops].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[nops++].data.recv_initial_metadata.recv_initial_metadata = &init_md;
	if (grpc_call_start_batch(call, ops, nops, (void *)1, NULL) != GRPC_CALL_OK)
		die("start_batch (send)");
	ev = cq_wait(cq, wait_ms);
	if (ev.type != GRPC_OP_COMPLETE)
		die("raw call %s: no completion for the send batch", method);

	/* One message at a time until the end of the stream. */
	for (;;) {
		memset(ops, 0, sizeof(ops));
		ops[0].op = GRPC_OP_RECV_MESSAGE;
		ops[0].data.recv_message.recv_message = &recv;
		recv = NULL;
		if (grpc_call_start_batch(call, ops, 1, (void *)2, NULL) != GRPC_CALL_OK)
			die("start_batch (recv)");
		ev = cq_wait(cq, wait_ms);
		if (ev.type != GRPC_OP_COMPLETE)
			die("raw call %s: no completion for a receive", method);
		if (recv == NULL)
			break;
		if (out->n_messages == 0) {
			grpc_byte_buffer_reader rd;
			grpc_slice all;

			if (!grpc_byte_buffer_reader_init(&rd, recv))
				die("byte buffer reader");
			all = grpc_byte_buffer_reader_readall(&rd);
			grpc_byte_buffer_reader_destroy(&rd);
			out->first_len = GRPC_SLICE_LENGTH(all);
			out->first = xrealloc(NULL, out->first_len);
			memcpy(out->first, GRPC_SLICE_START_PTR(all), out->first_len);
			grpc_slice_unref(all);
		}
		out->n_messages++;
		grpc_byte_buffer_destroy(recv);
	}

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &trail_md;
	ops[0].data.recv_status_on_client.status = &code;
	ops[0].data.recv_status_on_client.status_details = &details;
	if (grpc_call_start_batch(call, ops, 1, (void *)3, NULL) != GRPC_CALL_OK)
		die("start_batch (status)");
	ev = cq_wait(cq, wait_ms);
	if (ev.type != GRPC_OP_COMPLETE)
		die("raw call %s: no status", method);

	out->code = (int)code;
	snprintf(out->message, sizeof(out->message), "%.*s", (int)GRPC_SLICE_LENGTH(details),
		 (const char *)GRPC_SLICE_START_PTR(details));

	if (send != NULL)
		grpc_byte_buffer_destroy(send);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	grpc_call_unref(call);
	grpc_channel_destroy(ch);
	grpc_completion_queue_shutdown(cq);
	if (cq_wait(cq, 5000).type != GRPC_QUEUE_SHUTDOWN)
		die("raw call %s: completion queue did not drain", method);
	grpc_completion_queue_destroy(cq);
	grpc_shutdown();
	return out->code;
}

void harness_raw_free(struct raw_result *out)
{
	free(out->first);
	out->first = NULL;
}

/* --- shared cmocka pieces ----------------------------------------------------- */

int harness_group_setup(void **state, struct daemon *d, const struct daemon_opts *opts)
{
	memset(d, 0, sizeof(*d));
	*state = d;
	if (harness_init())
		harness_daemon_start(d, opts);
	return 0;
}

int harness_group_teardown(void **state)
{
	harness_daemon_kill(*state);
	return 0;
}

void harness_test_daemon_stops(void **state)
{
	struct daemon *d = *state;
	uid_t lo = d->uid_base, hi = d->uid_base + HARNESS_UID_COUNT;
	pid_t left[16];
	size_t n = 0, i;
	double end;
	char *mounts;
	int rc;

	HARNESS_REQUIRE(d);
	rc = harness_daemon_stop(d);
	if (rc != 0)
		fail_msg(
			"capiboxd did not exit 0 after SIGTERM: got %d (128+n = killed by signal n, -1 = hung)",
			rc);
	/* Everything the daemon started goes with it: warm pool sandboxes too
	 * (their teardown, netns and all, can take a while on a loaded machine:
	 * a bound for the wait, not a timing) */
	end = harness_now() + 5.0;
	do {
		n = harness_procs_in_uid_range(lo, hi, left, 16);
		if (n == 0)
			break;
		harness_sleep_ms(20);
	} while (harness_now() < end);
	for (i = 0; i < n && i < 16; i++) {
		char path[64], stat[160] = "";
		FILE *f;

		/* "pid (comm) state ppid ...": what it is and whether it is dying */
		snprintf(path, sizeof(path), "/proc/%ld/stat", (long)left[i]);
		f = fopen(path, "r");
		if (f != NULL) {
			if (fgets(stat, sizeof(stat), f) == NULL)
				stat[0] = '\0';
			fclose(f);
		}
		stat[strcspn(stat, "\n")] = '\0';
		printf("left behind: pid %ld uid %u: %.60s\n", (long)left[i],
		       (unsigned)harness_proc_uid(left[i]), stat);
	}
	assert_int_equal(n, 0);
	mounts = harness_mounts();
	if (strstr(mounts, d->tmpdir) != NULL) {
		printf("%s", mounts);
		free(mounts);
		fail_msg("a mount under %s is left after the daemon exited", d->tmpdir);
	}
	free(mounts);
}

bool harness_keygen(const char *id, char *secret, size_t secret_len, char *line, size_t line_len)
{
	const char *argv[] = {CAPIBOXD_PATH, "keygen", id, NULL};
	char *out, *lines[4], *p;
	int rc = harness_command(argv, &out), n = 0;

	if (rc != 0) {
		printf("capiboxd keygen %s exited %d:\n%s\n", id, rc, out);
		free(out);
		return false;
	}
	/* the secret on the 2nd line, the keys-file line on the 4th */
	for (p = out; n < 4 && p && *p; n++) {
		lines[n] = p;
		p = strchr(p, '\n');
		if (p)
			*p++ = '\0';
	}
	if (n < 4 || strncmp(lines[1], "cbx_", 4) != 0 || strncmp(lines[3], id, strlen(id)) != 0) {
		printf("unexpected keygen output\n");
		free(out);
		return false;
	}
	snprintf(secret, secret_len, "%s", lines[1]);
	snprintf(line, line_len, "%s", lines[3]);
	free(out);
	return true;
}

void harness_names_add(struct names *ns, const char *s)
{
	char **v = realloc(ns->v, (ns->n + 1) * sizeof(*ns->v));
	char *c = strdup(s);

	if (v == NULL || c == NULL)
		abort();
	ns->v = v;
	ns->v[ns->n++] = c;
}

bool harness_names_has(const struct names *ns, const char *s)
{
	for (size_t i = 0; i < ns->n; i++)
		if (strcmp(ns->v[i], s) == 0)
			return true;
	return false;
}

void harness_names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	ns->v = NULL;
	ns->n = 0;
}

static struct names *walk_into;

static int walk_add(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	harness_names_add(walk_into, path);
	return 0;
}

void harness_walk(const char *dir, struct names *ns)
{
	walk_into = ns;
	nftw(dir, walk_add, 16, FTW_PHYS | FTW_MOUNT);
}

void harness_temp_entries(struct names *ns)
{
	static const char *const dirs[] = {"/tmp", "/var/tmp", "/dev/shm", "/run", NULL};

	for (size_t i = 0; dirs[i] != NULL; i++) {
		DIR *dir = opendir(dirs[i]);
		struct dirent *de;
		char path[512];

		if (dir == NULL)
			continue;
		while ((de = readdir(dir)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dirs[i], de->d_name);
			harness_names_add(ns, path);
		}
		closedir(dir);
	}
}

void harness_piece_set(struct harness_piece *p, const struct capibox_event *ev)
{
	snprintf(p->path, sizeof(p->path), "%s", ev->u.artifact.path);
	snprintf(p->mime, sizeof(p->mime), "%s", ev->u.artifact.mime_type);
	p->offset = ev->u.artifact.offset;
	p->size = ev->u.artifact.size;
	p->len = ev->u.artifact.len;
	p->eof = ev->u.artifact.eof;
	p->truncated = ev->u.artifact.truncated;
}
