/*
 * Warm pools through the backend interface, without gRPC: pooled sandboxes
 * are one-shot and fresh (nothing of one run reaches another), a take
 * applies the request's limits and environment, a request the pool cannot
 * serve runs cold, and the pool refills after a pooled sandbox dies.
 * Needs root and namespaces; skips with a reason without them.
 */
#include <dirent.h>
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

#define UID_BASE 5700000u

static struct config cfg;
static struct backend *be;

struct run {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct exec *e;
	bool done, warm;
	char out[65536];
	size_t out_len;
	char err[65536];
	size_t err_len;
	struct exec_result res;
};

static void on_started(void *arg, const struct exec_started *st)
{
	struct run *r = arg;
	pthread_mutex_lock(&r->mu);
	r->warm = st->warm;
	pthread_mutex_unlock(&r->mu);
	backend_resume(r->e);
}

static void on_output(void *arg, enum exec_stream s, const uint8_t *d, size_t n)
{
	struct run *r = arg;
	char *buf = s == EXEC_STDOUT ? r->out : r->err;
	size_t *len = s == EXEC_STDOUT ? &r->out_len : &r->err_len;
	pthread_mutex_lock(&r->mu);
	if (n > sizeof(r->out) - 1 - *len)
		n = sizeof(r->out) - 1 - *len;
	memcpy(buf + *len, d, n);
	*len += n;
	buf[*len] = '\0';
	pthread_mutex_unlock(&r->mu);
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

/* Starts req; run_wait() waits for it. */
static struct run *run_begin(struct exec_request *req)
{
	struct run *r = calloc(1, sizeof(*r));
	char err[256];

	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	if (req->limits.wall_time_ms == 0)
		req->limits = cfg.defaults;
	pthread_mutex_lock(&r->mu);
	assert_int_equal(backend_execute(be, req, &sink, r, &r->e, err, sizeof(err)), BACKEND_OK);
	pthread_mutex_unlock(&r->mu);
	return r;
}

static void run_wait(struct run *r)
{
	pthread_mutex_lock(&r->mu);
	while (!r->done)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	backend_release(r->e);
}

static struct run *run_req(struct exec_request *req)
{
	struct run *r = run_begin(req);

	run_wait(r);
	return r;
}

static struct run *run(const char *lang, const char *code)
{
	struct exec_request req;
	memset(&req, 0, sizeof(req));
	req.language = lang;
	req.code = code;
	req.code_len = strlen(code);
	return run_req(&req);
}

/* idle pooled sandboxes of runtime index rt, per the backend */
static unsigned idle_of(int rt)
{
	struct runtime_stats st[8];
	size_t n = backend_stats(be, st, 8);
	return (size_t)rt < n ? st[rt].idle : 0;
}

/* the pool size python aims at now (adaptive), per the backend */
static unsigned target_of(int rt)
{
	struct runtime_stats st[8];
	size_t n = backend_stats(be, st, 8);
	return (size_t)rt < n ? st[rt].target : 0;
}

/* Waits (up to 10 s) for every pool to be full. */
static void wait_pools_full(void)
{
	for (int i = 0; i < 1000; i++) {
		if (idle_of(0) == cfg.pool_target[0] && idle_of(1) == cfg.pool_target[1])
			return;
		usleep(10000);
	}
	fail_msg("pools did not refill: python %u/%u, javascript %u/%u", idle_of(0),
		 cfg.pool_target[0], idle_of(1), cfg.pool_target[1]);
}

/* Processes owned by our sandbox uid range. */
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
		if (stat(path, &st) == 0 && st.st_uid >= UID_BASE && st.st_uid < UID_BASE + 64)
			n++;
	}
	closedir(d);
	return n;
}

