/*
 * Execute against the real daemon: languages, exit codes, signals, wall
 * timeout, live streaming, separate ordered streams, large output, stdin,
 * env, files, numpy/pandas.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static struct daemon daemon_;

static int setup(void **state)
{
	static const struct daemon_opts opts = {.uid_slot = 0};

	return harness_group_setup(state, &daemon_, &opts);
}

static void hello(void **state, const char *language, const char *code, const char *expect)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	harness_run_code(d, language, code, &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, expect);
	if (r.err_len != 0 || r.n_started != 1 || !r.order_ok) {
		harness_run_print(&r);
		fail_msg("expected no stderr, one Started first and Finished last");
	}
	assert_true(r.sandbox_id[0] != '\0');
	assert_string_equal(r.language, language);
	assert_string_equal(r.backend, "local");
	assert_int_equal(r.stdout_bytes, r.out_len);
	assert_int_equal(r.stderr_bytes, 0);
	harness_run_free(&r);
}

static void test_python_hello(void **state)
{
	hello(state, "python", "print('hello from python')\n", "hello from python\n");
}

static void test_javascript_hello(void **state)
{
	hello(state, "javascript", "console.log('hello from ' + 'javascript');\n",
	      "hello from javascript\n");
}

static void test_bash_hello(void **state)
{
	hello(state, "bash", "x=bash; echo \"hello from $x\"\n", "hello from bash\n");
}

static void test_exit_code(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	harness_run_code(d, "python", "import sys\nprint('before')\nsys.exit(3)\n", &r);
	assert_run_exited(&r, 3);
	assert_run_stdout(&r, "before\n");
	harness_run_free(&r);

	harness_run_code(d, "bash", "exit 42\n", &r);
	assert_run_exited(&r, 42);
	harness_run_free(&r);

	harness_run_code(d, "javascript", "process.exit(7);\n", &r);
	assert_run_exited(&r, 7);
	harness_run_free(&r);

	/* An uncaught exception is the program's failure, not an RPC error. */
	harness_run_code(d, "python", "raise ValueError('boom')\n", &r);
	assert_run_exited(&r, 1);
	assert_non_null(strstr((char *)r.err, "ValueError: boom"));
	harness_run_free(&r);
}

/*
 * The end of a program as the runner tells init (a warm run ends at once,
 * docs/pools.md): what the program does as it ends still counts, and
 * nothing but the program itself ends it.
 */
static void test_end_of_program(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	/* python: atexit output arrives; a forked child running to its end
	 * does not end the run (its parent prints after it) */
	harness_run_code(d, "python",
			 "import atexit, os\n"
			 "atexit.register(lambda: print('atexit'))\n"
			 "pid = os.fork()\n"
			 "if pid == 0:\n"
			 "    print('child', flush=True)\n"
			 "else:\n"
			 "    os.waitpid(pid, 0)\n"
			 "    print('parent')\n",
			 &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "child\natexit\nparent\natexit\n");
	harness_run_free(&r);
	/* javascript: an 'exit' listener's output and exit code count */
	harness_run_code(
		d, "javascript",
		"process.on('exit', () => { console.log('bye'); process.exitCode = 5; });\n"
		"console.log('hi');\n",
		&r);
	assert_run_exited(&r, 5);
	assert_run_stdout(&r, "hi\nbye\n");
	harness_run_free(&r);
	/* node prints an uncaught exception, or rejection, after 'exit' */
	harness_run_code(d, "javascript", "throw new Error('boom');\n", &r);
	assert_run_exited(&r, 1);
	assert_non_null(strstr((char *)r.err, "Error: boom"));
	harness_run_free(&r);
	harness_run_code(d, "javascript", "Promise.reject(new Error('late'));\n", &r);
	assert_run_exited(&r, 1);
	assert_non_null(strstr((char *)r.err, "Error: late"));
	harness_run_free(&r);
}

static void test_signal_kill(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	harness_run_code(d, "python", "import os\nos.kill(os.getpid(), 9)\n", &r);
	if (r.rc != 0 || r.n_finished != 1 || r.reason != CAPIBOX_REASON_SIGNALED ||
	    r.signal != 9) {
		harness_run_print(&r);
		fail_msg("expected status OK and Finished REASON_SIGNALED signal 9");
	}
	harness_run_free(&r);
}

