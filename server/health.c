/*
 * Deep health check: runs each runtime's canary program through the backend
 * like any client request, so a pass means a real sandbox started, ran the
 * interpreter and returned its output.
 *
 * Nothing here blocks: the runs are submitted from the caller's thread, the
 * events arrive on the backend's thread, and the last run to complete calls
 * done(). The backend may deliver an event before backend_execute() has
 * handed us the execution handle, so a resume or release that falls in that
 * window is remembered and done by whoever sees the handle second.
 */
#include "health.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "request.h"

struct canary;

struct canary_run {
	struct canary *owner;
	const struct runtime *rt;
	struct health_canary_result *result;
	struct timespec t0;

	pthread_mutex_t lock; /* guards the four fields below */
	struct exec *e;	      /* handle, once backend_execute returned */
	bool e_known;
	bool resume_pending; /* an event was consumed before e was known */
	bool finished;	     /* finished was delivered */

	/* Written only from sink callbacks, which the backend serialises. */
	char out[256];
	size_t out_len;
	bool out_truncated;
	char err[200]; /* first line of stderr */
	size_t err_len;
	bool err_line_done;
};

struct canary {
	pthread_mutex_t lock;
	size_t pending; /* runs not yet complete, +1 while starting */
	void (*done)(void *arg, const struct health_report *report);
	void *arg;
	struct health_report report;
	size_t n_runs;
	struct canary_run runs[];
};

static uint64_t elapsed_us(const struct timespec *t0)
{
	struct timespec now;
	int64_t us;

	clock_gettime(CLOCK_MONOTONIC, &now);
	us = (int64_t)(now.tv_sec - t0->tv_sec) * 1000000 + (now.tv_nsec - t0->tv_nsec) / 1000;
	return us > 0 ? (uint64_t)us : 0;
}

/*
 * Copies untrusted sandbox bytes into a message that ends up in a protobuf
 * string field: anything but printable ASCII becomes '?' (or "\n"), so the
 * result is always valid UTF-8 and one line. Stops at the first newline
 * when first_line is set. Returns the number of source bytes consumed.
 */
