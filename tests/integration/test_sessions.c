/*
 * Sessions against the real daemon: state that persists between Executes,
 * isolation between sessions and from one-shot runs, the interrupt that
 * keeps a session's state and the restart that loses it, idle expiry,
 * close, the caps (server and per key), ownership by key, the per-session
 * queue, the memory limit that ends a session, files, Health and metrics.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "harness.h"

#define MAX_SESSIONS 6

static struct daemon daemon_;
static char keys_path[128];

struct key {
	char secret[128];
	char line[256];
};

static struct key k_alice, k_bob;
static bool keys_ok;

static int setup(void **state)
{
	static const char *extra[] = {"--keys", keys_path, "--max-sessions", "6", NULL};
	static struct capibox_connect_opts copts;
	static struct daemon_opts opts = {.uid_slot = 4, .extra = extra};
	char buf[1024];
	FILE *f;

	*state = &daemon_;
	if (!harness_init() || !keys_ok)
		return 0;
	snprintf(buf, sizeof(buf), "%s\n%s sessions=2\n", k_alice.line, k_bob.line);
	f = fopen(keys_path, "we");
	if (f == NULL || fputs(buf, f) < 0 || fclose(f) != 0)
		return -1;
	chmod(keys_path, 0600);
	copts.token = k_alice.secret;
	opts.client = &copts;
	return harness_group_setup(state, &daemon_, &opts);
}

static struct capibox_client *client_with(struct daemon *d, const char *token)
{
	struct capibox_connect_opts o = {.token = token};
	char err[256];
	struct capibox_client *c = capibox_connect(d->addr, &o, err, sizeof(err));

	if (c == NULL)
		fail_msg("capibox_connect: %s", err);
	return c;
}

static void open_session(struct daemon *d, const struct capibox_session_request *req,
			 struct capibox_session *s)
{
	struct capibox_session_request def = {.language = "python"};
	struct capibox_status st;

	if (capibox_session_create(d->client, req ? req : &def, s, &st) != CAPIBOX_OK)
		fail_msg("CreateSession: %s: %s", capibox_code_name(st.code), st.message);
	assert_true(strlen(s->id) > 8);
}

static void close_session(struct daemon *d, const char *id)
{
	struct capibox_status st;

	if (capibox_session_close(d->client, id, 10000, NULL, &st) != CAPIBOX_OK)
		fail_msg("CloseSession: %s: %s", capibox_code_name(st.code), st.message);
}

/* Runs code in session id (limits may be NULL). */
static int cell(struct daemon *d, const char *id, const char *code,
		const struct capibox_limits *lim, struct run *r)
{
	struct capibox_exec_request req = {.language = "", .code = code, .session_id = id};

	if (lim)
		req.limits = *lim;
	req.deadline_ms = 30000;
	return harness_run(d, &req, r);
}

/* A cell that must exit 0 with exactly out on stdout. */
static void cell_ok(struct daemon *d, const char *id, const char *code, const char *out)
{
	struct run r = {0};

	cell(d, id, code, NULL, &r);
	assert_run_exited(&r, 0);
	if (out)
		assert_run_stdout(&r, out);
	harness_run_free(&r);
}

static void test_state_persists(void **state)
{
	struct daemon *d = *state;
	struct capibox_session s;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	open_session(d, NULL, &s);
	cell_ok(d, s.id, "x = 1", "");
	cell_ok(d, s.id, "print(x)", "1\n");
	cell_ok(d, s.id, "import json\ndef f(v):\n    return v * 2", "");
	cell_ok(d, s.id, "print(json.dumps([f(x), f(20)]))", "[2, 40]\n");
	cell_ok(d, s.id, "import os\nos.makedirs('sub', exist_ok=True)\nos.chdir('sub')", "");
	cell_ok(d, s.id, "print(os.getcwd())", "/home/user/sub\n");
	/* an exception ends the cell (exit 1), not the session */
	cell(d, s.id, "raise ValueError('boom')", NULL, &r);
	assert_run_exited(&r, 1);
	assert_non_null(strstr((char *)r.err, "ValueError: boom"));
	assert_null(strstr((char *)r.err, "runner.py")); /* no frames of ours */
	harness_run_free(&r);
	cell_ok(d, s.id, "print(x)", "1\n");
	/* sys.exit in a cell: its exit code, the session lives on */
	cell(d, s.id, "import sys\nsys.exit(3)", NULL, &r);
	assert_run_exited(&r, 3);
	harness_run_free(&r);
	cell_ok(d, s.id, "print(x + 1)", "2\n");
	close_session(d, s.id);
}