static void wall_timeout(struct daemon *d, const char *language, const char *code)
{
	struct capibox_exec_request req = {
		.language = language,
		.code = code,
		.limits = {.wall_time_ms = 1000},
	};
	struct run r = {0};

	harness_run(d, &req, &r);
	if (r.rc != 0 || r.n_finished != 1 || r.reason != CAPIBOX_REASON_WALL_TIMEOUT) {
		harness_run_print(&r);
		fail_msg("expected status OK and Finished REASON_WALL_TIMEOUT");
	}
	/* The issue: ends as REASON_WALL_TIMEOUT within 1.5 s (of the call). */
	if (r.t_finished > 1.5 || r.t_finished < 0.9) {
		harness_run_print(&r);
		fail_msg("Finished arrived %.3f s after the call started; expected 0.9 .. 1.5 s",
			 r.t_finished);
	}
	harness_run_free(&r);
}

static void test_wall_timeout_busy(void **state)
{
	HARNESS_REQUIRE((struct daemon *)*state);
	wall_timeout(*state, "python", "while True:\n    pass\n");
}

static void test_wall_timeout_sleeping(void **state)
{
	HARNESS_REQUIRE((struct daemon *)*state);
	wall_timeout(*state, "bash", "sleep 30\n");
}

static void test_streaming_live(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	double ta, tb;

	HARNESS_REQUIRE(d);
	harness_run_code(d, "python", "import time\nprint('a')\ntime.sleep(1.5)\nprint('b')\n", &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "a\nb\n");
	ta = harness_run_time_of(&r, CAPIBOX_EVENT_STDOUT, "a");
	tb = harness_run_time_of(&r, CAPIBOX_EVENT_STDOUT, "b");
	if (ta < 0 || tb < 0 || tb - ta <= 1.0) {
		harness_run_print(&r);
		fail_msg(
			"\"a\" arrived at %.3f s and \"b\" at %.3f s: expected more than 1 s apart",
			ta, tb);
	}
	harness_run_free(&r);

	/* Same for a shell writing to stderr: streaming is not python-specific. */
	harness_run_code(d, "bash", "echo a >&2\nsleep 1.5\necho b >&2\n", &r);
	assert_run_exited(&r, 0);
	ta = harness_run_time_of(&r, CAPIBOX_EVENT_STDERR, "a");
	tb = harness_run_time_of(&r, CAPIBOX_EVENT_STDERR, "b");
	if (ta < 0 || tb < 0 || tb - ta <= 1.0) {
		harness_run_print(&r);
		fail_msg("stderr \"a\" at %.3f s and \"b\" at %.3f s: expected more than 1 s apart",
			 ta, tb);
	}
	harness_run_free(&r);
}

/* Builds "<prefix><i>\n" for i in [0, n) into a malloc'd string. */
static char *numbered(const char *prefix, int n, size_t *len)
{
	size_t cap = (size_t)n * (strlen(prefix) + 12) + 1, off = 0;
	char *s = malloc(cap);
	int i;

	assert_non_null(s);
	for (i = 0; i < n; i++)
		off += (size_t)snprintf(s + off, cap - off, "%s%d\n", prefix, i);
	*len = off;
	return s;
}

static void test_streams_separate_and_ordered(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	size_t out_len, err_len;
	char *out = numbered("out ", 300, &out_len);
	char *err = numbered("err ", 300, &err_len);

	HARNESS_REQUIRE(d);
	harness_run_code(d, "python",
			 "import sys\n"
			 "for i in range(300):\n"
			 "    sys.stdout.write('out %d\\n' % i)\n"
			 "    sys.stdout.flush()\n"
			 "    sys.stderr.write('err %d\\n' % i)\n"
			 "    sys.stderr.flush()\n",
			 &r);
	assert_run_exited(&r, 0);
	if (r.out_len != out_len || memcmp(r.out, out, out_len) != 0 || r.err_len != err_len ||
	    memcmp(r.err, err, err_len) != 0) {
		harness_run_print(&r);
		fail_msg(
			"stdout must be exactly 'out 0..299' and stderr 'err 0..299', each in order");
	}
	assert_int_equal(r.stdout_bytes, out_len);
	assert_int_equal(r.stderr_bytes, err_len);
	free(out);
	free(err);
	harness_run_free(&r);
}

