/*
 * Collect globs against the real daemon: files the code leaves under
 * /home/user come back as Artifact events after the run, in pieces with
 * offsets, within the per-run budget, and never anything a symlink, a FIFO
 * or a process still running could smuggle in. Python runs from the warm
 * pool (the globs travel with the take), bash cold.
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

#include "harness.h"

#ifndef CAPIBOX_CLI_PATH
#error "CAPIBOX_CLI_PATH must name the capibox command-line client"
#endif

static struct daemon daemon_;

static int setup(void **state)
{
	static const struct daemon_opts opts = {.uid_slot = 6};

	return harness_group_setup(state, &daemon_, &opts);
}

#define MAX_PIECES 256
#define MAX_FILES 16

struct file {
	char path[256];
	uint8_t *data;
	size_t len;
	bool in_order; /* every piece continued the one before */
	bool done;     /* eof seen */
};

/* What a run's artifact events said, recorded by the hook. */
struct arts {
	bool keep_data; /* reassemble files (off for the budget test) */
	int n_pieces;
	struct harness_piece pieces[MAX_PIECES];
	bool passwd[MAX_PIECES]; /* a piece's bytes hold a line of /etc/passwd */
	int n_files;
	struct file files[MAX_FILES];
	uint64_t bytes;
	bool after_finished;
	double t_first; /* arrival of the first artifact byte, seconds since the call */
};

static struct file *file_of(struct arts *a, const char *path)
{
	for (int i = 0; i < a->n_files; i++)
		if (strcmp(a->files[i].path, path) == 0)
			return &a->files[i];
	if (a->n_files == MAX_FILES)
		return NULL;
	snprintf(a->files[a->n_files].path, sizeof(a->files[0].path), "%s", path);
	a->files[a->n_files].in_order = true;
	return &a->files[a->n_files++];
}

static int hook(const struct capibox_event *ev, struct run *r, void *arg)
{
	struct arts *a = arg;
	struct file *f;

	if (ev->kind != CAPIBOX_EVENT_ARTIFACT)
		return 0;
	if (a->n_pieces == 0)
		a->t_first = harness_now() - r->t0;
	if (a->n_pieces < MAX_PIECES) {
		harness_piece_set(&a->pieces[a->n_pieces], ev);
		a->passwd[a->n_pieces] =
			ev->u.artifact.len >= 5 &&
			memmem(ev->u.artifact.content, ev->u.artifact.len, "root:", 5) != NULL;
	}
	a->n_pieces++;
	a->bytes += ev->u.artifact.len;
	a->after_finished |= r->n_finished > 0;
	f = file_of(a, ev->u.artifact.path);
	if (f == NULL)
		return 0;
	if (ev->u.artifact.offset != f->len || f->done)
		f->in_order = false;
	if (a->keep_data && f->in_order) {
		f->data = realloc(f->data, f->len + ev->u.artifact.len + 1);
		assert_non_null(f->data);
		memcpy(f->data + f->len, ev->u.artifact.content, ev->u.artifact.len);
	}
	f->len += ev->u.artifact.len;
	f->done = ev->u.artifact.eof;
	return 0;
}

static void arts_free(struct arts *a)
{
	for (int i = 0; i < a->n_files; i++)
		free(a->files[i].data);
	memset(a, 0, sizeof(*a));
}

/* Runs code with the globs, recording artifacts (data kept when keep). */
static void run_collect(struct daemon *d, const char *language, const char *code,
			const char *const *globs, size_t n, bool keep, struct run *r,
			struct arts *a)
{
	struct capibox_exec_request req = {
		.language = language, .code = code, .collect = globs, .n_collect = n};

	memset(a, 0, sizeof(*a));
	a->keep_data = keep;
	r->hook = hook;
	r->hook_arg = a;
	harness_run(d, &req, r);
	if (a->after_finished) {
		harness_run_print(r);
		fail_msg("an artifact came after Finished");
	}
}

