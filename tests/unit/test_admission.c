/*
 * server/admission.c: the running cap, the FIFO wait queue, its limits,
 * withdrawal, the wait limit and drain. Outcomes of queued waiters arrive on
 * the admission's thread; the test waits for them with a condition variable.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "admission.h"

#define N_WAITERS 8

struct waiter {
	struct admission_waiter w; /* first: the callback casts back */
	int id;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int order[N_WAITERS], n_done;
static enum admit_rc outcome[N_WAITERS];
static uint64_t waited[N_WAITERS];

static void on_done(struct admission_waiter *w, enum admit_rc rc, uint64_t waited_us)
{
	struct waiter *x = (struct waiter *)w;

	pthread_mutex_lock(&mu);
	outcome[x->id] = rc;
	waited[x->id] = waited_us;
	order[n_done++] = x->id;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mu);
}

/* Waits (at most 10 s, a hang guard) until n outcomes arrived. */
static void wait_done(int n)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&mu);
	while (n_done < n)
		if (pthread_cond_timedwait(&cond, &mu, &until) != 0)
			break;
	assert_int_equal(n_done, n);
	pthread_mutex_unlock(&mu);
}

static int setup(void **state)
{
	(void)state;
	n_done = 0;
	memset(order, -1, sizeof(order));
	memset(outcome, -1, sizeof(outcome));
	return 0;
}

static void init_waiters(struct waiter *w, int n)
{
	for (int i = 0; i < n; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].w.done = on_done;
		w[i].id = i;
	}
}

static void test_cap_queue_and_fifo(void **state)
{
	struct admission *a = admission_new(2, 3, 60000, 1 << 20);
	struct waiter w[N_WAITERS];
	struct admission_stats st;
	char err[256];

	(void)state;
	assert_non_null(a);
	init_waiters(w, N_WAITERS);
	assert_int_equal(admission_enter(a, &w[0].w, 10, err, sizeof(err)), ADMIT_NOW);
	assert_int_equal(admission_enter(a, &w[1].w, 10, err, sizeof(err)), ADMIT_NOW);
	for (int i = 2; i < 5; i++)
		assert_int_equal(admission_enter(a, &w[i].w, 10, err, sizeof(err)), ADMIT_QUEUED);
	assert_int_equal(admission_enter(a, &w[5].w, 10, err, sizeof(err)), ADMIT_FULL);
	assert_non_null(strstr(err, "2 of 2 executions running, 3 of 3 waiting"));
	admission_stats(a, &st);
	assert_int_equal(st.running, 2);
	assert_int_equal(st.queued, 3);
	assert_int_equal(st.queued_bytes, 30);

	/* a withdrawn waiter gets no callback; the others go first come first served */
	assert_true(admission_withdraw(a, &w[3].w));
	assert_false(admission_withdraw(a, &w[3].w));
	admission_leave(a);
	wait_done(1);
	assert_int_equal(order[0], 2);
	assert_int_equal(outcome[2], ADMIT_NOW);
	admission_leave(a);
	wait_done(2);
	assert_int_equal(order[1], 4);
	admission_stats(a, &st);
	assert_int_equal(st.running, 2);
	assert_int_equal(st.queued, 0);
	assert_int_equal(st.queued_bytes, 0);
	admission_leave(a);
	admission_leave(a);
	admission_destroy(a);
}

static void test_bytes_bound(void **state)
{
	struct admission *a = admission_new(1, 10, 60000, 100);
	struct waiter w[4];
	char err[256];

	(void)state;
	init_waiters(w, 4);
	assert_int_equal(admission_enter(a, &w[0].w, 1000, err, sizeof(err)), ADMIT_NOW);
	assert_int_equal(admission_enter(a, &w[1].w, 60, err, sizeof(err)), ADMIT_QUEUED);
	assert_int_equal(admission_enter(a, &w[2].w, 60, err, sizeof(err)), ADMIT_FULL);
	assert_non_null(strstr(err, "MiB"));
	assert_true(admission_withdraw(a, &w[1].w));
	admission_leave(a);
	admission_destroy(a);
}