static void test_sessions_isolated(void **state)
{
	struct daemon *d = *state;
	struct capibox_session a, b;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	open_session(d, NULL, &a);
	open_session(d, NULL, &b);
	cell_ok(d, a.id,
		"secret = 42\nopen('/home/user/a.txt', 'w').write('a')\n"
		"import subprocess\np = subprocess.Popen(['sleep', '300'])",
		"");
	/* b sees none of a's variables, files or processes */
	cell(d, b.id, "print(secret)", NULL, &r);
	assert_run_exited(&r, 1);
	assert_non_null(strstr((char *)r.err, "NameError"));
	harness_run_free(&r);
	cell_ok(d, b.id, "import os\nprint(os.path.exists('/home/user/a.txt'))", "False\n");
	cell_ok(d, b.id,
		"import os\n"
		"n = [p for p in os.listdir('/proc') if p.isdigit() and\n"
		"     b'sleep' in open('/proc/%s/cmdline' % p, 'rb').read()]\n"
		"print(len(n))",
		"0\n");
	/* ... and a one-shot run neither */
	harness_run_code(d, "python",
			 "import os\nprint(os.path.exists('/home/user/a.txt'), 'secret' in "
			 "globals())",
			 &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "False False\n");
	harness_run_free(&r);
	/* while a still has all of it */
	cell_ok(d, a.id, "print(secret, open('a.txt').read(), p.poll())", "42 a None\n");
	close_session(d, a.id);
	close_session(d, b.id);
}

static void test_timeout_keeps_state(void **state)
{
	struct daemon *d = *state;
	struct capibox_session s;
	struct capibox_limits wall = {.wall_time_ms = 1000};
	struct capibox_limits cpu = {.cpu_time_ms = 500, .wall_time_ms = 10000};
	struct run r = {0};

	HARNESS_REQUIRE(d);
	open_session(d, NULL, &s);
	cell_ok(d, s.id, "x = 5", "");
	cell(d, s.id, "while True:\n    pass", &wall, &r);
	if (r.rc != 0 || r.reason != CAPIBOX_REASON_WALL_TIMEOUT) {
		harness_run_print(&r);
		fail_msg("expected WALL_TIMEOUT");
	}
	assert_non_null(strstr(r.message, "state is kept"));
	assert_true(r.wall_time_us >= 1000000 && r.wall_time_us < 3000000);
	harness_run_free(&r);
	cell_ok(d, s.id, "print(x)", "5\n");
	/* the CPU limit of a cell: its runner interrupts it */
	cell(d, s.id, "while True:\n    pass", &cpu, &r);
	if (r.rc != 0 || r.reason != CAPIBOX_REASON_CPU_TIMEOUT) {
		harness_run_print(&r);
		fail_msg("expected CPU_TIMEOUT");
	}
	assert_true(r.t_end < 5.0);
	harness_run_free(&r);
	cell_ok(d, s.id, "print(x * 2)", "10\n");
	close_session(d, s.id);
}

static void test_runaway_restarts(void **state)
{
	struct daemon *d = *state;
	struct capibox_session s;
	struct capibox_limits wall = {.wall_time_ms = 1000};
	struct run r = {0};

	HARNESS_REQUIRE(d);
	open_session(d, NULL, &s);
	cell_ok(d, s.id, "x = 5", "");
	/* a C-level sleep in a loop that swallows KeyboardInterrupt */
	cell(d, s.id,
	     "import time\nwhile True:\n    try:\n        time.sleep(10)\n"
	     "    except KeyboardInterrupt:\n        pass",
	     &wall, &r);
	if (r.rc != 0 || r.reason != CAPIBOX_REASON_WALL_TIMEOUT ||
	    strstr(r.message, "state was lost") == NULL) {
		harness_run_print(&r);
		fail_msg("expected WALL_TIMEOUT and the state lost");
	}
	assert_true(r.t_end < 6.0);
	harness_run_free(&r);
	/* the same session, fresh state */
	cell(d, s.id, "print(x)", NULL, &r);
	assert_run_exited(&r, 1);
	assert_non_null(strstr((char *)r.err, "NameError"));
	harness_run_free(&r);
	cell_ok(d, s.id, "y = 7\nprint(y)", "7\n");
	close_session(d, s.id);
}

