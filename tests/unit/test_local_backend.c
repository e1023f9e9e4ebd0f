/*
 * The local backend and supervisor without gRPC: real sandboxes, driven
 * through the backend interface the rpc layer uses. Needs root and user
 * namespaces; skips with a reason without them.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/local.h"
#include "config.h"
#include "runtime.h"
#include "supervisor/supervisor.h"

static struct config cfg;
static struct backend *be;
static bool cgroups_v1(void);
static pid_t sup_pid;

struct run {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct exec *e;
	bool started, done;
	bool hold; /* do not resume after output (backpressure test) */
	char out[1 << 20];
	size_t out_len;
	char err[1 << 16];
	size_t err_len;
	size_t max_chunk;
	struct exec_result res;
	char sandbox_id[64];
};

static void on_started(void *arg, const struct exec_started *st)
{
	struct run *r = arg;
	pthread_mutex_lock(&r->mu);
	r->started = true;
	snprintf(r->sandbox_id, sizeof(r->sandbox_id), "%s", st->sandbox_id);
	pthread_mutex_unlock(&r->mu);
	backend_resume(r->e);
}

static void on_output(void *arg, enum exec_stream s, const uint8_t *d, size_t n)
{
	struct run *r = arg;
	bool hold;
	pthread_mutex_lock(&r->mu);
	if (s == EXEC_STDOUT) {
		size_t k = n < sizeof(r->out) - r->out_len ? n : sizeof(r->out) - r->out_len;
		memcpy(r->out + r->out_len, d, k);
		r->out_len += k;
	} else {
		size_t k = n < sizeof(r->err) - r->err_len ? n : sizeof(r->err) - r->err_len;
		memcpy(r->err + r->err_len, d, k);
		r->err_len += k;
	}
	if (n > r->max_chunk)
		r->max_chunk = n;
	hold = r->hold;
	pthread_mutex_unlock(&r->mu);
	if (!hold)
		backend_resume(r->e);
}

static void on_finished(void *arg, const struct exec_result *res)
{
	struct run *r = arg;
	pthread_mutex_lock(&r->mu);
	r->res = *res;
	r->done = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static const struct exec_sink sink = {
	.started = on_started, .output = on_output, .finished = on_finished};

static struct run *run_start(const char *lang, const char *code, struct exec_request *tmpl)
{
	struct run *r = calloc(1, sizeof(*r));
	struct exec_request req;
	char err[256];

	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	if (tmpl)
		req = *tmpl;
	else
		memset(&req, 0, sizeof(req));
	req.language = lang;
	req.code = code;
	req.code_len = strlen(code);
	if (req.limits.wall_time_ms == 0)
		req.limits = cfg.defaults;
	/* the callbacks may fire before backend_execute returns *out: hold mu */
	pthread_mutex_lock(&r->mu);
	assert_int_equal(backend_execute(be, &req, &sink, r, &r->e, err, sizeof(err)), BACKEND_OK);
	pthread_mutex_unlock(&r->mu);
	return r;
}

static void run_wait(struct run *r)
{
	pthread_mutex_lock(&r->mu);
	while (!r->done)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
}

static void run_free(struct run *r)
{
	backend_release(r->e);
	free(r);
}

static struct run *run(const char *lang, const char *code, struct exec_request *tmpl)
{
	struct run *r = run_start(lang, code, tmpl);
	run_wait(r);
	return r;
}

/* Processes owned by a host uid in the sandbox range. */
static int sandbox_processes(void)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int n = 0;

	while ((de = readdir(d)) != NULL) {
		char path[300];
		struct stat st;
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s", de->d_name);
		if (stat(path, &st) == 0 && st.st_uid >= cfg.uid_base &&
		    st.st_uid < cfg.uid_base + cfg.max_live)
			n++;
	}
	closedir(d);
	return n;
}

