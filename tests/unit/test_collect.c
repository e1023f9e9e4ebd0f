/*
 * Collect globs: the matcher, the MIME sniffer and the walk (into a memfd
 * standing for the events pipe), with the tricks code can leave behind:
 * symlinks to files and directories, FIFOs, files over the budget.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox/collect.h"

static void test_match(void **state)
{
	static const struct {
		const char *glob, *path;
		bool match;
	} cases[] = {
		{"*.png", "plot.png", true},
		{"*.png", "out/plot.png", false}, /* '*' never crosses '/' */
		{"out/*.png", "out/plot.png", true},
		{"out/*.png", "out/sub/plot.png", false},
		{"?.csv", "a.csv", true},
		{"?.csv", "ab.csv", false},
		{"[ab].txt", "b.txt", true},
		{"[ab].txt", "c.txt", false},
		{"**/*.csv", "a.csv", true}, /* "**" matches no part too */
		{"**/*.csv", "x/y/z/a.csv", true},
		{"**/*.csv", "x/y/z/a.txt", false},
		{"a/**/b", "a/b", true},
		{"a/**/b", "a/x/b", true},
		{"a/**/b", "a/x/y/b", true},
		{"a/**/b", "a/x/y/c", false},
		{"a/**/b", "x/a/b", false},
		{"**", "anything", true},
		{"**", "deep/down/file", true},
		{"**/**/x", "x", true},
		{"**/x/**", "a/x/b/c", true},
		{"out", "out", true},
		{"out", "out2", false},
		/* dotfiles: matched only by a part starting with '.' */
		{"*", ".hidden", false},
		{"**", ".cache/m/f", false},
		{"**/*.png", ".cache/x.png", false},
		{"**/*.png", "a/.b/x.png", false},
		{".*", ".hidden", true},
		{".cache/**", ".cache/m/f", true},
		{".cache/**/*.png", ".cache/a/x.png", true},
		{"*.png", ".png", false},
		{"a**b", "axxb", true}, /* "**" inside a part is a '*' */
		{"a**b", "ax/xb", false},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got = collect_match(cases[i].glob, cases[i].path);
		if (got != cases[i].match)
			fail_msg("glob %s, path %s: got %d", cases[i].glob, cases[i].path, got);
	}
}

static void test_glob_check(void **state)
{
	(void)state;
	assert_null(collect_glob_check("out/*.png", 9));
	assert_null(collect_glob_check("**", 2));
	assert_null(collect_glob_check("..x", 3)); /* a name, not the parent */
	assert_non_null(collect_glob_check("", 0));
	assert_non_null(collect_glob_check("/etc/*", 6));
	assert_non_null(collect_glob_check("../x", 4));
	assert_non_null(collect_glob_check("a/../x", 6));
	assert_non_null(collect_glob_check("a//x", 4));
	assert_non_null(collect_glob_check("a/", 2));
	assert_non_null(collect_glob_check("./a", 3));
	assert_non_null(collect_glob_check("a\0b", 3));
}

static void test_mime(void **state)
{
	static const uint8_t png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
	static const uint8_t jpeg[] = "\xff\xd8\xff\xe0\0\x10JFIF";
	static const char svg[] =
		"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
	static const char html[] = "  <!DOCTYPE html><html></html>";
	static const uint8_t latin1[] = "caf\xe9";
	static const uint8_t cut[] = "caf\xc3"; /* a 2-byte sequence cut after its first */
	(void)state;
#define M(path, data, len, complete) collect_mime_type(path, (const uint8_t *)(data), len, complete)
	assert_string_equal(M("plot.png", png, sizeof(png) - 1, true), "image/png");
	assert_string_equal(M("plot.csv", png, sizeof(png) - 1, true),
			    "image/png"); /* content wins */
	assert_string_equal(M("p.jpg", jpeg, sizeof(jpeg) - 1, true), "image/jpeg");
	assert_string_equal(M("r.bin", "%PDF-1.7\n", 9, true), "application/pdf");
	assert_string_equal(M("d.svg", svg, strlen(svg), true), "image/svg+xml");
	assert_string_equal(M("d.xml", svg, strlen(svg), true), "image/svg+xml");
	assert_string_equal(M("fake.svg", "hello", 5, true), "text/plain");
	assert_string_equal(M("page", html, strlen(html), true), "text/html");
	assert_string_equal(M("page.html", "hi", 2, true), "text/html");
	assert_string_equal(M("t.csv", "a,b\n1,2\n", 8, true), "text/csv");
	assert_string_equal(M("t.json", "{}", 2, true), "application/json");
	assert_string_equal(M("notes", "h\xc3\xa9llo", 6, true), "text/plain");
	assert_string_equal(M("empty", "", 0, true), "text/plain");
	assert_string_equal(M("x.csv", latin1, 4, true), "application/octet-stream");
	assert_string_equal(M("x.txt", "a\0b", 3, true), "application/octet-stream");
	assert_string_equal(M("x.png", "not a png", 9, true), "text/plain");
	assert_string_equal(M("x.txt", cut, 4, false), "text/plain"); /* the rest follows */
	assert_string_equal(M("x.txt", cut, 4, true), "application/octet-stream");
	assert_string_equal(M("x.txt", "\xed\xa0\x80", 3, true), "application/octet-stream");
	assert_string_equal(M("x.txt", "\xc0\xaf", 2, true), "application/octet-stream");
#undef M
}

