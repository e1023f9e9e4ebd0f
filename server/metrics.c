/*
 * Prometheus metrics; see metrics.h.
 *
 * Every figure is a _Atomic uint64_t updated with relaxed ordering: each is
 * an independent count, nothing is published through it, so no ordering is
 * needed. A scrape reads them one by one; a histogram's buckets may be a
 * few observations apart from its sum, which Prometheus tolerates. Its
 * _count is the sum of the buckets, so "+Inf" and _count always agree.
 *
 * Histograms keep microseconds (integers suit atomics) and are exposed in
 * seconds, Prometheus's base unit.
 */
#include "metrics.h"

#include "admission.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "backend/backend.h"
#include "config.h"
#include "log.h"
#include "runtime.h"

#define N_REASONS (EXEC_REASON_SANDBOX_ERROR + 1)
#define N_CODES 17 /* gRPC status codes 0..16 */
#define MAX_RT CONFIG_MAX_RUNTIMES
#define MAX_BUCKETS 20
#define MAX_POOLS 32

/* Durations of executions and calls: a millisecond to the 10-minute maximum. */
static const uint64_t duration_bounds[] = {
	1000,	 2500,	  5000,	   10000,    25000,    50000,	 100000,    250000,    500000,
	1000000, 2500000, 5000000, 10000000, 30000000, 60000000, 120000000, 300000000, 600000000,
};
/* Waiting for admission and making a sandbox: 100 us (warm) to 10 s. */
static const uint64_t wait_bounds[] = {
	100,   250,    500,    1000,   2500,	5000,	 10000,	  25000,
	50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};
#define N_DURATION (sizeof(duration_bounds) / sizeof(duration_bounds[0]))
#define N_WAIT (sizeof(wait_bounds) / sizeof(wait_bounds[0]))
_Static_assert(N_DURATION < MAX_BUCKETS && N_WAIT < MAX_BUCKETS, "too many buckets");

struct histogram {
	_Atomic uint64_t buckets[MAX_BUCKETS + 1]; /* non-cumulative; [n] is +Inf */
	_Atomic uint64_t sum_us;
};

static struct {
	struct timespec start; /* CLOCK_REALTIME at metrics_init */
	const char *methods[METRICS_MAX_METHODS];
	/* The listener may scrape before the rpc layer names its methods:
	 * names are stored first, then published by this count (release). */
	_Atomic size_t n_methods;
	_Atomic uint64_t rpcs[METRICS_MAX_METHODS][N_CODES];
	struct histogram rpc_duration[METRICS_MAX_METHODS];
	_Atomic uint64_t auth_missing, auth_invalid;
	_Atomic uint64_t execs[MAX_RT][N_REASONS];
	struct histogram exec_duration[MAX_RT];
	struct histogram queue_wait[MAX_RT];
	struct histogram sandbox_start[MAX_RT][2]; /* [cold, warm] */
	_Atomic uint64_t output[2];		   /* stdout, stderr */
	_Atomic uint64_t refused[3];		   /* enum metrics_refusal */
	struct admission *_Atomic admission;
} m;

static const char *const code_names[N_CODES] = {
	"OK",
	"CANCELLED",
	"UNKNOWN",
	"INVALID_ARGUMENT",
	"DEADLINE_EXCEEDED",
	"NOT_FOUND",
	"ALREADY_EXISTS",
	"PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION",
	"ABORTED",
	"OUT_OF_RANGE",
	"UNIMPLEMENTED",
	"INTERNAL",
	"UNAVAILABLE",
	"DATA_LOSS",
	"UNAUTHENTICATED",
};

const char *metrics_code_name(unsigned code)
{
	return code < N_CODES ? code_names[code] : "UNKNOWN";
}

