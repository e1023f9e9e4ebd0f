/*
 * Soak: 1,000 mixed hostile runs (fork and memory bombs, disk fills,
 * endless output, busy loops, sleepers, daemons, signal attacks on whatever
 * else runs, raw system calls, secret hunting, plus plain runs) at
 * concurrency 8, through one libcapibox client from 8 threads, with short
 * limits (wall 1-2 s).
 *
 * Asserts: every run ends with status OK and exactly one Finished whose
 * reason is one its program can produce (the reasons are counted and
 * printed); afterwards the host has no more processes in the sandbox uid
 * range, cgroups, mounts, temp entries or state-dir entries than before,
 * a normal run still works, and the RSS of capiboxd and of its supervisor
 * is within +16 MiB of what it was after a warm-up (figures printed). In a
 * sanitizer build the RSS figures are printed but not asserted: ASan's
 * quarantine holds freed memory by design.
 *
 * Sandbox host uids: slot 6 of the harness's ranges.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hostile.h"

#define MIB (1024ULL * 1024ULL)
#define SOAK_RUNS 1000
#define SOAK_THREADS 8
#define RSS_SLACK_KIB (16L * 1024L)

#define R(x) (1u << CAPIBOX_REASON_##x)

struct soak_case {
	const char *name;
	const char *language;
	const char *program; /* file under programs/, or NULL for code */
	const char *code;
	struct capibox_limits limits;
	unsigned reasons;      /* acceptable reasons, a mask of R() */
	const char *stdout_is; /* exact stdout when the reason is EXITED, or NULL */
	bool exact_output;     /* OUTPUT_LIMIT: the client got exactly the limit */
	struct capibox_env env[2];
	size_t n_env;
	/* results, under the lock */
	unsigned runs, unexpected;
};

/*
 * Under 8 concurrent runs on 2 cores a CPU-bound program may reach its wall
 * time before its CPU or memory limit; that is an expected end too. What
 * must never happen is another reason (a signal from a neighbour, a
 * sandbox error) or a missing Finished.
 */
