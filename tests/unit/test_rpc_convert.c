/*
 * The rpc layer's conversion helpers: the wire scan that refuses NUL bytes
 * protobuf-c would silently cut, the ExecuteRequest -> exec_request mapping
 * and the UTF-8 cleaning of strings sent back. No server is started.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/convert.h"

struct buf {
	uint8_t b[1024];
	size_t n;
};

static void put_varint(struct buf *w, uint64_t v)
{
	do {
		uint8_t byte = v & 0x7f;
		v >>= 7;
		w->b[w->n++] = byte | (v ? 0x80 : 0);
	} while (v);
}

/* A length-delimited field with raw bytes (NULs allowed). */
static void put_bytes(struct buf *w, uint32_t field, const void *data, size_t len)
{
	put_varint(w, (uint64_t)field << 3 | 2);
	put_varint(w, len);
	memcpy(w->b + w->n, data, len);
	w->n += len;
}

static void put_msg(struct buf *w, uint32_t field, const struct buf *inner)
{
	put_bytes(w, field, inner->b, inner->n);
}

static char err[256];

static int scan(const struct buf *w)
{
	err[0] = '\0';
	return convert_scan_execute(w->b, w->n, err, sizeof(err));
}

static void test_clean_request_passes(void **state)
{
	struct buf w = {0}, file = {0}, env = {0}, limits = {0};
	(void)state;
	put_bytes(&w, 1, "python", 6);
	put_bytes(&w, 2, "print(1)", 8);
	put_bytes(&file, 1, "data/in.csv", 11);
	put_bytes(&file, 2, "a\0b", 3); /* file content may hold NULs */
	put_msg(&w, 3, &file);
	put_bytes(&env, 1, "FOO", 3);
	put_bytes(&env, 2, "bar", 3);
	put_msg(&w, 4, &env);
	put_bytes(&w, 5, "\0\0\0", 3); /* so may stdin */
	put_varint(&limits, 1 << 3 | 0);
	put_varint(&limits, 1000);
	put_msg(&w, 6, &limits);
	put_varint(&w, 100 << 3 | 5); /* unknown fixed32 field: skipped */
	memcpy(w.b + w.n, "\0\0\0\0", 4);
	w.n += 4;
	assert_int_equal(scan(&w), 0);
	w.n = 0;
	assert_int_equal(scan(&w), 0); /* empty message: all defaults */
}

static void test_nul_in_string_fields(void **state)
{
	static const struct {
		uint32_t field;
		const char *msg;
	} cases[] = {
		{1, "language: contains a NUL byte"},	{2, "code: contains a NUL byte"},
		{7, "collect[0]: contains a NUL byte"}, {8, "session_id: contains a NUL byte"},
		{9, "request_id: contains a NUL byte"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf w = {0};
		put_bytes(&w, 1, "python", 6);
		put_bytes(&w, cases[i].field, "ab\0cd", 5);
		assert_int_equal(scan(&w), -1);
		assert_string_equal(err, cases[i].msg);
	}
}

static void test_nul_in_file_path_names_index(void **state)
{
	struct buf w = {0}, f0 = {0}, f1 = {0};
	(void)state;
	put_bytes(&f0, 1, "ok.txt", 6);
	put_bytes(&f1, 1, "evil\0.txt", 9);
	put_msg(&w, 3, &f0);
	put_msg(&w, 3, &f1);
	assert_int_equal(scan(&w), -1);
	assert_string_equal(err, "files[1].path: contains a NUL byte");
}

static void test_nul_in_env(void **state)
{
	struct buf w = {0}, e = {0};
	(void)state;
	put_bytes(&e, 1, "A\0B", 3);
	put_bytes(&e, 2, "v", 1);
	put_msg(&w, 4, &e);
	assert_int_equal(scan(&w), -1);
	assert_string_equal(err, "env: name contains a NUL byte");

	/* value before key on the wire: the key is still named */
	memset(&w, 0, sizeof(w));
	memset(&e, 0, sizeof(e));
	put_bytes(&e, 2, "x\0y", 3);
	put_bytes(&e, 1, "PATH", 4);
	put_msg(&w, 4, &e);
	assert_int_equal(scan(&w), -1);
	assert_string_equal(err, "env[\"PATH\"]: value contains a NUL byte");

	/* an unprintable key is not echoed */
	memset(&w, 0, sizeof(w));
	memset(&e, 0, sizeof(e));
	put_bytes(&e, 1, "K\x01", 2);
	put_bytes(&e, 2, "\0", 1);
	put_msg(&w, 4, &e);
	assert_int_equal(scan(&w), -1);
	assert_string_equal(err, "env: a value contains a NUL byte");
}

static void test_malformed_wire(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
	} cases[] = {
		{"\x12\x05"
		 "ab",
		 4},						      /* length past the end */
		{"\x0b", 1},					      /* start group */
		{"\x12\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80", 11}, /* 11-byte varint */
		{"\x02\x00", 2},				      /* field number 0 */
		{"\x09\x01\x02", 3},				      /* truncated fixed64 */
		{"\x1a\x02\x0a\x05", 4}, /* files: inner length past end */
		{"\x22\x01\x0b", 3},	 /* env entry: group */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(convert_scan_execute((const uint8_t *)cases[i].bytes, cases[i].len,
						      err, sizeof(err)),
				 -1);
		assert_string_equal(err, "malformed ExecuteRequest");
	}
}