static int group_setup(void **state)
{
	struct ipc_hello hello;
	sigset_t mask;
	pid_t pid;
	int sock;
	(void)state;

	if (geteuid() != 0) {
		fprintf(stderr, "SKIP: needs root (sandboxes map uids and mount)\n");
		exit(77);
	}
	pid = fork();
	if (pid == 0)
		_exit(unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) == 0 ? 0 : 1);
	{
		int st;
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "SKIP: user/mount/pid namespaces are not available here\n");
			exit(77);
		}
	}
	config_defaults(&cfg);
	cfg.state_dir = "/run/capibox-unit";
	cfg.supervisor_path = SUPERVISOR_PATH;
	cfg.uid_base = 5000000;
	cfg.max_live = 8;
	cfg.tmpfs_bytes = 8 << 20;
	/* cold sandboxes only here: test_pool.c covers the warm ones */
	memset(cfg.pool_target, 0, sizeof(cfg.pool_target));
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sock = supervisor_start(&cfg, &pid, &hello);
	assert_int_equal(hello.n_runtimes, runtime_count());
	sup_pid = pid;
	be = local_backend_create(&cfg, sock, pid, &hello);
	return 0;
}

static int capibox_cgroups(bool busy);

static int group_teardown(void **state)
{
	int left;

	(void)state;
	backend_destroy(be);
	/* the supervisor removes its groups as it stops */
	left = capibox_cgroups(false);
	if (left > 0)
		fprintf(stderr, "%d sandbox cgroups of supervisor %d left after it stopped\n", left,
			(int)sup_pid);
	return left > 0 ? -1 : 0;
}

static void test_hello_and_exit_code(void **state)
{
	struct run *r = run("python", "print('hi')\nraise SystemExit(3)\n", NULL);
	(void)state;
	assert_true(r->started);
	assert_non_null(strstr(r->sandbox_id, "local-"));
	assert_int_equal(r->res.reason, EXEC_REASON_EXITED);
	assert_int_equal(r->res.exit_code, 3);
	assert_int_equal(r->out_len, 3);
	assert_memory_equal(r->out, "hi\n", 3);
	assert_int_equal(r->res.stdout_bytes, 3);
	run_free(r);
}

static void test_signal(void **state)
{
	struct run *r = run("bash", "kill -SEGV $$\n", NULL);
	(void)state;
	assert_int_equal(r->res.reason, EXEC_REASON_SIGNALED);
	assert_int_equal(r->res.signal, SIGSEGV);
	run_free(r);
}

static void test_wall_timeout_and_cleanup(void **state)
{
	struct exec_request t;
	struct run *r;
	(void)state;
	memset(&t, 0, sizeof(t));
	t.limits = cfg.defaults;
	t.limits.wall_time_ms = 300;
	/* a daemonised child must not outlive the run */
	r = run("bash", "(setsid sleep 1000 &) ; sleep 1000\n", &t);
	assert_int_equal(r->res.reason, EXEC_REASON_WALL_TIMEOUT);
	assert_non_null(strstr(r->res.message, "300 ms"));
	assert_int_equal(sandbox_processes(), 0);
	run_free(r);
}

static void test_cpu_timeout(void **state)
{
	struct exec_request t;
	struct run *r;
	(void)state;
	memset(&t, 0, sizeof(t));
	t.limits = cfg.defaults;
	t.limits.cpu_time_ms = 1000;
	t.limits.wall_time_ms = 20000;
	r = run("python", "while True: pass\n", &t);
	assert_int_equal(r->res.reason, EXEC_REASON_CPU_TIMEOUT);
	run_free(r);
}

static void test_cpu_timeout_counts_all_processes(void **state)
{
	/* four busy processes: per-process RLIMIT_CPU alone would allow 4x */
	struct exec_request t;
	struct run *r;
	(void)state;
	if (!cgroups_v1() && access("/sys/fs/cgroup/capibox", F_OK) != 0)
		skip();
	memset(&t, 0, sizeof(t));
	t.limits = cfg.defaults;
	t.limits.cpu_time_ms = 1500;
	t.limits.wall_time_ms = 20000;
	r = run("python",
		"import os\nfor i in range(3):\n    if os.fork() == 0:\n        while True: pass\n"
		"while True: pass\n",
		&t);
	assert_int_equal(r->res.reason, EXEC_REASON_CPU_TIMEOUT);
	assert_non_null(strstr(r->res.message, "cpu time limit of 1500 ms"));
	/* checked every 100 ms: a little over the limit, never 4x */
	assert_true(r->res.cpu_time_us >= 1500000);
	assert_true(r->res.cpu_time_us < 3000000);
	run_free(r);
}