static struct soak_case cases[] = {
	{.name = "fork bomb (python)",
	 .language = "python",
	 .program = "fork_bomb.py",
	 .limits = {.wall_time_ms = 1500, .max_processes = 16},
	 .reasons = R(WALL_TIMEOUT) | R(CPU_TIMEOUT) | R(EXITED)},
	{.name = "fork bomb (bash)",
	 .language = "bash",
	 .program = "fork_bomb.sh",
	 .limits = {.wall_time_ms = 1500, .max_processes = 16},
	 .reasons = R(WALL_TIMEOUT) | R(CPU_TIMEOUT) | R(EXITED)},
	{.name = "memory bomb (python)",
	 .language = "python",
	 .program = "mem_big.py",
	 .limits = {.wall_time_ms = 2000, .memory_bytes = 64 * MIB},
	 .reasons = R(MEMORY_LIMIT) | R(WALL_TIMEOUT)},
	{.name = "memory creep (javascript)",
	 .language = "javascript",
	 .program = "mem_creep.js",
	 .limits = {.wall_time_ms = 2000, .memory_bytes = 96 * MIB},
	 .reasons = R(MEMORY_LIMIT) | R(WALL_TIMEOUT)},
	{.name = "memory creep (bash)",
	 .language = "bash",
	 .program = "mem_creep.sh",
	 .limits = {.wall_time_ms = 2000, .memory_bytes = 48 * MIB},
	 .reasons = R(MEMORY_LIMIT) | R(WALL_TIMEOUT)},
	{.name = "disk fill (python)",
	 .language = "python",
	 .program = "disk_fill.py",
	 .limits = {.wall_time_ms = 2000, .max_file_bytes = 1024 * MIB},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT),
	 .stdout_is =
		 "/home/user files ENOSPC big ENOSPC\n/tmp files ENOSPC big ENOSPC\ncontinued\n"},
	{.name = "disk fill (bash)",
	 .language = "bash",
	 .program = "disk_fill.sh",
	 .limits = {.wall_time_ms = 2000, .max_file_bytes = 1024 * MIB},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT),
	 .stdout_is = "/home/user ENOSPC\n/tmp ENOSPC\ncontinued\n"},
	{.name = "endless output (bash)",
	 .language = "bash",
	 .program = "output.sh",
	 .limits = {.wall_time_ms = 2000, .max_output_bytes = 50000},
	 .reasons = R(OUTPUT_LIMIT),
	 .exact_output = true},
	{.name = "endless output (python)",
	 .language = "python",
	 .program = "output.py",
	 .limits = {.wall_time_ms = 2000, .max_output_bytes = 77777},
	 .reasons = R(OUTPUT_LIMIT),
	 .exact_output = true},
	{.name = "busy loop, cpu limit (python)",
	 .language = "python",
	 .program = "busy.py",
	 .limits = {.wall_time_ms = 2000, .cpu_time_ms = 500},
	 .reasons = R(CPU_TIMEOUT) | R(WALL_TIMEOUT)},
	{.name = "busy loop, wall limit (javascript)",
	 .language = "javascript",
	 .program = "busy.js",
	 .limits = {.wall_time_ms = 1000},
	 .reasons = R(WALL_TIMEOUT)},
	{.name = "sleep (bash)",
	 .language = "bash",
	 .program = "sleep.sh",
	 .limits = {.wall_time_ms = 1000},
	 .reasons = R(WALL_TIMEOUT)},
	{.name = "sleep (python)",
	 .language = "python",
	 .program = "sleep.py",
	 .limits = {.wall_time_ms = 1000},
	 .reasons = R(WALL_TIMEOUT)},
	{.name = "setsid daemon (bash)",
	 .language = "bash",
	 .program = "daemon.sh",
	 .limits = {.wall_time_ms = 2000},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT),
	 .env = {{"DAEMON_MARK", "6999991"}},
	 .n_env = 1},
	{.name = "double-fork daemon (python)",
	 .language = "python",
	 .program = "daemon.py",
	 .limits = {.wall_time_ms = 2000},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT),
	 .env = {{"DAEMON_MARK", "6999992"}},
	 .n_env = 1},
	{.name = "kill everything (python)",
	 .language = "python",
	 .program = "kill.py",
	 .limits = {.wall_time_ms = 2000},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT),
	 .env = {{"VICTIM_PID", "1"}},
	 .n_env = 1},
	{.name = "kill everything (bash)",
	 .language = "bash",
	 .program = "kill.sh",
	 .limits = {.wall_time_ms = 2000},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT),
	 .stdout_is = "attacker done\n",
	 .env = {{"VICTIM_PID", "1"}},
	 .n_env = 1},
	{.name = "raw system calls (python)",
	 .language = "python",
	 .program = "syscalls.py",
	 .limits = {.wall_time_ms = 2000},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT)},
	{.name = "host secrets (bash)",
	 .language = "bash",
	 .program = "secrets.sh",
	 .limits = {.wall_time_ms = 2000},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT),
	 .env = {{"CANARY", "/tmp/capibox-sec-no-such-canary"}},
	 .n_env = 1},
	{.name = "write to the system (bash)",
	 .language = "bash",
	 .program = "write_system.sh",
	 .limits = {.wall_time_ms = 2000},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT)},
	{.name = "setuid binaries (bash)",
	 .language = "bash",
	 .program = "setuid.sh",
	 .limits = {.wall_time_ms = 2000},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT)},
	{.name = "network (python)",
	 .language = "python",
	 .code = "import socket\n"
		 "for a in [('198.51.100.1', 80), ('127.0.0.1', 1)]:\n"
		 "    try:\n"
		 "        socket.create_connection(a, timeout=1)\n"
		 "        print('CONNECTED')\n"
		 "    except OSError:\n"
		 "        print('blocked')\n",
	 .limits = {.wall_time_ms = 2000},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT),
	 .stdout_is = "blocked\nblocked\n"},
	{.name = "plain run (python)",
	 .language = "python",
	 .code = "print(1)\n",
	 .limits = {.wall_time_ms = 2000},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT),
	 .stdout_is = "1\n"},
	{.name = "plain run (bash)",
	 .language = "bash",
	 .code = "echo ok\n",
	 .limits = {.wall_time_ms = 2000},
	 .reasons = R(EXITED) | R(WALL_TIMEOUT),
	 .stdout_is = "ok\n"},
};

#define N_CASES (sizeof(cases) / sizeof(cases[0]))

static struct daemon daemon_;
static char *programs[N_CASES];

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned next_run;
static unsigned reasons[16];
static unsigned bad_status, bad_finished, bad_reason, bad_output;
static char first_problems[8192];
static size_t problems_off;

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Records a problem (under mu); the first few are kept as text. */
static void problem(const char *fmt, ...)
{
	va_list ap;
	int n;

	if (problems_off + 256 >= sizeof(first_problems))
		return;
	va_start(ap, fmt);
	n = vsnprintf(first_problems + problems_off, sizeof(first_problems) - problems_off, fmt,
		      ap);
	va_end(ap);
	if (n > 0)
		problems_off += (size_t)n < sizeof(first_problems) - problems_off ?
					(size_t)n :
					sizeof(first_problems) - problems_off - 1;
}