static void test_idle_expiry(void **state)
{
	struct daemon *d = *state;
	struct capibox_session_request req = {.language = "python", .idle_timeout_s = 1};
	struct capibox_session s;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	open_session(d, &req, &s);
	assert_int_equal(s.idle_timeout_s, 1);
	cell_ok(d, s.id, "x = 1", "");
	harness_sleep_ms(2500);
	cell(d, s.id, "print(x)", NULL, &r);
	assert_int_equal(r.rc, CAPIBOX_NOT_FOUND);
	assert_non_null(strstr(r.st.message, "without an execution"));
	harness_run_free(&r);
}

static void test_close(void **state)
{
	struct daemon *d = *state;
	struct capibox_session s, last;
	struct capibox_status st;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	open_session(d, NULL, &s);
	cell_ok(d, s.id, "x = 1", "");
	assert_int_equal(capibox_session_close(d->client, s.id, 10000, &last, &st), CAPIBOX_OK);
	assert_string_equal(last.id, s.id);
	assert_int_equal(last.executions, 1);
	cell(d, s.id, "print(x)", NULL, &r);
	assert_int_equal(r.rc, CAPIBOX_NOT_FOUND);
	assert_non_null(strstr(r.st.message, "closed"));
	harness_run_free(&r);
	assert_int_equal(capibox_session_close(d->client, s.id, 10000, NULL, &st),
			 CAPIBOX_NOT_FOUND);
	cell(d, "no-such-session", "print(1)", NULL, &r);
	assert_int_equal(r.rc, CAPIBOX_NOT_FOUND);
	harness_run_free(&r);
	cell(d, "bad id!", "print(1)", NULL, &r);
	assert_int_equal(r.rc, CAPIBOX_INVALID_ARGUMENT);
	harness_run_free(&r);
}

static void test_caps_and_keys(void **state)
{
	struct daemon *d = *state;
	struct capibox_session s[MAX_SESSIONS + 1], mine, b1, b2;
	struct capibox_session_request req = {.language = "python"};
	struct capibox_client *bob;
	struct capibox_session *list = NULL;
	struct capibox_status st;
	struct run r = {0};
	size_t n = 0;

	HARNESS_REQUIRE(d);
	/* another key sees nothing of alice's */
	open_session(d, NULL, &mine);
	cell_ok(d, mine.id, "x = 'alice'", "");
	bob = client_with(d, k_bob.secret);
	{
		struct capibox_exec_request er = {
			.language = "", .code = "print(x)", .session_id = mine.id};
		struct capibox_client *keep = d->client;
		d->client = bob;
		harness_run(d, &er, &r);
		d->client = keep;
	}
	assert_int_equal(r.rc, CAPIBOX_NOT_FOUND);
	harness_run_free(&r);
	assert_int_equal(capibox_session_close(bob, mine.id, 10000, NULL, &st), CAPIBOX_NOT_FOUND);
	assert_int_equal(capibox_session_list(bob, 10000, &list, &n, &st), CAPIBOX_OK);
	assert_int_equal(n, 0);
	free(list);
	/* bob's sessions=2 */
	assert_int_equal(capibox_session_create(bob, &req, &b1, &st), CAPIBOX_OK);
	assert_int_equal(capibox_session_create(bob, &req, &b2, &st), CAPIBOX_OK);
	assert_int_equal(capibox_session_create(bob, &req, &s[0], &st), CAPIBOX_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(st.message, "sessions=2"));
	assert_int_equal(capibox_session_list(bob, 10000, &list, &n, &st), CAPIBOX_OK);
	assert_int_equal(n, 2);
	free(list);
	/* the server's cap: 6 open (alice 1 + bob 2 + 3 more) */
	for (int i = 0; i < 3; i++)
		open_session(d, NULL, &s[i]);
	assert_int_equal(capibox_session_create(d->client, &req, &s[3], &st),
			 CAPIBOX_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(st.message, "max_sessions"));
	{
		struct capibox_health *h = NULL;
		assert_int_equal(capibox_health(d->client, false, 10000, &h, &st), CAPIBOX_OK);
		assert_int_equal(h->sessions_open, MAX_SESSIONS);
		assert_int_equal(h->max_sessions, MAX_SESSIONS);
		capibox_health_free(h);
	}
	for (int i = 0; i < 3; i++)
		close_session(d, s[i].id);
	assert_int_equal(capibox_session_close(bob, b1.id, 10000, NULL, &st), CAPIBOX_OK);
	assert_int_equal(capibox_session_close(bob, b2.id, 10000, NULL, &st), CAPIBOX_OK);
	capibox_close(bob);
	cell_ok(d, mine.id, "print(x)", "alice\n");
	close_session(d, mine.id);
}

