/*
 * Admission control: a cap on executions running at once and a bounded,
 * first-come-first-served wait queue in front of it.
 *
 * A request either gets a running slot at once, waits in the queue (at most
 * max_queue requests holding at most max_bytes, each for at most max_wait),
 * or is refused with a message saying how full the server is. A waiter
 * leaves the queue in one of three ways, reported once through its done
 * callback: it got a slot (ADMIT_NOW), it waited too long (ADMIT_FULL), or
 * the server began to drain (ADMIT_DRAINING). A waiter its caller withdraws
 * (the client cancelled, the deadline passed) gets no callback.
 *
 * Callbacks run on the admission's own thread, never under its lock and
 * never on the thread that calls admission_leave(): that is often a
 * backend's event thread, which must not be made to start the next run.
 */
#ifndef CAPIBOX_ADMISSION_H
#define CAPIBOX_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum admit_rc {
	ADMIT_NOW = 0,	/* holds a running slot: call admission_leave() when done */
	ADMIT_QUEUED,	/* waiting; done() reports the outcome */
	ADMIT_FULL,	/* refused: RESOURCE_EXHAUSTED */
	ADMIT_DRAINING, /* refused: the server is shutting down (UNAVAILABLE) */
};

struct admission_waiter;

/* How a queued waiter left the queue; waited_us: time spent in it. */
typedef void (*admission_done_fn)(struct admission_waiter *w, enum admit_rc rc, uint64_t waited_us);

struct admission_waiter {
	admission_done_fn done; /* set by the caller */
	/* private to admission.c */
	struct admission_waiter *prev, *next;
	struct timespec since; /* CLOCK_MONOTONIC */
	size_t bytes;
	bool queued;
};

struct admission_stats {
	unsigned running, max_running;
	unsigned queued, max_queued;
	size_t queued_bytes, max_queued_bytes;
};

struct admission;

/* An admission with its thread; NULL when the thread cannot be started. */
struct admission *admission_new(unsigned max_running, unsigned max_queue, unsigned max_wait_ms,
				size_t max_bytes);

/*
 * Asks for a running slot for a request of bytes. ADMIT_NOW and ADMIT_QUEUED
 * accept it; otherwise err says why, with the figures.
 */
enum admit_rc admission_enter(struct admission *a, struct admission_waiter *w, size_t bytes,
			      char *err, size_t errlen);

/* Takes w out of the queue; true if it was there (then no callback comes). */
bool admission_withdraw(struct admission *a, struct admission_waiter *w);

/* A running slot is free again (the next waiter, if any, gets it). */
void admission_leave(struct admission *a);

/* Refuses every waiter (ADMIT_DRAINING) and every later request. */
void admission_drain(struct admission *a);

/* A consistent snapshot of the figures. */
void admission_stats(struct admission *a, struct admission_stats *st);

/* Writes "N of M running, Q of R waiting" (for refusals and logs). */
void admission_describe(const struct admission_stats *st, char *buf, size_t len);

/* Stops the thread and frees a; the queue must be empty (drain first). */
void admission_destroy(struct admission *a);

#endif