/* ---- the walk ---- */

static char dir[64];
static int homefd = -1;

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/capibox-collect-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	homefd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return homefd >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	(void)state;
	close(homefd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *rel, const void *data, size_t len)
{
	char path[256], *slash;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	for (slash = strchr(path + strlen(dir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(path, 0755);
		*slash = '/';
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void put_size(const char *rel, size_t len, uint8_t seed)
{
	uint8_t *buf = malloc(len);
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 7 + seed);
	put(rel, buf, len);
	free(buf);
}

struct frame {
	char path[1100];
	uint64_t offset, size;
	uint8_t flags;
	const uint8_t *data;
	size_t len;
};

static uint64_t le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

struct run {
	int memfd;
	uint8_t *map;
	size_t len;
	struct frame f[64];
	size_t n;
	struct collect_stats st;
};

/* Collects with globs into a memfd and parses the frames back. */
static void run_collect(struct run *r, const char *const *globs, size_t n, uint64_t budget)
{
	struct stat st;
	size_t off = 0;

	memset(r, 0, sizeof(*r));
	r->memfd = memfd_create("events", MFD_CLOEXEC);
	assert_true(r->memfd >= 0);
	assert_int_equal(collect_run(homefd, globs, n, r->memfd, budget, &r->st), 0);
	assert_int_equal(fstat(r->memfd, &st), 0);
	r->len = (size_t)st.st_size;
	r->map = r->len ? mmap(NULL, r->len, PROT_READ, MAP_PRIVATE, r->memfd, 0) : NULL;
	while (off < r->len) {
		struct frame *f = &r->f[r->n++];
		uint64_t flen = le(r->map + off, 4);
		const uint8_t *p = r->map + off + 4;
		size_t plen;
		assert_true(r->n <= 64);
		assert_int_equal(p[0], 'A');
		plen = (size_t)le(p + 1, 2);
		memcpy(f->path, p + 3, plen);
		f->path[plen] = '\0';
		f->offset = le(p + 3 + plen, 8);
		f->size = le(p + 3 + plen + 8, 8);
		f->flags = p[3 + plen + 16];
		f->data = p + 3 + plen + 17;
		f->len = (size_t)(flen - (1 + 2 + plen + 17));
		assert_true(f->len <= COLLECT_CHUNK);
		off += 4 + flen;
	}
	assert_int_equal(off, r->len);
}

static void run_free(struct run *r)
{
	if (r->map)
		munmap(r->map, r->len);
	close(r->memfd);
}

static void test_walk_basic(void **state)
{
	const char *globs[] = {"out/*.png", "**/*.csv"};
	char target[128];
	struct run r;
	(void)state;

	put("out/plot.png", "\x89PNG\r\n\x1a\nDATA", 12);
	put("out/plot.txt", "no", 2);
	put("a.csv", "1\n", 2);
	put("d1/d2/b.csv", "2\n", 2);
	put("d1/c.csv", "3\n", 2);
	put(".cache/x.csv", "hidden\n", 7);
	put("secret/real.csv", "mine\n", 5);
	/* a symlink to a file outside, named like a match: never followed */
	snprintf(target, sizeof(target), "%s/x.csv", dir);
	assert_int_equal(symlink("/etc/passwd", target), 0);
	/* a symlinked directory: never entered */
	snprintf(target, sizeof(target), "%s/link", dir);
	assert_int_equal(symlink("/etc", target), 0);
	snprintf(target, sizeof(target), "%s/up", dir);
	assert_int_equal(symlink("secret", target), 0);
	/* a FIFO named like a match: skipped, no hang */
	snprintf(target, sizeof(target), "%s/fifo.csv", dir);
	assert_int_equal(mkfifo(target, 0644), 0);

	run_collect(&r, globs, 2, COLLECT_BUDGET);
	/* sorted per directory, files and directories in one order */
	assert_int_equal(r.n, 5);
	assert_string_equal(r.f[0].path, "a.csv");
	assert_string_equal(r.f[1].path, "d1/c.csv");
	assert_string_equal(r.f[2].path, "d1/d2/b.csv");
	assert_string_equal(r.f[3].path, "out/plot.png");
	assert_string_equal(r.f[4].path, "secret/real.csv");
	assert_int_equal(r.f[3].len, 12);
	assert_memory_equal(r.f[3].data, "\x89PNG\r\n\x1a\nDATA", 12);
	for (size_t i = 0; i < r.n; i++) {
		assert_int_equal(r.f[i].offset, 0);
		assert_int_equal(r.f[i].flags, COLLECT_FLAG_EOF);
		assert_int_equal(r.f[i].size, r.f[i].len);
		/* nothing of /etc/passwd, whatever the name */
		assert_null(memmem(r.f[i].data, r.f[i].len, "root:", 5));
	}
	assert_int_equal(r.st.files, 5);
	assert_false(r.st.truncated);
	run_free(&r);
}

static void test_walk_chunks(void **state)
{
	const char *globs[] = {"big.bin"};
	size_t size = 3 * COLLECT_CHUNK + 12345;
	uint8_t *all = malloc(size);
	size_t got = 0;
	struct run r;
	(void)state;

	put_size("big.bin", size, 3);
	run_collect(&r, globs, 1, COLLECT_BUDGET);
	assert_int_equal(r.n, 4);
	for (size_t i = 0; i < r.n; i++) {
		assert_string_equal(r.f[i].path, "big.bin");
		assert_int_equal(r.f[i].offset, got);
		assert_int_equal(r.f[i].size, size);
		assert_int_equal(r.f[i].flags, i == r.n - 1 ? COLLECT_FLAG_EOF : 0);
		memcpy(all + got, r.f[i].data, r.f[i].len);
		got += r.f[i].len;
	}
	assert_int_equal(got, size);
	for (size_t i = 0; i < size; i++)
		if (all[i] != (uint8_t)(i * 7 + 3))
			fail_msg("byte %zu differs", i);
	free(all);
	run_free(&r);
}

static void test_walk_budget(void **state)
{
	const char *globs[] = {"f*"};
	uint64_t budget = 2 * COLLECT_CHUNK;
	struct run r;
	(void)state;

	put_size("f1", COLLECT_CHUNK + 50, 1);
	put_size("f2", COLLECT_CHUNK + 50, 2); /* 100 bytes more than what is left */
	put_size("f3", 10, 3);		       /* after the cut: not sent */
	run_collect(&r, globs, 1, budget);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.f[0].path, "f1");
	assert_int_equal(r.f[0].flags, 0);
	assert_int_equal(r.f[1].flags, COLLECT_FLAG_EOF);
	assert_string_equal(r.f[2].path, "f2");
	assert_int_equal(r.f[2].offset, 0);
	assert_int_equal(r.f[2].len, COLLECT_CHUNK - 50);
	assert_int_equal(r.f[2].flags, COLLECT_FLAG_EOF | COLLECT_FLAG_TRUNCATED);
	assert_int_equal(r.f[2].size, COLLECT_CHUNK + 50);
	assert_int_equal(r.st.bytes, budget);
	assert_true(r.st.truncated);
	run_free(&r);
}

static void test_walk_limits(void **state)
{
	const char *globs[] = {"many/**", "empty"};
	char name[64];
	struct run r;
	(void)state;

	put("empty", "", 0);
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), i % 2 ? "many/%03d" : "many/deeper/%03d", i);
		put(name, "x", 1);
	}
	run_collect(&r, globs, 2, COLLECT_BUDGET);
	/* an empty file is one empty piece with eof */
	assert_string_equal(r.f[0].path, "empty");
	assert_int_equal(r.f[0].len, 0);
	assert_int_equal(r.f[0].size, 0);
	assert_int_equal(r.f[0].flags, COLLECT_FLAG_EOF);
	assert_int_equal(r.st.files, 41);
	run_free(&r);

	/* a glob matching nothing sends nothing */
	globs[0] = "nothing/**";
	run_collect(&r, globs, 1, COLLECT_BUDGET);
	assert_int_equal(r.n, 0);
	run_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_glob_check),
		cmocka_unit_test(test_mime),
		cmocka_unit_test_setup_teardown(test_walk_basic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_limits, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
