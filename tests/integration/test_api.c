/*
 * The API surface: bad requests (each INVALID_ARGUMENT naming the field,
 * the server keeps serving), malformed bytes, unknown methods, Analyze,
 * Health (plain and deep) and the standard grpc.health.v1 service.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "grpc/health/v1/health.pb-c.h"
#include "harness.h"

static struct daemon daemon_;

static int setup(void **state)
{
	static const struct daemon_opts opts = {.uid_slot = 3};

	return harness_group_setup(state, &daemon_, &opts);
}

#define EXECUTE "/capibox.v1.SandboxService/Execute"

/* Runs req and fails unless it is INVALID_ARGUMENT with every needle in the message. */
static void expect_invalid(struct daemon *d, const struct capibox_exec_request *req,
			   const char *const *needles)
{
	struct run r = {0};

	harness_run(d, req, &r);
	if (r.rc != CAPIBOX_INVALID_ARGUMENT) {
		harness_run_print(&r);
		fail_msg("expected INVALID_ARGUMENT, got %d", r.rc);
	}
	if (r.n_events != 0) {
		harness_run_print(&r);
		fail_msg("a rejected request must not produce events");
	}
	for (; *needles != NULL; needles++)
		if (strstr(r.st.message, *needles) == NULL)
			fail_msg("INVALID_ARGUMENT message \"%s\" does not mention \"%s\"",
				 r.st.message, *needles);
	print_message("INVALID_ARGUMENT: %s\n", r.st.message);
	harness_run_free(&r);
}

static void test_empty_code(void **state)
{
	struct capibox_exec_request req = {.language = "python", .code = ""};
	static const char *const want[] = {"code", NULL};

	HARNESS_REQUIRE((struct daemon *)*state);
	expect_invalid(*state, &req, want);
}

static void test_code_size_limit(void **state)
{
	struct daemon *d = *state;
	const size_t max = 1 << 20;
	char *code = malloc(max + 2);
	struct capibox_exec_request req = {.language = "python", .code = code};
	static const char *const want[] = {"code", NULL};
	struct run r = {0};

	HARNESS_REQUIRE(d);
	assert_non_null(code);
	/* Exactly 1 MiB (a comment and a print) runs... */
	memset(code, '#', max);
	memcpy(code + max - 20, "\nprint('max ok')   \n", 20);
	code[max] = '\0';
	req.code_len = max;
	harness_run(d, &req, &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "max ok\n");
	harness_run_free(&r);
	/* ...one byte more is refused. */
	code[max] = '#';
	code[max + 1] = '\0';
	req.code_len = max + 1;
	expect_invalid(d, &req, want);
	free(code);
}

static void test_unknown_language(void **state)
{
	struct capibox_exec_request req = {.language = "cobol", .code = "DISPLAY 'HI'."};
	static const char *const want[] = {"language", "python", "javascript", "bash", NULL};

	HARNESS_REQUIRE((struct daemon *)*state);
	expect_invalid(*state, &req, want);
}

static void test_env_name_with_equals(void **state)
{
	struct capibox_env env[] = {{"A=B", "x"}};
	struct capibox_exec_request req = {
		.language = "python", .code = "print(1)", .env = env, .n_env = 1};
	static const char *const want[] = {"env", NULL};

	HARNESS_REQUIRE((struct daemon *)*state);
	expect_invalid(*state, &req, want);
}

/* --- hand-built protobuf: what libcapibox cannot express -------------------- */

struct pb {
	uint8_t b[512];
	size_t n;
};