static void test_warm_run_behaves_like_a_file_run(void **state)
{
	struct exec_request req;
	struct exec_env env[] = {{"GREETING", "hello"}};
	struct run *r;
	(void)state;

	wait_pools_full();
	memset(&req, 0, sizeof(req));
	req.language = "python";
	req.code = "import os, sys\nprint(os.environ['GREETING'], sys.argv[0], os.getcwd(), "
		   "__name__)\nprint(sys.stdin.read())\nsys.exit(4)\n";
	req.code_len = strlen(req.code);
	req.env = env;
	req.n_env = 1;
	req.stdin_data = (const uint8_t *)"from stdin";
	req.stdin_len = 10;
	r = run_req(&req);
	assert_true(r->warm);
	assert_int_equal(r->res.reason, EXEC_REASON_EXITED);
	assert_int_equal(r->res.exit_code, 4);
	assert_string_equal(r->out, "hello /.capibox/main.py /home/user __main__\nfrom stdin\n");
	free(r);

	r = run("python", "def f():\n    raise KeyError('k')\nf()\n");
	assert_true(r->warm);
	assert_int_equal(r->res.exit_code, 1);
	/* the traceback names the user's file only, as a file run's does */
	assert_non_null(strstr(r->err, "File \"/.capibox/main.py\", line 3"));
	assert_null(strstr(r->err, "runner"));
	assert_non_null(strstr(r->err, "KeyError: 'k'"));
	free(r);

	r = run("javascript", "console.log(process.argv[1], require.main === module, "
			      "process.cwd()); process.exit(5);\n");
	assert_true(r->warm);
	assert_int_equal(r->res.exit_code, 5);
	assert_string_equal(r->out, "/.capibox/main.js true /home/user\n");
	free(r);
}

/*
 * A pooled sandbox waits at the lowest priority; the take gives its code
 * the normal one. Its init leads a session and process group of its own.
 */
static void test_warm_run_priority_and_session(void **state)
{
	struct run *r;
	(void)state;

	wait_pools_full();
	r = run("python", "import os\nprint(os.getpriority(os.PRIO_PROCESS, 0), os.getpgrp(), "
			  "os.getsid(0))\n");
	assert_true(r->warm);
	assert_string_equal(r->out, "0 1 1\n");
	free(r);

	r = run("javascript", "console.log(require('os').getPriority());\n");
	assert_true(r->warm);
	assert_string_equal(r->out, "0\n");
	free(r);
}

static void test_runs_share_nothing(void **state)
{
	struct run *a, *b;
	(void)state;

	wait_pools_full();
	a = run("python", "import os, subprocess\nopen('/home/user/left', 'w').write('x')\n"
			  "open('/tmp/left', 'w').write('x')\nos.environ['LEFT'] = '1'\n"
			  "subprocess.Popen(['sleep', '100'], start_new_session=True)\n"
			  "globals()['leftover'] = 1\nprint('a done')\n");
	assert_true(a->warm);
	assert_string_equal(a->out, "a done\n");
	b = run("python", "import os\nprint(os.path.exists('/home/user/left'), "
			  "os.path.exists('/tmp/left'), 'LEFT' in os.environ, "
			  "'leftover' in globals(), sorted(os.listdir('/home/user')))\n"
			  "print(len([p for p in os.listdir('/proc') if p.isdigit()]))\n");
	assert_true(b->warm);
	/* b's own processes: init and python */
	assert_string_equal(b->out, "False False False False []\n2\n");
	free(a);
	free(b);
	/* nothing but the idle pool remains: init and runner per sandbox (a
	 * run's end is reported before the kernel has torn its processes
	 * down, and the pool may refill first: give them up to 5 s) */
	wait_pools_full();
	for (int i = 0;
	     i < 500 && sandbox_processes() != 2 * (int)(cfg.pool_target[0] + cfg.pool_target[1]);
	     i++)
		usleep(10000);
	assert_int_equal(sandbox_processes(), 2 * (int)(cfg.pool_target[0] + cfg.pool_target[1]));
}

/* A python request for code with the default limits, once the pools are full. */
static void pooled_python_request(struct exec_request *req, const char *code)
{
	wait_pools_full();
	memset(req, 0, sizeof(*req));
	req->language = "python";
	req->code = code;
	req->code_len = strlen(code);
	req->limits = cfg.defaults;
}

