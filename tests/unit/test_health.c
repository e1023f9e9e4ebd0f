/*
 * Deep health canary: judging a run, the summary line, and the asynchronous
 * driver against a fake backend that delivers events from its own threads
 * (also before backend_execute has returned the handle).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "config.h"
#include "health.h"
#include "runtime.h"

/* Runtimes with a canary: the languages clients pick. */
static size_t public_count(void)
{
	size_t n = 0;

	for (size_t i = 0; i < runtime_count(); i++)
		n += runtime_at(i)->canary_code != NULL;
	return n;
}

static const struct runtime *rt_python(void) { return runtime_at((size_t)runtime_find("python")); }

static struct exec_result exited(int code)
{
	struct exec_result r;
	memset(&r, 0, sizeof(r));
	r.reason = EXEC_REASON_EXITED;
	r.exit_code = code;
	return r;
}

static void test_judge(void **state)
{
	const struct runtime *rt = rt_python();
	const char *want = rt->canary_expect;
	struct exec_result r = exited(0);
	char d[256];
	(void)state;

	assert_true(health_canary_judge(rt, &r, want, strlen(want), false, "", 0, d, sizeof(d)));
	assert_string_equal(d, "");

	assert_false(health_canary_judge(rt, &r, "44\n", 3, false, "", 0, d, sizeof(d)));
	assert_string_equal(d, "unexpected output \"44\\n\"");
	assert_false(health_canary_judge(rt, &r, want, strlen(want), true, "", 0, d, sizeof(d)));
	assert_non_null(strstr(d, "..."));

	r = exited(1);
	assert_false(health_canary_judge(
		rt, &r, "", 0, false, "Traceback (most\x01 recent)\nline 2\n", 33, d, sizeof(d)));
	assert_string_equal(d, "exited 1: Traceback (most? recent)");

	r.reason = EXEC_REASON_WALL_TIMEOUT;
	snprintf(r.message, sizeof(r.message), "wall time 10000 ms");
	assert_false(health_canary_judge(rt, &r, "", 0, false, "", 0, d, sizeof(d)));
	assert_string_equal(d, "wall_timeout: wall time 10000 ms");

	r = exited(0);
	r.reason = EXEC_REASON_SIGNALED;
	r.signal = 9;
	assert_false(health_canary_judge(rt, &r, "", 0, false, "", 0, d, sizeof(d)));
	assert_string_equal(d, "killed by signal 9");
}

static void test_summary(void **state)
{
	struct health_canary_result res[3] = {
		{.language = "python", .ok = true, .wall_us = 41200},
		{.language = "javascript", .ok = true, .wall_us = 55000},
		{.language = "bash", .ok = true, .wall_us = 7600},
	};
	struct health_report rep = {.n = 3, .n_ok = 3, .results = res};
	(void)state;

	health_report_summarise(&rep);
	assert_string_equal(rep.summary, "canary ok: python 41 ms, javascript 55 ms, bash 8 ms");

	res[0].ok = false;
	snprintf(res[0].detail, sizeof(res[0].detail), "exited 1: boom");
	rep.n_ok = 2;
	health_report_summarise(&rep);
	assert_string_equal(
		rep.summary,
		"canary FAILED: python: exited 1: boom (ok: javascript 55 ms, bash 8 ms)");
	res[2].ok = false;
	snprintf(res[2].detail, sizeof(res[2].detail), "not started: full");
	res[1].ok = false;
	snprintf(res[1].detail, sizeof(res[1].detail), "wall_timeout");
	rep.n_ok = 0;
	health_report_summarise(&rep);
	assert_string_equal(rep.summary, "canary FAILED: python: exited 1: boom; javascript: "
					 "wall_timeout; bash: not started: full");
}

/* ---- a fake backend: one thread per execution ---------------------- */

struct fake_exec {
	struct exec base;
	const struct exec_sink *sink;
	void *arg;
	const struct runtime *rt;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int resumes;
	int refs; /* caller + thread */
};

static atomic_int n_exec, n_release, n_resume;
static const char *fail_lang; /* this runtime's canary exits 1 */
static const char *full_lang; /* this runtime is refused (BACKEND_FULL) */

static void fake_unref(struct fake_exec *x)
{
	pthread_mutex_lock(&x->mu);
	int last = --x->refs == 0;
	pthread_mutex_unlock(&x->mu);
	if (last) {
		pthread_mutex_destroy(&x->mu);
		pthread_cond_destroy(&x->cv);
		free(x);
	}
}

static void fake_wait(struct fake_exec *x, int n)
{
	pthread_mutex_lock(&x->mu);
	while (x->resumes < n)
		pthread_cond_wait(&x->cv, &x->mu);
	pthread_mutex_unlock(&x->mu);
}