static void pb_varint(struct pb *p, uint64_t v)
{
	do {
		assert_true(p->n < sizeof(p->b));
		p->b[p->n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
}

static void pb_bytes(struct pb *p, unsigned field, const void *data, size_t len)
{
	pb_varint(p, (uint64_t)field << 3 | 2);
	pb_varint(p, len);
	assert_true(p->n + len <= sizeof(p->b));
	memcpy(p->b + p->n, data, len);
	p->n += len;
}

static void expect_raw_invalid(struct daemon *d, const void *msg, size_t len, const char *needle)
{
	struct raw_result res;

	harness_raw_call(d->addr, EXECUTE, msg, len, 10000, &res);
	if (res.code != CAPIBOX_INVALID_ARGUMENT)
		fail_msg("expected INVALID_ARGUMENT, got %d \"%s\" after %d messages", res.code,
			 res.message, res.n_messages);
	if (res.n_messages != 0)
		fail_msg("a rejected request must not produce events (got %d)", res.n_messages);
	if (needle != NULL && strstr(res.message, needle) == NULL)
		fail_msg("INVALID_ARGUMENT message \"%s\" does not mention \"%s\"", res.message,
			 needle);
	print_message("INVALID_ARGUMENT: %s\n", res.message);
	harness_raw_free(&res);
}

static void test_raw_call_sanity(void **state)
{
	struct daemon *d = *state;
	struct pb p = {.n = 0};
	struct raw_result res;

	HARNESS_REQUIRE(d);
	/* The hand-built encoding of a good request runs: the raw path works. */
	pb_bytes(&p, 1, "python", 6);
	pb_bytes(&p, 2, "print(1)", 8);
	harness_raw_call(d->addr, EXECUTE, p.b, p.n, 20000, &res);
	if (res.code != 0 || res.n_messages < 3)
		fail_msg(
			"raw Execute: status %d \"%s\", %d messages; expected OK with Started, stdout, Finished",
			res.code, res.message, res.n_messages);
	harness_raw_free(&res);
}

static void test_env_name_with_nul(void **state)
{
	struct daemon *d = *state;
	struct pb p = {.n = 0}, entry = {.n = 0};

	HARNESS_REQUIRE(d);
	pb_bytes(&entry, 1, "A\0B", 3); /* key */
	pb_bytes(&entry, 2, "x", 1);	/* value */
	pb_bytes(&p, 1, "python", 6);
	pb_bytes(&p, 2, "print(1)", 8);
	pb_bytes(&p, 4, entry.b, entry.n);
	expect_raw_invalid(d, p.b, p.n, "env");
}

static void test_malformed_message(void **state)
{
	struct daemon *d = *state;
	static const uint8_t truncated[] = {0x0a, 0x10, 'a', 'b', 'c'};
	static const uint8_t bad_varint[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
					     0xff, 0xff, 0xff, 0xff, 0xff};

	HARNESS_REQUIRE(d);
	expect_raw_invalid(d, truncated, sizeof(truncated), NULL);
	expect_raw_invalid(d, bad_varint, sizeof(bad_varint), NULL);
}

static void test_absurd_limits(void **state)
{
	struct capibox_exec_request req = {.language = "python", .code = "print(1)"};
	static const char *const wall[] = {"wall_time_ms", NULL};
	static const char *const mem[] = {"memory_bytes", NULL};
	static const char *const procs[] = {"max_processes", NULL};

	HARNESS_REQUIRE((struct daemon *)*state);
	req.limits.wall_time_ms = 4000000000u;
	expect_invalid(*state, &req, wall);
	req.limits.wall_time_ms = 0;
	req.limits.memory_bytes = UINT64_MAX;
	expect_invalid(*state, &req, mem);
	req.limits.memory_bytes = 0;
	req.limits.max_processes = 4000000000u;
	expect_invalid(*state, &req, procs);
}

static void test_bad_file_path(void **state)
{
	static const uint8_t data[] = "x";
	struct capibox_file up[] = {{.path = "../escape.txt", .data = data, .len = 1}};
	struct capibox_file abs[] = {{.path = "/etc/passwd", .data = data, .len = 1}};
	struct capibox_exec_request req = {.language = "python", .code = "print(1)", .n_files = 1};
	static const char *const want[] = {"files", NULL};

	HARNESS_REQUIRE((struct daemon *)*state);
	req.files = up;
	expect_invalid(*state, &req, want);
	req.files = abs;
	expect_invalid(*state, &req, want);
}

static void test_still_serving_after_bad_requests(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	harness_run_code(d, "python", "print('still here')\n", &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "still here\n");
	harness_run_free(&r);
}

static void test_unknown_method(void **state)
{
	struct daemon *d = *state;
	static const char *const methods[] = {
		"/capibox.v1.SandboxService/NoSuchMethod",
		"/no.such.Service/Method",
		NULL,
	};
	struct raw_result res;

	HARNESS_REQUIRE(d);
	for (size_t i = 0; methods[i] != NULL; i++) {
		/* A hang would end as DEADLINE_EXCEEDED after 5 s. */
		harness_raw_call(d->addr, methods[i], "", 0, 5000, &res);
		if (res.code != CAPIBOX_UNIMPLEMENTED)
			fail_msg("%s: expected UNIMPLEMENTED, got %d \"%s\"", methods[i], res.code,
				 res.message);
		harness_raw_free(&res);
	}
}

static void test_analyze_without_dataset(void **state)
{
	struct daemon *d = *state;
	struct raw_result res;

	HARNESS_REQUIRE(d);
	harness_raw_call(d->addr, "/capibox.v1.SandboxService/Analyze", "", 0, 5000, &res);
	if (res.code != CAPIBOX_INVALID_ARGUMENT || strstr(res.message, "dataset") == NULL)
		fail_msg("Analyze: expected INVALID_ARGUMENT naming dataset, got %d \"%s\"",
			 res.code, res.message);
	print_message("Analyze: %s\n", res.message);
	harness_raw_free(&res);
}

static const struct capibox_backend_health *local_backend(const struct capibox_health *h)
{
	for (size_t i = 0; i < h->n_backends; i++)
		if (h->backends[i].name != NULL && strcmp(h->backends[i].name, "local") == 0)
			return &h->backends[i];
	return NULL;
}

static void test_health(void **state)
{
	struct daemon *d = *state;
	struct capibox_health *h = NULL;
	struct capibox_status st;
	const struct capibox_backend_health *b;
	static const char *const langs[] = {"python", "javascript", "bash", NULL};

	HARNESS_REQUIRE(d);
	if (capibox_health(d->client, false, 10000, &h, &st) != 0)
		fail_msg("Health: status %d \"%s\"", st.code, st.message);
	assert_int_equal(h->status, 1); /* SERVING */
	assert_non_null(h->version);
	assert_true(h->version[0] != '\0');
	assert_true(h->uptime_s < 3600);
	b = local_backend(h);
	if (b == NULL)
		fail_msg("Health lists no backend \"local\" (%zu backends)", h->n_backends);
	assert_int_equal(b->status, 1);
	for (size_t i = 0; langs[i] != NULL; i++) {
		const struct capibox_runtime_pool *p = NULL;

		for (size_t j = 0; j < b->n_pools; j++)
			if (b->pools[j].language != NULL &&
			    strcmp(b->pools[j].language, langs[i]) == 0)
				p = &b->pools[j];
		if (p == NULL)
			fail_msg("backend local has no pool for %s", langs[i]);
		if (p->runtime_version == NULL || p->runtime_version[0] == '\0')
			fail_msg("pool %s has no runtime_version", langs[i]);
		print_message("pool %s: idle %u busy %u target %u version \"%s\"\n", langs[i],
			      p->idle, p->busy, p->target, p->runtime_version);
	}
	print_message("health: version %s uptime %llu s\n", h->version,
		      (unsigned long long)h->uptime_s);
	capibox_health_free(h);
}

static void test_health_deep(void **state)
{
	struct daemon *d = *state;
	struct capibox_health *h = NULL;
	struct capibox_status st;
	const struct capibox_backend_health *b;
	static const char *const langs[] = {"python", "javascript", "bash", NULL};

	HARNESS_REQUIRE(d);
	if (capibox_health(d->client, true, 30000, &h, &st) != 0)
		fail_msg("deep Health: status %d \"%s\"", st.code, st.message);
	assert_int_equal(h->status, 1);
	b = local_backend(h);
	if (b == NULL)
		fail_msg("deep Health lists no backend \"local\"");
	print_message("deep health: canary_us %llu message \"%s\"\n",
		      (unsigned long long)b->canary_us, b->message ? b->message : "(null)");
	assert_int_equal(b->status, 1);
	assert_true(b->canary_us > 0);
	assert_non_null(b->message);
	for (size_t i = 0; langs[i] != NULL; i++)
		if (strstr(b->message, langs[i]) == NULL)
			fail_msg("deep Health message \"%s\" does not mention %s", b->message,
				 langs[i]);
	capibox_health_free(h);
}

static void test_grpc_health_check(void **state)
{
	struct daemon *d = *state;
	struct capibox_status st;
	int serving = -1;

	HARNESS_REQUIRE(d);
	if (capibox_health_check(d->client, "", 5000, &serving, &st) != 0)
		fail_msg("Check(\"\"): status %d \"%s\"", st.code, st.message);
	assert_int_equal(serving, 1);
	serving = -1;
	if (capibox_health_check(d->client, "capibox.v1.SandboxService", 5000, &serving, &st) != 0)
		fail_msg("Check(capibox.v1.SandboxService): status %d \"%s\"", st.code, st.message);
	assert_int_equal(serving, 1);
	capibox_health_check(d->client, "no.such.Service", 5000, &serving, &st);
	if (st.code != CAPIBOX_NOT_FOUND)
		fail_msg("Check(no.such.Service): expected NOT_FOUND, got %d \"%s\"", st.code,
			 st.message);
}

/* Watch sends the current status at once and keeps the stream open. */
static void watch(struct daemon *d, const char *service, int want)
{
	struct pb p = {.n = 0};
	struct raw_result res;
	Grpc__Health__V1__HealthCheckResponse *m;

	if (service[0] != '\0')
		pb_bytes(&p, 1, service, strlen(service));
	harness_raw_call(d->addr, "/grpc.health.v1.Health/Watch", p.b, p.n, 1500, &res);
	if (res.n_messages < 1)
		fail_msg("Watch(\"%s\"): no message (status %d \"%s\")", service, res.code,
			 res.message);
	if (res.code != CAPIBOX_DEADLINE_EXCEEDED)
		fail_msg(
			"Watch(\"%s\"): the stream must stay open until our deadline, ended with %d \"%s\"",
			service, res.code, res.message);
	m = grpc__health__v1__health_check_response__unpack(NULL, res.first_len, res.first);
	assert_non_null(m);
	if ((int)m->status != want)
		fail_msg("Watch(\"%s\"): status %d, expected %d", service, (int)m->status, want);
	grpc__health__v1__health_check_response__free_unpacked(m, NULL);
	harness_raw_free(&res);
}

static void test_grpc_health_watch(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	watch(d, "", GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	watch(d, "capibox.v1.SandboxService",
	      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	watch(d, "no.such.Service",
	      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_code),
		cmocka_unit_test(test_code_size_limit),
		cmocka_unit_test(test_unknown_language),
		cmocka_unit_test(test_env_name_with_equals),
		cmocka_unit_test(test_raw_call_sanity),
		cmocka_unit_test(test_env_name_with_nul),
		cmocka_unit_test(test_malformed_message),
		cmocka_unit_test(test_absurd_limits),
		cmocka_unit_test(test_bad_file_path),
		cmocka_unit_test(test_still_serving_after_bad_requests),
		cmocka_unit_test(test_unknown_method),
		cmocka_unit_test(test_analyze_without_dataset),
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_health_deep),
		cmocka_unit_test(test_grpc_health_check),
		cmocka_unit_test(test_grpc_health_watch),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	harness_init();
	rc = cmocka_run_group_tests_name("api", tests, setup, harness_group_teardown);
	return harness_finish(rc);
}
