/*
 * API keys end to end: keys made by `capiboxd keygen`, a daemon with --keys,
 * and clients with no key, a wrong key, "authorization: Bearer" and
 * "x-api-key"; grpc.health.v1 open to probes; per-key languages, limits and
 * concurrency; SIGHUP reload (a broken file keeps the old keys); secrets
 * never in the log or the sandbox; a non-loopback address with keys.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "capibox/v1/sandbox.pb-c.h"
#include "harness.h"

static struct daemon daemon_;
static char keys_path[128];
static char dir[64];

struct key {
	char secret[128];
	char line[256]; /* "id hash", no newline */
};
static struct key k_admin, k_router, k_late;
static bool keys_ok;

static bool keygen(const char *id, struct key *k)
{
	return harness_keygen(id, k->secret, sizeof(k->secret), k->line, sizeof(k->line));
}

static void keys_write(const char *content)
{
	char tmp[160];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", keys_path);
	f = fopen(tmp, "we");
	if (f == NULL || fputs(content, f) < 0 || fclose(f) != 0)
		fail_msg("cannot write %s", tmp);
	chmod(tmp, 0600);
	if (rename(tmp, keys_path) != 0)
		fail_msg("rename %s", tmp);
}

/* The keys file of the group: admin without limits, router with all kinds. */
static void keys_write_default(bool with_late)
{
	char buf[1024];

	snprintf(buf, sizeof(buf),
		 "# test keys\n"
		 "%s\n"
		 "%s concurrent=1 languages=python,bash wall_time_ms=3000\n"
		 "%s%s\n",
		 k_admin.line, k_router.line, with_late ? k_late.line : "# ",
		 with_late ? "" : "late key not yet");
	keys_write(buf);
}

static int setup(void **state)
{
	static const char *extra[] = {"--keys", keys_path, NULL};
	static struct capibox_connect_opts copts;
	static struct daemon_opts opts = {.uid_slot = 7, .extra = extra};

	*state = &daemon_;
	if (!harness_init() || !keys_ok)
		return 0;
	copts.token = k_admin.secret;
	opts.client = &copts;
	keys_write_default(false);
	return harness_group_setup(state, &daemon_, &opts);
}

/* A client of d with the given token (NULL: none). */
static struct capibox_client *client_with(struct daemon *d, const char *token)
{
	struct capibox_connect_opts o = {.token = token};
	char err[256];
	struct capibox_client *c = capibox_connect(d->addr, &o, err, sizeof(err));

	if (c == NULL)
		fail_msg("capibox_connect: %s", err);
	return c;
}

static int ignore_event(const struct capibox_event *ev, void *arg)
{
	(void)ev;
	(void)arg;
	return 0;
}

struct collect {
	char out[4096];
	size_t len;
	int reason;
};

static int collect_event(const struct capibox_event *ev, void *arg)
{
	struct collect *c = arg;

	if (ev->kind == CAPIBOX_EVENT_STDOUT && c->len + ev->u.output.len < sizeof(c->out)) {
		memcpy(c->out + c->len, ev->u.output.data, ev->u.output.len);
		c->len += ev->u.output.len;
	}
	if (ev->kind == CAPIBOX_EVENT_FINISHED)
		c->reason = ev->u.finished.reason;
	return 0;
}

/* Runs code with token; returns the status code, output and reason in *col. */
static int run_as(struct daemon *d, const char *token, const char *lang, const char *code,
		  const struct capibox_limits *lim, struct collect *col, struct capibox_status *st)
{
	struct capibox_client *c = client_with(d, token);
	struct capibox_exec_request req = {.language = lang, .code = code, .deadline_ms = 30000};
	int rc;

	if (lim)
		req.limits = *lim;
	memset(col, 0, sizeof(*col));
	rc = capibox_execute(c, &req, collect_event, col, st);
	capibox_close(c);
	return rc;
}

#define EXPECT_CODE(rc, st, want, needle)                                                        \
	do {                                                                                     \
		if ((rc) != (want) || strstr((st)->message, (needle)) == NULL)                   \
			fail_msg("expected %s with \"%s\", got %s: %s", capibox_code_name(want), \
				 (needle), capibox_code_name(rc), (st)->message);                \
		print_message("%s: %s\n", capibox_code_name(rc), (st)->message);                 \
	} while (0)