struct queued {
	struct daemon *d;
	const char *id;
	int i;
	struct run r;
};

static void *queued_main(void *arg)
{
	struct queued *q = arg;
	char code[256];

	snprintf(code, sizeof(code),
		 "import time\nn = globals().get('n', 0) + 1\ntime.sleep(0.3)\nprint(%d, n)", q->i);
	cell(q->d, q->id, code, NULL, &q->r);
	return NULL;
}

static void test_queue_in_order(void **state)
{
	struct daemon *d = *state;
	struct capibox_session s;
	struct queued q[3];
	pthread_t t[3];
	double t0 = harness_now();

	HARNESS_REQUIRE(d);
	open_session(d, NULL, &s);
	for (int i = 0; i < 3; i++) {
		q[i] = (struct queued){.d = d, .id = s.id, .i = i};
		pthread_create(&t[i], NULL, queued_main, &q[i]);
		harness_sleep_ms(50); /* arrival order 0, 1, 2 */
	}
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 3; i++) {
		char want[16];
		snprintf(want, sizeof(want), "%d %d\n", i, i + 1);
		assert_run_exited(&q[i].r, 0);
		assert_run_stdout(&q[i].r, want);
		assert_int_equal(q[i].r.n_finished, 1);
		harness_run_free(&q[i].r);
	}
	/* one at a time: three cells of 0.3 s */
	assert_true(harness_now() - t0 >= 0.9);
	close_session(d, s.id);
}

static void test_memory_limit_ends_session(void **state)
{
	struct daemon *d = *state;
	struct capibox_session_request req = {.language = "python",
					      .limits = {.memory_bytes = 128 << 20}};
	struct capibox_session s;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	open_session(d, &req, &s);
	cell_ok(d, s.id, "x = 1", "");
	cell(d, s.id, "b = bytearray(1 << 30)\nb[::4096] = b'x' * len(b[::4096])", NULL, &r);
	if (r.rc != 0 || r.reason != CAPIBOX_REASON_MEMORY_LIMIT) {
		harness_run_print(&r);
		fail_msg("expected MEMORY_LIMIT");
	}
	harness_run_free(&r);
	cell(d, s.id, "print(x)", NULL, &r);
	assert_int_equal(r.rc, CAPIBOX_NOT_FOUND);
	assert_non_null(strstr(r.st.message, "memory"));
	harness_run_free(&r);
}

static void test_files(void **state)
{
	struct daemon *d = *state;
	static const uint8_t data[] = "a,b\n1,2\n";
	struct capibox_file f = {.path = "in/data.csv", .data = data, .len = sizeof(data) - 1};
	struct capibox_session_request req = {.language = "python", .files = &f, .n_files = 1};
	struct capibox_file g = {.path = "cell.txt", .data = (const uint8_t *)"hi", .len = 2};
	struct capibox_exec_request er = {.language = "python",
					  .code = "print(open('in/data.csv').read().split()[1], "
						  "open('/home/user/cell.txt').read())",
					  .files = &g,
					  .n_files = 1};
	struct capibox_session s;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	open_session(d, &req, &s);
	er.session_id = s.id;
	harness_run(d, &er, &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "1,2 hi\n");
	harness_run_free(&r);
	/* a result and a figure, as in a one-shot run */
	cell(d, s.id,
	     "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\n"
	     "plt.show()\n6 * 7",
	     NULL, &r);
	assert_run_exited(&r, 0);
	harness_run_free(&r);
	close_session(d, s.id);
}

