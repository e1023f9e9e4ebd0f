/*
 * Prometheus metrics: counters, gauges and histograms kept with relaxed
 * atomics (recording never takes a lock and never allocates, so it is safe
 * on completion-queue and backend threads), the text exposition format
 * 0.0.4, and a small HTTP listener (libmicrohttpd) that serves it on
 * GET /metrics, apart from the gRPC port.
 *
 * The figures are process-wide (one capiboxd, one set of metrics). Label
 * values come from closed sets only (runtime names, reasons, status codes,
 * registered methods): never from the client, so a client cannot grow the
 * output, and never a key, a secret or a request id.
 */
#ifndef CAPIBOX_METRICS_H
#define CAPIBOX_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exec.h"

struct backend;
struct admission;

#define METRICS_MAX_METHODS 16

/*
 * Notes the start time and names the rpc layer's methods
 * ("/pkg.Service/Method"; index = the id passed to metrics_rpc_done, at most
 * METRICS_MAX_METHODS). Strings are borrowed for the process's life. Call
 * once, before serving.
 */
void metrics_init(const char *const *paths, size_t n);

/* "OK", "UNAVAILABLE", ... for a gRPC status code; "UNKNOWN" beyond 16. */
const char *metrics_code_name(unsigned code);

/* A call ended with status code (0..16) after duration_us. */
void metrics_rpc_done(unsigned method, unsigned code, uint64_t duration_us);

/* A protected call was refused: no key (missing) or a wrong one. */
void metrics_auth_failed(bool missing);

/* An execution's sandbox started (the Started event). */
void metrics_exec_started(const char *language, uint64_t queued_us, uint64_t start_us, bool warm);

/* Where scrapes read running and waiting executions (set once, before serving). */
void metrics_set_admission(struct admission *a);

/* An execution was refused admission: the queue was full, its wait ran out,
 * or the server was draining. */
enum metrics_refusal { METRICS_REFUSED_FULL, METRICS_REFUSED_WAIT, METRICS_REFUSED_DRAINING };
void metrics_admission_refused(enum metrics_refusal why);

/* len bytes of output were delivered. */
void metrics_exec_output(enum exec_stream stream, size_t len);

/* An accepted execution finished (the Finished event). */
void metrics_exec_finished(const char *language, enum exec_reason reason, uint64_t wall_us);

/*
 * The exposition text (format 0.0.4) of every metric; scrape-time gauges
 * (sandboxes by state, live executions, supervisor restarts) are read from
 * b when it is not NULL. Returns a malloc'd NUL-terminated string (caller
 * frees) and its length in *len, or NULL when out of memory.
 */
char *metrics_render(struct backend *b, size_t *len);

struct metrics_http;

/*
 * Serves GET /metrics on addr ("127.0.0.1:9464", "[::1]:9464", port 0 = a
 * free one) from a thread of its own; b is read at each scrape and must
 * outlive the listener. Returns NULL with err set when addr is malformed or
 * cannot be bound. The bound address goes to the log.
 */
struct metrics_http *metrics_http_start(const char *addr, struct backend *b, char *err,
					size_t errlen);

/* Stops the listener (waits for its thread) and frees h; NULL is fine. */
void metrics_http_stop(struct metrics_http *h);

#endif