static void test_no_key(void **state)
{
	struct daemon *d = *state;
	struct capibox_client *c;
	struct capibox_exec_request req = {.language = "python", .code = "print(1)"};
	struct capibox_status st;
	struct capibox_health *h = NULL;
	int rc, serving = 0;

	HARNESS_REQUIRE(d);
	c = client_with(d, NULL);
	rc = capibox_execute(c, &req, ignore_event, NULL, &st);
	EXPECT_CODE(rc, &st, CAPIBOX_UNAUTHENTICATED, "missing API key");
	rc = capibox_health(c, false, 5000, &h, &st);
	EXPECT_CODE(rc, &st, CAPIBOX_UNAUTHENTICATED, "missing API key");
	/* Probes carry no secrets: the standard health service stays open. */
	rc = capibox_health_check(c, "", 5000, &serving, &st);
	if (rc != CAPIBOX_OK || serving != 1)
		fail_msg("grpc.health.v1 Check without a key: %s %s, status %d",
			 capibox_code_name(rc), st.message, serving);
	capibox_close(c);
}

static void test_wrong_key(void **state)
{
	struct daemon *d = *state;
	struct collect col;
	struct capibox_status st;
	struct raw_result r;
	struct raw_opts o = {.md_key = "authorization", .md_value = "Basic YWRtaW46YWRtaW4="};
	int rc;

	HARNESS_REQUIRE(d);
	rc = run_as(d, "cbx_0000000000000000000000000000000000000000000000000000000000000000",
		    "python", "print(1)", NULL, &col, &st);
	EXPECT_CODE(rc, &st, CAPIBOX_UNAUTHENTICATED, "invalid API key");
	/* Another scheme never matches, even with a valid secret inside. */
	rc = harness_raw_call_opts(d->addr, "/capibox.v1.SandboxService/Health", "", 0, 5000, &o,
				   &r);
	if (rc != CAPIBOX_UNAUTHENTICATED)
		fail_msg("authorization: Basic: expected UNAUTHENTICATED, got %d: %s", rc,
			 r.message);
	harness_raw_free(&r);
}

static void test_bearer_runs(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	harness_run_code(d, "python", "print(6*7)", &r); /* the group client: admin's token */
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "42\n");
	harness_run_free(&r);
}

static void test_x_api_key(void **state)
{
	struct daemon *d = *state;
	Capibox__V1__ExecuteRequest req = CAPIBOX__V1__EXECUTE_REQUEST__INIT;
	struct raw_opts o = {.md_key = "x-api-key", .md_value = k_router.secret};
	struct raw_result r;
	uint8_t buf[256];
	size_t len;

	HARNESS_REQUIRE(d);
	req.language = "python";
	req.code = "print('via x-api-key')";
	len = capibox__v1__execute_request__pack(&req, buf);
	if (harness_raw_call_opts(d->addr, "/capibox.v1.SandboxService/Execute", buf, len, 30000,
				  &o, &r) != 0 ||
	    r.n_messages < 3)
		fail_msg("x-api-key Execute: status %d (%s), %d messages", r.code, r.message,
			 r.n_messages);
	harness_raw_free(&r);
}

static void test_key_language(void **state)
{
	struct daemon *d = *state;
	struct collect col;
	struct capibox_status st;
	int rc;

	HARNESS_REQUIRE(d);
	rc = run_as(d, k_router.secret, "javascript", "console.log(1)", NULL, &col, &st);
	EXPECT_CODE(rc, &st, CAPIBOX_PERMISSION_DENIED, "language \"javascript\"");
	rc = run_as(d, k_router.secret, "bash", "echo ok", NULL, &col, &st);
	if (rc != 0 || strcmp(col.out, "ok\n") != 0)
		fail_msg("bash with router's key: %s %s, stdout \"%s\"", capibox_code_name(rc),
			 st.message, col.out);
}

