/*
 * Prometheus metrics end to end: a daemon with --metrics-listen 127.0.0.1:0
 * and API keys, scraped with a plain HTTP GET over a socket. Checks the
 * exposition format, and that the figures move as a user would expect when
 * executions run, end by a limit or a deadline, are refused, and when the
 * supervisor is killed and restarted. Also --no-metrics, and that an
 * explicit address that cannot be bound stops the daemon.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define EXECUTE "service=\"capibox.v1.SandboxService\",method=\"Execute\""

static struct daemon daemon_;
static char dir[64];
static char keys_path[128];
static char secret[128];
static bool keys_ok;
static unsigned metrics_port;

/* A new key: its line into the keys file, its secret into secret[]. */
static bool keygen(const char *id)
{
	char line[256];
	FILE *f;

	if (!harness_keygen(id, secret, sizeof(secret), line, sizeof(line)))
		return false;
	f = fopen(keys_path, "we");
	if (f == NULL || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0)
		return false;
	chmod(keys_path, 0600);
	return true;
}

/* The port from the daemon's "metrics: serving http://127.0.0.1:PORT/metrics". */
static unsigned metrics_port_of(const struct daemon *d, int timeout_ms)
{
	double end = harness_now() + timeout_ms / 1000.0;

	do {
		char *log = harness_daemon_log(d);
		const char *p = strstr(log, "metrics: serving http://127.0.0.1:");
		unsigned long port = 0;

		if (p != NULL)
			port = strtoul(p + strlen("metrics: serving http://127.0.0.1:"), NULL, 10);
		free(log);
		if (port > 0 && port < 65536)
			return (unsigned)port;
		harness_sleep_ms(20);
	} while (harness_now() < end);
	return 0;
}

static int setup(void **state)
{
	static const char *extra[] = {"--keys", keys_path, "--metrics-listen", "127.0.0.1:0", NULL};
	static struct capibox_connect_opts copts;
	static struct daemon_opts opts = {.uid_slot = 6, .extra = extra};

	*state = &daemon_;
	if (!harness_init() || !keys_ok)
		return 0;
	copts.token = secret;
	opts.client = &copts;
	harness_group_setup(state, &daemon_, &opts);
	if (daemon_.pid > 0)
		metrics_port = metrics_port_of(&daemon_, 5000);
	return 0;
}

/* --- HTTP ------------------------------------------------------------------ */

struct http_reply {
	int status;
	char *head; /* status line and headers */
	char *body;
};

static void http_free(struct http_reply *r)
{
	free(r->head);
	r->head = r->body = NULL;
}

/* method path on 127.0.0.1:port, HTTP/1.1 with Connection: close; -1 on a socket error. */
static int http_request(unsigned port, const char *method, const char *path, struct http_reply *r)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	char req[256], *buf = NULL, *sep;
	size_t len = 0, cap = 0;
	int fd, n;

	memset(r, 0, sizeof(*r));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		printf("connect 127.0.0.1:%u: %s\n", port, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	n = snprintf(req, sizeof(req),
		     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n\r\n", method,
		     path, port);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t got;

		if (len + 4097 > cap) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		got = read(fd, buf + len, cap - len - 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		len += (size_t)got;
	}
	close(fd);
	if (buf == NULL)
		return -1;
	buf[len] = '\0';
	sep = strstr(buf, "\r\n\r\n");
	if (sep == NULL || sscanf(buf, "HTTP/1.1 %d", &r->status) != 1) {
		printf("not an HTTP reply: %.200s\n", buf);
		free(buf);
		return -1;
	}
	*sep = '\0';
	r->head = buf;
	r->body = sep + 4;
	return 0;
}

/* GET /metrics; fails the test unless it answers 200. Caller frees the result. */
static char *scrape(void)
{
	struct http_reply r;

	if (metrics_port == 0)
		fail_msg("the daemon logged no metrics address");
	if (http_request(metrics_port, "GET", "/metrics", &r) != 0 || r.status != 200)
		fail_msg("GET /metrics: status %d", r.status);
	/* body and head share one allocation: move the body to the front */
	memmove(r.head, r.body, strlen(r.body) + 1);
	return r.head;
}