/* The i-th run's case: a fixed interleaving, so neighbours differ from run to run. */
static struct soak_case *case_of(unsigned i) { return &cases[(i * 7u + i / N_CASES) % N_CASES]; }

static void check_run(struct soak_case *c, const struct run *r)
{
	bool ok_reason;

	pthread_mutex_lock(&mu);
	c->runs++;
	if (r->n_finished == 1 && r->reason >= 0 && r->reason < 16)
		reasons[r->reason]++;
	if (r->rc != 0) {
		bad_status++;
		problem("%s: status %s \"%s\"\n", c->name, capibox_code_name(r->rc), r->st.message);
	} else if (r->n_finished != 1 || !r->order_ok) {
		bad_finished++;
		problem("%s: %d Finished events, order %s\n", c->name, r->n_finished,
			r->order_ok ? "ok" : "wrong");
	} else {
		ok_reason = r->reason > 0 && r->reason < 16 && (c->reasons & (1u << r->reason));
		if (!ok_reason) {
			bad_reason++;
			c->unexpected++;
			problem("%s: reason %s (exit %d, signal %d, \"%s\") after %.2f s; stderr "
				"\"%.200s\"\n",
				c->name, capibox_reason_name(r->reason), r->exit_code, r->signal,
				r->message, r->t_end, (const char *)r->err);
		} else if (r->reason == CAPIBOX_REASON_EXITED && c->stdout_is != NULL &&
			   (r->out_len != strlen(c->stdout_is) ||
			    memcmp(r->out, c->stdout_is, r->out_len) != 0)) {
			bad_output++;
			problem("%s: stdout \"%.200s\", expected \"%s\"\n", c->name,
				(const char *)r->out, c->stdout_is);
		} else if (c->exact_output &&
			   r->out_len + r->err_len != c->limits.max_output_bytes) {
			bad_output++;
			problem("%s: the client got %zu bytes with an output limit of %llu\n",
				c->name, r->out_len + r->err_len,
				(unsigned long long)c->limits.max_output_bytes);
		}
	}
	pthread_mutex_unlock(&mu);
}

static void *worker(void *arg)
{
	struct daemon *d = arg;

	for (;;) {
		struct soak_case *c;
		struct capibox_exec_request req;
		struct run r = {0};
		unsigned i;

		pthread_mutex_lock(&mu);
		i = next_run++;
		pthread_mutex_unlock(&mu);
		if (i >= SOAK_RUNS)
			break;
		c = case_of(i);
		memset(&req, 0, sizeof(req));
		req.language = c->language;
		req.code = c->program ? programs[c - cases] : c->code;
		req.limits = c->limits;
		req.env = c->env;
		req.n_env = c->n_env;
		harness_run(d, &req, &r);
		check_run(c, &r);
		harness_run_free(&r);
	}
	return NULL;
}

static int setup(void **state)
{
	static const char *const extra[] = {"--tmpfs-mb", "16", NULL};
	static const struct daemon_opts opts = {.uid_slot = 6, .extra = extra};

	for (size_t i = 0; i < N_CASES; i++)
		if (cases[i].program != NULL)
			programs[i] = hostile_program(cases[i].program);
	return harness_group_setup(state, &daemon_, &opts);
}

static int teardown(void **state)
{
	for (size_t i = 0; i < N_CASES; i++)
		free(programs[i]);
	return harness_group_teardown(state);
}

/* Waits until the number of sandbox processes stops changing (up to 5 s). */
static void settle(const struct daemon *d)
{
	size_t prev = (size_t)-1, cur;
	double end = harness_now() + 5.0;

	while (harness_now() < end) {
		cur = harness_procs_in_uid_range(d->uid_base, d->uid_base + HARNESS_UID_COUNT, NULL,
						 0);
		if (cur == prev)
			break;
		prev = cur;
		harness_sleep_ms(300);
	}
}

