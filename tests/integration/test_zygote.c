/*
 * The python zygotes (docs/ZYGOTE.md): warm python sandboxes are clones of
 * a lean interpreter, and code that imports numpy or pandas runs in a clone
 * of one that has imported them. What a clone shares with its siblings must
 * be only what ZYGOTE.md lists:
 *   - siblings have different host uids and different random values;
 *   - a later sandbox finds nothing of an earlier request in its memory;
 *   - killing the zygote ends its sandboxes, not the daemon, and python
 *     keeps working (cold meanwhile, then from a restarted zygote);
 *   - a new generation (--zygote-recycle 3) has a new hash secret, and
 *     executions across the switch all succeed.
 * A sandbox made by a zygote is recognised from inside: the zygote's
 * extension module is loaded (a runner made by exec has none), and the
 * preloaded one's by pandas being imported before the program imports it.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static struct daemon daemon_;

/* the first line of every probe: "Z 1" when the sandbox is a zygote's */
#define ZMARK "import sys\nprint('Z', int('_capibox_zygote' in sys.modules))\n"
/* ... "Z 1" when it is the preloaded zygote's (the code imports numpy:
 * the front sends it there) */
#define PMARK "import sys\nprint('Z', int('pandas' in sys.modules))\nimport numpy\n"

static int setup(void **state)
{
	static const struct daemon_opts opts = {.uid_slot = 5};

	return harness_group_setup(state, &daemon_, &opts);
}

static int setup_recycle(void **state)
{
	static const char *const extra[] = {"--zygote-recycle", "3", NULL};
	static const struct daemon_opts opts = {.uid_slot = 5, .extra = extra};

	return harness_group_setup(state, &daemon_, &opts);
}

/* Skips (with the daemon's reason) when this build runs without a zygote. */
static void require_zygote(const struct daemon *d)
{
	for (double end = harness_now() + 10.0; harness_now() < end; harness_sleep_ms(50)) {
		char *log = harness_daemon_log(d), *off = strstr(log, "zygote: off");
		bool on = strstr(log, "zygote: on") != NULL;
		if (off != NULL) {
			char *nl = strchr(off, '\n');
			if (nl != NULL)
				*nl = '\0';
			print_message("SKIP: %s\n", off);
			free(log);
			skip();
		}
		free(log);
		if (on)
			return;
	}
	fail_msg("the daemon's log says neither \"zygote: on\" nor \"zygote: off\"");
}

static bool from_zygote(const struct run *r)
{
	return r->out != NULL && strncmp((const char *)r->out, "Z 1\n", 4) == 0;
}

/* Runs req (its code starts with ZMARK) until a zygote's sandbox ran it (10 s). */
static void run_zygote_req(struct daemon *d, const struct capibox_exec_request *req, struct run *r)
{
	double end = harness_now() + 10.0;

	for (;;) {
		harness_run(d, req, r);
		assert_run_exited(r, 0);
		if (from_zygote(r))
			return;
		if (harness_now() > end) {
			harness_daemon_dump_log(d);
			fail_msg("no sandbox from the zygote in 10 s");
		}
		harness_run_free(r);
		harness_sleep_ms(100);
	}
}

/* Fails with what (and the run) unless r's stdout has needle. */
static void expect_out(const struct run *r, const char *needle, const char *what)
{
	if (r->out == NULL || strstr((const char *)r->out, needle) == NULL) {
		harness_run_print(r);
		fail_msg("%s", what);
	}
}

static void run_zygote(struct daemon *d, const char *code, struct run *r)
{
	struct capibox_exec_request req = {.language = "python", .code = code};

	run_zygote_req(d, &req, r);
}

/* The host uid of the lean zygote (kind 0) or the preloaded one (1). */
static uid_t zygote_uid(const struct daemon *d, unsigned kind)
{
	return d->uid_base + HARNESS_UID_COUNT + kind;
}

/* The pid of zygote kind (its command line names zygote.py), or 0. */
static pid_t zygote_pid(const struct daemon *d, unsigned kind)
{
	pid_t pids[8];
	size_t n = harness_find_procs("/.capibox/zygote.py", pids, 8);

	for (size_t i = 0; i < n && i < 8; i++)
		if (harness_proc_uid(pids[i]) == zygote_uid(d, kind))
			return pids[i];
	return 0;
}