/* The value of the series (name with its labels exactly as exposed), or NAN. */
static double value_of(const char *text, const char *series)
{
	size_t n = strlen(series);
	const char *p = text;

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p += n;
	}
	return NAN;
}

static double scrape_value(const char *series)
{
	char *text = scrape();
	double v = value_of(text, series);

	free(text);
	return v;
}

/* Polls until series reaches want (backend figures settle after the call). */
static bool wait_value(const char *series, double want, int timeout_ms)
{
	double end = harness_now() + timeout_ms / 1000.0;

	do {
		if (scrape_value(series) == want)
			return true;
		harness_sleep_ms(50);
	} while (harness_now() < end);
	return false;
}

/* A counter's value; a status code not seen yet is not listed: 0. */
static double counter_of(const char *text, const char *series)
{
	double v = value_of(text, series);

	return isnan(v) ? 0 : v;
}

#define EXPECT_DELTA(before, after, series, want)                                       \
	do {                                                                            \
		double d_ = counter_of(after, series) - counter_of(before, series);     \
		if (d_ != (want))                                                       \
			fail_msg("%s moved by %g (%g -> %g), expected %g", series, d_,  \
				 counter_of(before, series), counter_of(after, series), \
				 (double)(want));                                       \
	} while (0)

struct expect {
	const char *series;
	double delta;
};

/*
 * Scrapes until every series has moved by its delta since before, for up to
 * 5 s: a call is counted when the server sees its end, which may come a
 * moment after the client has its status. Fails naming what did not move.
 * Returns the last scrape (caller frees).
 */
static char *expect_deltas(const char *before, const struct expect *e, size_t n)
{
	double end = harness_now() + 5.0;
	char *after;
	size_t i;

	for (;;) {
		after = scrape();
		for (i = 0; i < n; i++)
			if (counter_of(after, e[i].series) - counter_of(before, e[i].series) !=
			    e[i].delta)
				break;
		if (i == n)
			return after;
		if (harness_now() >= end)
			break;
		free(after);
		harness_sleep_ms(50);
	}
	for (i = 0; i < n; i++) {
		double b = counter_of(before, e[i].series), a = counter_of(after, e[i].series);

		if (a - b != e[i].delta)
			print_error("%s moved by %g (%g -> %g), expected %g\n", e[i].series, a - b,
				    b, a, e[i].delta);
	}
	free(after);
	fail_msg("metrics did not move as expected (above)");
	return NULL;
}

/* --- tests ------------------------------------------------------------------ */

static int ignore_event(const struct capibox_event *ev, void *arg)
{
	(void)ev;
	(void)arg;
	return 0;
}

/* The name of a series line: up to '{' or ' '. */
static void series_name(const char *line, char *name, size_t len)
{
	size_t i = 0;

	while (line[i] && line[i] != '{' && line[i] != ' ' && i + 1 < len) {
		name[i] = line[i];
		i++;
	}
	name[i] = '\0';
}

static bool family_of(const char *name, const char *family)
{
	size_t n = strlen(family);
	static const char *const suffixes[] = {"", "_bucket", "_sum", "_count"};

	if (strncmp(name, family, n) != 0)
		return false;
	for (size_t i = 0; i < 4; i++)
		if (strcmp(name + n, suffixes[i]) == 0)
			return true;
	return false;
}