static void test_large_output(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	const size_t n_out = 655360, n_err = 12800; /* 8-byte lines: 5 MiB and 100 KiB */
	size_t i, bad = (size_t)-1;

	HARNESS_REQUIRE(d);
	harness_run_code(
		d, "python",
		"import sys\n"
		"sys.stdout.buffer.write(b''.join(b'%07d\\n' % i for i in range(655360)))\n"
		"sys.stderr.buffer.write(b''.join(b'e%06d\\n' % i for i in range(12800)))\n",
		&r);
	assert_run_exited(&r, 0);
	if (r.out_len != n_out * 8 || r.err_len != n_err * 8) {
		harness_run_print(&r);
		fail_msg("expected %zu stdout and %zu stderr bytes", n_out * 8, n_err * 8);
	}
	for (i = 0; i < n_out && bad == (size_t)-1; i++) {
		char line[16];

		snprintf(line, sizeof(line), "%07zu\n", i);
		if (memcmp(r.out + i * 8, line, 8) != 0)
			bad = i;
	}
	if (bad != (size_t)-1)
		fail_msg("stdout line %zu is wrong: \"%.8s\"", bad, (char *)r.out + bad * 8);
	for (i = 0; i < n_err && bad == (size_t)-1; i++) {
		char line[16];

		snprintf(line, sizeof(line), "e%06zu\n", i);
		if (memcmp(r.err + i * 8, line, 8) != 0)
			bad = i;
	}
	if (bad != (size_t)-1)
		fail_msg("stderr line %zu is wrong: \"%.8s\"", bad, (char *)r.err + bad * 8);
	if (r.max_chunk > 65536)
		fail_msg("a message carried %zu bytes; chunks must be at most 64 KiB", r.max_chunk);
	assert_int_equal(r.stdout_bytes, n_out * 8);
	assert_int_equal(r.stderr_bytes, n_err * 8);
	harness_run_free(&r);
}

/*
 * Output is never held whole in memory: while the client does not read, the
 * program blocks on its pipe and the daemon's memory stays bounded.
 */
struct stall {
	pid_t daemon;
	long rss_before, rss_during;
	bool stalled;
};

static int stall_hook(const struct capibox_event *ev, struct run *r, void *arg)
{
	struct stall *s = arg;

	(void)r;
	if (s->stalled || ev->kind != CAPIBOX_EVENT_STDOUT)
		return 0;
	s->stalled = true;
	/* The program wants to write 128 MiB; give it 1.5 s to try. */
	harness_sleep_ms(1500);
	s->rss_during = harness_proc_rss_kib(s->daemon);
	return 0;
}

static void test_backpressure_bounded_memory(void **state)
{
	struct daemon *d = *state;
	struct stall s = {.daemon = d->pid};
	struct run r = {.hook = stall_hook, .hook_arg = &s};
	struct capibox_exec_request req = {
		.language = "python",
		.code = "import sys\n"
			"chunk = b'z' * (1 << 20)\n"
			"for i in range(128):\n"
			"    sys.stdout.buffer.write(chunk)\n",
		.limits = {.max_output_bytes = 256ull << 20},
	};

	HARNESS_REQUIRE(d);
	s.rss_before = harness_proc_rss_kib(d->pid);
	harness_run(d, &req, &r);
	r.hook = NULL;
	assert_run_exited(&r, 0);
	assert_int_equal(r.out_len, 128u << 20);
	assert_int_equal(r.stdout_bytes, 128u << 20);
	print_message("daemon RSS %ld KiB before, %ld KiB while the client stalled\n", s.rss_before,
		      s.rss_during);
	assert_true(s.rss_before > 0 && s.rss_during > 0);
	if (s.rss_during - s.rss_before > 48 * 1024)
		fail_msg(
			"the daemon grew by %ld KiB while the client did not read: output is being buffered",
			s.rss_during - s.rss_before);
	harness_run_free(&r);
}

static void test_stdin(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	static const char in[] = "line one\nline two\n";
	struct capibox_exec_request req = {
		.language = "python",
		.code = "import sys\nd = sys.stdin.read()\nprint('got %d lines: %s' % (len(d.splitlines()), "
			"'|'.join(d.splitlines())))\n",
		.stdin_data = (const uint8_t *)in,
		.stdin_len = sizeof(in) - 1,
	};
	uint8_t *big;
	const size_t big_len = 300000; /* several pipe buffers */

	HARNESS_REQUIRE(d);
	harness_run(d, &req, &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "got 2 lines: line one|line two\n");
	harness_run_free(&r);

	big = malloc(big_len);
	assert_non_null(big);
	for (size_t i = 0; i < big_len; i++)
		big[i] = (uint8_t)(i * 7 + 3);
	req.language = "bash";
	req.code = "wc -c\n";
	req.stdin_data = big;
	req.stdin_len = big_len;
	harness_run(d, &req, &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "300000\n");
	harness_run_free(&r);
	free(big);

	/* Without stdin the program sees end of file at once (it must not hang). */
	harness_run_code(d, "python", "import sys\nprint(repr(sys.stdin.read()))\n", &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "''\n");
	harness_run_free(&r);
}