static size_t copy_printable(char *dst, size_t dlen, const char *src, size_t slen, bool first_line)
{
	size_t o = 0, i;

	if (dlen == 0)
		return 0;
	for (i = 0; i < slen && o + 1 < dlen; i++) {
		unsigned char ch = (unsigned char)src[i];

		if (ch == '\n') {
			if (first_line)
				break;
			if (o + 2 >= dlen)
				break;
			dst[o++] = '\\';
			dst[o++] = 'n';
			continue;
		}
		if (ch == '\r' && first_line)
			continue;
		if (ch == '\t')
			ch = ' ';
		dst[o++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	dst[o] = '\0';
	return i;
}

static void append(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Appends to a NUL-terminated buffer; silently truncates. */
static void append(char *buf, size_t size, const char *fmt, ...)
{
	size_t used = strnlen(buf, size);
	va_list ap;

	if (used + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, size - used, fmt, ap);
	va_end(ap);
}

bool health_canary_judge(const struct runtime *rt, const struct exec_result *res, const char *out,
			 size_t out_len, bool out_truncated, const char *err, size_t err_len,
			 char *detail, size_t detail_len)
{
	const char *expect = rt->canary_expect ? rt->canary_expect : "";
	char line[160], got[96];

	detail[0] = '\0';
	copy_printable(line, sizeof(line), err, err_len, true);
	if (res->reason == EXEC_REASON_EXITED && res->exit_code == 0) {
		if (!out_truncated && out_len == strlen(expect) &&
		    memcmp(out, expect, out_len) == 0)
			return true;
		size_t used = copy_printable(got, sizeof(got), out, out_len, false);

		snprintf(detail, detail_len, "unexpected output \"%s\"%s", got,
			 out_truncated || used < out_len ? "..." : "");
		return false;
	}
	if (res->reason == EXEC_REASON_EXITED)
		snprintf(detail, detail_len, "exited %d", (int)res->exit_code);
	else if (res->reason == EXEC_REASON_SIGNALED)
		snprintf(detail, detail_len, "killed by signal %d", (int)res->signal);
	else
		snprintf(detail, detail_len, "%s", exec_reason_name(res->reason));
	if (res->message[0] != '\0') {
		char msg[sizeof(res->message)];

		copy_printable(msg, sizeof(msg), res->message,
			       strnlen(res->message, sizeof(res->message)), true);
		append(detail, detail_len, ": %s", msg);
	}
	if (line[0] != '\0')
		append(detail, detail_len, ": %s", line);
	return false;
}

void health_report_summarise(struct health_report *rep)
{
	bool first = true;

	rep->summary[0] = '\0';
	if (rep->n == 0) {
		append(rep->summary, sizeof(rep->summary), "canary: no runtimes configured");
		return;
	}
	if (rep->n_ok == rep->n) {
		append(rep->summary, sizeof(rep->summary), "canary ok:");
		for (size_t i = 0; i < rep->n; i++)
			append(rep->summary, sizeof(rep->summary), "%s %s %llu ms", i ? "," : "",
			       rep->results[i].language,
			       (unsigned long long)(rep->results[i].wall_us + 500) / 1000);
		return;
	}
	append(rep->summary, sizeof(rep->summary), "canary FAILED:");
	for (size_t i = 0; i < rep->n; i++) {
		if (rep->results[i].ok)
			continue;
		append(rep->summary, sizeof(rep->summary), "%s %s: %s", first ? "" : ";",
		       rep->results[i].language, rep->results[i].detail);
		first = false;
	}
	if (rep->n_ok == 0)
		return;
	append(rep->summary, sizeof(rep->summary), " (ok:");
	first = true;
	for (size_t i = 0; i < rep->n; i++) {
		if (!rep->results[i].ok)
			continue;
		append(rep->summary, sizeof(rep->summary), "%s %s %llu ms", first ? "" : ",",
		       rep->results[i].language,
		       (unsigned long long)(rep->results[i].wall_us + 500) / 1000);
		first = false;
	}
	append(rep->summary, sizeof(rep->summary), ")");
}

static void canary_free(struct canary *c)
{
	for (size_t i = 0; i < c->n_runs; i++)
		pthread_mutex_destroy(&c->runs[i].lock);
	pthread_mutex_destroy(&c->lock);
	free(c->report.results);
	free(c);
}

/* Drops one pending count; the last one reports and frees everything. */
static void canary_put(struct canary *c)
{
	bool last;

	pthread_mutex_lock(&c->lock);
	last = --c->pending == 0;
	pthread_mutex_unlock(&c->lock);
	if (!last)
		return;

	c->report.n_ok = 0;
	c->report.slowest_us = 0;
	for (size_t i = 0; i < c->report.n; i++) {
		if (c->report.results[i].ok)
			c->report.n_ok++;
		if (c->report.results[i].wall_us > c->report.slowest_us)
			c->report.slowest_us = c->report.results[i].wall_us;
	}
	health_report_summarise(&c->report);
	c->done(c->arg, &c->report);
	canary_free(c);
}

/* The run is over and its handle known: give the handle back, count it. */
static void run_complete(struct canary_run *run, struct exec *e)
{
	if (e)
		backend_release(e);
	canary_put(run->owner);
}

/* Lets the backend deliver the next event, now or once the handle is known. */
static void run_resume(struct canary_run *run)
{
	struct exec *e = NULL;

	pthread_mutex_lock(&run->lock);
	if (run->e_known)
		e = run->e;
	else
		run->resume_pending = true;
	pthread_mutex_unlock(&run->lock);
	if (e)
		backend_resume(e);
}

static void run_on_started(void *arg, const struct exec_started *st)
{
	(void)st;
	run_resume(arg);
}

static void run_on_output(void *arg, enum exec_stream stream, const uint8_t *data, size_t len)
{
	struct canary_run *run = arg;

	if (stream == EXEC_STDOUT) {
		size_t room = sizeof(run->out) - run->out_len;
		size_t n = len < room ? len : room;

		memcpy(run->out + run->out_len, data, n);
		run->out_len += n;
		if (n < len)
			run->out_truncated = true;
	} else if (!run->err_line_done) {
		size_t room = sizeof(run->err) - run->err_len;
		const uint8_t *nl = memchr(data, '\n', len);
		size_t want = nl ? (size_t)(nl - data) : len;
		size_t n = want < room ? want : room;

		memcpy(run->err + run->err_len, data, n);
		run->err_len += n;
		if (nl || run->err_len == sizeof(run->err))
			run->err_line_done = true;
	}
	run_resume(run);
}

static void run_on_finished(void *arg, const struct exec_result *res)
{
	struct canary_run *run = arg;
	struct health_canary_result *r = run->result;
	struct exec *e = NULL;
	bool complete;

	r->wall_us = elapsed_us(&run->t0);
	r->ok = health_canary_judge(run->rt, res, run->out, run->out_len, run->out_truncated,
				    run->err, run->err_len, r->detail, sizeof(r->detail));
	if (!r->ok)
		log_warnx("health: canary %s failed: %s", run->rt->name, r->detail);

	pthread_mutex_lock(&run->lock);
	run->finished = true;
	complete = run->e_known;
	e = run->e;
	pthread_mutex_unlock(&run->lock);
	if (complete)
		run_complete(run, e);
}

static const struct exec_sink canary_sink = {
	.started = run_on_started,
	.output = run_on_output,
	.finished = run_on_finished,
};

/* Submits one run; on failure records why and counts the run as complete. */
static void run_start(const struct config *cfg, struct backend *b, struct canary_run *run)
{
	const struct runtime *rt = run->rt;
	struct health_canary_result *r = run->result;
	struct exec_request req;
	struct exec *e = NULL;
	char err[200]; /* leaves room in detail for the prefix */
	bool resume, complete;

	if (rt->canary_code == NULL || rt->canary_code[0] == '\0') {
		snprintf(r->detail, sizeof(r->detail), "no canary program in the runtime table");
		goto fail;
	}
	memset(&req, 0, sizeof(req));
	req.language = rt->name;
	req.code = rt->canary_code;
	req.code_len = strlen(rt->canary_code);
	req.session_id = "";
	req.request_id = "health-canary";
	req.limits = cfg->defaults;
	req.limits.wall_time_ms = HEALTH_CANARY_WALL_MS;
	if (cfg->maxima.wall_time_ms != 0 && cfg->maxima.wall_time_ms < req.limits.wall_time_ms)
		req.limits.wall_time_ms = cfg->maxima.wall_time_ms;
	if (request_validate_execute(cfg, &req, err, sizeof(err)) != REQUEST_OK) {
		snprintf(r->detail, sizeof(r->detail), "not started: %s", err);
		goto fail;
	}

	clock_gettime(CLOCK_MONOTONIC, &run->t0);
	if (backend_execute(b, &req, &canary_sink, run, &e, err, sizeof(err)) != BACKEND_OK) {
		r->wall_us = elapsed_us(&run->t0);
		snprintf(r->detail, sizeof(r->detail), "not started: %s", err);
		goto fail;
	}

	pthread_mutex_lock(&run->lock);
	run->e = e;
	run->e_known = true;
	resume = run->resume_pending;
	run->resume_pending = false;
	complete = run->finished;
	pthread_mutex_unlock(&run->lock);
	if (resume)
		backend_resume(e);
	if (complete)
		run_complete(run, e);
	return;
fail:
	log_warnx("health: canary %s: %s", rt->name, r->detail);
	r->ok = false;
	canary_put(run->owner);
}

int health_canary_start(const struct config *cfg, struct backend *b,
			void (*done)(void *arg, const struct health_report *report), void *arg)
{
	size_t n = 0, k = 0;
	struct canary *c;

	/* the languages clients pick; internal rows have no canary */
	for (size_t i = 0; i < runtime_count(); i++)
		n += runtime_at(i)->canary_code != NULL;

	c = calloc(1, sizeof(*c) + n * sizeof(c->runs[0]));
	if (c == NULL)
		return -1;
	c->report.results = calloc(n ? n : 1, sizeof(c->report.results[0]));
	if (c->report.results == NULL) {
		free(c);
		return -1;
	}
	pthread_mutex_init(&c->lock, NULL);
	c->done = done;
	c->arg = arg;
	c->n_runs = n;
	c->report.n = n;
	/* One count per run plus one for this function: no run can report the
	 * whole canary while later runs are still being submitted. */
	c->pending = n + 1;
	for (size_t i = 0; i < n; i++, k++) {
		struct canary_run *run = &c->runs[i];

		while (runtime_at(k)->canary_code == NULL)
			k++;
		run->owner = c;
		run->rt = runtime_at(k);
		run->result = &c->report.results[i];
		run->result->language = run->rt->name;
		pthread_mutex_init(&run->lock, NULL);
	}
	for (size_t i = 0; i < n; i++)
		run_start(cfg, b, &c->runs[i]);
	canary_put(c);
	return 0;
}