static void add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static uint64_t get(_Atomic uint64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

static void observe(struct histogram *h, const uint64_t *bounds, size_t n, uint64_t us)
{
	size_t i = 0;

	while (i < n && us > bounds[i])
		i++;
	add(&h->buckets[i], 1);
	add(&h->sum_us, us);
}

/* Row of language in the runtime table, or -1 (nothing is recorded then). */
static int rt_index(const char *language)
{
	int rt = language ? runtime_find(language) : -1;

	return rt >= 0 && rt < MAX_RT ? rt : -1;
}

/*
 * The start time, once. The main thread calls this before the listener's
 * thread exists, so the later read needs no synchronisation.
 */
static void metrics_note_start(void)
{
	if (m.start.tv_sec == 0)
		clock_gettime(CLOCK_REALTIME, &m.start);
}

void metrics_init(const char *const *paths, size_t n)
{
	metrics_note_start();
	if (n > METRICS_MAX_METHODS)
		fatalx("metrics: %zu methods, at most %d", n, METRICS_MAX_METHODS);
	for (size_t i = 0; i < n; i++)
		m.methods[i] = paths[i];
	atomic_store_explicit(&m.n_methods, n, memory_order_release);
}

void metrics_rpc_done(unsigned method, unsigned code, uint64_t duration_us)
{
	if (method >= atomic_load_explicit(&m.n_methods, memory_order_acquire))
		return;
	if (code >= N_CODES)
		code = 2; /* UNKNOWN */
	add(&m.rpcs[method][code], 1);
	observe(&m.rpc_duration[method], duration_bounds, N_DURATION, duration_us);
}

void metrics_auth_failed(bool missing) { add(missing ? &m.auth_missing : &m.auth_invalid, 1); }

void metrics_exec_started(const char *language, uint64_t queued_us, uint64_t start_us, bool warm)
{
	int rt = rt_index(language);

	if (rt < 0)
		return;
	observe(&m.queue_wait[rt], wait_bounds, N_WAIT, queued_us);
	observe(&m.sandbox_start[rt][warm ? 1 : 0], wait_bounds, N_WAIT, start_us);
}

void metrics_set_admission(struct admission *a)
{
	atomic_store_explicit(&m.admission, a, memory_order_release);
}

void metrics_admission_refused(enum metrics_refusal why)
{
	if ((unsigned)why < 3)
		add(&m.refused[why], 1);
}

void metrics_exec_output(enum exec_stream stream, size_t len)
{
	add(&m.output[stream == EXEC_STDERR ? 1 : 0], len);
}

void metrics_exec_finished(const char *language, enum exec_reason reason, uint64_t wall_us)
{
	int rt = rt_index(language);

	if (rt < 0)
		return;
	if ((unsigned)reason >= N_REASONS)
		reason = EXEC_REASON_UNSPECIFIED;
	add(&m.execs[rt][reason], 1);
	observe(&m.exec_duration[rt], duration_bounds, N_DURATION, wall_us);
}

/* ------------------------------------------------------------------ */
/* exposition                                                           */

struct out {
	char *p;
	size_t len, cap;
	bool oom;
};

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		if (o->oom)
			return;
		va_start(ap, fmt);
		n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->oom = true;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		size_t cap = o->cap * 2 + (size_t)n + 1;
		char *p = realloc(o->p, cap);

		if (p == NULL) {
			o->oom = true;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
}

static void header(struct out *o, const char *name, const char *type, const char *help)
{
	out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/*
 * A label value, escaped as the format asks (backslash, quote, newline).
 * Ours come from closed sets, but a runtime name is configuration.
 */
static const char *label(const char *s, char *buf, size_t len)
{
	size_t o = 0;

	for (; *s && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"') {
			buf[o++] = '\\';
			buf[o++] = *s;
		} else if (*s == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *s;
		}
	}
	buf[o] = '\0';
	return buf;
}

/* Seconds from microseconds, exactly: no rounding through a double. */
static void out_seconds(struct out *o, uint64_t us)
{
	out_printf(o, "%llu.%06llu", (unsigned long long)(us / 1000000),
		   (unsigned long long)(us % 1000000));
}

/* A bucket bound the way client libraries write it: 0.025, 1, 600. */
static void out_bound(struct out *o, uint64_t us)
{
	char frac[8];
	int n;

	if (us % 1000000 == 0) {
		out_printf(o, "%llu", (unsigned long long)(us / 1000000));
		return;
	}
	n = snprintf(frac, sizeof(frac), "%06llu", (unsigned long long)(us % 1000000));
	while (n > 1 && frac[n - 1] == '0')
		frac[--n] = '\0';
	out_printf(o, "%llu.%s", (unsigned long long)(us / 1000000), frac);
}

/* One histogram's series; labels is "" or `a="b",` (with the trailing comma). */
static void histogram_lines(struct out *o, const char *name, const char *labels,
			    struct histogram *h, const uint64_t *bounds, size_t n)
{
	uint64_t cum = 0;
	size_t l = strlen(labels);

	for (size_t i = 0; i <= n; i++) {
		cum += get(&h->buckets[i]);
		out_printf(o, "%s_bucket{%sle=\"", name, labels);
		if (i < n)
			out_bound(o, bounds[i]);
		else
			out_printf(o, "+Inf");
		out_printf(o, "\"} %llu\n", (unsigned long long)cum);
	}
	/* labels without the trailing comma for _sum and _count */
	out_printf(o, "%s_sum%s%.*s%s ", name, l ? "{" : "", l ? (int)(l - 1) : 0, labels,
		   l ? "}" : "");
	out_seconds(o, get(&h->sum_us));
	out_printf(o, "\n%s_count%s%.*s%s %llu\n", name, l ? "{" : "", l ? (int)(l - 1) : 0, labels,
		   l ? "}" : "", (unsigned long long)cum);
}

/* "/capibox.v1.SandboxService/Execute" -> `service="...",method="...",`. */
static void method_labels(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');
	char svc[160], svc_esc[200], meth[96];

	if (path[0] != '/' || slash == NULL || slash == path) {
		snprintf(buf, len, "service=\"\",method=\"%s\",", label(path, meth, sizeof(meth)));
		return;
	}
	snprintf(svc, sizeof(svc), "%.*s", (int)(slash - path - 1), path + 1);
	snprintf(buf, len, "service=\"%s\",method=\"%s\",", label(svc, svc_esc, sizeof(svc_esc)),
		 label(slash + 1, meth, sizeof(meth)));
}

/* "supervisor restarts: N" in the local backend's status message, else 0. */
static unsigned long restarts_of(const char *msg)
{
	const char *p = strstr(msg, "supervisor restarts: ");
	char *end;
	unsigned long v;

	if (p == NULL)
		return 0;
	p += strlen("supervisor restarts: ");
	errno = 0;
	v = strtoul(p, &end, 10);
	return errno == 0 && end != p ? v : 0;
}

static void render_backend(struct out *o, struct backend *b)
{
	struct runtime_stats st[MAX_POOLS];
	size_t n = backend_stats(b, st, MAX_POOLS);
	char msg[512] = "", lang[64], name[64];
	enum backend_status bs = backend_status(b, msg, sizeof(msg));

	if (n > MAX_POOLS)
		n = MAX_POOLS;
	label(b->ops->name, name, sizeof(name));
	header(o, "capibox_sandboxes", "gauge",
	       "Sandboxes by language and state: idle (warm, waiting for work) or busy "
	       "(running code).");
	for (size_t i = 0; i < n; i++) {
		label(st[i].language ? st[i].language : "", lang, sizeof(lang));
		out_printf(o, "capibox_sandboxes{language=\"%s\",state=\"idle\"} %u\n", lang,
			   st[i].idle);
		out_printf(o, "capibox_sandboxes{language=\"%s\",state=\"busy\"} %u\n", lang,
			   st[i].busy);
	}
	header(o, "capibox_pool_target", "gauge", "Warm sandboxes each pool aims to keep.");
	for (size_t i = 0; i < n; i++)
		out_printf(o, "capibox_pool_target{language=\"%s\"} %u\n",
			   label(st[i].language ? st[i].language : "", lang, sizeof(lang)),
			   st[i].target);
	header(o, "capibox_executions_live", "gauge",
	       "Executions accepted and not yet finished (admission counts these against "
	       "--max-live).");
	out_printf(o, "capibox_executions_live %u\n", backend_live(b));
	header(o, "capibox_backend_degraded", "gauge",
	       "1 when the backend runs with reduced guarantees (e.g. no cgroups), else 0.");
	out_printf(o, "capibox_backend_degraded{backend=\"%s\"} %d\n", name,
		   bs == BACKEND_STATUS_DEGRADED);
	header(o, "capibox_supervisor_restarts_total", "counter",
	       "Times the sandbox supervisor died or misbehaved and was restarted.");
	out_printf(o, "capibox_supervisor_restarts_total{backend=\"%s\"} %lu\n", name,
		   restarts_of(msg));
}

char *metrics_render(struct backend *b, size_t *len)
{
	struct out o = {.cap = 16384};
	size_t n_rt = runtime_count() < MAX_RT ? runtime_count() : MAX_RT;
	size_t n_methods = atomic_load_explicit(&m.n_methods, memory_order_acquire);
	char lang[64], labels[320];
	struct admission *adm;

	o.p = malloc(o.cap);
	if (o.p == NULL)
		return NULL;
	o.p[0] = '\0';

	header(&o, "capibox_build_info", "gauge", "capiboxd's version; the value is always 1.");
	out_printf(&o, "capibox_build_info{version=\"%s\"} 1\n", CAPIBOX_VERSION);
	header(&o, "capibox_start_time_seconds", "gauge",
	       "When capiboxd started, in seconds since the Unix epoch.");
	out_printf(&o, "capibox_start_time_seconds %lld\n", (long long)m.start.tv_sec);

	header(&o, "capibox_executions_total", "counter",
	       "Executions that finished, by language and the reason they ended.");
	for (size_t rt = 0; rt < n_rt; rt++) {
		label(runtime_at(rt)->name, lang, sizeof(lang));
		for (int r = EXEC_REASON_EXITED; r < N_REASONS; r++)
			out_printf(&o,
				   "capibox_executions_total{language=\"%s\",reason=\"%s\"} %llu\n",
				   lang, exec_reason_name((enum exec_reason)r),
				   (unsigned long long)get(&m.execs[rt][r]));
	}
	header(&o, "capibox_execution_duration_seconds", "histogram",
	       "Wall time of finished executions, by language.");
	for (size_t rt = 0; rt < n_rt; rt++) {
		snprintf(labels, sizeof(labels), "language=\"%s\",",
			 label(runtime_at(rt)->name, lang, sizeof(lang)));
		histogram_lines(&o, "capibox_execution_duration_seconds", labels,
				&m.exec_duration[rt], duration_bounds, N_DURATION);
	}
	header(&o, "capibox_queue_wait_seconds", "histogram",
	       "Time executions waited for admission before their sandbox was taken, by "
	       "language.");
	for (size_t rt = 0; rt < n_rt; rt++) {
		snprintf(labels, sizeof(labels), "language=\"%s\",",
			 label(runtime_at(rt)->name, lang, sizeof(lang)));
		histogram_lines(&o, "capibox_queue_wait_seconds", labels, &m.queue_wait[rt],
				wait_bounds, N_WAIT);
	}
	header(&o, "capibox_sandbox_start_seconds", "histogram",
	       "Time to make a sandbox ready for the code, by language and whether a warm "
	       "(pooled) sandbox was used.");
	for (size_t rt = 0; rt < n_rt; rt++) {
		for (int w = 0; w < 2; w++) {
			snprintf(labels, sizeof(labels), "language=\"%s\",warm=\"%s\",",
				 label(runtime_at(rt)->name, lang, sizeof(lang)),
				 w ? "true" : "false");
			histogram_lines(&o, "capibox_sandbox_start_seconds", labels,
					&m.sandbox_start[rt][w], wait_bounds, N_WAIT);
		}
	}
	header(&o, "capibox_output_bytes_total", "counter",
	       "Bytes of stdout and stderr delivered to clients.");
	out_printf(&o, "capibox_output_bytes_total{stream=\"stdout\"} %llu\n",
		   (unsigned long long)get(&m.output[0]));
	out_printf(&o, "capibox_output_bytes_total{stream=\"stderr\"} %llu\n",
		   (unsigned long long)get(&m.output[1]));
	if ((adm = atomic_load_explicit(&m.admission, memory_order_acquire)) != NULL) {
		struct admission_stats st;

		admission_stats(adm, &st);
		header(&o, "capibox_executions_running", "gauge",
		       "Executions holding a running slot (admitted, not yet finished).");
		out_printf(&o, "capibox_executions_running %u\n", st.running);
		header(&o, "capibox_executions_running_max", "gauge",
		       "Cap on running executions (--max-live).");
		out_printf(&o, "capibox_executions_running_max %u\n", st.max_running);
		header(&o, "capibox_queue_depth", "gauge",
		       "Executions waiting for a running slot.");
		out_printf(&o, "capibox_queue_depth %u\n", st.queued);
		header(&o, "capibox_queue_depth_max", "gauge",
		       "Cap on waiting executions (--max-queue).");
		out_printf(&o, "capibox_queue_depth_max %u\n", st.max_queued);
	}
	header(&o, "capibox_admission_refused_total", "counter",
	       "Executions refused admission: queue full, wait over (RESOURCE_EXHAUSTED), or "
	       "server draining (UNAVAILABLE).");
	out_printf(&o, "capibox_admission_refused_total{reason=\"queue_full\"} %llu\n",
		   (unsigned long long)get(&m.refused[METRICS_REFUSED_FULL]));
	out_printf(&o, "capibox_admission_refused_total{reason=\"wait_expired\"} %llu\n",
		   (unsigned long long)get(&m.refused[METRICS_REFUSED_WAIT]));
	out_printf(&o, "capibox_admission_refused_total{reason=\"draining\"} %llu\n",
		   (unsigned long long)get(&m.refused[METRICS_REFUSED_DRAINING]));
	header(&o, "capibox_sessions_open", "gauge",
	       "Open sessions (kept-alive interpreters, each holding a sandbox).");
	out_printf(&o, "capibox_sessions_open %u\n",
		   b != NULL && b->ops->sessions_open != NULL ? b->ops->sessions_open(b) : 0);

	header(&o, "capibox_rpcs_total", "counter",
	       "Calls that ended, by service, method and gRPC status code (OK is always "
	       "listed; other codes once seen).");
	for (size_t i = 0; i < n_methods; i++) {
		method_labels(m.methods[i], labels, sizeof(labels));
		for (int c = 0; c < N_CODES; c++) {
			uint64_t v = get(&m.rpcs[i][c]);

			if (v > 0 || c == 0)
				out_printf(&o, "capibox_rpcs_total{%scode=\"%s\"} %llu\n", labels,
					   code_names[c], (unsigned long long)v);
		}
	}
	header(&o, "capibox_rpc_duration_seconds", "histogram",
	       "Time from a call's arrival to its end, by service and method (Execute: the "
	       "whole run).");
	for (size_t i = 0; i < n_methods; i++) {
		method_labels(m.methods[i], labels, sizeof(labels));
		histogram_lines(&o, "capibox_rpc_duration_seconds", labels, &m.rpc_duration[i],
				duration_bounds, N_DURATION);
	}
	header(&o, "capibox_auth_failures_total", "counter",
	       "Calls refused UNAUTHENTICATED: no API key, or one that is not in the keys file.");
	out_printf(&o, "capibox_auth_failures_total{reason=\"missing_key\"} %llu\n",
		   (unsigned long long)get(&m.auth_missing));
	out_printf(&o, "capibox_auth_failures_total{reason=\"invalid_key\"} %llu\n",
		   (unsigned long long)get(&m.auth_invalid));
	if (b != NULL)
		render_backend(&o, b);

	if (o.oom) {
		free(o.p);
		return NULL;
	}
	*len = o.len;
	return o.p;
}

/* ------------------------------------------------------------------ */
/* HTTP listener                                                        */

struct metrics_http {
	struct MHD_Daemon *d;
	struct backend *b;
};

static const char index_text[] = "capiboxd: Prometheus metrics at /metrics\n";
static const char not_found_text[] = "not found: the metrics are at /metrics\n";
static const char method_text[] = "only GET and HEAD\n";
static const char oom_text[] = "out of memory\n";

static enum MHD_Result http_reply(struct MHD_Connection *conn, unsigned status, const char *text,
				  size_t len, enum MHD_ResponseMemoryMode mode,
				  const char *content_type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)text, mode);
	enum MHD_Result rc;

	if (r == NULL) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free((void *)text);
		return MHD_NO; /* MHD closes the connection */
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url,
				   const char *method, const char *version, const char *upload_data,
				   size_t *upload_data_size, void **con_cls)
{
	static int seen; /* marks a request whose first call has passed */
	struct metrics_http *h = cls;
	const char *plain = "text/plain; charset=utf-8";
	char *text;
	size_t len;

	(void)version;
	(void)upload_data;
	if (*con_cls == NULL) {
		/* First call: headers only. Answer once any body is consumed. */
		*con_cls = &seen;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		*upload_data_size = 0; /* a body is ignored */
		return MHD_YES;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return http_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, method_text,
				  sizeof(method_text) - 1, MHD_RESPMEM_PERSISTENT, plain);
	if (strcmp(url, "/") == 0)
		return http_reply(conn, MHD_HTTP_OK, index_text, sizeof(index_text) - 1,
				  MHD_RESPMEM_PERSISTENT, plain);
	if (strcmp(url, "/metrics") != 0)
		return http_reply(conn, MHD_HTTP_NOT_FOUND, not_found_text,
				  sizeof(not_found_text) - 1, MHD_RESPMEM_PERSISTENT, plain);
	text = metrics_render(h->b, &len);
	if (text == NULL)
		return http_reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, oom_text,
				  sizeof(oom_text) - 1, MHD_RESPMEM_PERSISTENT, plain);
	return http_reply(conn, MHD_HTTP_OK, text, len, MHD_RESPMEM_MUST_FREE,
			  "text/plain; version=0.0.4; charset=utf-8");
}