static void print_pieces(const struct arts *a)
{
	for (int i = 0; i < a->n_pieces && i < MAX_PIECES; i++) {
		const struct harness_piece *p = &a->pieces[i];
		print_message("  piece %s %s offset %llu len %zu size %llu%s%s\n", p->path, p->mime,
			      (unsigned long long)p->offset, p->len, (unsigned long long)p->size,
			      p->eof ? " eof" : "", p->truncated ? " truncated" : "");
	}
}

/* Fails unless the run returned exactly the named files (in this order). */
static void expect_files(const struct arts *a, const char *const *paths, int n)
{
	bool ok = a->n_files == n;

	for (int i = 0; ok && i < n; i++)
		ok = strcmp(a->files[i].path, paths[i]) == 0 && a->files[i].done &&
		     a->files[i].in_order;
	if (!ok) {
		print_pieces(a);
		fail_msg("expected %d files (first %s), got %d", n, n > 0 ? paths[0] : "-",
			 a->n_files);
	}
}

/* A byte checksum both sides can compute: sum of bytes mod 2^32 and the length. */
static uint32_t sum32(const uint8_t *p, size_t len)
{
	uint32_t s = 0;
	for (size_t i = 0; i < len; i++)
		s += p[i];
	return s;
}

static void test_plot_png(void **state)
{
	static const char code[] = "import os, matplotlib\n"
				   "matplotlib.use('Agg')\n"
				   "import matplotlib.pyplot as plt\n"
				   "os.makedirs('out', exist_ok=True)\n"
				   "plt.plot([1, 2, 3], [3, 1, 2])\n"
				   "plt.savefig('out/plot.png')\n"
				   "plt.close('all')\n"
				   "open('out/notes.txt', 'w').write('not a png')\n"
				   "d = open('out/plot.png', 'rb').read()\n"
				   "print(len(d), sum(d) & 0xffffffff)\n";
	const char *globs[] = {"out/*.png"};
	const char *want[] = {"out/plot.png"};
	struct daemon *d = *state;
	struct run r = {0};
	struct arts a;
	char expect[64];

	HARNESS_REQUIRE(d);
	run_collect(d, "python", code, globs, 1, true, &r, &a);
	assert_run_exited(&r, 0);
	expect_files(&a, want, 1);
	assert_string_equal(a.pieces[0].mime, "image/png");
	assert_memory_equal(a.files[0].data, "\x89PNG\r\n\x1a\n", 8);
	snprintf(expect, sizeof(expect), "%zu %u\n", a.files[0].len,
		 sum32(a.files[0].data, a.files[0].len));
	assert_run_stdout(&r, expect);
	arts_free(&a);
	harness_run_free(&r);
}

static void test_globstar_csv(void **state)
{
	static const char code[] = "mkdir -p a/b/c .hid\n"
				   "echo 1 > x.csv; echo 2 > a/y.csv; echo 3 > a/b/c/z.csv\n"
				   "echo no > a/n.txt; echo hidden > .hid/h.csv\n";
	const char *globs[] = {"**/*.csv"};
	const char *want[] = {"a/b/c/z.csv", "a/y.csv", "x.csv"};
	struct daemon *d = *state;
	struct run r = {0};
	struct arts a;

	HARNESS_REQUIRE(d);
	run_collect(d, "bash", code, globs, 1, true, &r, &a);
	assert_run_exited(&r, 0);
	expect_files(&a, want, 3);
	for (int i = 0; i < a.n_pieces; i++)
		assert_string_equal(a.pieces[i].mime, "text/csv");
	assert_memory_equal(a.files[0].data, "3\n", 2);
	arts_free(&a);
	harness_run_free(&r);
}