static void test_convert_execute_request(void **state)
{
	Capibox__V1__ExecuteRequest m = CAPIBOX__V1__EXECUTE_REQUEST__INIT;
	Capibox__V1__File f = CAPIBOX__V1__FILE__INIT, *files[1] = {&f};
	Capibox__V1__ExecuteRequest__EnvEntry e = CAPIBOX__V1__EXECUTE_REQUEST__ENV_ENTRY__INIT;
	Capibox__V1__ExecuteRequest__EnvEntry *envs[1] = {&e};
	Capibox__V1__Limits lim = CAPIBOX__V1__LIMITS__INIT;
	char *collect[2] = {"*.png", "out/*"};
	struct convert_exec cx;
	(void)state;

	m.language = "bash";
	m.code = "echo hi";
	f.path = "in.txt";
	f.content.data = (uint8_t *)"xyz";
	f.content.len = 3;
	f.mode = 0600;
	m.files = files;
	m.n_files = 1;
	e.key = "K";
	e.value = "V";
	m.env = envs;
	m.n_env = 1;
	m.stdin.data = (uint8_t *)"in";
	m.stdin.len = 2;
	lim.wall_time_ms = 1500;
	lim.memory_bytes = 1 << 20;
	m.limits = &lim;
	m.collect = collect;
	m.n_collect = 2;
	m.request_id = "r-1";

	assert_int_equal(convert_execute_request(&m, &cx), 0);
	assert_string_equal(cx.req.language, "bash");
	assert_int_equal(cx.req.code_len, 7);
	assert_int_equal(cx.req.n_files, 1);
	assert_string_equal(cx.req.files[0].path, "in.txt");
	assert_int_equal(cx.req.files[0].len, 3);
	assert_int_equal(cx.req.files[0].mode, 0600);
	assert_int_equal(cx.req.n_env, 1);
	assert_string_equal(cx.req.env[0].name, "K");
	assert_string_equal(cx.req.env[0].value, "V");
	assert_int_equal(cx.req.stdin_len, 2);
	assert_int_equal(cx.req.limits.wall_time_ms, 1500);
	assert_int_equal(cx.req.limits.memory_bytes, 1 << 20);
	assert_int_equal(cx.req.limits.cpu_time_ms, 0); /* zero: default later */
	assert_int_equal(cx.req.n_collect, 2);
	assert_string_equal(cx.req.session_id, "");
	assert_string_equal(cx.req.request_id, "r-1");
	convert_exec_free(&cx);

	/* no limits message: all zero */
	m.limits = NULL;
	m.n_files = 0;
	m.n_env = 0;
	assert_int_equal(convert_execute_request(&m, &cx), 0);
	assert_int_equal(cx.req.limits.wall_time_ms, 0);
	assert_null(cx.req.files);
	convert_exec_free(&cx);
}