static void test_output_limit_exact(void **state)
{
	struct exec_request t;
	struct run *r;
	(void)state;
	memset(&t, 0, sizeof(t));
	t.limits = cfg.defaults;
	t.limits.max_output_bytes = 100000;
	r = run("python", "import sys\nwhile True: sys.stdout.write('x' * 4096)\n", &t);
	assert_int_equal(r->res.reason, EXEC_REASON_OUTPUT_LIMIT);
	assert_int_equal(r->out_len, 100000);
	assert_int_equal(r->res.stdout_bytes, 100000);
	assert_true(r->max_chunk <= 64 * 1024);
	run_free(r);
}

static void test_cancel(void **state)
{
	struct run *r = run_start("bash", "echo ready; sleep 1000\n", NULL);
	(void)state;
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&r->mu);
		bool got = r->out_len > 0;
		pthread_mutex_unlock(&r->mu);
		if (got)
			break;
		usleep(10000);
	}
	backend_cancel(r->e, EXEC_REASON_CANCELLED);
	run_wait(r);
	assert_int_equal(r->res.reason, EXEC_REASON_CANCELLED);
	assert_int_equal(sandbox_processes(), 0);
	run_free(r);
}

static void test_backpressure(void **state)
{
	/* while the caller does not resume, nothing is read: the program's
	 * writes block once the pipe is full, so it cannot run ahead */
	struct run *r;
	struct exec_request t;
	(void)state;
	memset(&t, 0, sizeof(t));
	t.limits = cfg.defaults;
	t.limits.max_output_bytes = 65ULL << 20;
	r = calloc(1, sizeof(*r));
	free(r);
	r = run_start("python",
		      "import sys\nfor i in range(64):\n    sys.stdout.write('y' * 1048576)\n"
		      "sys.stderr.write('done')\n",
		      &t);
	pthread_mutex_lock(&r->mu);
	r->hold = true;
	pthread_mutex_unlock(&r->mu);
	usleep(500000);
	pthread_mutex_lock(&r->mu);
	assert_false(r->done);
	assert_int_equal(r->err_len, 0);
	assert_true(r->out_len <= 64 * 1024);
	r->hold = false;
	pthread_mutex_unlock(&r->mu);
	backend_resume(r->e);
	run_wait(r);
	assert_int_equal(r->res.reason, EXEC_REASON_EXITED);
	assert_int_equal(r->res.stdout_bytes, 64ULL << 20);
	assert_int_equal(r->err_len, 4);
	run_free(r);
}

static bool cgroups_v1(void)
{
	struct stat st;
	return stat("/sys/fs/cgroup/memory/capibox", &st) == 0;
}

/* Whether cgroup directory dir holds a process. */
static bool group_busy(const char *dir)
{
	char path[600], buf[16];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	return n > 0;
}

/*
 * The supervisor's sandbox groups under capibox's parent group(s): all of
 * them, or (busy) those holding a process. An ended sandbox's groups are
 * kept, empty, for its slot's next sandbox; they go with the supervisor.
 */
static int capibox_cgroups(bool busy)
{
	const char *dirs[] = {"/sys/fs/cgroup/memory/capibox", "/sys/fs/cgroup/pids/capibox",
			      "/sys/fs/cgroup/capibox"};
	char prefix[32], path[512];
	int n = 0;
	/* ours only: other capiboxd (integration tests) may run beside us */
	snprintf(prefix, sizeof(prefix), "sb-%d-", (int)sup_pid);
	for (size_t i = 0; i < 3; i++) {
		DIR *d = opendir(dirs[i]);
		struct dirent *de;
		if (d == NULL)
			continue;
		while ((de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dirs[i], de->d_name);
			if (!busy || group_busy(path))
				n++;
		}
		closedir(d);
	}
	return n;
}

/*
 * The sandbox groups left after a waiting moment (all, or those holding a
 * process): a run's end is reported as soon as nothing of it runs any
 * more, and its processes leave its groups once the kernel has torn them
 * down, a little later.
 */
static int capibox_cgroups_settled(bool busy)
{
	for (int i = 0; i < 200 && capibox_cgroups(busy) > 0; i++)
		usleep(10000);
	return capibox_cgroups(busy);
}

static void test_memory_limit(void **state)
{
	struct exec_request t;
	struct run *r;
	(void)state;
	if (!cgroups_v1() && access("/sys/fs/cgroup/capibox", F_OK) != 0) {
		skip(); /* no cgroups here: memory is not enforced (Health says so) */
	}
	memset(&t, 0, sizeof(t));
	t.limits = cfg.defaults;
	t.limits.memory_bytes = 64ULL << 20;
	r = run("python", "b = []\nwhile True: b.append(bytearray(8 << 20))\n", &t);
	assert_int_equal(r->res.reason, EXEC_REASON_MEMORY_LIMIT);
	assert_non_null(strstr(r->res.message, "memory limit"));
	assert_true(r->res.peak_memory_bytes > 32ULL << 20);
	assert_true(r->res.peak_memory_bytes <= 64ULL << 20);
	assert_int_equal(capibox_cgroups_settled(true), 0);
	run_free(r);
}