static pid_t ppid_of(pid_t pid)
{
	char path[64], buf[4096];
	FILE *f;
	long ppid = -1;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	while (fgets(buf, sizeof(buf), f))
		if (sscanf(buf, "PPid: %ld", &ppid) == 1)
			break;
	fclose(f);
	return (pid_t)ppid;
}

/* The zygote's children (sandbox inits) in d's uid range, at most max. */
static size_t zygote_children(const struct daemon *d, pid_t zyg, pid_t *out, size_t max)
{
	pid_t pids[256];
	size_t n = harness_procs_in_uid_range(d->uid_base, d->uid_base + HARNESS_UID_COUNT, pids,
					      256),
	       k = 0;

	for (size_t i = 0; i < n && i < 256; i++)
		if (ppid_of(pids[i]) == zyg && k < max)
			out[k++] = pids[i];
	return k;
}

static void test_siblings_differ(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	char seen[8][128];
	size_t nseen = 0;
	pid_t zyg, kids[16];
	size_t nkids = 0;
	double end;

	HARNESS_REQUIRE(d);
	require_zygote(d);
	/* the values of four sandboxes of each zygote: all different */
	while (nseen < 8) {
		run_zygote(d,
			   nseen < 4 ? PMARK "import random\nprint(random.random(), "
					     "numpy.random.rand())\n" :
				       ZMARK "import random\nprint(random.random())\n",
			   &r);
		snprintf(seen[nseen], sizeof(seen[nseen]), "%s", (const char *)r.out + 4);
		for (size_t i = 0; i < nseen; i++)
			if (strcmp(seen[i], seen[nseen]) == 0) {
				harness_run_print(&r);
				fail_msg("two sandboxes drew the same random values: %s", seen[i]);
			}
		nseen++;
		harness_run_free(&r);
	}

	/* host side: the zygote runs as the uid just past the range; its
	 * idle sandboxes (the pool refilled from it) each have their own uid
	 * inside the range */
	zyg = zygote_pid(d, 0);
	if (zyg <= 0) {
		harness_daemon_dump_log(d);
		fail_msg("no zygote process with host uid %u", (unsigned)zygote_uid(d, 0));
	}
	if (zygote_pid(d, 1) <= 0) {
		harness_daemon_dump_log(d);
		fail_msg("no preloaded zygote process with host uid %u",
			 (unsigned)zygote_uid(d, 1));
	}
	end = harness_now() + 5.0;
	while ((nkids = zygote_children(d, zyg, kids, 16)) < 2 && harness_now() < end)
		harness_sleep_ms(50);
	if (nkids < 2)
		fail_msg("the zygote has %zu sandboxes, expected the pool's 2", nkids);
	for (size_t i = 0; i < nkids; i++) {
		uid_t u = harness_proc_uid(kids[i]);
		assert_true(u >= d->uid_base && u < d->uid_base + HARNESS_UID_COUNT);
		for (size_t j = 0; j < i; j++)
			if (harness_proc_uid(kids[j]) == u)
				fail_msg("sandboxes %d and %d share host uid %u", (int)kids[i],
					 (int)kids[j], (unsigned)u);
	}
}

/*
 * A clone's standard streams were made in the zygote, on a pipe, ahead of
 * any request (python_zygote.py, _pipe_stdio), since a pooled sandbox's 0,
 * 1 and 2 are pipes: they must be what `python3 -u` makes when started on
 * pipes. The clone describes its three streams, down to what they cache
 * (seekable, tell, buffer size), and has an exec'd python3 -u on its own
 * stdin and stderr and a new pipe for stdout describe its own: the two
 * must agree, and stdin must then read the request's input.
 */
