/*
 * Deep health check: one canary execution per runtime through a backend,
 * run asynchronously so the caller (a completion-queue thread) never
 * blocks. Plain C, no gRPC: the rpc layer turns the report into a
 * HealthResponse.
 */
#ifndef CAPIBOX_HEALTH_H
#define CAPIBOX_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "config.h"
#include "exec.h"
#include "runtime.h"

/* Wall-time limit of a canary run; the other limits are the defaults. */
#define HEALTH_CANARY_WALL_MS 10000

struct health_canary_result {
	const char *language; /* runtime table name (static storage) */
	bool ok;
	uint64_t wall_us; /* from submission to finished */
	char detail[256]; /* why it failed; "" when ok */
};

struct health_report {
	size_t n;	     /* runtimes checked */
	size_t n_ok;	     /* of which passed */
	uint64_t slowest_us; /* largest wall_us */
	struct health_canary_result *results;
	/* "canary ok: python 41 ms, ..." or "canary FAILED: python: exited 1: ..." */
	char summary[1024];
};

/*
 * Runs the canary of every runtime on b. done(arg, report) is called exactly
 * once: from a backend thread, or from within this call when no canary could
 * be started; report is valid only during that call. Returns 0, or -1 when
 * out of memory (then done is not called).
 */
__attribute__((warn_unused_result)) int
health_canary_start(const struct config *cfg, struct backend *b,
		    void (*done)(void *arg, const struct health_report *report), void *arg);

/*
 * Judges one canary run: true when it exited 0 and its stdout is exactly
 * rt->canary_expect. Otherwise writes why into detail ("exited 1: <first
 * stderr line>", "wall_timeout", "unexpected output \"...\"").
 * out/err are what was captured (err may be just the first line).
 */
bool health_canary_judge(const struct runtime *rt, const struct exec_result *res, const char *out,
			 size_t out_len, bool out_truncated, const char *err, size_t err_len,
			 char *detail, size_t detail_len);

/* Writes report->summary from report->results. */
void health_report_summarise(struct health_report *report);

#endif