static void test_exposition_format(void **state)
{
	struct daemon *d = *state;
	struct http_reply r;
	char *text, *line, *save = NULL, family[128] = "", name[128];
	size_t n_series = 0, n_types = 0;

	HARNESS_REQUIRE(d);
	assert_int_equal(http_request(metrics_port, "GET", "/metrics", &r), 0);
	assert_int_equal(r.status, 200);
	if (strstr(r.head, "text/plain; version=0.0.4") == NULL)
		fail_msg("Content-Type is not the 0.0.4 text format:\n%s", r.head);
	http_free(&r);

	text = scrape();
	/* Each series belongs to the family of the # TYPE line above it, and
	 * its value parses as a number. */
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *sp;
		char *end;

		if (strncmp(line, "# HELP ", 7) == 0)
			continue;
		if (strncmp(line, "# TYPE ", 7) == 0) {
			if (sscanf(line + 7, "%127s", family) != 1)
				fail_msg("bad TYPE line: %s", line);
			n_types++;
			continue;
		}
		series_name(line, name, sizeof(name));
		if (!family_of(name, family))
			fail_msg("series %s is not of the family %s above it", name, family);
		for (const char *c = name; *c; c++)
			if (!isalnum((unsigned char)*c) && *c != '_' && *c != ':')
				fail_msg("bad metric name %s", name);
		sp = strrchr(line, ' ');
		if (sp == NULL)
			fail_msg("no value: %s", line);
		if (strcmp(sp + 1, "+Inf") != 0) {
			strtod(sp + 1, &end);
			if (end == sp + 1 || *end != '\0')
				fail_msg("value does not parse: %s", line);
		}
		n_series++;
	}
	free(text);
	print_message("%zu families, %zu series\n", n_types, n_series);
	assert_true(n_types >= 15);

	text = scrape();
	assert_true(value_of(text, "capibox_build_info{version=\"0.1.0\"}") == 1);
	assert_true(value_of(text, "capibox_start_time_seconds") > 1.6e9);
	assert_true(value_of(text, "capibox_sessions_open") == 0);
	assert_false(
		isnan(value_of(text, "capibox_sandboxes{language=\"python\",state=\"idle\"}")));
	assert_false(isnan(value_of(text, "capibox_sandboxes{language=\"bash\",state=\"busy\"}")));
	free(text);

	assert_int_equal(http_request(metrics_port, "GET", "/nope", &r), 0);
	assert_int_equal(r.status, 404);
	http_free(&r);
	assert_int_equal(http_request(metrics_port, "POST", "/metrics", &r), 0);
	assert_int_equal(r.status, 405);
	http_free(&r);
}

static void test_executions_move_counters(void **state)
{
	struct daemon *d = *state;
	struct capibox_exec_request req = {.language = "python", .code = "print('hello')"};
	struct run r = {0};
	char *before, *after;

	HARNESS_REQUIRE(d);
	before = scrape();
	harness_run(d, &req, &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "hello\n");
	harness_run_free(&r);
	harness_run_code(d, "bash", "echo oops >&2; exit 3", &r);
	assert_run_exited(&r, 3);
	harness_run_free(&r);
	req.code = "import time\ntime.sleep(30)\n";
	req.limits.wall_time_ms = 300;
	harness_run(d, &req, &r);
	if (r.rc != 0 || r.reason != CAPIBOX_REASON_WALL_TIMEOUT) {
		harness_run_print(&r);
		fail_msg("expected REASON_WALL_TIMEOUT");
	}
	harness_run_free(&r);
	after = expect_deltas(
		before,
		(const struct expect[]){
			{"capibox_executions_total{language=\"python\",reason=\"exited\"}", 1},
			{"capibox_executions_total{language=\"python\",reason=\"wall_timeout\"}",
			 1},
			{"capibox_executions_total{language=\"bash\",reason=\"exited\"}", 1},
			{"capibox_execution_duration_seconds_count{language=\"python\"}", 2},
			{"capibox_execution_duration_seconds_count{language=\"bash\"}", 1},
			{"capibox_queue_wait_seconds_count{language=\"python\"}", 2},
			{"capibox_output_bytes_total{stream=\"stdout\"}", 6},
			{"capibox_output_bytes_total{stream=\"stderr\"}", 5},
			{"capibox_rpcs_total{" EXECUTE ",code=\"OK\"}", 3},
			{"capibox_rpc_duration_seconds_count{" EXECUTE "}", 3},
		},
		10);
	/* The timed-out run took at least its 0.3 s of wall time. */
	if (value_of(after, "capibox_execution_duration_seconds_sum{language=\"python\"}") -
		    value_of(before,
			     "capibox_execution_duration_seconds_sum{language=\"python\"}") <
	    0.3)
		fail_msg("execution duration sum grew by less than the 0.3 s timeout");
	/* Buckets are cumulative: both runs are under +Inf, the timed-out one
	 * (at least 0.3 s) not under 0.25. */
	EXPECT_DELTA(before, after,
		     "capibox_execution_duration_seconds_bucket{language=\"python\",le=\"+Inf\"}",
		     2);
	if (counter_of(
		    after,
		    "capibox_execution_duration_seconds_bucket{language=\"python\",le=\"0.25\"}") -
		    counter_of(
			    before,
			    "capibox_execution_duration_seconds_bucket{language=\"python\",le=\"0.25\"}") >
	    1)
		fail_msg("the timed-out run was counted in the le=\"0.25\" bucket");
	free(before);
	free(after);
}

