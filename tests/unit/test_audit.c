/*
 * The audit log (server/audit.c): each record is one line of valid JSON with
 * the fields an operator or a learning pipeline reads, the code text only
 * when enabled, rotation keeps N files of whole lines, concurrent writers
 * never interleave, reopen follows a file moved away, and a failing disk
 * never stops the caller.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "config.h"

struct fixture {
	char dir[64];
	char path[128];
	struct config cfg;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/capibox-audit-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/audit.log", f->dir);
	config_defaults(&f->cfg);
	f->cfg.audit_file = f->path;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* The file's lines, each parsed; fails the test on a line that is not JSON. */
struct lines {
	json_object *v[20000];
	size_t n;
	size_t longest;
};

static void lines_free(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		json_object_put(l->v[i]);
	l->n = 0;
}

/* Appends the records of path to l; returns false when the file is absent. */
static bool lines_read(const char *path, struct lines *l)
{
	FILE *fp = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (fp == NULL)
		return false;
	while ((n = getline(&line, &cap, fp)) > 0) {
		json_tokener *tok = json_tokener_new();
		json_object *o;

		assert_int_equal(line[n - 1], '\n');
		o = json_tokener_parse_ex(tok, line, (int)n - 1);
		if (o == NULL || json_tokener_get_parse_end(tok) != (size_t)n - 1)
			fail_msg("%s: not one JSON object: %.200s", path, line);
		assert_true(json_object_is_type(o, json_type_object));
		json_tokener_free(tok);
		assert_true(l->n < sizeof(l->v) / sizeof(l->v[0]));
		l->v[l->n++] = o;
		if ((size_t)n > l->longest)
			l->longest = (size_t)n;
	}
	free(line);
	fclose(fp);
	return true;
}

static const char *str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return NULL;
	return json_object_get_string(v);
}

static uint64_t u64(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("no field %s", key);
	return json_object_get_uint64(v);
}

static bool has(json_object *o, const char *key) { return json_object_object_get_ex(o, key, NULL); }