static void test_env(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct capibox_env env[] = {
		{"GREETING", "hello env"},
		{"EMPTY_ONE", ""},
	};
	char code[2048];
	struct capibox_exec_request req = {
		.language = "python",
		.code = code,
		.env = env,
		.n_env = 2,
	};

	HARNESS_REQUIRE(d);
	/*
	 * The daemon runs with HARNESS_SECRET_NAME in its environment. Neither
	 * the name nor the value may reach the sandbox: not in os.environ and
	 * not in any /proc/<pid>/environ the code can read.
	 */
	snprintf(code, sizeof(code),
		 "import os\n"
		 "print('GREETING=' + repr(os.environ.get('GREETING')))\n"
		 "print('EMPTY_ONE=' + repr(os.environ.get('EMPTY_ONE')))\n"
		 "print('secret name visible:', '%s' in os.environ)\n"
		 "leaks = [k for k, v in os.environ.items() if '%s' in v]\n"
		 "for p in os.listdir('/proc'):\n"
		 "    if p.isdigit():\n"
		 "        try:\n"
		 "            if b'%s' in open('/proc/%%s/environ' %% p, 'rb').read():\n"
		 "                leaks.append(p)\n"
		 "        except OSError:\n"
		 "            pass\n"
		 "print('secret value leaks:', leaks)\n",
		 HARNESS_SECRET_NAME, d->secret, d->secret);
	harness_run(d, &req, &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "GREETING='hello env'\n"
			      "EMPTY_ONE=''\n"
			      "secret name visible: False\n"
			      "secret value leaks: []\n");
	harness_run_free(&r);
}

static void test_files(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	static const char csv[] = "name,sales,customers\nx,100,10\ny,300,20\nz,200,30\n";
	struct capibox_file files[] = {
		{.path = "data.csv", .data = (const uint8_t *)csv, .len = sizeof(csv) - 1},
	};
	struct capibox_exec_request req = {
		.language = "python",
		.code = "import os\n"
			"print(os.getcwd())\n"
			"print(open('data.csv').read(), end='')\n"
			"import pandas as pd\n"
			"df = pd.read_csv('data.csv')\n"
			"print('mean sales %.2f customers %.2f' % (df['sales'].mean(), df['customers'].mean()))\n",
		.files = files,
		.n_files = 1,
	};
	char expect[512];

	HARNESS_REQUIRE(d);
	harness_run(d, &req, &r);
	assert_run_exited(&r, 0);
	snprintf(expect, sizeof(expect), "/home/user\n%smean sales 200.00 customers 20.00\n", csv);
	assert_run_stdout(&r, expect);
	harness_run_free(&r);
}

static void test_files_subdir_and_mode(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	static const char script[] = "#!/bin/sh\necho ran script\n";
	static const char text[] = "plain\n";
	struct capibox_file files[] = {
		{.path = "tools/run.sh",
		 .data = (const uint8_t *)script,
		 .len = sizeof(script) - 1,
		 .mode = 0755},
		{.path = "notes.txt", .data = (const uint8_t *)text, .len = sizeof(text) - 1},
	};
	struct capibox_exec_request req = {
		.language = "bash",
		.code = "./tools/run.sh\nstat -c '%a %n' tools/run.sh notes.txt\ncat notes.txt\n",
		.files = files,
		.n_files = 2,
	};

	HARNESS_REQUIRE(d);
	harness_run(d, &req, &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "ran script\n755 tools/run.sh\n644 notes.txt\nplain\n");
	harness_run_free(&r);
}

static void test_numpy(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	harness_run_code(d, "python", "import numpy as np\nprint(np.array([1, 2, 3, 4, 5]) * 2)\n",
			 &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "[ 2  4  6  8 10]\n");
	harness_run_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_python_hello),
		cmocka_unit_test(test_javascript_hello),
		cmocka_unit_test(test_bash_hello),
		cmocka_unit_test(test_exit_code),
		cmocka_unit_test(test_end_of_program),
		cmocka_unit_test(test_signal_kill),
		cmocka_unit_test(test_wall_timeout_busy),
		cmocka_unit_test(test_wall_timeout_sleeping),
		cmocka_unit_test(test_streaming_live),
		cmocka_unit_test(test_streams_separate_and_ordered),
		cmocka_unit_test(test_large_output),
		cmocka_unit_test(test_backpressure_bounded_memory),
		cmocka_unit_test(test_stdin),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_files_subdir_and_mode),
		cmocka_unit_test(test_numpy),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	harness_init();
	rc = cmocka_run_group_tests_name("execute", tests, setup, harness_group_teardown);
	return harness_finish(rc);
}