static void test_soak(void **state)
{
	struct daemon *d = *state;
	pthread_t th[SOAK_THREADS];
	struct host_state before;
	struct run r = {0};
	pid_t sup;
	long rss_d0, rss_s0, rss_d1, rss_s1;
	double t0, elapsed;
	char *left;
	unsigned total = 0;

	HARNESS_REQUIRE(d);
	/*
	 * Warm-up: one run of every case, one at a time, so the daemon's
	 * lazily allocated state (gRPC's, the backend's, the supervisor's)
	 * exists before the figures are taken.
	 */
	for (size_t i = 0; i < N_CASES; i++) {
		struct capibox_exec_request req = {
			.language = cases[i].language,
			.code = cases[i].program ? programs[i] : cases[i].code,
			.limits = cases[i].limits,
			.env = cases[i].env,
			.n_env = cases[i].n_env,
		};

		harness_run(d, &req, &r);
		hostile_note_sandbox_id(r.sandbox_id);
		if (r.rc != 0 || r.n_finished != 1) {
			harness_run_print(&r);
			fail_msg("warm-up run of \"%s\" failed", cases[i].name);
		}
		harness_run_free(&r);
	}
	settle(d);
	sup = hostile_supervisor_pid(d);
	host_snapshot_settled(d, &before, 5000);
	rss_d0 = hostile_rss_kib(d->pid);
	rss_s0 = hostile_rss_kib(sup);
	printf("soak start: capiboxd pid %ld RSS %ld KiB, supervisor pid %ld RSS %ld KiB; "
	       "%zu idle warm sandboxes, %zu other sandbox processes, %zu other sandbox cgroups, "
	       "%zu temp entries, %zu state-dir entries\n",
	       (long)d->pid, rss_d0, (long)sup, rss_s0, before.warm, before.procs, before.cgroups,
	       before.temp.n, before.state.n);
	fflush(stdout);

	t0 = harness_now();
	for (int i = 0; i < SOAK_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, worker, d), 0);
	for (int i = 0; i < SOAK_THREADS; i++)
		pthread_join(th[i], NULL);
	elapsed = harness_now() - t0;

	printf("soak: %u runs in %.1f s at concurrency %d (%zu kinds of program)\n", SOAK_RUNS,
	       elapsed, SOAK_THREADS, N_CASES);
	for (int i = 0; i < 16; i++)
		if (reasons[i] > 0) {
			printf("soak: reason %-13s %u\n", capibox_reason_name(i), reasons[i]);
			total += reasons[i];
		}
	printf("soak: %u runs ended with one Finished; %u bad status, %u missing or extra "
	       "Finished, %u unexpected reasons, %u wrong outputs\n",
	       total, bad_status, bad_finished, bad_reason, bad_output);
	for (size_t i = 0; i < N_CASES; i++)
		printf("soak: %-36s %4u runs%s\n", cases[i].name, cases[i].runs,
		       cases[i].unexpected ? " (some ended unexpectedly)" : "");
	if (problems_off > 0)
		printf("soak: first problems:\n%s", first_problems);

	/* afterwards: nothing left behind, a normal run works, memory back */
	left = host_wait_clean(d, &before, 5000);
	harness_run_code(d, "python", "print(1)\n", &r);
	settle(d);
	rss_d1 = hostile_rss_kib(d->pid);
	rss_s1 = hostile_rss_kib(hostile_supervisor_pid(d));
	printf("soak end: capiboxd RSS %ld KiB -> %ld KiB (%+ld KiB), supervisor RSS %ld KiB -> "
	       "%ld KiB (%+ld KiB)%s\n",
	       rss_d0, rss_d1, rss_d1 - rss_d0, rss_s0, rss_s1, rss_s1 - rss_s0,
	       hostile_supervisor_pid(d) == sup ? "" : " (the supervisor was restarted)");
	printf("soak leftovers: %s\n", left == NULL ? "none (processes, cgroups, mounts, temp "
						      "entries, state-dir entries as before)" :
						      "");
	if (left != NULL)
		printf("%s", left);
	fflush(stdout);

	if (total != SOAK_RUNS || bad_status || bad_finished || bad_reason || bad_output)
		fail_msg("the soak's runs did not all end as expected (see above)");
	if (left != NULL) {
		free(left);
		fail_msg("the soak left things behind on the host (see above)");
	}
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "1\n");
	harness_run_free(&r);
	if (rss_d0 < 0 || rss_d1 < 0 || rss_s0 < 0 || rss_s1 < 0)
		fail_msg("could not read the RSS of capiboxd or its supervisor");
#ifdef CAPIBOX_SANITIZED
	printf("note: sanitizer build: the RSS figures are not asserted (ASan's quarantine keeps "
	       "freed memory)\n");
#else
	if (rss_d1 > rss_d0 + RSS_SLACK_KIB)
		fail_msg("capiboxd's RSS grew by %ld KiB over the soak (allowed %ld)",
			 rss_d1 - rss_d0, RSS_SLACK_KIB);
	if (rss_s1 > rss_s0 + RSS_SLACK_KIB)
		fail_msg("the supervisor's RSS grew by %ld KiB over the soak (allowed %ld)",
			 rss_s1 - rss_s0, RSS_SLACK_KIB);
#endif
	host_state_free(&before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_soak),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	harness_init();
	rc = cmocka_run_group_tests_name("security.soak", tests, setup, teardown);
	return harness_finish(rc);
}