static void test_std_streams(void **state)
{
	static const char probe[] =
		"import subprocess\n"
		"D = '''\n"
		"import sys\n"
		"def d(s):\n"
		"    b = s.buffer\n"
		"    r = getattr(b, 'raw', b)\n"
		"    try:\n"
		"        t = s.tell()\n"
		"    except Exception as e:\n"
		"        t = type(e).__name__\n"
		"    return (s.name, s.mode, s.encoding, s.errors, s.line_buffering,\n"
		"            s.write_through, s.seekable(), b.seekable(), r.seekable(),\n"
		"            s.readable(), s.writable(), s.fileno(), s.isatty(), t,\n"
		"            type(b).__name__, type(r).__name__, r.name, r.mode,\n"
		"            r.closefd, r._blksize, s._CHUNK_SIZE, s.newlines,\n"
		"            s is getattr(sys, '__' + s.name[1:-1] + '__'))\n"
		"'''\n"
		"exec(D)\n"
		"mine = repr([d(s) for s in (sys.stdin, sys.stdout, sys.stderr)])\n"
		"theirs = subprocess.run([sys.executable, '-u', '-c', D + 'print(repr([d(s) for s "
		"in (sys.stdin, sys.stdout, sys.stderr)]))'], stdin=0, stdout=subprocess.PIPE,\n"
		"    check=True).stdout.decode().strip()\n"
		"print('S', mine == theirs)\n"
		"print('M', mine)\n"
		"print('T', theirs)\n"
		"print('I', repr(sys.stdin.read()))\n"
		"sys.stderr.write('E\\n')\n";
	static const char input[] = "one\ntwo\n";
	struct daemon *d = *state;
	struct run r = {0};
	struct capibox_exec_request req = {
		.language = "python",
		.stdin_data = (const uint8_t *)input,
		.stdin_len = sizeof(input) - 1,
	};
	char code[4096];

	HARNESS_REQUIRE(d);
	require_zygote(d);
	snprintf(code, sizeof(code), "%s%s", ZMARK, probe);
	req.code = code;
	run_zygote_req(d, &req, &r);
	expect_out(&r, "\nS True\n",
		   "the clone's standard streams differ from an exec'd python3 -u's");
	/* a pooled sandbox's stdin is a pipe: not seekable, no position */
	assert_non_null(
		strstr((const char *)r.out,
		       "\nM [('<stdin>', 'r', 'utf-8', 'surrogateescape', False, True, False, "
		       "False, False, True, False, 0, False, 'UnsupportedOperation'"));
	assert_non_null(strstr((const char *)r.out, "\nI 'one\\ntwo\\n'\n"));
	assert_non_null(r.err);
	assert_string_equal((const char *)r.err, "E\n");
	harness_run_free(&r);
}

/*
 * A clone's environment is the warm runner's, in every view of it: the
 * mapping os.environ, the C environment a child gets, and
 * /proc/self/environ (the block the zygote was started with). The BLAS
 * variables the zygote set for its preload are in none of them, in either
 * zygote's clones. A request's variables (which a clone receives with its
 * code, python_zygote.py _take) are in os.environ and a child's.
 */
static void test_environment(void **state)
{
	static const char body[] =
		"import os, subprocess\n"
		"pe = sorted(x for x in open('/proc/self/environ', 'rb').read().split(b'\\0') if x)\n"
		"oe = sorted(k + b'=' + v for k, v in os.environb.items())\n"
		"ce = sorted(subprocess.run(['env', '-0'], capture_output=True, check=True)\n"
		"            .stdout.split(b'\\0'))[1:]\n"
		"print('E', pe == oe, oe == ce, [x for x in pe + oe + ce if b'THREADS' in x])\n";
	struct daemon *d = *state;
	struct run r = {0};
	char code[2048];

	HARNESS_REQUIRE(d);
	require_zygote(d);
	for (int kind = 0; kind < 2; kind++) {
		snprintf(code, sizeof(code), "%s%s", kind == 0 ? ZMARK : PMARK, body);
		run_zygote(d, code, &r);
		expect_out(&r, "\nE True True []\n",
			   kind == 0 ? "a lean clone's environment views differ, or show the "
				       "zygote's own variables" :
				       "a preloaded clone's environment views differ, or show the "
				       "zygote's own variables");
		harness_run_free(&r);
	}

	{
		/* BIG: a take larger than the first read of it */
		static char big[50001];
		struct capibox_env env[] = {
			{"GREETING", "hello env"}, {"EMPTY_ONE", ""}, {"BIG", big}};
		struct capibox_exec_request req = {
			.language = "python",
			.code = ZMARK
			"import os, subprocess\n"
			"print('V', repr(os.environ['GREETING']), "
			"repr(os.environ['EMPTY_ONE']), os.environ['BIG'] == 'b' * 50000)\n"
			"subprocess.run(['sh', '-c', 'echo \"C $GREETING.${EMPTY_ONE-unset}\"'], "
			"check=True)\n",
			.env = env,
			.n_env = 3,
		};
		memset(big, 'b', sizeof(big) - 1);
		run_zygote_req(d, &req, &r);
		expect_out(&r, "\nV 'hello env' '' True\nC hello env.\n",
			   "a clone did not get the request's variables");
		harness_run_free(&r);
	}
}