static void test_key_limits(void **state)
{
	struct daemon *d = *state;
	struct capibox_limits lim = {.wall_time_ms = 10000};
	struct collect col;
	struct capibox_status st;
	double t0;
	int rc;

	HARNESS_REQUIRE(d);
	rc = run_as(d, k_router.secret, "python", "print(1)", &lim, &col, &st);
	EXPECT_CODE(rc, &st, CAPIBOX_RESOURCE_EXHAUSTED, "limits.wall_time_ms");
	/* A limit left to the default is lowered to the key's maximum (3 s). */
	t0 = harness_now();
	rc = run_as(d, k_router.secret, "python", "import time; time.sleep(20)", NULL, &col, &st);
	if (rc != 0 || col.reason != CAPIBOX_REASON_WALL_TIMEOUT || harness_now() - t0 > 10)
		fail_msg("router's default wall time: %s (%s), reason %s after %.1f s",
			 capibox_code_name(rc), st.message, capibox_reason_name(col.reason),
			 harness_now() - t0);
	/* The admin key has no maxima of its own: the server's apply. */
	rc = run_as(d, k_admin.secret, "python", "print(1)", &lim, &col, &st);
	if (rc != 0)
		fail_msg("admin with wall_time_ms 10000: %s %s", capibox_code_name(rc), st.message);
}

struct bg {
	struct daemon *d;
	int rc;
	struct collect col;
	struct capibox_status st;
};

static void *bg_run(void *arg)
{
	struct bg *b = arg;

	b->rc = run_as(b->d, k_router.secret, "python",
		       "import time; print('a', flush=True); time.sleep(2)", NULL, &b->col, &b->st);
	return NULL;
}

static void test_key_concurrency(void **state)
{
	struct daemon *d = *state;
	struct bg b = {.d = d};
	struct collect col;
	struct capibox_status st;
	pthread_t t;
	int rc;

	HARNESS_REQUIRE(d);
	pthread_create(&t, NULL, bg_run, &b);
	harness_sleep_ms(1000); /* the background run holds router's one slot */
	rc = run_as(d, k_router.secret, "python", "print(1)", NULL, &col, &st);
	EXPECT_CODE(rc, &st, CAPIBOX_RESOURCE_EXHAUSTED, "concurrent=1");
	/* Other keys are not affected. */
	rc = run_as(d, k_admin.secret, "python", "print(1)", NULL, &col, &st);
	if (rc != 0)
		fail_msg("admin while router is at its limit: %s %s", capibox_code_name(rc),
			 st.message);
	pthread_join(t, NULL);
	if (b.rc != 0)
		fail_msg("the background run failed: %s", b.st.message);
	/* The slot is free again once the run finished. */
	rc = run_as(d, k_router.secret, "python", "print(1)", NULL, &col, &st);
	if (rc != 0)
		fail_msg("router after its run ended: %s %s", capibox_code_name(rc), st.message);
}

/* Waits until the daemon's log holds needle at least n times. */
static bool log_wait(struct daemon *d, const char *needle, int n, int ms)
{
	double end = harness_now() + ms / 1000.0;

	do {
		char *log = harness_daemon_log(d), *p = log;
		int found = 0;

		while ((p = strstr(p, needle)) != NULL) {
			found++;
			p++;
		}
		free(log);
		if (found >= n)
			return true;
		harness_sleep_ms(50);
	} while (harness_now() < end);
	return false;
}

static void test_reload(void **state)
{
	struct daemon *d = *state;
	struct collect col;
	struct capibox_status st;
	int rc;

	HARNESS_REQUIRE(d);
	rc = run_as(d, k_late.secret, "python", "print(1)", NULL, &col, &st);
	EXPECT_CODE(rc, &st, CAPIBOX_UNAUTHENTICATED, "invalid API key");

	keys_write_default(true);
	harness_daemon_signal(d, SIGHUP);
	if (!log_wait(d, "reload: 3 API keys loaded", 1, 5000))
		fail_msg("no reload logged after SIGHUP");
	rc = run_as(d, k_late.secret, "python", "print(1)", NULL, &col, &st);
	if (rc != 0)
		fail_msg("the key added by SIGHUP: %s %s", capibox_code_name(rc), st.message);

	/* A broken file keeps what was loaded, and says where it is broken. */
	keys_write("late-only 1234\n");
	harness_daemon_signal(d, SIGHUP);
	if (!log_wait(d, "keeping the previous API keys", 1, 5000))
		fail_msg("a broken keys file was not reported");
	if (!log_wait(d, ":1: key late-only: the second field is not a SHA-256", 1, 100))
		fail_msg("the reload error does not name file, line and problem");
	rc = run_as(d, k_late.secret, "python", "print(1)", NULL, &col, &st);
	if (rc != 0)
		fail_msg("old keys after a broken reload: %s %s", capibox_code_name(rc),
			 st.message);
	keys_write_default(false);
	harness_daemon_signal(d, SIGHUP);
	if (!log_wait(d, "reload: 2 API keys loaded", 1, 5000))
		fail_msg("no reload logged after SIGHUP");
	rc = run_as(d, k_late.secret, "python", "print(1)", NULL, &col, &st);
	EXPECT_CODE(rc, &st, CAPIBOX_UNAUTHENTICATED, "invalid API key");
}

