/* The payload memfd: what the front packs is what the sandbox unpacks,
 * sealed against change, and a damaged payload is refused. */
#include <fcntl.h>
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

#include "sandbox/payload.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/capibox-payload-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *slurp(const char *path, size_t *len)
{
	static char buf[4096];
	int fd = open(path, O_RDONLY);
	ssize_t n;
	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

static void test_roundtrip(void **state)
{
	struct exec_file files[] = {
		{"data/sales.csv", (const uint8_t *)"a,b\n1,2\n", 8, 0600},
		{"empty", (const uint8_t *)"", 0, 0},
		{"x/y/z/run.sh", (const uint8_t *)"#!/bin/sh\n", 10, 0755},
	};
	struct exec_request req = {
		.code = "print(1)\n", .code_len = 9, .files = files, .n_files = 3};
	char path[256], err[256];
	struct stat st;
	size_t len;
	char *s;
	int fd, dfd;
	(void)state;

	fd = payload_create(&req);
	assert_true(fd >= 0);
	/* sealed: nobody can change it afterwards */
	assert_int_equal(write(fd, "x", 1), -1);
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	snprintf(path, sizeof(path), "%s/main.py", dir);
	assert_int_equal(payload_extract(fd, path, dfd, err, sizeof(err)), 0);
	s = slurp(path, &len);
	assert_non_null(s);
	assert_string_equal(s, "print(1)\n");
	snprintf(path, sizeof(path), "%s/data/sales.csv", dir);
	s = slurp(path, &len);
	assert_non_null(s);
	assert_string_equal(s, "a,b\n1,2\n");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	snprintf(path, sizeof(path), "%s/empty", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	snprintf(path, sizeof(path), "%s/x/y/z/run.sh", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	close(dfd);
	close(fd);
}

static void test_damaged(void **state)
{
	struct exec_request req = {.code = "print(1)\n", .code_len = 9};
	char path[256], err[256];
	int fd, dfd;
	/* magic, one file announced, code length far past the end */
	uint32_t bad[4] = {0x32584243u, 1, 1000, 0};
	(void)state;
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	fd = payload_blob("bad", bad, sizeof(bad));
	assert_true(fd >= 0);
	snprintf(path, sizeof(path), "%s/bad.py", dir);
	assert_int_equal(payload_extract(fd, path, dfd, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "payload"));
	close(fd);
	/* a file record announced but missing */
	req.n_files = 0;
	fd = payload_create(&req);
	close(fd);
	close(dfd);
}

/* The collect globs travel after the files and come back as one array. */
static void test_globs(void **state)
{
	const char *globs[] = {"out/*.png", "**/*.csv", "a/**/b"};
	struct exec_file files[] = {{"in.txt", (const uint8_t *)"x", 1, 0}};
	struct exec_request req = {.code = "print(1)\n",
				   .code_len = 9,
				   .files = files,
				   .n_files = 1,
				   .collect = globs,
				   .n_collect = 3};
	char path[256], err[256], **got = (char **)1;
	int fd, dfd;
	(void)state;

	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	fd = payload_create(&req);
	assert_true(fd >= 0);
	snprintf(path, sizeof(path), "%s/g.py", dir);
	assert_int_equal(payload_unpack(fd, path, dfd, &got, err, sizeof(err)), 0);
	assert_non_null(got);
	assert_string_equal(got[0], "out/*.png");
	assert_string_equal(got[1], "**/*.csv");
	assert_string_equal(got[2], "a/**/b");
	assert_null(got[3]);
	free(got);
	close(fd);

	/* none: NULL; and payload_extract ignores them */
	req.n_collect = 0;
	fd = payload_create(&req);
	snprintf(path, sizeof(path), "%s/h.py", dir);
	assert_int_equal(payload_unpack(fd, path, dfd, &got, err, sizeof(err)), 0);
	assert_null(got);
	close(fd);
	req.n_collect = 3;
	fd = payload_create(&req);
	snprintf(path, sizeof(path), "%s/i.py", dir);
	assert_int_equal(payload_extract(fd, path, dfd, err, sizeof(err)), 0);
	close(fd);

	/* a glob the front would refuse is refused here too (the payload is
	 * not trusted) */
	globs[1] = "../etc/*";
	fd = payload_create(&req);
	snprintf(path, sizeof(path), "%s/j.py", dir);
	got = NULL;
	assert_int_equal(payload_unpack(fd, path, dfd, &got, err, sizeof(err)), -1);
	assert_null(got);
	assert_non_null(strstr(err, "collect"));
	close(fd);
	close(dfd);
}

static void test_blob(void **state)
{
	char buf[16];
	int fd = payload_blob("stdin", "hello", 5);
	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "hello", 5);
	close(fd);
	fd = payload_blob("empty", NULL, 0);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 0);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_damaged),
		cmocka_unit_test(test_globs),
		cmocka_unit_test(test_blob),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