/* What a cell's collect returned (the hook of a run). */
struct collected {
	char paths[512];     /* "path:size " per file, in order */
	bool after_finished; /* an artifact came after Finished */
};

static int collect_hook(const struct capibox_event *ev, struct run *r, void *arg)
{
	struct collected *c = arg;
	size_t n = strlen(c->paths);

	if (ev->kind == CAPIBOX_EVENT_ARTIFACT && ev->u.artifact.eof)
		snprintf(c->paths + n, sizeof(c->paths) - n, "%s:%llu ", ev->u.artifact.path,
			 (unsigned long long)ev->u.artifact.size);
	if (ev->kind == CAPIBOX_EVENT_ARTIFACT)
		c->after_finished |= r->n_finished > 0;
	return 0;
}

/*
 * collect in a session, in each language: files the cell wrote come back
 * before the cell's Finished, a planted symlink (to a file, to a directory)
 * is never followed, the session goes on, and a background process still
 * running does not stop the walk.
 */
static void test_collect_in_session(void **state)
{
	static const char *const globs[] = {"**/*.txt", "**/*.csv", "link/*"};
	static const struct {
		const char *language, *code;
	} cases[] = {
		{"python", "import os, subprocess\n"
			   "open('a.txt', 'w').write('hello')\n"
			   "os.makedirs('d/e', exist_ok=True)\n"
			   "open('d/e/b.csv', 'w').write('x,y\\n1,2\\n')\n"
			   "os.symlink('/etc/passwd', 'p.txt')\n"
			   "os.symlink('/etc', 'link')\n"
			   "bg = subprocess.Popen(['sleep', '30'])\n"},
		{"bash", "printf hello > a.txt; mkdir -p d/e; printf 'x,y\\n1,2\\n' > d/e/b.csv\n"
			 "ln -s /etc/passwd p.txt; ln -s /etc link; sleep 30 &\n"},
		{"javascript", "const fs = require('fs');\n"
			       "fs.writeFileSync('a.txt', 'hello');\n"
			       "fs.mkdirSync('d/e', {recursive: true});\n"
			       "fs.writeFileSync('d/e/b.csv', 'x,y\\n1,2\\n');\n"
			       "fs.symlinkSync('/etc/passwd', 'p.txt');\n"
			       "fs.symlinkSync('/etc', 'link');\n"},
	};
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct capibox_session_request sreq = {.language = cases[i].language};
		struct capibox_exec_request req = {.language = "", .deadline_ms = 30000};
		struct collected c;
		struct capibox_session s;
		struct run r = {0};

		memset(&c, 0, sizeof(c));
		open_session(d, &sreq, &s);
		req.session_id = s.id;
		req.code = cases[i].code;
		req.collect = globs;
		req.n_collect = 3;
		r.hook = collect_hook;
		r.hook_arg = &c;
		harness_run(d, &req, &r);
		assert_run_exited(&r, 0);
		if (strcmp(c.paths, "a.txt:5 d/e/b.csv:8 ") != 0 || c.after_finished) {
			harness_run_print(&r);
			fail_msg("%s: collected \"%s\"%s", cases[i].language, c.paths,
				 c.after_finished ? ", after Finished" : "");
		}
		harness_run_free(&r);
		/* nothing matches: nothing comes, and the session goes on */
		memset(&c, 0, sizeof(c));
		req.code = strcmp(cases[i].language, "python") == 0 ? "print(41 + 1)" : "echo 42";
		if (strcmp(cases[i].language, "javascript") == 0)
			req.code = "console.log(41 + 1)";
		req.collect = globs + 2;
		req.n_collect = 1;
		memset(&r, 0, sizeof(r));
		r.hook = collect_hook;
		r.hook_arg = &c;
		harness_run(d, &req, &r);
		assert_run_exited(&r, 0);
		assert_run_stdout(&r, "42\n");
		assert_string_equal(c.paths, "");
		harness_run_free(&r);
		close_session(d, s.id);
	}
}