static void sha256_hex(const char *s, size_t len, char *hex)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	assert_int_equal(EVP_Digest(s, len, md, &n, EVP_sha256(), NULL), 1);
	for (unsigned i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static struct audit_entry sample(void)
{
	struct audit_entry e = {
		.time_ms = 1796000000123ull,
		.rpc = "Execute",
		.request_id = "req-42",
		.key_id = "router",
		.peer = "ipv4:10.0.0.7:41312",
		.client_cert = "CN=router,O=capibox",
		.language = "python",
		.code = "print(1)\n",
		.code_len = 9,
		.n_files = 2,
		.files_bytes = 1234,
		.stdin_bytes = 5,
		.has_limits = true,
		.limits = {.wall_time_ms = 30000,
			   .cpu_time_ms = 20000,
			   .memory_bytes = 512ull << 20,
			   .max_processes = 64,
			   .max_output_bytes = 16ull << 20,
			   .max_file_bytes = 64ull << 20},
		.status_code = 0,
		.started = true,
		.sandbox_id = "local-1-7",
		.warm = true,
		.queued_us = 12,
		.start_us = 233,
		.finished = true,
		.reason = EXEC_REASON_EXITED,
		.exit_code = 3,
		.signal = 0,
		.wall_time_us = 17938,
		.cpu_time_us = 4875,
		.peak_memory_bytes = 4329472,
		.stdout_bytes = 2,
		.stderr_bytes = 0,
	};
	return e;
}

static void test_record_fields(void **state)
{
	struct fixture *f = *state;
	struct audit_entry e = sample();
	struct lines l = {0};
	char err[256], hash[65];
	struct audit *a = audit_open(&f->cfg, err, sizeof(err));
	json_object *o, *lim;
	struct stat st;

	assert_non_null(a);
	assert_true(audit_enabled(a));
	audit_record(a, &e);
	audit_close(a);

	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_true(lines_read(f->path, &l));
	assert_int_equal(l.n, 1);
	o = l.v[0];
	assert_string_equal(str(o, "time"), "2026-11-30T00:53:20.123Z");
	assert_int_equal(u64(o, "time_ms"), 1796000000123ull);
	assert_string_equal(str(o, "rpc"), "Execute");
	assert_string_equal(str(o, "request_id"), "req-42");
	assert_string_equal(str(o, "key"), "router");
	assert_string_equal(str(o, "peer"), "ipv4:10.0.0.7:41312");
	assert_string_equal(str(o, "client_cert"), "CN=router,O=capibox");
	assert_string_equal(str(o, "language"), "python");
	sha256_hex("print(1)\n", 9, hash);
	assert_string_equal(str(o, "code_sha256"), hash);
	assert_int_equal(u64(o, "code_bytes"), 9);
	assert_false(has(o, "code")); /* not enabled */
	assert_int_equal(u64(o, "files"), 2);
	assert_int_equal(u64(o, "files_bytes"), 1234);
	assert_int_equal(u64(o, "stdin_bytes"), 5);
	assert_true(json_object_object_get_ex(o, "limits", &lim));
	assert_int_equal(u64(lim, "wall_time_ms"), 30000);
	assert_int_equal(u64(lim, "cpu_time_ms"), 20000);
	assert_int_equal(u64(lim, "memory_bytes"), 512ull << 20);
	assert_int_equal(u64(lim, "max_processes"), 64);
	assert_int_equal(u64(lim, "max_output_bytes"), 16ull << 20);
	assert_int_equal(u64(lim, "max_file_bytes"), 64ull << 20);
	assert_string_equal(str(o, "status"), "OK");
	assert_int_equal(u64(o, "status_code"), 0);
	assert_false(has(o, "error"));
	assert_string_equal(str(o, "sandbox_id"), "local-1-7");
	assert_string_equal(str(o, "warm"), "true");
	assert_int_equal(u64(o, "queued_us"), 12);
	assert_int_equal(u64(o, "start_us"), 233);
	assert_string_equal(str(o, "reason"), "REASON_EXITED");
	assert_int_equal(u64(o, "exit_code"), 3);
	assert_int_equal(u64(o, "signal"), 0);
	assert_int_equal(u64(o, "wall_time_us"), 17938);
	assert_int_equal(u64(o, "cpu_time_us"), 4875);
	assert_int_equal(u64(o, "peak_memory_bytes"), 4329472);
	assert_int_equal(u64(o, "stdout_bytes"), 2);
	assert_int_equal(u64(o, "stderr_bytes"), 0);
	lines_free(&l);
}

/* A refused request: no limits, sandbox or result; the status and its message. */
static void test_record_refused(void **state)
{
	struct fixture *f = *state;
	struct audit_entry e = {
		.rpc = "Execute",
		.language = "cobol",
		.code = "x",
		.code_len = 1,
		.status_code = 3,
		.error = "language: \"cobol\" is not one of python, javascript, bash"};
	struct lines l = {0};
	char err[256];
	struct audit *a = audit_open(&f->cfg, err, sizeof(err));

	assert_non_null(a);
	audit_record(a, &e);
	audit_close(a);
	assert_true(lines_read(f->path, &l));
	assert_int_equal(l.n, 1);
	assert_string_equal(str(l.v[0], "status"), "INVALID_ARGUMENT");
	assert_int_equal(u64(l.v[0], "status_code"), 3);
	assert_non_null(strstr(str(l.v[0], "error"), "cobol"));
	assert_true(u64(l.v[0], "time_ms") > 1700000000000ull); /* 0 became now */
	assert_false(has(l.v[0], "limits"));
	assert_false(has(l.v[0], "sandbox_id"));
	assert_false(has(l.v[0], "reason"));
	assert_false(has(l.v[0], "request_id"));
	lines_free(&l);
}

static void test_code_when_enabled(void **state)
{
	struct fixture *f = *state;
	/* newline, quote, control byte, NUL, and bytes that are not UTF-8 */
	static const char code[] = "print(\"a\")\n\x01\tb\0c\xff\xc3(\xe2\x82\xac";
	struct audit_entry e = sample();
	struct lines l = {0};
	char err[256], hash[65];
	struct audit *a;
	json_object *v;

	f->cfg.audit_code = true;
	a = audit_open(&f->cfg, err, sizeof(err));
	assert_non_null(a);
	e.code = code;
	e.code_len = sizeof(code) - 1;
	audit_record(a, &e);
	audit_close(a);

	assert_true(lines_read(f->path, &l));
	assert_int_equal(l.n, 1); /* the newline in the code is escaped */
	assert_true(json_object_object_get_ex(l.v[0], "code", &v));
	/* valid UTF-8 kept, each invalid byte U+FFFD, NUL kept */
	assert_int_equal(json_object_get_string_len(v),
			 strlen("print(\"a\")\n\x01\tb") + 1 + 1 + 3 + 3 + 1 + 3);
	assert_memory_equal(json_object_get_string(v), "print(\"a\")\n\x01\tb\0c\xef\xbf\xbd",
			    strlen("print(\"a\")\n\x01\tb") + 5);
	assert_non_null(strstr(json_object_get_string(v) + 16, "(\xe2\x82\xac"));
	/* the hash is of the raw bytes */
	sha256_hex(code, sizeof(code) - 1, hash);
	assert_string_equal(str(l.v[0], "code_sha256"), hash);
	assert_int_equal(u64(l.v[0], "code_bytes"), sizeof(code) - 1);
	lines_free(&l);
}

/* The rpc layer may hash at arrival and drop the code before the call ends. */
static void test_precomputed_hash(void **state)
{
	struct fixture *f = *state;
	struct audit_entry e = sample();
	struct lines l = {0};
	char err[256], hash[AUDIT_SHA256_HEX], want[65];
	struct audit *a = audit_open(&f->cfg, err, sizeof(err));

	assert_non_null(a);
	assert_false(audit_wants_code(a)); /* code off: no need to keep it */
	audit_hash_code("print(1)\n", 9, hash);
	sha256_hex("print(1)\n", 9, want);
	assert_string_equal(hash, want);
	e.code = NULL;
	e.code_len = 9;
	e.code_sha256 = hash;
	audit_record(a, &e);
	audit_close(a);
	assert_true(lines_read(f->path, &l));
	assert_string_equal(str(l.v[0], "code_sha256"), want);
	assert_int_equal(u64(l.v[0], "code_bytes"), 9);
	lines_free(&l);

	f->cfg.audit_code = true;
	a = audit_open(&f->cfg, err, sizeof(err));
	assert_true(audit_wants_code(a));
	audit_close(a);
	assert_false(audit_wants_code(NULL));
}

static void test_disabled(void **state)
{
	struct fixture *f = *state;
	struct audit_entry e = sample();
	char err[256];
	struct audit *a;
	struct stat st;

	f->cfg.audit_file = NULL;
	a = audit_open(&f->cfg, err, sizeof(err));
	assert_non_null(a);
	assert_false(audit_enabled(a));
	audit_record(a, &e);
	audit_reopen(a);
	audit_flush(a);
	audit_close(a);
	assert_int_equal(stat(f->path, &st), -1);
	/* NULL is a disabled handle too */
	assert_false(audit_enabled(NULL));
	audit_record(NULL, &e);
	audit_reopen(NULL);
	audit_flush(NULL);
	audit_close(NULL);
}

static void test_open_errors(void **state)
{
	struct fixture *f = *state;
	char err[256] = "", path[160];

	f->cfg.audit_file = f->dir; /* a directory */
	assert_null(audit_open(&f->cfg, err, sizeof(err)));
	assert_non_null(strstr(err, f->dir));
	snprintf(path, sizeof(path), "%s/missing/audit.log", f->dir);
	f->cfg.audit_file = path;
	err[0] = '\0';
	assert_null(audit_open(&f->cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "No such file"));
}

/* Existing records are kept: the file is appended to. */
static void test_appends(void **state)
{
	struct fixture *f = *state;
	struct audit_entry e = sample();
	struct lines l = {0};
	char err[256];

	for (int i = 0; i < 2; i++) {
		struct audit *a = audit_open(&f->cfg, err, sizeof(err));

		assert_non_null(a);
		audit_record(a, &e);
		audit_close(a);
	}
	assert_true(lines_read(f->path, &l));
	assert_int_equal(l.n, 2);
	lines_free(&l);
}

/* Records numbered 0..n-1 through request_id; returns the number of a line. */
static long seq_of(json_object *o)
{
	const char *id = str(o, "request_id");

	assert_non_null(id);
	return strtol(id + 2, NULL, 10);
}

static void record_numbered(struct audit *a, int n)
{
	struct audit_entry e = sample();
	char id[32];

	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "r-%d", i);
		e.request_id = id;
		audit_record(a, &e);
	}
}