/*
 * The sandbox's init holds no capability once the program can run: it
 * drops them before it writes the take to the runner (wait_for_take), so
 * the program's first look at pid 1 finds none, bounding set included.
 */
static void test_init_capabilities(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	require_zygote(d);
	run_zygote(d,
		   ZMARK "print(''.join(l for l in open('/proc/1/status') if l.startswith('Cap')), "
			 "end='')\n",
		   &r);
	expect_out(&r,
		   "\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n"
		   "CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\n"
		   "CapAmb:\t0000000000000000\n",
		   "the sandbox's init held capabilities while the program ran");
	harness_run_free(&r);
}

/*
 * A clone skips threading's at-fork handler (python_zygote.py) and puts it
 * back for the program: threads work, and a program that forks while a
 * thread runs gets a child with only its own thread, as in any process.
 */
static void test_threads_and_fork(void **state)
{
	static const char body[] =
		"import os, threading, time\n"
		"print(threading._after_fork.__code__.co_name,\n"
		"      threading.main_thread() is threading.current_thread(),\n"
		"      len(threading.enumerate()))\n"
		"t = threading.Thread(target=time.sleep, args=(0.2,))\n"
		"t.start()\n"
		"pid = os.fork()\n"
		"if pid == 0:\n"
		"    n = len(threading.enumerate())\n"
		"    u = threading.Thread(target=lambda: None)\n"
		"    u.start()\n"
		"    u.join()\n"
		"    print('child', n, threading.current_thread() is threading.main_thread(),\n"
		"          flush=True)\n"
		"    os._exit(0)\n"
		"os.waitpid(pid, 0)\n"
		"print('parent', len(threading.enumerate()))\n"
		"t.join()\n";
	struct daemon *d = *state;
	struct run r = {0};
	char code[1024];

	HARNESS_REQUIRE(d);
	require_zygote(d);
	for (int i = 0; i < 2; i++) { /* the lean zygote's sandbox, the preloaded one's */
		snprintf(code, sizeof(code), "%s%s", i == 0 ? ZMARK : PMARK, body);
		run_zygote(d, code, &r);
		if (strcmp((const char *)r.out + 4,
			   "_after_fork True 1\nchild 1 True\nparent 2\n") != 0) {
			harness_run_print(&r);
			fail_msg("threads and fork in a zygote's sandbox: unexpected output");
		}
		harness_run_free(&r);
	}
}

/* Code that imports numpy or pandas runs in the preloaded zygote's clone,
 * the rest in the lean pool's, which has neither loaded. */
static void test_routing(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	require_zygote(d);
	run_zygote(d, ZMARK "print(int('numpy' in sys.modules), int('pandas' in sys.modules))\n",
		   &r);
	assert_string_equal((const char *)r.out + 4, "0 0\n");
	harness_run_free(&r);
	run_zygote(
		d,
		"import sys\nprint('Z', int('pandas' in sys.modules))\n"
		"from pandas import DataFrame\n"
		"print(DataFrame({'k': [0, 1, 0], 'v': [1, 2, 3]}).groupby('k').v.sum().tolist())\n",
		&r);
	assert_string_equal((const char *)r.out + 4, "[4, 2]\n");
	harness_run_free(&r);
	run_zygote(
		d,
		"import sys\nprint('Z', int('pandas' in sys.modules))\npd = __import__('pandas')\n",
		&r);
	harness_run_free(&r);
}

