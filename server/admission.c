#include "admission.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

struct admission {
	unsigned max_running, max_queue, max_wait_ms;
	size_t max_bytes;

	pthread_mutex_t mu;
	pthread_cond_t cond; /* CLOCK_MONOTONIC: a slot, a waiter, drain, stop */
	unsigned running;
	unsigned queued;
	size_t queued_bytes;
	struct admission_waiter *head, *tail; /* FIFO: the head waited longest */
	bool draining, stop;
	pthread_t thread;
};

static uint64_t since_us(const struct timespec *t0, const struct timespec *now)
{
	int64_t us =
		(int64_t)(now->tv_sec - t0->tv_sec) * 1000000 + (now->tv_nsec - t0->tv_nsec) / 1000;
	return us > 0 ? (uint64_t)us : 0;
}

static void unlink_locked(struct admission *a, struct admission_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		a->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		a->tail = w->prev;
	w->prev = w->next = NULL;
	w->queued = false;
	a->queued--;
	a->queued_bytes -= w->bytes;
}

static void stats_locked(const struct admission *a, struct admission_stats *st)
{
	st->running = a->running;
	st->max_running = a->max_running;
	st->queued = a->queued;
	st->max_queued = a->max_queue;
	st->queued_bytes = a->queued_bytes;
	st->max_queued_bytes = a->max_bytes;
}

void admission_describe(const struct admission_stats *st, char *buf, size_t len)
{
	snprintf(buf, len, "%u of %u executions running, %u of %u waiting", st->running,
		 st->max_running, st->queued, st->max_queued);
}

/*
 * The dispatcher: hands free slots to the head of the queue, and ends the
 * waits that reached max_wait. Every waiter has the same maximum wait, so
 * the head is always the next to expire.
 */
static void *admission_main(void *arg)
{
	struct admission *a = arg;
	struct timespec now, until;

	pthread_mutex_lock(&a->mu);
	while (!a->stop || a->head != NULL) {
		struct admission_waiter *w = a->head;
		enum admit_rc rc;

		if (w == NULL) {
			pthread_cond_wait(&a->cond, &a->mu);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (a->draining || a->stop)
			rc = ADMIT_DRAINING;
		else if (a->running < a->max_running)
			rc = ADMIT_NOW;
		else if (since_us(&w->since, &now) >= (uint64_t)a->max_wait_ms * 1000)
			rc = ADMIT_FULL;
		else {
			until = w->since;
			until.tv_sec += a->max_wait_ms / 1000;
			until.tv_nsec += (long)(a->max_wait_ms % 1000) * 1000000;
			if (until.tv_nsec >= 1000000000) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000;
			}
			int rc_wait = pthread_cond_timedwait(&a->cond, &a->mu, &until);
			if (rc_wait != 0 && rc_wait != ETIMEDOUT)
				fatalx("admission: pthread_cond_timedwait: %d", rc_wait);
			continue;
		}
		unlink_locked(a, w);
		if (rc == ADMIT_NOW)
			a->running++;
		pthread_mutex_unlock(&a->mu);
		w->done(w, rc, since_us(&w->since, &now));
		pthread_mutex_lock(&a->mu);
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

struct admission *admission_new(unsigned max_running, unsigned max_queue, unsigned max_wait_ms,
				size_t max_bytes)
{
	struct admission *a = calloc(1, sizeof(*a));
	pthread_condattr_t ca;

	if (a == NULL)
		return NULL;
	a->max_running = max_running;
	a->max_queue = max_queue;
	a->max_wait_ms = max_wait_ms;
	a->max_bytes = max_bytes;
	pthread_mutex_init(&a->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&a->thread, NULL, admission_main, a) != 0) {
		pthread_cond_destroy(&a->cond);
		pthread_mutex_destroy(&a->mu);
		free(a);
		return NULL;
	}
	return a;
}

enum admit_rc admission_enter(struct admission *a, struct admission_waiter *w, size_t bytes,
			      char *err, size_t errlen)
{
	struct admission_stats st;
	char figures[128];

	w->prev = w->next = NULL;
	w->queued = false;
	w->bytes = bytes;
	clock_gettime(CLOCK_MONOTONIC, &w->since);
	pthread_mutex_lock(&a->mu);
	if (a->draining) {
		pthread_mutex_unlock(&a->mu);
		snprintf(err, errlen, "server is shutting down");
		return ADMIT_DRAINING;
	}
	/* a free slot goes to whoever waited, not to whoever came last */
	if (a->running < a->max_running && a->head == NULL) {
		a->running++;
		pthread_mutex_unlock(&a->mu);
		return ADMIT_NOW;
	}
	if (a->queued < a->max_queue && a->queued_bytes + bytes <= a->max_bytes) {
		w->queued = true;
		w->prev = a->tail;
		if (a->tail)
			a->tail->next = w;
		else
			a->head = w;
		a->tail = w;
		a->queued++;
		a->queued_bytes += bytes;
		pthread_cond_signal(&a->cond);
		pthread_mutex_unlock(&a->mu);
		return ADMIT_QUEUED;
	}
	stats_locked(a, &st);
	pthread_mutex_unlock(&a->mu);
	admission_describe(&st, figures, sizeof(figures));
	if (st.queued < st.max_queued)
		snprintf(err, errlen,
			 "server is full: %s, and the waiting requests hold %zu of %zu MiB; "
			 "retry later",
			 figures, st.queued_bytes >> 20, st.max_queued_bytes >> 20);
	else
		snprintf(err, errlen, "server is full: %s; retry later", figures);
	return ADMIT_FULL;
}

bool admission_withdraw(struct admission *a, struct admission_waiter *w)
{
	bool was = false;

	pthread_mutex_lock(&a->mu);
	if (w->queued) {
		unlink_locked(a, w);
		was = true;
	}
	pthread_mutex_unlock(&a->mu);
	return was;
}

void admission_leave(struct admission *a)
{
	pthread_mutex_lock(&a->mu);
	if (a->running == 0)
		fatalx("admission: leave without a running slot");
	a->running--;
	if (a->head != NULL)
		pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->mu);
}

void admission_drain(struct admission *a)
{
	pthread_mutex_lock(&a->mu);
	a->draining = true;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->mu);
}

void admission_stats(struct admission *a, struct admission_stats *st)
{
	pthread_mutex_lock(&a->mu);
	stats_locked(a, st);
	pthread_mutex_unlock(&a->mu);
}

void admission_destroy(struct admission *a)
{
	if (a == NULL)
		return;
	pthread_mutex_lock(&a->mu);
	a->stop = true;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->mu);
	pthread_join(a->thread, NULL);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->mu);
	free(a);
}