static void test_rotation_keeps_n(void **state)
{
	struct fixture *f = *state;
	char err[256], name[160];
	struct lines l = {0};
	struct audit *a;
	long next = -1;
	const int n = 400;

	f->cfg.audit_max_bytes = 8192;
	f->cfg.audit_keep = 3;
	a = audit_open(&f->cfg, err, sizeof(err));
	assert_non_null(a);
	record_numbered(a, n);
	audit_close(a);

	/* oldest first: file.3, file.2, file.1, file; together a contiguous
	 * run of the newest records, ending with the last */
	for (int i = 3; i >= 0; i--) {
		struct stat st;
		size_t before = l.n;

		if (i == 0)
			snprintf(name, sizeof(name), "%s", f->path);
		else
			snprintf(name, sizeof(name), "%s.%d", f->path, i);
		assert_true(lines_read(name, &l));
		assert_int_equal(stat(name, &st), 0);
		assert_true((uint64_t)st.st_size <= f->cfg.audit_max_bytes);
		assert_int_equal(st.st_mode & 0777, 0600);
		assert_true(l.n > before);
		if (i > 0) /* a full file: the next line would not have fit */
			assert_true((uint64_t)st.st_size + l.longest > f->cfg.audit_max_bytes);
	}
	snprintf(name, sizeof(name), "%s.4", f->path);
	assert_int_equal(access(name, F_OK), -1);
	for (size_t i = 0; i < l.n; i++) {
		long s = seq_of(l.v[i]);

		if (next >= 0)
			assert_int_equal(s, next);
		next = s + 1;
	}
	assert_int_equal(next, n);
	assert_true(l.n < (size_t)n); /* older ones were dropped */
	lines_free(&l);
}