/* A random lowercase hex string of n characters. */
static void random_hex(char *out, size_t n)
{
	unsigned char b[64];

	assert_true(n / 2 <= sizeof(b));
	assert_int_equal(getrandom(b, n / 2, 0), (ssize_t)(n / 2));
	for (size_t i = 0; i < n / 2; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	out[n] = '\0';
}

/* s with every byte one higher: the scanner holds only this form. */
static void shifted(const char *s, char *out)
{
	for (; *s; s++)
		*out++ = (char)(*s + 1);
	*out = '\0';
}

/* "49,50,..." : the byte values of s. */
static void byte_list(const char *s, char *out, size_t len)
{
	size_t o = 0;

	out[0] = '\0';
	for (; *s && o < len; s++)
		o += (size_t)snprintf(out + o, len - o, "%d,", (unsigned char)*s);
}

/*
 * A request to the zygote that mark (ZMARK, PMARK) selects holds two
 * markers; later sandboxes of that zygote, which at least min_mb MiB of
 * readable memory, find neither.
 */
static void no_earlier_request(struct daemon *d, const char *mark, int min_mb)
{
	struct capibox_exec_request req;
	struct capibox_env env[1];
	struct run r = {0};
	char in_code[33], in_env[33], s_code[33], s_env[33], code[512], scan[2048];
	char list_code[200], list_env[200];

	random_hex(in_code, 32);
	random_hex(in_env, 32);
	snprintf(code, sizeof(code),
		 "%ssecret = '%s'\nimport os\nprint(len(secret + os.environ['ZSECRET']))\n", mark,
		 in_code);
	memset(&req, 0, sizeof(req));
	req.language = "python";
	req.code = code;
	env[0].name = "ZSECRET";
	env[0].value = in_env;
	req.env = env;
	req.n_env = 1;
	/* the first run: a zygote sandbox holds both markers */
	for (double end = harness_now() + 10.0;;) {
		harness_run(d, &req, &r);
		assert_run_exited(&r, 0);
		if (from_zygote(&r))
			break;
		if (harness_now() > end)
			fail_msg("no sandbox from the zygote in 10 s");
		harness_run_free(&r);
		harness_sleep_ms(100);
	}
	assert_string_equal((const char *)r.out + 4, "64\n");
	harness_run_free(&r);

	/* later sandboxes (past the pool's two, so cloned after that run)
	 * scan every readable mapping of their own memory for either marker;
	 * they compare memory shifted by one against the shifted markers, so
	 * the scanner itself never holds a marker */
	shifted(in_code, s_code);
	shifted(in_env, s_env);
	/* the needles as lists of byte values: no string form of them either */
	byte_list(s_code, list_code, sizeof(list_code));
	byte_list(s_env, list_env, sizeof(list_env));
	snprintf(scan, sizeof(scan),
		 "%sneedles = [bytes([%s]), bytes([%s])]\n"
		 "table = bytes((b + 1) %% 256 for b in range(256))\n"
		 "found = 0\n"
		 "scanned = 0\n"
		 "with open('/proc/self/maps') as m:\n"
		 "    maps = m.read().splitlines()\n"
		 "mem = open('/proc/self/mem', 'rb', 0)\n"
		 "for line in maps:\n"
		 "    addr, perms = line.split()[:2]\n"
		 "    if perms[0] != 'r' or line.endswith(('[vvar]', '[vsyscall]')):\n"
		 "        continue\n"
		 "    lo, hi = (int(x, 16) for x in addr.split('-'))\n"
		 "    try:\n"
		 "        mem.seek(lo)\n"
		 "        data = mem.read(hi - lo)\n"
		 "    except OSError:\n"
		 "        continue\n"
		 "    scanned += len(data)\n"
		 "    data = data.translate(table)\n"
		 "    for n in needles:\n"
		 "        if n in data:\n"
		 "            found += 1\n"
		 "    del data\n"
		 "print('found', found, 'scanned_mb', scanned >> 20 > %d)\n",
		 mark, list_code, list_env, min_mb);
	for (int i = 0; i < 3; i++) {
		run_zygote(d, scan, &r);
		if (strcmp((const char *)r.out + 4, "found 0 scanned_mb True\n") != 0) {
			harness_run_print(&r);
			fail_msg("an earlier request's code or environment is in a later sandbox's "
				 "memory (or too little was scanned)");
		}
		harness_run_free(&r);
	}
}

static void test_no_earlier_request_in_memory(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	require_zygote(d);
	/* a lean interpreter maps about 16 MiB, one with pandas 60 */
	no_earlier_request(d, ZMARK, 8);
	no_earlier_request(d, PMARK, 20);
}

/*
 * After zygote kind (pid dead) was killed: code (ZMARK or PMARK first)
 * prints out five times meanwhile, a new zygote of that kind comes within
 * 10 s, and then a sandbox of it runs code.
 */
static void replaced(struct daemon *d, unsigned kind, pid_t dead, const char *code, const char *out)
{
	struct run r = {0};
	pid_t again;

	for (int i = 0; i < 5; i++) {
		harness_run_code(d, "python", code, &r);
		assert_run_exited(&r, 0);
		assert_non_null(strstr((const char *)r.out, out));
		harness_run_free(&r);
	}
	for (double end = harness_now() + 10.0; (again = zygote_pid(d, kind)) <= 0 || again == dead;
	     harness_sleep_ms(100))
		if (harness_now() > end) {
			harness_daemon_dump_log(d);
			fail_msg("no new zygote of kind %u within 10 s", kind);
		}
	run_zygote(d, code, &r);
	assert_string_equal((const char *)r.out + 4, out);
	harness_run_free(&r);
}

/* The lean zygote's pid, once it has served a run (skips without a zygote). */
static pid_t lean_zygote_serving(struct daemon *d)
{
	struct run r = {0};
	pid_t zyg;

	HARNESS_REQUIRE(d);
	require_zygote(d);
	run_zygote(d, ZMARK, &r);
	harness_run_free(&r);
	zyg = zygote_pid(d, 0);
	assert_true(zyg > 0);
	return zyg;
}

/*
 * SIGKILL to zygote zyg; returns once its sandboxes are gone with it (it
 * is pid 1 of their parent pid namespace): a run started after that cannot
 * land on one of them.
 */
static void kill_zygote(const struct daemon *d, pid_t zyg)
{
	pid_t kids[16];
	size_t nkids = zygote_children(d, zyg, kids, 16);
	double end = harness_now() + 5.0;

	assert_int_equal(kill(zyg, SIGKILL), 0);
	for (size_t i = 0; i < nkids && i < 16; i++)
		while (harness_proc_alive(kids[i]))
			if (harness_now() > end)
				fail_msg("sandbox %d outlived its zygote", (int)kids[i]);
			else
				harness_sleep_ms(20);
}

static void test_zygote_killed(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	pid_t zyg, kids[16];
	size_t nkids;
	double end;

	zyg = lean_zygote_serving(d);
	end = harness_now() + 5.0;
	while ((nkids = zygote_children(d, zyg, kids, 16)) < 1 && harness_now() < end)
		harness_sleep_ms(50);
	assert_true(nkids >= 1);
	kill_zygote(d, zyg);
	/* the daemon stays up and python works: cold meanwhile, then from a
	 * new zygote */
	replaced(d, 0, zyg, ZMARK "print(6 * 7)\n", "42\n");

	/* the preloaded one: code that imports numpy runs meanwhile (in a
	 * lean sandbox), then in a clone of its successor */
	run_zygote(d, PMARK, &r);
	harness_run_free(&r);
	zyg = zygote_pid(d, 1);
	assert_true(zyg > 0);
	assert_int_equal(kill(zyg, SIGKILL), 0);
	replaced(d, 1, zyg, PMARK "print(numpy.arange(7).sum())\n", "21\n");
}

/* --zygote-recycle 3: a new generation every 3 spawns; none fails. */
/*
 * A zygote that stops answering while the pool's refills are asked of it:
 * runs go on meanwhile on the pooled sandboxes there are (the supervisor
 * does not wait for a pool spawn's answer), and when it is killed the
 * refills it never answered end (the daemon says so) and its successor
 * makes the pool again.
 */
static void test_zygote_stalled(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	char *log;
	pid_t zyg;

	zyg = lean_zygote_serving(d);
	assert_int_equal(kill(zyg, SIGSTOP), 0);
	/* each takes a pooled sandbox, and its refill goes to the stopped
	 * zygote; the second's take is handled after the first's refill was
	 * sent (one ordered channel), so that one is pending */
	for (int i = 0; i < 2; i++) {
		harness_run_code(d, "python", "print(6 * 7)\n", &r);
		assert_run_exited(&r, 0);
		assert_string_equal((const char *)r.out, "42\n");
		harness_run_free(&r);
	}
	kill_zygote(d, zyg);
	replaced(d, 0, zyg, ZMARK "print(6 * 7)\n", "42\n");
	log = harness_daemon_log(d);
	if (strstr(log, "zygote gone before it answered") == NULL) {
		harness_daemon_dump_log(d);
		fail_msg("no pending pool spawn ended with the stalled zygote");
	}
	free(log);
}

static void test_recycle(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	char first[64] = "";
	bool differs = false;
	int zygote_runs = 0;

	HARNESS_REQUIRE(d);
	require_zygote(d);
	/* (a new generation takes over once it has started: a few tenths of
	 * a second with pandas, so this goes on for a while) */
	for (double end = harness_now() + 20.0; !(differs && zygote_runs >= 8);) {
		if (harness_now() > end)
			break;
		harness_sleep_ms(50);
		harness_run_code(d, "python", ZMARK "print(hash('x'))\n", &r);
		assert_run_exited(&r, 0);
		if (from_zygote(&r)) {
			zygote_runs++;
			if (first[0] == '\0')
				snprintf(first, sizeof(first), "%s", (const char *)r.out + 4);
			else if (strcmp(first, (const char *)r.out + 4) != 0)
				differs = true;
		}
		harness_run_free(&r);
	}
	if (!differs)
		fail_msg("hash('x') was the same in %d zygote sandboxes across generations",
			 zygote_runs);
	/* a retired generation lives on while its sandboxes do (here: at
	 * most the pool's two idle ones), then exits; the rest is checked by
	 * test_zygote_gone after the daemon stops */
	for (double end = harness_now() + 5.0;;) {
		pid_t pids[16];
		size_t n = harness_find_procs("/.capibox/zygote.py", pids, 16), ours = 0;
		char *log = harness_daemon_log(d);
		bool retired = strstr(log, "retired (its sandboxes are gone)") != NULL;

		free(log);
		for (size_t i = 0; i < n && i < 16; i++)
			ours += harness_proc_uid(pids[i]) == zygote_uid(d, 0);
		if (ours <= 4 && retired)
			break;
		if (harness_now() > end)
			fail_msg("%zu zygote generations run, retired one exited: %s", ours,
				 retired ? "yes" : "no");
		harness_sleep_ms(50);
	}
}

/* After harness_test_daemon_stops: the zygote (outside the range it checks) is gone too. */
static void test_zygote_gone(void **state)
{
	struct daemon *d = *state;
	uid_t zuid = zygote_uid(d, 0);
	pid_t left[4];
	size_t n = 0;

	if (!harness_init())
		skip();
	for (double end = harness_now() + 2.0; harness_now() < end; harness_sleep_ms(20))
		if ((n = harness_procs_in_uid_range(zuid, zuid + 2, left, 4)) == 0)
			return;
	fail_msg("%zu processes of the zygotes' uids %u and up outlived capiboxd (pid %d)", n,
		 (unsigned)zuid, (int)left[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routing),
		cmocka_unit_test(test_siblings_differ),
		cmocka_unit_test(test_threads_and_fork),
		cmocka_unit_test(test_std_streams),
		cmocka_unit_test(test_environment),
		cmocka_unit_test(test_init_capabilities),
		cmocka_unit_test(test_no_earlier_request_in_memory),
		cmocka_unit_test(test_zygote_killed),
		cmocka_unit_test(test_zygote_stalled),
		cmocka_unit_test(harness_test_daemon_stops),
		cmocka_unit_test(test_zygote_gone),
	};
	const struct CMUnitTest recycle[] = {
		cmocka_unit_test(test_recycle),
		cmocka_unit_test(harness_test_daemon_stops),
		cmocka_unit_test(test_zygote_gone),
	};
	int rc;

	harness_init();
	rc = cmocka_run_group_tests_name("zygote", tests, setup, harness_group_teardown);
	rc += cmocka_run_group_tests_name("zygote_recycle", recycle, setup_recycle,
					  harness_group_teardown);
	return harness_finish(rc);
}