/* Scrapes while the sandbox runs: it shows as busy and live. */
static int scrape_while_running(const struct capibox_event *ev, struct run *r, void *arg)
{
	char **text = arg;

	(void)r;
	if (ev->kind == CAPIBOX_EVENT_STDOUT && *text == NULL)
		*text = scrape();
	return 0;
}

static void test_live_sandboxes(void **state)
{
	struct daemon *d = *state;
	struct capibox_exec_request req = {
		.language = "python",
		.code = "import time\nprint('up', flush=True)\ntime.sleep(1)\n"};
	struct run r = {0};
	char *during = NULL;
	const char *busy = "capibox_sandboxes{language=\"python\",state=\"busy\"}";

	HARNESS_REQUIRE(d);
	r.hook = scrape_while_running;
	r.hook_arg = &during;
	harness_run(d, &req, &r);
	assert_run_exited(&r, 0);
	harness_run_free(&r);
	assert_non_null(during);
	if (value_of(during, busy) < 1 || value_of(during, "capibox_executions_live") < 1)
		fail_msg("while running: busy %g, live %g", value_of(during, busy),
			 value_of(during, "capibox_executions_live"));
	free(during);
	if (!wait_value(busy, 0, 5000) || !wait_value("capibox_executions_live", 0, 5000))
		fail_msg("busy sandboxes or live executions did not return to 0");
}

static void test_refused_calls(void **state)
{
	struct daemon *d = *state;
	struct capibox_connect_opts none = {0}, wrong = {.token = "cbx_wrong"};
	struct capibox_exec_request req = {.language = "python", .code = "print(1)"};
	struct capibox_status st;
	struct capibox_client *c;
	struct raw_result raw;
	struct raw_opts key = {.md_key = "x-api-key", .md_value = secret};
	char err[256], *before, *after;
	int serving;

	HARNESS_REQUIRE(d);
	before = scrape();
	c = capibox_connect(d->addr, &none, err, sizeof(err));
	assert_non_null(c);
	assert_int_equal(capibox_execute(c, &req, ignore_event, NULL, &st),
			 CAPIBOX_UNAUTHENTICATED);
	/* probes need no key */
	assert_int_equal(capibox_health_check(c, "", 5000, &serving, &st), CAPIBOX_OK);
	capibox_close(c);
	c = capibox_connect(d->addr, &wrong, err, sizeof(err));
	assert_non_null(c);
	assert_int_equal(capibox_execute(c, &req, ignore_event, NULL, &st),
			 CAPIBOX_UNAUTHENTICATED);
	capibox_close(c);
	req.code = "";
	assert_int_equal(capibox_execute(d->client, &req, ignore_event, NULL, &st),
			 CAPIBOX_INVALID_ARGUMENT);
	/* Analyze: an empty AnalyzeRequest is zero bytes */
	assert_int_equal(harness_raw_call_opts(d->addr, "/capibox.v1.SandboxService/Analyze", "", 0,
					       5000, &key, &raw),
			 CAPIBOX_INVALID_ARGUMENT);
	harness_raw_free(&raw);
	/* the client's deadline passes while the code runs */
	req.code = "import time\ntime.sleep(20)\n";
	req.deadline_ms = 700;
	assert_int_equal(capibox_execute(d->client, &req, ignore_event, NULL, &st),
			 CAPIBOX_DEADLINE_EXCEEDED);
	after = expect_deltas(
		before,
		(const struct expect[]){
			{"capibox_auth_failures_total{reason=\"missing_key\"}", 1},
			{"capibox_auth_failures_total{reason=\"invalid_key\"}", 1},
			{"capibox_rpcs_total{" EXECUTE ",code=\"UNAUTHENTICATED\"}", 2},
			{"capibox_rpcs_total{" EXECUTE ",code=\"INVALID_ARGUMENT\"}", 1},
			{"capibox_rpcs_total{" EXECUTE ",code=\"DEADLINE_EXCEEDED\"}", 1},
			{"capibox_rpcs_total{service=\"capibox.v1.SandboxService\",method=\"Analyze\","
			 "code=\"INVALID_ARGUMENT\"}",
			 1},
			{"capibox_rpcs_total{service=\"grpc.health.v1.Health\",method=\"Check\","
			 "code=\"OK\"}",
			 1},
			/* the deadline cancelled the run: it still finished */
			{"capibox_executions_total{language=\"python\",reason=\"cancelled\"}", 1},
			/* refused calls start no execution */
			{"capibox_executions_total{language=\"python\",reason=\"exited\"}", 0},
		},
		9);
	free(before);
	free(after);
}

