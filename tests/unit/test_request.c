/* Request validation: every rejection names its field; defaults fill zeros. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "request.h"

static struct config cfg;
static char err[512];

static struct exec_request base(void)
{
	struct exec_request r;
	memset(&r, 0, sizeof(r));
	r.language = "python";
	r.code = "print(1)";
	r.code_len = 8;
	return r;
}

static void test_valid_fills_defaults(void **state)
{
	struct exec_request r = base();
	(void)state;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_OK);
	assert_int_equal(r.limits.wall_time_ms, cfg.defaults.wall_time_ms);
	assert_int_equal(r.limits.memory_bytes, cfg.defaults.memory_bytes);
	assert_int_equal(r.limits.max_output_bytes, cfg.defaults.max_output_bytes);
	r = base();
	r.limits.wall_time_ms = 1234;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_OK);
	assert_int_equal(r.limits.wall_time_ms, 1234);
}

static void test_language(void **state)
{
	struct exec_request r = base();
	(void)state;
	r.language = "cobol";
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "language"));
	assert_non_null(strstr(err, "python, javascript, bash"));
	r.language = "";
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "language"));
}

static void test_code(void **state)
{
	struct exec_request r = base();
	static char big[2 * 1024 * 1024];
	(void)state;
	r.code_len = 0;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "code: must not be empty"));
	memset(big, 'x', sizeof(big));
	r.code = big;
	r.code_len = cfg.max_code_bytes + 1;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "code:"));
	r.code_len = cfg.max_code_bytes;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_OK);
	r.code = "a\0b";
	r.code_len = 3;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "NUL"));
}

static void test_env(void **state)
{
	struct exec_request r = base();
	struct exec_env bad[] = {{"A=B", "x"}}, empty[] = {{"", "x"}}, ok[] = {{"MY_VAR", "a=b"}},
			space[] = {{"A B", "x"}}, reserved[] = {{"CAPIBOX_SESSION", "1"}};
	(void)state;
	r.env = bad;
	r.n_env = 1;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "env: name \"A=B\""));
	r.env = empty;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "env"));
	r.env = space;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	/* the runners' own settings come in the take's environment under
	 * these names: a request may not set them */
	r.env = reserved;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "env: name \"CAPIBOX_SESSION\" is reserved"));
	r.env = ok;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_OK);
}

static void test_limits(void **state)
{
	struct exec_request r = base();
	(void)state;
	r.limits.wall_time_ms = 4000000000u;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "limits.wall_time_ms: 4000000000 exceeds the maximum 600000"));
	r = base();
	r.limits.memory_bytes = UINT64_MAX;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "limits.memory_bytes"));
	r = base();
	r.limits.memory_bytes = 1000;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "below the minimum"));
	r = base();
	r.limits.max_processes = 100000;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "limits.max_processes"));
	r = base();
	r.limits.cpu_time_ms = 600001;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "limits.cpu_time_ms"));
}

static void test_paths(void **state)
{
	(void)state;
	assert_true(request_path_ok("a.csv", 5));
	assert_true(request_path_ok("dir/sub/a.csv", 13));
	assert_true(request_path_ok("..a", 3));
	assert_false(request_path_ok("/etc/passwd", 11));
	assert_false(request_path_ok("../x", 4));
	assert_false(request_path_ok("a/../../x", 9));
	assert_false(request_path_ok("a/..", 4));
	assert_false(request_path_ok("./a", 3));
	assert_false(request_path_ok("a//b", 4));
	assert_false(request_path_ok("a/", 2));
	assert_false(request_path_ok("", 0));
	assert_false(request_path_ok("a\0b", 3));
}

static void test_files(void **state)
{
	struct exec_request r = base();
	struct exec_file f[] = {{"../evil", (const uint8_t *)"x", 1, 0644}};
	struct exec_file m[] = {{"ok.txt", (const uint8_t *)"x", 1, 0100644}};
	(void)state;
	r.files = f;
	r.n_files = 1;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "files[0].path"));
	r.files = m;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "files[0].mode"));
}

/* A cell of a session: its id has a form, its language may be left out (the
 * session has one), and its collect globs follow the one-shot rules. */
static void test_session_fields(void **state)
{
	struct exec_request r = base();
	const char *glob = "*.png";
	(void)state;
	r.session_id = "s1";
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_OK);
	r = base();
	r.session_id = "s1";
	r.language = "";
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_OK);
	r = base();
	r.session_id = "a b";
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "session_id"));
	r = base();
	r.session_id = "s1";
	r.collect = &glob;
	r.n_collect = 1;
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_OK);
	glob = "../x";
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "collect[0]"));
	/* without a session, the language is still required */
	r = base();
	r.language = "";
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_INVALID);
	assert_non_null(strstr(err, "language"));
}

/* collect globs: relative, no "..", bounded; the message names collect[i] */
static void test_collect(void **state)
{
	static const char *good[] = {"out/*.png", "**/*.csv",  "**",
				     "a/**/b",	  ".cache/**", "x?[ab]"};
	static const char *bad[] = {"",	  "/etc/passwd", "../x",  "a/../b", "a//b",
				    "a/", "./a",	 "a/./b", ".."};
	struct exec_request r = base();
	const char *one[2];
	(void)state;
	r.collect = good;
	r.n_collect = sizeof(good) / sizeof(good[0]);
	assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)), REQUEST_OK);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = base();
		one[0] = "ok/*.png";
		one[1] = bad[i];
		r.collect = one;
		r.n_collect = 2;
		assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)),
				 REQUEST_INVALID);
		assert_non_null(strstr(err, "collect[1]"));
	}
	{
		char longg[1100];
		memset(longg, 'a', sizeof(longg) - 1);
		longg[sizeof(longg) - 1] = '\0';
		r = base();
		one[0] = longg;
		r.collect = one;
		r.n_collect = 1;
		assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)),
				 REQUEST_INVALID);
		assert_non_null(strstr(err, "collect[0]"));
	}
	{
		const char *many[65];
		for (size_t i = 0; i < 65; i++)
			many[i] = "*.png";
		r = base();
		r.collect = many;
		r.n_collect = 65;
		assert_int_equal(request_validate_execute(&cfg, &r, err, sizeof(err)),
				 REQUEST_INVALID);
		assert_non_null(strstr(err, "collect:"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_fills_defaults),
		cmocka_unit_test(test_language),
		cmocka_unit_test(test_code),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_session_fields),
		cmocka_unit_test(test_collect),
	};
	config_defaults(&cfg);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
