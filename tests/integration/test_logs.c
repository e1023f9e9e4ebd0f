/*
 * Structured logs: a daemon with --log-format json and API keys. Every line
 * the front writes is one JSON object with time, level, role, pid and msg;
 * each call leaves one "rpc" record with its method, status, duration, peer,
 * key id, request id and, for Execute, the language, reason, durations and
 * byte counts. Code, output, environment values and secrets never appear.
 * Text stays the default, and an unknown format is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

#define EXECUTE "/capibox.v1.SandboxService/Execute"

/* Strings that must never reach the log. */
#define CODE_MARK "code_mark_7f3a"
#define OUTPUT_MARK "output_mark_91bc"
#define ENV_MARK "env_value_mark_55d2"
#define WRONG_SECRET "cbx_wrong_secret_mark_0e4f"

static struct daemon daemon_;
static char dir[64];
static char keys_path[128];
static char audit_path[128];
static char secret[128];
static bool keys_ok;

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

static int setup(void **state)
{
	static const char *extra[] = {"--keys",	      keys_path,     "--log-format", "json",
				      "--no-metrics", "--audit-log", audit_path,     NULL};
	static struct capibox_connect_opts copts;
	static struct daemon_opts opts = {.uid_slot = 3, .extra = extra};

	*state = &daemon_;
	if (!harness_init() || !keys_ok)
		return 0;
	copts.token = secret;
	opts.client = &copts;
	return harness_group_setup(state, &daemon_, &opts);
}

static int ignore_event(const struct capibox_event *ev, void *arg)
{
	(void)ev;
	(void)arg;
	return 0;
}

/* --- reading the log ------------------------------------------------------- */

struct records {
	json_object **v;
	size_t n;
};

static void records_free(struct records *r)
{
	for (size_t i = 0; i < r->n; i++)
		json_object_put(r->v[i]);
	free(r->v);
	r->v = NULL;
	r->n = 0;
}

static const char *str_of(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static bool has(json_object *o, const char *key) { return json_object_object_get_ex(o, key, NULL); }

static int64_t int_of(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("record has no \"%s\": %s", key, json_object_to_json_string(o));
	return json_object_get_int64(v);
}

/*
 * Parses the daemon's log: every line of the front must be a JSON object
 * with time, level, role, pid and msg. The supervisor is started with an
 * empty environment and logs text (a known gap); its lines are skipped.
 * Fills out with every object.
 */
static void log_parse(const struct daemon *d, struct records *out)
{
	char *log = harness_daemon_log(d), *line, *save = NULL;

	memset(out, 0, sizeof(*out));
	for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_object *o;

		if (line[0] != '{') {
			if (strstr(line, " supervisor[") == NULL)
				fail_msg("a front line that is not JSON: %s", line);
			continue;
		}
		o = json_tokener_parse(line);
		if (o == NULL || !json_object_is_type(o, json_type_object))
			fail_msg("a line that does not parse as a JSON object: %s", line);
		if (str_of(o, "time") == NULL || str_of(o, "level") == NULL ||
		    str_of(o, "role") == NULL || !has(o, "pid") || str_of(o, "msg") == NULL)
			fail_msg("a line without time, level, role, pid or msg: %s", line);
		out->v = realloc(out->v, (out->n + 1) * sizeof(*out->v));
		assert_non_null(out->v);
		out->v[out->n++] = o;
	}
	free(log);
}

/* The "rpc" records whose key equals value (NULL: any), counted; the first in *first. */
static size_t rpc_records(const struct records *r, const char *key, const char *value,
			  json_object **first)
{
	size_t n = 0;

	*first = NULL;
	for (size_t i = 0; i < r->n; i++) {
		const char *msg = str_of(r->v[i], "msg"), *v = key ? str_of(r->v[i], key) : NULL;

		if (strcmp(msg, "rpc") != 0 || (key && (v == NULL || strcmp(v, value) != 0)))
			continue;
		if (n++ == 0)
			*first = r->v[i];
	}
	return n;
}