/* Symlinks (to a file, to a directory) and a FIFO, all named like matches. */
static void test_symlinks_and_fifo(void **state)
{
	static const char code[] = "ln -s /etc/passwd x.csv\n"
				   "ln -s /etc/passwd plain\n"
				   "mkdir real; echo ok > real/ok.csv\n"
				   "ln -s /etc linked\n"
				   "ln -s real alias\n"
				   "mkfifo f.csv\n";
	const char *globs[] = {"**/*.csv", "linked/*", "alias/*", "plain", "*"};
	const char *want[] = {"real/ok.csv"};
	struct daemon *d = *state;
	struct run r = {0};
	struct arts a;

	HARNESS_REQUIRE(d);
	run_collect(d, "bash", code, globs, 5, true, &r, &a);
	assert_run_exited(&r, 0);
	expect_files(&a, want, 1);
	for (int i = 0; i < a.n_pieces; i++)
		assert_false(a.passwd[i]);
	assert_true(r.wall_time_us < 10 * 1000 * 1000ULL); /* the FIFO did not block */
	arts_free(&a);
	harness_run_free(&r);
}

static void test_big_file_in_chunks(void **state)
{
	static const char code[] = "import os\n"
				   "d = os.urandom(10 * 1024 * 1024)\n"
				   "open('big.bin', 'wb').write(d)\n"
				   "print(len(d), sum(d) & 0xffffffff)\n";
	const char *globs[] = {"big.bin"};
	const char *want[] = {"big.bin"};
	struct daemon *d = *state;
	struct run r = {0};
	struct arts a;
	char expect[64];
	uint64_t off = 0;

	HARNESS_REQUIRE(d);
	run_collect(d, "python", code, globs, 1, true, &r, &a);
	assert_run_exited(&r, 0);
	expect_files(&a, want, 1);
	assert_int_equal(a.files[0].len, 10 * 1024 * 1024);
	assert_true(a.n_pieces >= 10);
	for (int i = 0; i < a.n_pieces; i++) {
		assert_int_equal(a.pieces[i].offset, off);
		assert_int_equal(a.pieces[i].size, 10 * 1024 * 1024);
		assert_true(a.pieces[i].eof == (i == a.n_pieces - 1));
		assert_false(a.pieces[i].truncated);
		off += a.pieces[i].len;
	}
	snprintf(expect, sizeof(expect), "%zu %u\n", a.files[0].len,
		 sum32(a.files[0].data, a.files[0].len));
	assert_run_stdout(&r, expect);
	print_message("  first artifact byte %.1f ms after the call\n", a.t_first * 1000);
	arts_free(&a);
	harness_run_free(&r);
}

static void test_budget(void **state)
{
	static const char code[] = "head -c 40M /dev/zero > a.bin\n"
				   "head -c 40M /dev/zero > b.bin\n"
				   "echo after > c.bin\n";
	const char *globs[] = {"*.bin"};
	struct daemon *d = *state;
	struct run r = {0};
	struct arts a;
	const struct harness_piece *last;

	HARNESS_REQUIRE(d);
	run_collect(d, "bash", code, globs, 1, false, &r, &a);
	assert_run_exited(&r, 0);
	if (a.n_files != 2) {
		print_pieces(&a);
		fail_msg("expected a.bin whole and b.bin cut, got %d files", a.n_files);
	}
	assert_string_equal(a.files[0].path, "a.bin");
	assert_int_equal(a.files[0].len, 40 << 20);
	assert_string_equal(a.files[1].path, "b.bin");
	assert_int_equal(a.files[1].len, 24 << 20);
	assert_int_equal(a.bytes, 64 << 20);
	last = &a.pieces[a.n_pieces - 1];
	assert_string_equal(last->path, "b.bin");
	assert_true(last->truncated);
	assert_true(last->eof);
	assert_int_equal(last->size, 40 << 20);
	arts_free(&a);
	harness_run_free(&r);
}

/*
 * A file the code made unreadable (mode 000) is skipped: the collector
 * reads with the sandbox user's rights, no more (the code could chmod it
 * back itself if it wanted it returned).
 */
static void test_mode_000(void **state)
{
	static const char code[] = "echo secret > locked.txt; chmod 000 locked.txt\n"
				   "echo open > open.txt\n";
	const char *globs[] = {"*.txt"};
	const char *want[] = {"open.txt"};
	struct daemon *d = *state;
	struct run r = {0};
	struct arts a;

	HARNESS_REQUIRE(d);
	run_collect(d, "bash", code, globs, 1, true, &r, &a);
	assert_run_exited(&r, 0);
	expect_files(&a, want, 1);
	arts_free(&a);
	harness_run_free(&r);
}