static void test_finished_and_started(void **state)
{
	struct exec_result res;
	struct exec_started st = {"sb-1", "python", 5, 6, NULL, false};
	Capibox__V1__Finished fin;
	Capibox__V1__Started s;
	char buf[600];
	(void)state;

	memset(&res, 0, sizeof(res));
	res.reason = EXEC_REASON_SIGNALED;
	res.signal = 9;
	res.stdout_bytes = 10;
	memcpy(res.message, "killed \xff", 9);
	convert_finished(&res, &fin, buf, sizeof(buf));
	assert_int_equal(fin.reason, CAPIBOX__V1__REASON__REASON_SIGNALED);
	assert_int_equal(fin.signal, 9);
	assert_int_equal(fin.stdout_bytes, 10);
	assert_string_equal(fin.message, "killed ?");

	convert_started(&st, "local", &s);
	assert_string_equal(s.backend, "local");
	assert_string_equal(s.sandbox_id, "sb-1");
	assert_int_equal(s.queued_us, 5);
}

static void test_sessions(void **state)
{
	struct buf w = {0}, file = {0}, env = {0};
	(void)state;
	assert_true(request_session_id_ok("3f2a9c0b1d2e3f4a5b6c7d8e"));
	assert_true(request_session_id_ok("my_session-1"));
	assert_false(request_session_id_ok(""));
	assert_false(request_session_id_ok("a b"));
	assert_false(request_session_id_ok("../x"));
	assert_false(request_session_id_ok(
		"0123456789012345678901234567890123456789012345678901234567890123"));
	/* CreateSessionRequest: 1 language, 4 env, 5 files */
	put_bytes(&w, 1, "python", 6);
	put_bytes(&file, 1, "in.csv", 6);
	put_bytes(&file, 2, "a\0b", 3);
	put_msg(&w, 5, &file);
	put_bytes(&env, 1, "K", 1);
	put_bytes(&env, 2, "v", 1);
	put_msg(&w, 4, &env);
	assert_int_equal(convert_scan_create_session(w.b, w.n, err, sizeof(err)), 0);
	file.n = 0;
	put_bytes(&file, 1, "in\0.csv", 7);
	put_msg(&w, 5, &file);
	assert_int_equal(convert_scan_create_session(w.b, w.n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "files[1].path"));
	w.n = 0;
	put_bytes(&w, 1, "py\0", 3);
	assert_int_equal(convert_scan_create_session(w.b, w.n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "language"));
}

static void test_utf8_clean(void **state)
{
	char buf[64];
	(void)state;
	assert_string_equal(convert_utf8_clean("plain ascii", buf, sizeof(buf)), "plain ascii");
	assert_string_equal(convert_utf8_clean("caf\xc3\xa9 \xe2\x82\xac", buf, sizeof(buf)),
			    "caf\xc3\xa9 \xe2\x82\xac");
	assert_string_equal(convert_utf8_clean("bad \xc3 x", buf, sizeof(buf)), "bad ? x");
	assert_string_equal(convert_utf8_clean("\xed\xa0\x80", buf, sizeof(buf)),
			    "???");						     /* surrogate */
	assert_string_equal(convert_utf8_clean("\xc0\xaf", buf, sizeof(buf)), "??"); /* overlong */
	assert_string_equal(convert_utf8_clean("a\x01"
					       "b\tc",
					       buf, sizeof(buf)),
			    "a?b\tc"); /* control */
	assert_string_equal(convert_utf8_clean("truncated \xe2\x82", buf, sizeof(buf)),
			    "truncated ??");
	assert_string_equal(convert_utf8_clean("abcdef", buf, 4), "abc");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean_request_passes),
		cmocka_unit_test(test_nul_in_string_fields),
		cmocka_unit_test(test_nul_in_file_path_names_index),
		cmocka_unit_test(test_nul_in_env),
		cmocka_unit_test(test_malformed_wire),
		cmocka_unit_test(test_convert_execute_request),
		cmocka_unit_test(test_finished_and_started),
		cmocka_unit_test(test_utf8_clean),
		cmocka_unit_test(test_sessions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