static void test_secrets_stay_secret(void **state)
{
	struct daemon *d = *state;
	struct collect col;
	struct capibox_status st;
	char *log;
	int rc;

	HARNESS_REQUIRE(d);
	/* Whatever the sandbox can see of its environment and process. */
	rc = run_as(d, k_admin.secret, "bash",
		    "env; cat /proc/self/environ /proc/1/environ 2>/dev/null | tr '\\0' '\\n'",
		    NULL, &col, &st);
	if (rc != 0)
		fail_msg("env run: %s", st.message);
	if (strstr(col.out, "cbx_") != NULL || strstr(col.out, k_admin.secret) != NULL)
		fail_msg("the sandbox sees an API key:\n%s", col.out);
	log = harness_daemon_log(d);
	if (strstr(log, k_admin.secret) || strstr(log, k_router.secret) ||
	    strstr(log, k_late.secret) || strstr(log, "cbx_")) {
		free(log);
		fail_msg("a secret appears in the daemon's log");
	}
	if (strstr(log, "refused: no key") == NULL || strstr(log, "refused: unknown key") == NULL) {
		free(log);
		fail_msg("authentication failures are not logged");
	}
	free(log);
}

static void test_remote_with_keys(void **state)
{
	static const char *extra[3] = {"--keys", NULL, NULL};
	struct capibox_connect_opts copts = {.token = k_admin.secret};
	struct daemon_opts opts = {
		.uid_slot = 6, .extra = extra, .listen = "0.0.0.0:0", .client = &copts};
	struct daemon d2;
	char *log;
	int rc, serving = 0;
	struct capibox_status st;

	HARNESS_REQUIRE((struct daemon *)*state);
	extra[1] = keys_path;
	if (harness_daemon_start(&d2, &opts) != 0)
		fail_msg("capiboxd on 0.0.0.0 with --keys did not start");
	rc = capibox_health_check(d2.client, "", 5000, &serving, &st);
	log = harness_daemon_log(&d2);
	if (strstr(log, "NOT authenticated") != NULL) {
		free(log);
		fail_msg("with --keys the daemon must not warn about unauthenticated requests");
	}
	free(log);
	rc = harness_daemon_stop(&d2);
	if (rc != 0)
		fail_msg("second daemon exit status %d", rc);
	(void)serving;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_key),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_bearer_runs),
		cmocka_unit_test(test_x_api_key),
		cmocka_unit_test(test_key_language),
		cmocka_unit_test(test_key_limits),
		cmocka_unit_test(test_key_concurrency),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_secrets_stay_secret),
		cmocka_unit_test(test_remote_with_keys),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	/* Before any gRPC thread: keygen runs as a child process. */
	if (harness_init()) {
		snprintf(dir, sizeof(dir), "/tmp/capibox-auth-XXXXXX");
		if (mkdtemp(dir) == NULL)
			return 1;
		harness_remove_at_finish(dir);
		snprintf(keys_path, sizeof(keys_path), "%s/keys", dir);
		keys_ok = keygen("admin", &k_admin) && keygen("router", &k_router) &&
			  keygen("late", &k_late);
		if (!keys_ok)
			return 1;
	}
	rc = cmocka_run_group_tests_name("auth", tests, setup, harness_group_teardown);
	return harness_finish(rc);
}