static void http_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	log_warnx("metrics: %s", msg);
}

/* "host:port" or "[v6]:port" -> host and port strings. */
static int split_addr(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
	const char *colon, *h = addr;
	size_t n;

	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		h = addr + 1;
		n = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL || strchr(addr, ':') != colon)
			return -1; /* no port, or a bare v6 address */
		n = (size_t)(colon - addr);
	}
	if (n == 0 || n >= hlen || colon[1] == '\0' || strlen(colon + 1) >= plen)
		return -1;
	memcpy(host, h, n);
	host[n] = '\0';
	snprintf(port, plen, "%s", colon + 1);
	return 0;
}

struct metrics_http *metrics_http_start(const char *addr, struct backend *b, char *err,
					size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	struct metrics_http *h = NULL;
	const union MHD_DaemonInfo *info;
	char host[256], port[16];
	unsigned flags;
	int rc, saved;

	if (split_addr(addr, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "\"%s\" is not HOST:PORT or [V6]:PORT", addr);
		goto fail;
	}
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", addr, gai_strerror(rc));
		goto fail;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	h->b = b;
	metrics_note_start();
	/* One internal thread polls every connection: a scrape every few
	 * seconds needs no more, and the gRPC threads are not touched. */
	flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	errno = 0;
	/* the logger first: MHD logs the options that follow it through it */
	/* the port is also given with the address; MHD names it in messages */
	h->d = MHD_start_daemon(flags, (uint16_t)strtoul(port, NULL, 10), NULL, NULL, http_handle,
				h, MHD_OPTION_EXTERNAL_LOGGER, http_log, NULL, MHD_OPTION_SOCK_ADDR,
				ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)32,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
	saved = errno;
	if (h->d == NULL) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr,
			 saved ? strerror(saved) : "see the log above");
		goto fail;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	log_info("metrics: serving http://%s%s%s:%u/metrics", ai->ai_family == AF_INET6 ? "[" : "",
		 host, ai->ai_family == AF_INET6 ? "]" : "", info ? (unsigned)info->port : 0);
	freeaddrinfo(ai);
	return h;
fail:
	if (ai)
		freeaddrinfo(ai);
	free(h);
	return NULL;
}

void metrics_http_stop(struct metrics_http *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}