/*
 * Waits up to 5 s for exactly one rpc record with key = value (a call is
 * logged when the server sees its end, a moment after the client) and
 * returns it; r holds the parsed log (caller frees).
 */
static json_object *one_record(const struct daemon *d, const char *key, const char *value,
			       struct records *r)
{
	double end = harness_now() + 5.0;
	json_object *o;
	size_t n;

	for (;;) {
		log_parse(d, r);
		n = rpc_records(r, key, value, &o);
		if (n >= 1 || harness_now() >= end)
			break;
		records_free(r);
		harness_sleep_ms(50);
	}
	if (n != 1)
		fail_msg("%zu rpc records with %s=\"%s\", expected 1", n, key, value);
	print_message("%s\n", json_object_to_json_string_ext(
				      o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	return o;
}

#define EXPECT_STR(o, key, want)                                                             \
	do {                                                                                 \
		const char *v_ = str_of(o, key);                                             \
		if (v_ == NULL || strcmp(v_, want) != 0)                                     \
			fail_msg("\"%s\" is %s, expected \"%s\"", key, v_ ? v_ : "(absent)", \
				 want);                                                      \
	} while (0)

/* --- tests ------------------------------------------------------------------- */

static void test_execute_record(void **state)
{
	struct daemon *d = *state;
	struct capibox_env env = {.name = "MY_TOKEN", .value = ENV_MARK};
	struct capibox_exec_request req = {
		.language = "python",
		.code = "import os\nx = '" CODE_MARK "'\nprint('" OUTPUT_MARK "')\n"
			"print(len(os.environ['MY_TOKEN']), file=__import__('sys').stderr)\n",
		.env = &env,
		.n_env = 1,
		.request_id = "req-logs-1",
	};
	struct records r;
	struct run run = {0};
	json_object *o;

	HARNESS_REQUIRE(d);
	harness_run(d, &req, &run);
	assert_run_exited(&run, 0);
	assert_run_stdout(&run, OUTPUT_MARK "\n");
	harness_run_free(&run);

	o = one_record(d, "request_id", "req-logs-1", &r);
	EXPECT_STR(o, "level", "info");
	EXPECT_STR(o, "role", "capiboxd");
	EXPECT_STR(o, "method", EXECUTE);
	EXPECT_STR(o, "status", "OK");
	assert_int_equal(int_of(o, "status_code"), 0);
	EXPECT_STR(o, "key", "logs-test");
	EXPECT_STR(o, "language", "python");
	EXPECT_STR(o, "reason", "exited");
	assert_int_equal(int_of(o, "exit_code"), 0);
	assert_int_equal(int_of(o, "stdout_bytes"), strlen(OUTPUT_MARK "\n"));
	assert_int_equal(int_of(o, "stderr_bytes"), 3); /* "19\n" */
	if (strncmp(str_of(o, "peer") ? str_of(o, "peer") : "", "ipv4:127.0.0.1:", 15) != 0)
		fail_msg("peer is not the loopback client");
	assert_true(int_of(o, "wall_time_us") > 0);
	assert_true(int_of(o, "duration_us") >= int_of(o, "wall_time_us"));
	assert_true(has(o, "start_us") && has(o, "queued_us") && has(o, "sandbox_id"));
	assert_false(has(o, "error"));
	records_free(&r);
}

/*
 * --audit-log: one JSON line per execution with the code's SHA-256 (not the
 * code: --audit-code is off), the key, limits, reason and timings.
 */
static void test_audit_record(void **state)
{
	struct daemon *d = *state;
	/* sha256 of the code below, from `printf 'print(6 * 7)\n' | sha256sum` */
	const char *code = "print(6 * 7)\n";
	const char *sha = "e10d13ee6beb328301b03cd6651a69e7c0b475c9559e6bf9f3dde151dc373eeb";
	struct capibox_exec_request req = {
		.language = "python", .code = code, .request_id = "req-audit-1"};
	struct run run = {0};
	json_object *o = NULL;
	double end;
	char *text = NULL;

	HARNESS_REQUIRE(d);
	harness_run(d, &req, &run);
	assert_run_exited(&run, 0);
	harness_run_free(&run);
	/* written by the audit log's own thread, a moment after the call */
	for (end = harness_now() + 5.0; o == NULL && harness_now() < end; harness_sleep_ms(50)) {
		FILE *f = fopen(audit_path, "re");
		char line[8192];

		while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
			json_object *x = json_tokener_parse(line);
			const char *rid = x ? str_of(x, "request_id") : NULL;

			if (rid != NULL && strcmp(rid, "req-audit-1") == 0) {
				o = x;
				free(text);
				text = strdup(line);
				break;
			}
			json_object_put(x);
		}
		if (f)
			fclose(f);
	}
	if (o == NULL)
		fail_msg("no audit record for req-audit-1 in %s", audit_path);
	print_message("%s", text);
	EXPECT_STR(o, "rpc", "Execute");
	EXPECT_STR(o, "language", "python");
	EXPECT_STR(o, "key", "logs-test");
	EXPECT_STR(o, "code_sha256", sha);
	EXPECT_STR(o, "reason", "REASON_EXITED");
	assert_int_equal(int_of(o, "code_bytes"), strlen(code));
	assert_true(has(o, "limits") && has(o, "wall_time_us") && has(o, "sandbox_id"));
	assert_false(has(o, "code")); /* the text only with --audit-code */
	assert_true(strstr(text, "6 * 7") == NULL);
	assert_true(strstr(text, secret) == NULL);
	free(text);
	json_object_put(o);
}

static void test_refused_and_other_calls(void **state)
{
	struct daemon *d = *state;
	struct capibox_connect_opts none = {0}, wrong = {.token = WRONG_SECRET};
	struct capibox_exec_request req = {.language = "python", .code = "print(1)"};
	struct capibox_status st;
	struct capibox_client *c;
	struct raw_result raw;
	struct records r;
	char err[256];
	json_object *o;
	int serving;

	HARNESS_REQUIRE(d);
	c = capibox_connect(d->addr, &none, err, sizeof(err));
	assert_non_null(c);
	req.request_id = "req-logs-nokey";
	assert_int_equal(capibox_execute(c, &req, ignore_event, NULL, &st),
			 CAPIBOX_UNAUTHENTICATED);
	assert_int_equal(capibox_health_check(c, "", 5000, &serving, &st), CAPIBOX_OK);
	capibox_close(c);
	c = capibox_connect(d->addr, &wrong, err, sizeof(err));
	assert_non_null(c);
	req.request_id = "req-logs-wrongkey";
	assert_int_equal(capibox_execute(c, &req, ignore_event, NULL, &st),
			 CAPIBOX_UNAUTHENTICATED);
	capibox_close(c);
	req.request_id = "req-logs-invalid";
	req.language = "cobol";
	assert_int_equal(capibox_execute(d->client, &req, ignore_event, NULL, &st),
			 CAPIBOX_INVALID_ARGUMENT);
	req.request_id = "req-logs-deadline";
	req.language = "python";
	req.code = "import time\ntime.sleep(20)\n";
	req.deadline_ms = 700;
	assert_int_equal(capibox_execute(d->client, &req, ignore_event, NULL, &st),
			 CAPIBOX_DEADLINE_EXCEEDED);
	assert_int_equal(harness_raw_call(d->addr, "/no.such.Service/Nope", "", 0, 5000, &raw),
			 CAPIBOX_UNIMPLEMENTED);
	harness_raw_free(&raw);

	/* The request id is read after authentication: refused calls have none. */
	o = one_record(d, "method", "/no.such.Service/Nope", &r);
	EXPECT_STR(o, "status", "UNIMPLEMENTED");
	records_free(&r);

	o = one_record(d, "request_id", "req-logs-invalid", &r);
	EXPECT_STR(o, "status", "INVALID_ARGUMENT");
	assert_int_equal(int_of(o, "status_code"), 3);
	if (strstr(str_of(o, "error") ? str_of(o, "error") : "", "cobol") == NULL)
		fail_msg("the error does not say which language");
	assert_false(has(o, "reason")); /* nothing ran */
	records_free(&r);

	o = one_record(d, "request_id", "req-logs-deadline", &r);
	EXPECT_STR(o, "status", "DEADLINE_EXCEEDED");
	EXPECT_STR(o, "reason", "cancelled");
	EXPECT_STR(o, "key", "logs-test");
	records_free(&r);

	/* the refused calls ended before the ones waited for above */
	log_parse(d, &r);
	{
		json_object *first;
		size_t n = rpc_records(&r, "status", "UNAUTHENTICATED", &first);
		size_t checks = rpc_records(&r, "method", "/grpc.health.v1.Health/Check", &first);

		if (n != 2)
			fail_msg("%zu UNAUTHENTICATED records, expected 2", n);
		if (checks < 1)
			fail_msg("no record of grpc.health.v1 Check");
		for (size_t i = 0; i < r.n; i++) {
			const char *s = str_of(r.v[i], "status");

			if (s && strcmp(s, "UNAUTHENTICATED") == 0 && has(r.v[i], "key"))
				fail_msg("a refused call names a key");
		}
	}
	records_free(&r);
}

static void test_nothing_secret_in_log(void **state)
{
	struct daemon *d = *state;
	char *log;

	HARNESS_REQUIRE(d);
	log = harness_daemon_log(d);
	const char *never[] = {CODE_MARK, OUTPUT_MARK, ENV_MARK, WRONG_SECRET, secret};
	for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
		if (strstr(log, never[i]) != NULL)
			fail_msg("\"%s\" appears in the log", never[i]);
	free(log);
}

static void test_text_is_default(void **state)
{
	static const char *extra[] = {"--no-metrics", NULL};
	struct daemon_opts opts = {.uid_slot = 4, .extra = extra};
	struct daemon other;
	struct run run = {0};
	char *log;

	HARNESS_REQUIRE((struct daemon *)*state);
	assert_int_equal(harness_daemon_start(&other, &opts), 0);
	harness_run_code(&other, "bash", "echo hi", &run);
	assert_run_exited(&run, 0);
	harness_run_free(&run);
	assert_int_equal(harness_daemon_stop(&other), 0);
	log = harness_daemon_log(&other);
	if (strstr(log, "{\"time\"") != NULL || strstr(log, "capiboxd[") == NULL)
		fail_msg("the default log is not text:\n%s", log);
	free(log);
}

static void test_unknown_format_refused(void **state)
{
	const char *argv[] = {CAPIBOXD_PATH, "--log-format", "xml", NULL};
	char *out;

	(void)state;
	assert_int_equal(harness_command(argv, &out), 1);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_execute_record),
		cmocka_unit_test(test_refused_and_other_calls),
		cmocka_unit_test(test_audit_record),
		cmocka_unit_test(test_nothing_secret_in_log),
		cmocka_unit_test(test_text_is_default),
		cmocka_unit_test(test_unknown_format_refused),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	/* Before any gRPC thread: keygen runs as a child process. */
	if (harness_init()) {
		snprintf(dir, sizeof(dir), "/tmp/capibox-logs-XXXXXX");
		if (mkdtemp(dir) == NULL)
			return 1;
		harness_remove_at_finish(dir);
		snprintf(keys_path, sizeof(keys_path), "%s/keys", dir);
		snprintf(audit_path, sizeof(audit_path), "%s/audit.log", dir);
		keys_ok = keygen("logs-test");
		if (!keys_ok)
			return 1;
	}
	rc = cmocka_run_group_tests_name("logs", tests, setup, harness_group_teardown);
	return harness_finish(rc);
}