/* Pid of the daemon's supervisor: its child running "capiboxd: supervisor". */
static pid_t supervisor_of(pid_t daemon_pid)
{
	DIR *proc = opendir("/proc");
	struct dirent *de;
	pid_t found = 0;

	assert_non_null(proc);
	while (found == 0 && (de = readdir(proc)) != NULL) {
		char path[300], buf[512];
		FILE *f;
		long ppid = -1;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/status", de->d_name);
		f = fopen(path, "re");
		if (f == NULL)
			continue;
		while (fgets(buf, sizeof(buf), f))
			if (sscanf(buf, "PPid: %ld", &ppid) == 1)
				break;
		fclose(f);
		if (ppid != daemon_pid)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
		f = fopen(path, "re");
		if (f == NULL)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		if (strstr(buf, "supervisor") != NULL)
			found = (pid_t)strtol(de->d_name, NULL, 10);
	}
	closedir(proc);
	return found;
}

/*
 * Removes (empty) sandbox cgroups supervisor pid left behind, saying how
 * many: a restarted supervisor's pool has left its groups at capiboxd's exit
 * (a known bug, reported); the next start would clean them, this test does.
 */
static void cgroups_left_by(pid_t pid)
{
	char pattern[2][96];
	size_t n = 0;

	snprintf(pattern[0], sizeof(pattern[0]), "/sys/fs/cgroup/*/capibox/sb-%ld-*", (long)pid);
	snprintf(pattern[1], sizeof(pattern[1]), "/sys/fs/cgroup/capibox/sb-%ld-*", (long)pid);
	for (int i = 0; i < 2; i++) {
		glob_t g;

		if (pid <= 0 || glob(pattern[i], 0, NULL, &g) != 0)
			continue;
		for (size_t k = 0; k < g.gl_pathc; k++)
			if (rmdir(g.gl_pathv[k]) == 0)
				n++;
		globfree(&g);
	}
	if (n > 0)
		print_message("note: %zu sandbox cgroup directories of the restarted supervisor "
			      "were left after capiboxd exited; removed\n",
			      n);
}

/*
 * On a daemon of its own: killing the supervisor must not make the main
 * daemon's last test (nothing left in its uid range 2 s after exit) depend
 * on how a restarted supervisor's sandboxes are torn down.
 */
static void test_supervisor_restart(void **state)
{
	static const char *extra[] = {"--metrics-listen", "127.0.0.1:0", NULL};
	struct daemon_opts opts = {.uid_slot = 5, .extra = extra};
	const char *series = "capibox_supervisor_restarts_total{backend=\"local\"}";
	unsigned main_port = metrics_port;
	struct daemon other;
	struct run r = {0};
	double before, t0;
	pid_t sup;
	size_t left;

	HARNESS_REQUIRE((struct daemon *)*state);
	assert_int_equal(harness_daemon_start(&other, &opts), 0);
	metrics_port = metrics_port_of(&other, 5000); /* scrape() reads it */
	before = scrape_value(series);
	assert_true(before == 0);
	sup = supervisor_of(other.pid);
	if (sup <= 0)
		fail_msg("no supervisor child of capiboxd %ld", (long)other.pid);
	assert_int_equal(kill(sup, SIGKILL), 0);
	if (!wait_value(series, before + 1, 10000))
		fail_msg("%s did not become %g after killing the supervisor (now %g)", series,
			 before + 1, scrape_value(series));
	/* and the service goes on */
	harness_run_code(&other, "python", "print(2)", &r);
	assert_run_exited(&r, 0);
	harness_run_free(&r);
	metrics_port = main_port;
	sup = supervisor_of(other.pid); /* the new one */

	assert_int_equal(harness_daemon_stop(&other), 0);
	/* Measured here: a restarted supervisor's sandboxes have outlived
	 * capiboxd's exit by 1.2-1.8 s (without a restart: 20 ms). */
	t0 = harness_now();
	while ((left = harness_procs_in_uid_range(
			other.uid_base, other.uid_base + HARNESS_UID_COUNT, NULL, 0)) > 0 &&
	       harness_now() - t0 < 10)
		harness_sleep_ms(20);
	print_message("sandboxes of the restarted supervisor gone %.2f s after capiboxd exited\n",
		      harness_now() - t0);
	assert_int_equal(left, 0);
	cgroups_left_by(sup);
}