static void test_bash_session(void **state)
{
	struct daemon *d = *state;
	struct capibox_session_request req = {.language = "bash"};
	struct capibox_limits wall = {.wall_time_ms = 1000};
	struct capibox_session s;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	open_session(d, &req, &s);
	assert_string_equal(s.language, "bash");
	cell_ok(d, s.id, "X=41\ngreet() { echo \"hi $1\"; }\nmkdir -p w && cd w", "");
	cell_ok(d, s.id, "echo $((X + 1)); greet you; pwd", "42\nhi you\n/home/user/w\n");
	cell(d, s.id, "false", NULL, &r);
	assert_run_exited(&r, 1);
	harness_run_free(&r);
	/* read from stdin: /dev/null, never the next cell */
	cell_ok(d, s.id, "read -r line; echo \"[$line]\"", "[]\n");
	/* a timeout interrupts the cell, the shell's state stays */
	cell(d, s.id, "while true; do :; done", &wall, &r);
	if (r.rc != 0 || r.reason != CAPIBOX_REASON_WALL_TIMEOUT ||
	    strstr(r.message, "state is kept") == NULL) {
		harness_run_print(&r);
		fail_msg("expected WALL_TIMEOUT, state kept");
	}
	harness_run_free(&r);
	cell(d, s.id, "sleep 30", &wall, &r);
	assert_int_equal(r.reason, CAPIBOX_REASON_WALL_TIMEOUT);
	harness_run_free(&r);
	cell_ok(d, s.id, "echo $X; greet again", "41\nhi again\n");
	close_session(d, s.id);
}

static void test_cancel_running_and_waiting(void **state)
{
	struct daemon *d = *state;
	struct capibox_session s;
	struct queued q;
	pthread_t t;
	struct run r = {0};
	struct capibox_exec_request req = {.language = "", .code = "print(v)"};
	double t0;

	HARNESS_REQUIRE(d);
	open_session(d, NULL, &s);
	cell_ok(d, s.id, "v = 'kept'", "");
	/* the deadline of a running cell interrupts it; the state stays */
	req.session_id = s.id;
	req.code = "import time\ntime.sleep(30)";
	req.deadline_ms = 700;
	harness_run(d, &req, &r);
	assert_int_equal(r.rc, CAPIBOX_DEADLINE_EXCEEDED);
	harness_run_free(&r);
	cell_ok(d, s.id, "print(v)", "kept\n");
	/* a waiting one leaves the queue at its deadline, at once */
	q = (struct queued){.d = d, .id = s.id, .i = 9};
	pthread_create(&t, NULL, queued_main, &q);
	harness_sleep_ms(100);
	req.code = "print('never')";
	req.deadline_ms = 100;
	t0 = harness_now();
	harness_run(d, &req, &r);
	assert_int_equal(r.rc, CAPIBOX_DEADLINE_EXCEEDED);
	assert_true(harness_now() - t0 < 0.25);
	assert_int_equal(r.out_len, 0);
	harness_run_free(&r);
	pthread_join(t, NULL);
	assert_run_exited(&q.r, 0);
	harness_run_free(&q.r);
	cell_ok(d, s.id, "print(v)", "kept\n");
	close_session(d, s.id);
}

static void test_output_limit(void **state)
{
	struct daemon *d = *state;
	struct capibox_session s;
	struct capibox_limits lim = {.max_output_bytes = 1000};
	struct run r = {0};

	HARNESS_REQUIRE(d);
	open_session(d, NULL, &s);
	cell_ok(d, s.id, "v = 3", "");
	cell(d, s.id, "while True:\n    print('x' * 100)", &lim, &r);
	if (r.reason != CAPIBOX_REASON_OUTPUT_LIMIT || r.out_len != 1000) {
		harness_run_print(&r);
		fail_msg("expected OUTPUT_LIMIT after 1000 bytes");
	}
	harness_run_free(&r);
	/* no stale output of that cell reaches the next one */
	cell_ok(d, s.id, "print(v)", "3\n");
	close_session(d, s.id);
}