static void test_take_applies_the_request_limits(void **state)
{
	struct exec_request req;
	struct run *r;
	(void)state;

	pooled_python_request(&req,
			      "import resource\nprint(resource.getrlimit(resource.RLIMIT_FSIZE), "
			      "resource.getrlimit(resource.RLIMIT_CPU))\n"
			      "b = []\nwhile True: b.append(bytearray(8 << 20))\n");
	req.limits.memory_bytes = 64ULL << 20;
	req.limits.max_file_bytes = 123456;
	req.limits.cpu_time_ms = 2500;
	r = run_req(&req);
	assert_true(r->warm);
	/* RLIMIT_CPU: 2.5 s rounded up, plus the runner's start, which is
	 * not the request's; a second more where the cgroup's CPU time is
	 * checked (it is then only a backstop) */
	if (strcmp(r->out, "(123456, 123456) (3, 4)\n") != 0 &&
	    strcmp(r->out, "(123456, 123456) (4, 5)\n") != 0)
		fail_msg("limits in the sandbox: %s", r->out);
	assert_int_equal(r->res.reason, EXEC_REASON_MEMORY_LIMIT);
	assert_true(r->res.peak_memory_bytes <= 64ULL << 20);
	free(r);

	/* the largest CPU time: the runner's own start added to it must not
	 * raise its hard limit above the pool's (that would need a privilege) */
	req.language = "javascript";
	req.code = "console.log('max')\n";
	req.code_len = strlen(req.code);
	req.limits = cfg.defaults;
	req.limits.cpu_time_ms = cfg.maxima.cpu_time_ms;
	r = run_req(&req);
	assert_true(r->warm);
	assert_int_equal(r->res.reason, EXEC_REASON_EXITED);
	assert_string_equal(r->out, "max\n");
	free(r);

	req.language = "python";
	req.code = "while True: pass\n";
	req.code_len = strlen(req.code);
	req.limits = cfg.defaults;
	req.limits.cpu_time_ms = 1000;
	r = run_req(&req);
	assert_true(r->warm);
	assert_int_equal(r->res.reason, EXEC_REASON_CPU_TIMEOUT);
	/* the runner's own start is not billed to the request */
	assert_true(r->res.cpu_time_us < 1500000);
	free(r);
}

/*
 * A pooled sandbox's cgroup has the default memory limit from the start (a
 * default take writes none): the default holds, and a take asking more
 * gets more.
 */
static void test_take_keeps_or_raises_the_default_memory_limit(void **state)
{
	struct exec_request req;
	struct run *r;
	(void)state;

	/* 120 MiB touched, in 8 MiB pieces; the default limit is 96 MiB (setup) */
	pooled_python_request(&req,
			      "b = [b'x' * (8 << 20) for _ in range(15)]\nprint('held', len(b))\n");
	r = run_req(&req);
	assert_true(r->warm);
	assert_int_equal(r->res.reason, EXEC_REASON_MEMORY_LIMIT);
	free(r);

	wait_pools_full();
	req.limits.memory_bytes = 192ULL << 20;
	r = run_req(&req);
	assert_true(r->warm);
	assert_int_equal(r->res.reason, EXEC_REASON_EXITED);
	assert_string_equal(r->out, "held 15\n");
	assert_true(r->res.peak_memory_bytes > 96ULL << 20);
	free(r);
}

static void test_startup_env_runs_cold(void **state)
{
	struct exec_request req;
	struct exec_env env[] = {{"PYTHONHASHSEED", "0"}};
	struct run *r;
	(void)state;

	wait_pools_full();
	memset(&req, 0, sizeof(req));
	req.language = "python";
	req.code = "import sys\nprint(sys.flags.hash_randomization)\n";
	req.code_len = strlen(req.code);
	req.env = env;
	req.n_env = 1;
	r = run_req(&req);
	assert_false(r->warm); /* it must start with the variable set */
	assert_string_equal(r->out, "0\n");
	free(r);
	r = run("bash", "echo cold\n");
	assert_false(r->warm); /* bash has no pool */
	free(r);
}