static void test_process_limit(void **state)
{
	struct exec_request t;
	struct run *r;
	(void)state;
	memset(&t, 0, sizeof(t));
	t.limits = cfg.defaults;
	t.limits.max_processes = 8;
	/* forking until it fails: the limit holds, the run still ends */
	r = run("python",
		"import os, time\npids = []\nfor i in range(40):\n    try:\n        p = os.fork()\n"
		"    except OSError:\n        break\n    if p == 0:\n        time.sleep(5)\n"
		"        os._exit(0)\n    pids.append(p)\nprint('forked', len(pids))\n"
		"for p in pids:\n    os.kill(p, 9)\n",
		&t);
	assert_int_equal(r->res.reason, EXEC_REASON_EXITED);
	assert_non_null(strstr(r->out, "forked "));
	/* python itself and init count: at most 7 children */
	assert_true(atoi(strstr(r->out, "forked ") + 7) <= 7);
	assert_true(atoi(strstr(r->out, "forked ") + 7) > 0);
	assert_int_equal(sandbox_processes(), 0);
	run_free(r);
}

static void test_peak_and_cpu_reported(void **state)
{
	struct run *r = run("python", "x = bytearray(30 << 20)\ns = sum(range(3000000))\n", NULL);
	(void)state;
	assert_int_equal(r->res.reason, EXEC_REASON_EXITED);
	assert_true(r->res.peak_memory_bytes >= 30ULL << 20);
	assert_true(r->res.cpu_time_us > 0);
	run_free(r);
}

/*
 * A slot's cgroup serves its next sandboxes (server/supervisor/cgroup.c):
 * each run's figures must still be its own. After an OOM-killed, a big and
 * a busy run, small runs report no OOM kill, their own peak and their own
 * CPU time; the groups do not pile up.
 */
static void test_cgroup_reuse_figures(void **state)
{
	struct exec_request t;
	struct run *r;
	uint64_t busy_cpu;
	(void)state;
	if (!cgroups_v1() && access("/sys/fs/cgroup/capibox", F_OK) != 0) {
		skip(); /* no cgroups here */
	}
	memset(&t, 0, sizeof(t));
	t.limits = cfg.defaults;
	t.limits.memory_bytes = 64ULL << 20;
	r = run("python", "b = []\nwhile True: b.append(bytearray(8 << 20))\n", &t);
	assert_int_equal(r->res.reason, EXEC_REASON_MEMORY_LIMIT);
	run_free(r);
	r = run("python", "x = bytearray(40 << 20)\ns = sum(range(10000000))\n", NULL);
	assert_int_equal(r->res.reason, EXEC_REASON_EXITED);
	assert_true(r->res.peak_memory_bytes >= 40ULL << 20);
	busy_cpu = r->res.cpu_time_us;
	run_free(r);
	for (int i = 0; i < 6; i++) {
		/* a SIGKILL of its own is no OOM kill, whatever ran before */
		r = run("python", "import os\nprint(1, flush=True)\nos.kill(os.getpid(), 9)\n",
			NULL);
		assert_int_equal(r->res.reason, EXEC_REASON_SIGNALED);
		assert_int_equal(r->res.signal, 9);
		assert_string_equal(r->out, "1\n");
		assert_true(r->res.peak_memory_bytes < 30ULL << 20);
		assert_true(r->res.cpu_time_us < busy_cpu / 2);
		run_free(r);
	}
	/* 8 runs one after the other: a few slots' groups (3 hierarchies on v1) */
	assert_true(capibox_cgroups(false) <= 3 * 4);
	assert_int_equal(capibox_cgroups_settled(true), 0);
}