static void *fake_thread(void *arg)
{
	struct fake_exec *x = arg;
	struct exec_started st = {"fake-1", x->rt->name, 0, 0, "fake", false};
	struct exec_result res = exited(0);
	const char *out = x->rt->canary_expect;

	/* started races backend_execute's return on purpose */
	x->sink->started(x->arg, &st);
	fake_wait(x, 1);
	if (fail_lang && strcmp(fail_lang, x->rt->name) == 0) {
		x->sink->output(x->arg, EXEC_STDERR, (const uint8_t *)"it broke\nmore\n", 14);
		res = exited(1);
	} else {
		x->sink->output(x->arg, EXEC_STDOUT, (const uint8_t *)out, strlen(out));
	}
	fake_wait(x, 2);
	x->sink->finished(x->arg, &res);
	fake_unref(x);
	return NULL;
}

static const struct backend_ops fake_ops;

static enum backend_rc fake_execute(struct backend *b, const struct exec_request *req,
				    const struct exec_sink *sink, void *arg, struct exec **out,
				    char *err, size_t errlen)
{
	struct fake_exec *x;
	pthread_t t;
	struct timespec ts = {0, 20 * 1000 * 1000};
	(void)b;

	assert_int_equal(req->limits.wall_time_ms, HEALTH_CANARY_WALL_MS);
	if (full_lang && strcmp(full_lang, req->language) == 0) {
		snprintf(err, errlen, "all sandboxes are busy");
		return BACKEND_FULL;
	}
	x = calloc(1, sizeof(*x));
	assert_non_null(x);
	x->base.ops = &fake_ops;
	x->sink = sink;
	x->arg = arg;
	x->rt = runtime_at((size_t)runtime_find(req->language));
	x->refs = 2;
	pthread_mutex_init(&x->mu, NULL);
	pthread_cond_init(&x->cv, NULL);
	atomic_fetch_add(&n_exec, 1);
	assert_int_equal(pthread_create(&t, NULL, fake_thread, x), 0);
	pthread_detach(t);
	nanosleep(&ts, NULL); /* let started arrive before *out is set */
	*out = &x->base;
	return BACKEND_OK;
}

static void fake_resume(struct exec *e)
{
	struct fake_exec *x = (struct fake_exec *)e;
	atomic_fetch_add(&n_resume, 1);
	pthread_mutex_lock(&x->mu);
	x->resumes++;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
}

static void fake_release(struct exec *e)
{
	atomic_fetch_add(&n_release, 1);
	fake_unref((struct fake_exec *)e);
}

static const struct backend_ops fake_ops = {
	.name = "fake",
	.execute = fake_execute,
	.resume = fake_resume,
	.release = fake_release,
};

/* ---- driving health_canary_start ---------------------------------- */

static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static int done_calls;
static struct health_report last;
static char last_summary[1024];
static int last_ok[8];

static void on_done(void *arg, const struct health_report *rep)
{
	(void)arg;
	pthread_mutex_lock(&done_mu);
	done_calls++;
	last = *rep;
	snprintf(last_summary, sizeof(last_summary), "%s", rep->summary);
	for (size_t i = 0; i < rep->n && i < 8; i++)
		last_ok[i] = rep->results[i].ok;
	pthread_cond_broadcast(&done_cv);
	pthread_mutex_unlock(&done_mu);
}

static void run_canary(void)
{
	struct config cfg;
	struct backend b = {&fake_ops};
	struct timespec ts = {0, 50 * 1000 * 1000};

	config_defaults(&cfg);
	done_calls = 0;
	atomic_store(&n_exec, 0);
	atomic_store(&n_release, 0);
	assert_int_equal(health_canary_start(&cfg, &b, on_done, NULL), 0);
	pthread_mutex_lock(&done_mu);
	while (done_calls == 0)
		pthread_cond_wait(&done_cv, &done_mu);
	pthread_mutex_unlock(&done_mu);
	nanosleep(&ts, NULL); /* a second done() would show up here */
	assert_int_equal(done_calls, 1);
	assert_int_equal(atomic_load(&n_release), atomic_load(&n_exec));
}

static void test_canary_all_ok(void **state)
{
	(void)state;
	fail_lang = full_lang = NULL;
	run_canary();
	assert_int_equal(last.n, public_count());
	assert_int_equal(last.n_ok, public_count());
	assert_true(last.slowest_us > 0);
	assert_true(strncmp(last_summary, "canary ok: python ", 18) == 0);
	assert_non_null(strstr(last_summary, "javascript"));
	assert_non_null(strstr(last_summary, "bash"));
}

static void test_canary_failures(void **state)
{
	(void)state;
	fail_lang = "python";
	full_lang = "bash";
	run_canary();
	assert_int_equal(last.n_ok, public_count() - 2);
	assert_false(last_ok[runtime_find("python")]);
	assert_false(last_ok[runtime_find("bash")]);
	assert_non_null(strstr(last_summary, "canary FAILED: python: exited 1: it broke;"));
	assert_non_null(strstr(last_summary, "bash: not started: all sandboxes are busy"));
	assert_non_null(strstr(last_summary, "(ok: javascript"));
	fail_lang = full_lang = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_judge),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_canary_all_ok),
		cmocka_unit_test(test_canary_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