static void test_rotation_keep_zero(void **state)
{
	struct fixture *f = *state;
	char err[256], name[160];
	struct lines l = {0};
	struct audit *a;

	f->cfg.audit_max_bytes = 4096;
	f->cfg.audit_keep = 0;
	a = audit_open(&f->cfg, err, sizeof(err));
	assert_non_null(a);
	record_numbered(a, 100);
	audit_close(a);
	snprintf(name, sizeof(name), "%s.1", f->path);
	assert_int_equal(access(name, F_OK), -1);
	assert_true(lines_read(f->path, &l));
	assert_true(l.n > 0 && l.n < 100);
	assert_int_equal(seq_of(l.v[l.n - 1]), 99);
	lines_free(&l);
}

struct writer {
	struct audit *a;
	int id;
};

#define WRITERS 8
#define PER_WRITER 400

static void *writer_thread(void *arg)
{
	struct writer *w = arg;
	struct audit_entry e = sample();
	char code[3000], id[32];

	/* a long line of the writer's own letter: any interleaving shows */
	memset(code, 'a' + w->id, sizeof(code));
	e.code = code;
	e.code_len = sizeof(code);
	for (int i = 0; i < PER_WRITER; i++) {
		snprintf(id, sizeof(id), "%d-%d", w->id, i);
		e.request_id = id;
		audit_record(w->a, &e);
	}
	return NULL;
}