static void test_refill_after_a_pooled_sandbox_dies(void **state)
{
	DIR *d;
	struct dirent *de;
	int killed = 0;
	(void)state;

	wait_pools_full();
	/* kill the idle python runners: their sandboxes end, the pool refills */
	d = opendir("/proc");
	while ((de = readdir(d)) != NULL) {
		char path[300], cmd[256] = "";
		struct stat st;
		FILE *f;
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s", de->d_name);
		if (stat(path, &st) < 0 || st.st_uid < UID_BASE || st.st_uid >= UID_BASE + 64)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t n = fread(cmd, 1, sizeof(cmd) - 1, f);
		fclose(f);
		for (size_t i = 0; i < n; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		if (strstr(cmd, "runner.py") != NULL && kill(atoi(de->d_name), SIGKILL) == 0)
			killed++;
	}
	closedir(d);
	assert_int_equal(killed, (int)cfg.pool_target[0]);
	/* the deaths are seen (idle drops), then the pool is full again */
	for (int i = 0; i < 500 && idle_of(0) == cfg.pool_target[0]; i++)
		usleep(2000);
	wait_pools_full();
	{
		struct run *r = run("python", "print('after')\n");
		assert_true(r->warm);
		assert_string_equal(r->out, "after\n");
		free(r);
	}
}

/*
 * A burst bigger than the pool grows it (a request that found it empty
 * raises the target, up to the maximum); calm shrinks it back.
 */
static void test_pool_adapts(void **state)
{
	struct exec_request req;
	struct run *r[3];
	const char *code = "import time\ntime.sleep(0.5)\nprint('ok')\n";
	(void)state;

	cfg.pool_max[0] = 4;
	wait_pools_full();
	memset(&req, 0, sizeof(req));
	req.language = "python";
	req.code = code;
	req.code_len = strlen(code);
	for (int i = 0; i < 3; i++)
		r[i] = run_begin(&req);
	/* two warm ones taken, the third found the pool empty */
	assert_int_equal(target_of(0), 3);
	for (int i = 0; i < 3; i++) {
		run_wait(r[i]);
		assert_string_equal(r[i]->out, "ok\n");
		free(r[i]);
	}
	/* refilled to the grown size ... */
	for (int i = 0; i < 1000 && idle_of(0) != 3; i++)
		usleep(10000);
	assert_int_equal(idle_of(0), 3);
	/* ... and, with no demand for pool_idle_ms, back to the target */
	for (int i = 0; i < 1000 && (target_of(0) != 2 || idle_of(0) != 2); i++)
		usleep(10000);
	assert_int_equal(target_of(0), 2);
	assert_int_equal(idle_of(0), 2);
	cfg.pool_max[0] = 2;
	/* the sandbox given back is gone, not leaked */
	for (int i = 0; i < 500 && sandbox_processes() != 2 * 3; i++)
		usleep(10000);
	assert_int_equal(sandbox_processes(), 2 * (int)(cfg.pool_target[0] + cfg.pool_target[1]));
}

static int group_setup(void **state)
{
	struct ipc_hello hello;
	sigset_t mask;
	pid_t pid;
	int sock, st;
	(void)state;

	if (geteuid() != 0) {
		fprintf(stderr, "SKIP: needs root (sandboxes map uids and mount)\n");
		exit(77);
	}
	pid = fork();
	if (pid == 0)
		_exit(unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) == 0 ? 0 : 1);
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "SKIP: user/mount/pid namespaces are not available here\n");
		exit(77);
	}
	config_defaults(&cfg);
	cfg.state_dir = "/run/capibox-unit-pool";
	cfg.supervisor_path = SUPERVISOR_PATH;
	cfg.uid_base = UID_BASE;
	cfg.max_live = 8;
	cfg.tmpfs_bytes = 8 << 20;
	cfg.defaults.memory_bytes = 96ULL << 20;
	cfg.pool_target[0] = 2; /* python */
	cfg.pool_target[1] = 1; /* javascript */
	/* fixed sizes, so counts are exact; test_pool_adapts lets python grow
	 * (the backend reads cfg live) */
	cfg.pool_max[0] = 2;
	cfg.pool_max[1] = 1;
	cfg.pool_idle_ms = 3000; /* slack for a busy machine, not a timing */
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sock = supervisor_start(&cfg, &pid, &hello);
	assert_true(sock >= 0);
	be = local_backend_create(&cfg, sock, pid, &hello);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	backend_destroy(be);
	/* the pool ended with the supervisor */
	for (int i = 0; i < 100 && sandbox_processes() > 0; i++)
		usleep(10000);
	assert_int_equal(sandbox_processes(), 0);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_warm_run_behaves_like_a_file_run),
		cmocka_unit_test(test_warm_run_priority_and_session),
		cmocka_unit_test(test_runs_share_nothing),
		cmocka_unit_test(test_take_applies_the_request_limits),
		cmocka_unit_test(test_take_keeps_or_raises_the_default_memory_limit),
		cmocka_unit_test(test_startup_env_runs_cold),
		cmocka_unit_test(test_pool_adapts),
		cmocka_unit_test(test_refill_after_a_pooled_sandbox_dies),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