static void test_wait_limit(void **state)
{
	struct admission *a = admission_new(1, 4, 50, 1 << 20);
	struct waiter w[3];
	char err[256];

	(void)state;
	init_waiters(w, 3);
	assert_int_equal(admission_enter(a, &w[0].w, 1, err, sizeof(err)), ADMIT_NOW);
	assert_int_equal(admission_enter(a, &w[1].w, 1, err, sizeof(err)), ADMIT_QUEUED);
	assert_int_equal(admission_enter(a, &w[2].w, 1, err, sizeof(err)), ADMIT_QUEUED);
	wait_done(2);
	assert_int_equal(outcome[1], ADMIT_FULL);
	assert_int_equal(outcome[2], ADMIT_FULL);
	assert_true(waited[1] >= 50000);
	admission_leave(a);
	admission_destroy(a);
}

static void test_drain(void **state)
{
	struct admission *a = admission_new(1, 4, 60000, 1 << 20);
	struct waiter w[3];
	char err[256];

	(void)state;
	init_waiters(w, 3);
	assert_int_equal(admission_enter(a, &w[0].w, 1, err, sizeof(err)), ADMIT_NOW);
	assert_int_equal(admission_enter(a, &w[1].w, 1, err, sizeof(err)), ADMIT_QUEUED);
	admission_drain(a);
	wait_done(1);
	assert_int_equal(outcome[1], ADMIT_DRAINING);
	assert_int_equal(admission_enter(a, &w[2].w, 1, err, sizeof(err)), ADMIT_DRAINING);
	admission_leave(a);
	admission_destroy(a);
}

/* Many threads entering and leaving: every one gets a slot exactly once. */
struct stress {
	struct admission *a;
	_Atomic int granted;
};

static void stress_done(struct admission_waiter *w, enum admit_rc rc, uint64_t waited_us);

struct stress_waiter {
	struct admission_waiter w;
	struct stress *s;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	enum admit_rc rc;
	bool done;
};

static void stress_done(struct admission_waiter *w, enum admit_rc rc, uint64_t waited_us)
{
	struct stress_waiter *x = (struct stress_waiter *)w;

	(void)waited_us;
	pthread_mutex_lock(&x->mu);
	x->rc = rc;
	x->done = true;
	pthread_cond_signal(&x->cond);
	pthread_mutex_unlock(&x->mu);
}

static void *stress_main(void *arg)
{
	struct stress *s = arg;
	char err[256];

	for (int i = 0; i < 2000; i++) {
		struct stress_waiter x = {.w.done = stress_done, .s = s};
		enum admit_rc rc;

		pthread_mutex_init(&x.mu, NULL);
		pthread_cond_init(&x.cond, NULL);
		rc = admission_enter(s->a, &x.w, 1, err, sizeof(err));
		if (rc == ADMIT_QUEUED) {
			pthread_mutex_lock(&x.mu);
			while (!x.done)
				pthread_cond_wait(&x.cond, &x.mu);
			rc = x.rc;
			pthread_mutex_unlock(&x.mu);
		}
		if (rc == ADMIT_NOW) {
			s->granted++;
			admission_leave(s->a);
		}
		pthread_cond_destroy(&x.cond);
		pthread_mutex_destroy(&x.mu);
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct stress s = {.a = admission_new(2, 16, 60000, 1 << 20)};
	pthread_t t[8];
	struct admission_stats st;

	(void)state;
	for (int i = 0; i < 8; i++)
		assert_int_equal(pthread_create(&t[i], NULL, stress_main, &s), 0);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	admission_stats(s.a, &st);
	assert_int_equal(st.running, 0);
	assert_int_equal(st.queued, 0);
	/* 8 threads never exceed 2 running + 16 waiting: no refusals */
	assert_int_equal(s.granted, 8 * 2000);
	admission_destroy(s.a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_cap_queue_and_fifo, setup),
		cmocka_unit_test_setup(test_bytes_bound, setup),
		cmocka_unit_test_setup(test_wait_limit, setup),
		cmocka_unit_test_setup(test_drain, setup),
		cmocka_unit_test_setup(test_threads, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