/*
 * A background process that outlives the code, waits 50 ms and then keeps
 * rewriting a collected file: it is killed before the walk starts, so the
 * file holds what it held when the code ended. Without the kill it would
 * show: the walk first sends a 32 MiB file, which takes longer than that.
 */
static void test_background_writer_killed(void **state)
{
	static const char code[] = "echo waiting > z.txt\n"
				   "head -c 32M /dev/urandom > a.bin\n"
				   "( while kill -0 $$ 2>/dev/null; do :; done; sleep 0.05\n"
				   "  while :; do echo ALIVE > z.txt; done ) &\n"
				   "exit 0\n";
	const char *globs[] = {"a.bin", "z.txt"};
	const char *want[] = {"a.bin", "z.txt"};
	struct daemon *d = *state;
	struct run r = {0};
	struct arts a;

	HARNESS_REQUIRE(d);
	run_collect(d, "bash", code, globs, 2, true, &r, &a);
	assert_run_exited(&r, 0);
	expect_files(&a, want, 2);
	assert_int_equal(a.files[1].len, 8);
	assert_memory_equal(a.files[1].data, "waiting\n", 8);
	arts_free(&a);
	harness_run_free(&r);
}

static void test_invalid_globs(void **state)
{
	static const struct {
		const char *globs[2];
		const char *field;
	} cases[] = {
		{{"/etc/passwd", NULL}, "collect[0]"},
		{{"ok/*.png", "../x"}, "collect[1]"},
		{{"a//b", NULL}, "collect[0]"},
		{{"", NULL}, "collect[0]"},
	};
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct run r = {0};
		struct arts a;
		size_t n = cases[i].globs[1] ? 2 : 1;
		run_collect(d, "bash", "echo hi\n", cases[i].globs, n, false, &r, &a);
		if (r.st.code != CAPIBOX_INVALID_ARGUMENT ||
		    strstr(r.st.message, cases[i].field) == NULL) {
			harness_run_print(&r);
			fail_msg("case %zu: expected INVALID_ARGUMENT naming %s", i,
				 cases[i].field);
		}
		assert_int_equal(r.n_started, 0);
		harness_run_free(&r);
	}
}

/* The CLI: --collect GLOB --out DIR saves the files (pieces joined) under DIR. */
static void test_cli_out_dir(void **state)
{
	struct daemon *d = *state;
	char dir[] = "/tmp/capibox-collect-cli-XXXXXX", path[128], *out = NULL;
	const char *argv[] = {CAPIBOX_CLI_PATH,
			      "-a",
			      d->addr,
			      "exec",
			      "-l",
			      "bash",
			      "-c",
			      "mkdir -p r/s; head -c 3000000 /dev/zero | tr '\\0' x > r/s/big.txt",
			      "--collect",
			      "r/**",
			      "--out",
			      dir,
			      NULL};
	struct stat st;
	int rc;

	HARNESS_REQUIRE(d);
	assert_non_null(mkdtemp(dir));
	harness_remove_at_finish(dir);
	rc = harness_command(argv, &out);
	if (rc != 0)
		fail_msg("capibox exec: status %d, output: %s", rc, out);
	snprintf(path, sizeof(path), "%s/r/s/big.txt", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 3000000);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plot_png),
		cmocka_unit_test(test_globstar_csv),
		cmocka_unit_test(test_symlinks_and_fifo),
		cmocka_unit_test(test_big_file_in_chunks),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_mode_000),
		cmocka_unit_test(test_background_writer_killed),
		cmocka_unit_test(test_invalid_globs),
		cmocka_unit_test(test_cli_out_dir),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	harness_init();
	rc = cmocka_run_group_tests(tests, setup, harness_group_teardown);
	return harness_finish(rc);
}