static void test_no_metrics_flag(void **state)
{
	static const char *off[] = {"--no-metrics", NULL};
	struct daemon_opts opts = {.uid_slot = 5, .extra = off};
	struct daemon other;
	char *log;

	HARNESS_REQUIRE((struct daemon *)*state);
	assert_int_equal(harness_daemon_start(&other, &opts), 0);
	harness_sleep_ms(200);
	log = harness_daemon_log(&other);
	if (strstr(log, "metrics:") != NULL)
		fail_msg("--no-metrics, yet the log mentions metrics:\n%s", log);
	free(log);
	assert_int_equal(harness_daemon_stop(&other), 0);
}

static void test_explicit_address_taken_is_fatal(void **state)
{
	char addr[64];
	const char *taken[] = {"--metrics-listen", addr, NULL};
	struct daemon_opts opts = {.uid_slot = 5, .extra = taken};
	struct daemon other;
	char *log;

	HARNESS_REQUIRE((struct daemon *)*state);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", metrics_port);
	print_message("(a daemon that must refuse to start; its log follows)\n");
	/* it must fail before it serves: no ready file, exit status 1 */
	assert_int_equal(harness_daemon_start(&other, &opts), -1);
	assert_true(other.exited);
	assert_true(WIFEXITED(other.status) && WEXITSTATUS(other.status) == 1);
	log = harness_daemon_log(&other);
	if (strstr(log, "--metrics-listen") == NULL)
		fail_msg("the log does not name --metrics-listen:\n%s", log);
	free(log);
}

/* The default address is best effort: taken, the daemon starts without metrics. */
static void test_default_address_taken_warns(void **state)
{
	static const char *none[] = {NULL};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(9464)};
	struct daemon_opts opts = {.uid_slot = 5, .extra = none};
	struct daemon other;
	char *log;
	int fd, one = 1;

	HARNESS_REQUIRE((struct daemon *)*state);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
		/* someone else holds it, and may let go at any moment */
		close(fd);
		print_message("SKIP: 127.0.0.1:9464 is in use by another process\n");
		skip();
	}
	if (harness_daemon_start(&other, &opts) != 0) {
		close(fd);
		fail_msg("capiboxd did not start with the default metrics address taken");
	}
	close(fd);
	log = harness_daemon_log(&other);
	if (strstr(log, "serving without metrics") == NULL)
		fail_msg("no warning about the metrics address:\n%s", log);
	free(log);
	assert_int_equal(harness_daemon_stop(&other), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exposition_format),
		cmocka_unit_test(test_executions_move_counters),
		cmocka_unit_test(test_live_sandboxes),
		cmocka_unit_test(test_refused_calls),
		cmocka_unit_test(test_supervisor_restart),
		cmocka_unit_test(test_no_metrics_flag),
		cmocka_unit_test(test_explicit_address_taken_is_fatal),
		cmocka_unit_test(test_default_address_taken_warns),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	/* Before any gRPC thread: keygen runs as a child process. */
	if (harness_init()) {
		snprintf(dir, sizeof(dir), "/tmp/capibox-metrics-XXXXXX");
		if (mkdtemp(dir) == NULL)
			return 1;
		harness_remove_at_finish(dir);
		snprintf(keys_path, sizeof(keys_path), "%s/keys", dir);
		keys_ok = keygen("metrics-test");
		if (!keys_ok)
			return 1;
	}
	rc = cmocka_run_group_tests_name("metrics", tests, setup, harness_group_teardown);
	return harness_finish(rc);
}