static void test_concurrent_writers(void **state)
{
	struct fixture *f = *state;
	pthread_t t[WRITERS];
	struct writer w[WRITERS];
	int next[WRITERS] = {0};
	struct lines l = {0};
	char err[256], name[160];
	struct audit *a;

	f->cfg.audit_code = true;
	/* rotation under way too; enough files to keep every record */
	f->cfg.audit_max_bytes = 256 << 10;
	f->cfg.audit_keep = 100;
	a = audit_open(&f->cfg, err, sizeof(err));
	assert_non_null(a);
	for (int i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){.a = a, .id = i};
		assert_int_equal(pthread_create(&t[i], NULL, writer_thread, &w[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++)
		pthread_join(t[i], NULL);
	audit_close(a);

	for (int i = 100; i >= 0; i--) {
		if (i == 0)
			snprintf(name, sizeof(name), "%s", f->path);
		else
			snprintf(name, sizeof(name), "%s.%d", f->path, i);
		lines_read(name, &l);
	}
	assert_int_equal(l.n, WRITERS * PER_WRITER);
	for (size_t i = 0; i < l.n; i++) {
		const char *id = str(l.v[i], "request_id"), *code = str(l.v[i], "code");
		char *end;
		long wid = strtol(id, &end, 10), seq = strtol(end + 1, NULL, 10);

		assert_true(wid >= 0 && wid < WRITERS);
		assert_int_equal(strlen(code), 3000);
		assert_int_equal(strspn(code, (char[]){(char)('a' + wid), 0}), 3000);
		/* one writer's records stay in its order */
		assert_int_equal(seq, next[wid]);
		next[wid]++;
	}
	lines_free(&l);
}

static void test_reopen_after_move(void **state)
{
	struct fixture *f = *state;
	struct audit_entry e = sample();
	struct lines l = {0};
	char err[256], moved[160];
	struct audit *a = audit_open(&f->cfg, err, sizeof(err));
	struct stat st;

	assert_non_null(a);
	e.request_id = "before";
	audit_record(a, &e);
	audit_flush(a);
	/* logrotate: move the file away, then SIGHUP */
	snprintf(moved, sizeof(moved), "%s.moved", f->path);
	assert_int_equal(rename(f->path, moved), 0);
	e.request_id = "still-old-fd";
	audit_record(a, &e); /* before the reopen: follows the old file */
	audit_reopen(a);
	e.request_id = "after";
	audit_record(a, &e);
	audit_close(a);

	assert_true(lines_read(moved, &l));
	assert_int_equal(l.n, 2);
	assert_string_equal(str(l.v[0], "request_id"), "before");
	assert_string_equal(str(l.v[1], "request_id"), "still-old-fd");
	lines_free(&l);
	assert_true(lines_read(f->path, &l));
	assert_int_equal(l.n, 1);
	assert_string_equal(str(l.v[0], "request_id"), "after");
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	lines_free(&l);
}

/* A disk that refuses every write: records are lost, the caller goes on. */
static void test_write_errors_do_not_stop(void **state)
{
	struct fixture *f = *state;
	struct audit_entry e = sample();
	char err[256];
	struct audit *a;

	if (access("/dev/full", W_OK) != 0)
		skip();
	f->cfg.audit_file = "/dev/full";
	a = audit_open(&f->cfg, err, sizeof(err));
	assert_non_null(a);
	for (int i = 0; i < 50; i++)
		audit_record(a, &e);
	audit_flush(a);
	audit_reopen(a);
	audit_record(a, &e);
	audit_close(a);
}

static void test_reason_names(void **state)
{
	(void)state;
	assert_string_equal(audit_reason_name(EXEC_REASON_EXITED), "REASON_EXITED");
	assert_string_equal(audit_reason_name(EXEC_REASON_SANDBOX_ERROR), "REASON_SANDBOX_ERROR");
	assert_string_equal(audit_reason_name(EXEC_REASON_WALL_TIMEOUT), "REASON_WALL_TIMEOUT");
	assert_string_equal(audit_reason_name((enum exec_reason)99), "REASON_UNSPECIFIED");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_record_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_code_when_enabled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_precomputed_hash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disabled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_appends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_keeps_n, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_keep_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_after_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_errors_do_not_stop, setup, teardown),
		cmocka_unit_test(test_reason_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