static void test_seccomp_refuses(void **state)
{
	/* raw syscalls: each refused call fails with EPERM and the program goes on */
	struct run *r = run(
		"python",
		"import ctypes, errno\n"
		"libc = ctypes.CDLL(None, use_errno=True)\n"
		"calls = {'unshare': (272, 0x10000000), 'mount': (165, b'x', b'/tmp', b'tmpfs', 0, 0),\n"
		"         'ptrace': (101, 16, 1, 0, 0), 'bpf': (321, 0, 0, 0), 'keyctl': (250, 0, 0),\n"
		"         'io_uring_setup': (425, 1, 0), 'perf_event_open': (298, 0, 0, 0, 0, 0),\n"
		"         'setns': (308, 0, 0), 'clock_settime': (227, 0, 0),\n"
		"         'personality': (135, 0x0040000), 'clone3': (435, 0, 0)}\n"
		"for name, args in calls.items():\n"
		"    ctypes.set_errno(0)\n"
		"    rc = libc.syscall(*args)\n"
		"    print(name, rc, errno.errorcode.get(ctypes.get_errno()))\n"
		"print('alive')\n",
		NULL);
	(void)state;
	assert_int_equal(r->res.reason, EXEC_REASON_EXITED);
	assert_string_equal(r->out, "unshare -1 EPERM\nmount -1 EPERM\nptrace -1 EPERM\n"
				    "bpf -1 EPERM\nkeyctl -1 EPERM\nio_uring_setup -1 EPERM\n"
				    "perf_event_open -1 EPERM\nsetns -1 EPERM\n"
				    "clock_settime -1 EPERM\npersonality -1 EPERM\n"
				    "clone3 -1 ENOSYS\nalive\n");
	run_free(r);
}

/*
 * The supervisor dies mid-run (a crash, or it was fed a malformed packet and
 * ended itself): the run ends as a sandbox error with an orderly stream, its
 * processes and cgroup are gone, and a new supervisor serves the next run.
 * Runs last: it replaces the supervisor the other tests know.
 */
static void test_supervisor_restart(void **state)
{
	struct run *r = run_start("bash", "echo up; sleep 1000\n", NULL);
	struct run *after;
	(void)state;
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&r->mu);
		bool got = r->out_len > 0;
		pthread_mutex_unlock(&r->mu);
		if (got)
			break;
		usleep(10000);
	}
	assert_int_equal(kill(sup_pid, SIGKILL), 0);
	run_wait(r);
	assert_int_equal(r->res.reason, EXEC_REASON_SANDBOX_ERROR);
	assert_non_null(strstr(r->res.message, "supervisor stopped"));
	run_free(r);
	for (int i = 0; i < 100 && sandbox_processes() > 0; i++)
		usleep(10000);
	assert_int_equal(sandbox_processes(), 0);
	/* the killed supervisor's groups, every one: its successor removes them */
	assert_int_equal(capibox_cgroups_settled(false), 0);
	after = run("python", "print('after')\n", NULL);
	assert_int_equal(after->res.reason, EXEC_REASON_EXITED);
	assert_string_equal(after->out, "after\n");
	run_free(after);
}

static void test_full(void **state)
{
	struct run *rs[8];
	struct exec_request req;
	struct exec *e;
	char err[256];
	(void)state;
	for (int i = 0; i < 8; i++)
		rs[i] = run_start("bash", "sleep 1000\n", NULL);
	memset(&req, 0, sizeof(req));
	req.language = "bash";
	req.code = "true";
	req.code_len = 4;
	req.limits = cfg.defaults;
	assert_int_equal(backend_execute(be, &req, &sink, NULL, &e, err, sizeof(err)),
			 BACKEND_FULL);
	assert_non_null(strstr(err, "8 of 8"));
	backend_cancel_all(be, EXEC_REASON_CANCELLED);
	for (int i = 0; i < 8; i++) {
		run_wait(rs[i]);
		assert_int_equal(rs[i]->res.reason, EXEC_REASON_CANCELLED);
		run_free(rs[i]);
	}
	assert_int_equal(backend_live(be), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_and_exit_code),
		cmocka_unit_test(test_signal),
		cmocka_unit_test(test_wall_timeout_and_cleanup),
		cmocka_unit_test(test_cpu_timeout),
		cmocka_unit_test(test_cpu_timeout_counts_all_processes),
		cmocka_unit_test(test_output_limit_exact),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_memory_limit),
		cmocka_unit_test(test_process_limit),
		cmocka_unit_test(test_peak_and_cpu_reported),
		cmocka_unit_test(test_cgroup_reuse_figures),
		cmocka_unit_test(test_seccomp_refuses),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_supervisor_restart),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