static void test_left_open_at_shutdown(void **state)
{
	struct daemon *d = *state;
	struct capibox_session s;

	HARNESS_REQUIRE(d);
	open_session(d, NULL, &s);
	cell_ok(d, s.id, "import subprocess\nsubprocess.Popen(['sleep', '600'])", "");
	/* harness_test_daemon_stops: no process of it may remain */
}

/* Records the text of a run's result event. */
static int result_hook(const struct capibox_event *ev, struct run *r, void *arg)
{
	(void)r;
	if (ev->kind == CAPIBOX_EVENT_RESULT)
		snprintf(arg, 64, "%s", ev->u.result.text);
	return 0;
}

static void test_javascript_session(void **state)
{
	struct daemon *d = *state;
	struct capibox_session_request req = {.language = "javascript"};
	struct capibox_limits wall = {.wall_time_ms = 1000};
	struct capibox_session s;
	struct run r = {0};
	char res[64] = "";

	HARNESS_REQUIRE(d);
	open_session(d, &req, &s);
	cell_ok(d, s.id, "var x = 20; globalThis.y = 1; function f(v) { return v * 2; }", "");
	cell_ok(d, s.id, "console.log(f(x) + y)", "41\n");
	r.hook = result_hook;
	r.hook_arg = res;
	cell(d, s.id, "x + 22", NULL, &r);
	assert_run_exited(&r, 0);
	assert_string_equal(res, "42");
	harness_run_free(&r);
	cell(d, s.id, "throw new Error('boom')", NULL, &r);
	assert_run_exited(&r, 1);
	assert_non_null(strstr((char *)r.err, "boom"));
	harness_run_free(&r);
	cell(d, s.id, "while (true) {}", &wall, &r);
	if (r.rc != 0 || r.reason != CAPIBOX_REASON_WALL_TIMEOUT) {
		harness_run_print(&r);
		fail_msg("expected WALL_TIMEOUT");
	}
	harness_run_free(&r);
	cell_ok(d, s.id,
		"const fs = require('fs'); fs.writeFileSync('j.txt', 'j'); "
		"console.log(x, fs.readFileSync('j.txt', 'utf8'))",
		"20 j\n");
	close_session(d, s.id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_persists),
		cmocka_unit_test(test_sessions_isolated),
		cmocka_unit_test(test_timeout_keeps_state),
		cmocka_unit_test(test_runaway_restarts),
		cmocka_unit_test(test_idle_expiry),
		cmocka_unit_test(test_close),
		cmocka_unit_test(test_caps_and_keys),
		cmocka_unit_test(test_queue_in_order),
		cmocka_unit_test(test_memory_limit_ends_session),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_bash_session),
		cmocka_unit_test(test_javascript_session),
		cmocka_unit_test(test_collect_in_session),
		cmocka_unit_test(test_cancel_running_and_waiting),
		cmocka_unit_test(test_output_limit),
		cmocka_unit_test(test_left_open_at_shutdown),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	char dir[64];
	int rc;

	/* Before any gRPC thread: keygen runs as a child process. */
	if (harness_init()) {
		snprintf(dir, sizeof(dir), "/tmp/capibox-sess-XXXXXX");
		if (mkdtemp(dir) == NULL)
			return 1;
		harness_remove_at_finish(dir);
		snprintf(keys_path, sizeof(keys_path), "%s/keys", dir);
		keys_ok = harness_keygen("alice", k_alice.secret, sizeof(k_alice.secret),
					 k_alice.line, sizeof(k_alice.line)) &&
			  harness_keygen("bob", k_bob.secret, sizeof(k_bob.secret), k_bob.line,
					 sizeof(k_bob.line));
		if (!keys_ok)
			return 1;
	}
	rc = cmocka_run_group_tests_name("sessions", tests, setup, harness_group_teardown);
	return harness_finish(rc);
}
