/*
 * The events pipe against the real daemon: final-expression results from
 * Python and JavaScript and matplotlib figures (warm and cold), artifacts
 * in pieces, the per-run limits, and hostile writers of the runner's fd 4,
 * which end their run with a reason while the daemon keeps serving.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#ifndef CAPIBOX_CLI_PATH
#error "CAPIBOX_CLI_PATH must name the capibox command-line client"
#endif

static struct daemon daemon_;

static int setup(void **state)
{
	static const struct daemon_opts opts = {.uid_slot = 5};

	return harness_group_setup(state, &daemon_, &opts);
}

#define MAX_ITEMS 80

/* What a run's result and artifact events said, recorded by the hook. */
struct events {
	int n_results;
	char *text[MAX_ITEMS];
	char *json[MAX_ITEMS];
	char mime[MAX_ITEMS][64];
	size_t out_len_at_result; /* stdout bytes seen when the first result came */
	int n_pieces;		  /* artifact events (more than MAX_ITEMS are counted only) */
	struct harness_piece pieces[MAX_ITEMS];
	uint64_t artifact_bytes;
	uint8_t *file; /* the first artifact file, reassembled */
	size_t file_len;
	bool file_ok; /* its pieces came in order */
	bool after_finished;
	bool warm; /* Started said a pooled sandbox ran it */
};

static int hook(const struct capibox_event *ev, struct run *r, void *arg)
{
	struct events *e = arg;

	if (ev->kind == CAPIBOX_EVENT_STARTED)
		e->warm = ev->u.started.warm;
	if (ev->kind == CAPIBOX_EVENT_RESULT) {
		if (e->n_results == 0)
			e->out_len_at_result = r->out_len;
		if (e->n_results < MAX_ITEMS) {
			e->text[e->n_results] = strdup(ev->u.result.text);
			e->json[e->n_results] = strdup(ev->u.result.json);
			snprintf(e->mime[e->n_results], sizeof(e->mime[0]), "%s",
				 ev->u.result.mime_type);
		}
		e->n_results++;
		e->after_finished |= r->n_finished > 0;
	} else if (ev->kind == CAPIBOX_EVENT_ARTIFACT) {
		const char *first = e->n_pieces > 0 ? e->pieces[0].path : ev->u.artifact.path;
		if (e->n_pieces < MAX_ITEMS)
			harness_piece_set(&e->pieces[e->n_pieces], ev);
		if (e->n_pieces == 0)
			e->file_ok = true;
		if (strcmp(first, ev->u.artifact.path) == 0 && e->file_ok &&
		    e->file_len < 64 * 1024 * 1024) {
			if (ev->u.artifact.offset != e->file_len) {
				e->file_ok = false;
			} else {
				e->file = realloc(e->file, e->file_len + ev->u.artifact.len + 1);
				assert_non_null(e->file);
				memcpy(e->file + e->file_len, ev->u.artifact.content,
				       ev->u.artifact.len);
				e->file_len += ev->u.artifact.len;
			}
		}
		e->n_pieces++;
		e->artifact_bytes += ev->u.artifact.len;
		e->after_finished |= r->n_finished > 0;
	}
	return 0;
}

static void events_free(struct events *e)
{
	for (int i = 0; i < e->n_results && i < MAX_ITEMS; i++) {
		free(e->text[i]);
		free(e->json[i]);
	}
	free(e->file);
	memset(e, 0, sizeof(*e));
}

/* Runs code (language, one env entry or none) recording its events. */
static void run_env(struct daemon *d, const char *language, const char *code, const char *env_name,
		    const char *env_value, struct run *r, struct events *e)
{
	struct capibox_env env = {.name = env_name, .value = env_value};
	struct capibox_exec_request req = {.language = language, .code = code};

	if (env_name != NULL) {
		req.env = &env;
		req.n_env = 1;
	}
	memset(e, 0, sizeof(*e));
	r->hook = hook;
	r->hook_arg = e;
	harness_run(d, &req, r);
	if (e->after_finished) {
		harness_run_print(r);
		fail_msg("a result or artifact came after Finished");
	}
}

static void run_py(struct daemon *d, const char *code, struct run *r, struct events *e)
{
	run_env(d, "python", code, NULL, NULL, r, e);
}

static void expect_one_result(struct run *r, struct events *e, const char *text, const char *json)
{
	if (e->n_results != 1) {
		harness_run_print(r);
		fail_msg("expected one result, got %d", e->n_results);
	}
	assert_string_equal(e->text[0], text);
	assert_string_equal(e->json[0], json);
	assert_string_equal(e->mime[0], "text/plain");
}

static void test_expression_result(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;

	HARNESS_REQUIRE(d);
	run_py(d, "1 + 1\n", &r, &e);
	assert_run_exited(&r, 0);
	expect_one_result(&r, &e, "2", "2");
	assert_int_equal(r.out_len, 0); /* a result is not output */
	events_free(&e);
	harness_run_free(&r);
}

static void test_no_result_for_statements(void **state)
{
	static const char *const codes[] = {
		"x = 5\n",
		"print('hi')\n",		     /* an expression whose value is None */
		"def f():\n    return 3\n",	     /* a definition */
		"x = 1\nif x:\n    x + 1\n",	     /* the last statement is an if */
		"import os\nos.environ.get('NO')\n", /* None */
	};
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		struct run r = {0};
		struct events e;
		run_py(d, codes[i], &r, &e);
		assert_run_exited(&r, 0);
		if (e.n_results != 0) {
			harness_run_print(&r);
			fail_msg("code %zu: expected no result, got \"%s\"", i, e.text[0]);
		}
		events_free(&e);
		harness_run_free(&r);
	}
}

static void test_result_after_output(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;

	HARNESS_REQUIRE(d);
	/* the output goes first, even when much of it is still in its pipe */
	run_py(d, "print('x' * 300000)\nx = 6\nx * 7\n", &r, &e);
	assert_run_exited(&r, 0);
	expect_one_result(&r, &e, "42", "42");
	assert_int_equal(r.out_len, 300001);
	assert_int_equal(e.out_len_at_result, 300001);
	events_free(&e);
	harness_run_free(&r);
}

static void test_json_result(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;

	HARNESS_REQUIRE(d);
	run_py(d, "{'a': [1, 2.5, None], 'b': 'x\\u00e9'}\n", &r, &e);
	assert_run_exited(&r, 0);
	expect_one_result(&r, &e, "{'a': [1, 2.5, None], 'b': 'x\xc3\xa9'}",
			  "{\"a\": [1, 2.5, null], \"b\": \"x\\u00e9\"}");
	events_free(&e);
	harness_run_free(&r);

	/* not JSON-serialisable: text only */
	run_py(d, "{1, 2}\n", &r, &e);
	assert_run_exited(&r, 0);
	expect_one_result(&r, &e, "{1, 2}", "");
	events_free(&e);
	harness_run_free(&r);

	/* NaN is not JSON */
	run_py(d, "float('nan')\n", &r, &e);
	assert_run_exited(&r, 0);
	expect_one_result(&r, &e, "nan", "");
	events_free(&e);
	harness_run_free(&r);

	/* a pandas DataFrame: its repr */
	run_py(d, "import pandas as pd\npd.DataFrame({'a': [1, 2]})\n", &r, &e);
	assert_run_exited(&r, 0);
	expect_one_result(&r, &e, "   a\n0  1\n1  2", "");
	events_free(&e);
	harness_run_free(&r);
}

static void test_repr_raises(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;

	HARNESS_REQUIRE(d);
	run_py(d,
	       "class X:\n    def __repr__(self):\n        raise ValueError('no')\n"
	       "print('before')\nX()\n",
	       &r, &e);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "before\n");
	assert_int_equal(e.n_results, 0);
	assert_non_null(strstr((char *)r.err, "repr() raised ValueError"));
	events_free(&e);
	harness_run_free(&r);
}

static void test_exception_in_last_expression(void **state)
{
	static const char tb[] = "Traceback (most recent call last):\n"
				 "  File \"/.capibox/main.py\", line 3, in <module>\n"
				 "    x / y\n";
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;

	HARNESS_REQUIRE(d);
	/* the traceback a file run gives: the file's line, no runner frame */
	run_py(d, "x = 1\ny = 0\nx / y\n", &r, &e);
	assert_run_exited(&r, 1);
	assert_int_equal(e.n_results, 0);
	if (strncmp((char *)r.err, tb, sizeof(tb) - 1) != 0 ||
	    strstr((char *)r.err, "ZeroDivisionError: division by zero\n") == NULL ||
	    strstr((char *)r.err, "runner") != NULL) {
		harness_run_print(&r);
		fail_msg("unexpected traceback");
	}
	events_free(&e);
	harness_run_free(&r);

	/* sys.exit() as the last expression exits as before */
	run_py(d, "import sys\nsys.exit(3)\n", &r, &e);
	assert_run_exited(&r, 3);
	assert_int_equal(e.n_results, 0);
	events_free(&e);
	harness_run_free(&r);

	/* a syntax error names the file and line */
	run_py(d, "x = 1\nx +\n", &r, &e);
	assert_run_exited(&r, 1);
	assert_non_null(strstr((char *)r.err, "File \"/.capibox/main.py\", line 2"));
	assert_non_null(strstr((char *)r.err, "SyntaxError"));
	events_free(&e);
	harness_run_free(&r);
}

static bool is_png(const uint8_t *p, size_t len)
{
	return len >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0;
}

static void test_matplotlib_figure(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;

	HARNESS_REQUIRE(d);
	run_py(d, "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nx = 1\n", &r, &e);
	assert_run_exited(&r, 0);
	if (e.n_pieces != 1) {
		harness_run_print(&r);
		fail_msg("expected one artifact event, got %d", e.n_pieces);
	}
	assert_string_equal(e.pieces[0].path, "figure-1.png");
	assert_string_equal(e.pieces[0].mime, "image/png");
	assert_true(e.pieces[0].eof);
	assert_false(e.pieces[0].truncated);
	assert_int_equal(e.pieces[0].offset, 0);
	assert_int_equal(e.pieces[0].size, e.pieces[0].len);
	assert_true(is_png(e.file, e.file_len));
	assert_int_equal(e.n_results, 0);
	events_free(&e);
	harness_run_free(&r);
}

static void test_two_figures_and_show(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;

	HARNESS_REQUIRE(d);
	run_py(d,
	       "import matplotlib.pyplot as plt\n"
	       "plt.figure(); plt.plot([1, 2])\n"
	       "plt.figure(); plt.plot([2, 1])\n"
	       "None\n",
	       &r, &e);
	assert_run_exited(&r, 0);
	assert_int_equal(e.n_pieces, 2);
	assert_string_equal(e.pieces[0].path, "figure-1.png");
	assert_string_equal(e.pieces[1].path, "figure-2.png");
	events_free(&e);
	harness_run_free(&r);

	/* plt.show() sends what is shown and closes it: three figures, the
	 * second a new one (not the first with a second line) */
	run_py(d,
	       "import matplotlib.pyplot as plt\n"
	       "plt.plot([1, 2]); plt.show()\n"
	       "plt.plot([2, 1]); plt.show()\n"
	       "plt.plot([3, 3]);\n"
	       "print(len(plt.get_fignums()))\n",
	       &r, &e);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "1\n"); /* the two shown are closed */
	assert_int_equal(e.n_pieces, 3);
	assert_string_equal(e.pieces[2].path, "figure-3.png");
	events_free(&e);
	harness_run_free(&r);

	/* a backend the code chose is kept (and still captured at the end) */
	run_py(d,
	       "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
	       "plt.plot([1]); plt.show(); plt.plot([2])\nprint(matplotlib.get_backend())\n",
	       &r, &e);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "agg\n");
	assert_int_equal(e.n_pieces, 1);
	events_free(&e);
	harness_run_free(&r);
}

static void test_big_figure_in_pieces(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;

	HARNESS_REQUIRE(d);
	/* noise does not compress: about 3 MiB of PNG */
	run_py(d,
	       "import numpy as np, matplotlib.pyplot as plt\n"
	       "np.random.seed(1)\n"
	       "fig = plt.figure(figsize=(10, 10), dpi=100)\n"
	       "fig.figimage(np.random.rand(1000, 1000, 3))\n",
	       &r, &e);
	assert_run_exited(&r, 0);
	if (e.n_pieces < 2 || !e.file_ok) {
		harness_run_print(&r);
		fail_msg("expected a figure in pieces, got %d events", e.n_pieces);
	}
	for (int i = 0; i < e.n_pieces; i++) {
		assert_string_equal(e.pieces[i].path, "figure-1.png");
		assert_int_equal(e.pieces[i].size, e.pieces[0].size);
		assert_true(e.pieces[i].len <= 1024 * 1024);
		assert_int_equal(e.pieces[i].eof, i == e.n_pieces - 1);
		assert_false(e.pieces[i].truncated);
	}
	assert_true(e.pieces[0].size > 1024 * 1024);
	assert_int_equal(e.file_len, e.pieces[0].size);
	assert_true(is_png(e.file, e.file_len));
	events_free(&e);
	harness_run_free(&r);
}

static void test_cold_python(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;
	const char *code = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\n'cold' + '!'\n";

	HARNESS_REQUIRE(d);
	/* PYTHON* variables change how the interpreter starts: a cold
	 * sandbox, which runs the code through the same runner */
	run_env(d, "python", code, "PYTHONHASHSEED", "1", &r, &e);
	assert_run_exited(&r, 0);
	expect_one_result(&r, &e, "'cold!'", "\"cold!\"");
	assert_int_equal(e.n_pieces, 1);
	assert_true(is_png(e.file, e.file_len));
	events_free(&e);
	harness_run_free(&r);

	/* the program sees what `python3 main.py` gives it */
	run_env(d, "python", "import sys\nprint(sys.argv, __file__, __name__, sys.path[0])\n",
		"PYTHONHASHSEED", "1", &r, &e);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "['/.capibox/main.py'] /.capibox/main.py __main__ /.capibox\n");
	events_free(&e);
	harness_run_free(&r);

	/* and node as `node main.js` (cold through its runner too) */
	run_env(d, "javascript",
		"console.log(process.argv.slice(1), __filename, require.main === module)\n",
		"NODE_OPTIONS", "", &r, &e);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "[ '/.capibox/main.js' ] /.capibox/main.js true\n");
	events_free(&e);
	harness_run_free(&r);
}

/*
 * Runs javascript code warm (a pooled sandbox, when one is ready) or cold
 * (NODE_* variables change how node starts: a sandbox made for the
 * request, through the same runner).
 */
static int js_warm_runs; /* how many of the warm ones a pooled sandbox ran */

static void run_js(struct daemon *d, const char *code, bool cold, struct run *r, struct events *e)
{
	if (cold)
		run_env(d, "javascript", code, "NODE_OPTIONS", "", r, e);
	else
		run_env(d, "javascript", code, NULL, NULL, r, e);
	if (cold && e->warm) {
		harness_run_print(r);
		fail_msg("NODE_OPTIONS: expected a cold run");
	}
	js_warm_runs += e->warm;
}

static void test_javascript_results(void **state)
{
	static const struct {
		const char *code, *text, *json;
	} cases[] = {
		{"1 + 1\n", "2", "2"},
		{"'a' + 'b'", "'ab'", "\"ab\""}, /* no newline at the end */
		{"const o = {a: 1, b: [true, null]};\no;\n", "{ a: 1, b: [ true, null ] }",
		 "{\"a\":1,\"b\":[true,null]}"},
		{"[1, 'x', {y: 2}]\n", "[ 1, 'x', { y: 2 } ]", "[1,\"x\",{\"y\":2}]"},
		{"null\n", "null", "null"},
		/* a call returning a value */
		{"function triple(n) {\n  return n * 3;\n}\ntriple(7)\n", "21", "21"},
		/* a promise: awaited */
		{"async function later() {\n  await new Promise((r) => setTimeout(r, 20));\n"
		 "  return {ok: true};\n}\nlater()\n",
		 "{ ok: true }", "{\"ok\":true}"},
		/* comments after it, with and without a newline */
		{"const x = 5\nx // the end", "5", "5"},
		{"const x = 5\n\n/* a\n   comment */\nx * 2;  // twice\n// bye\n", "10", "10"},
		/* a sequence gives its last operand; an arrow keeps its own name */
		{"1, 2, 3\n", "3", "3"},
		{"let f\nf = () => 1\n", "[Function: f]", ""},
		{"x => x\n", "[Function (anonymous)]", ""},
		{"let a = 1\na > 0 ? 'pos' : 'neg'\n", "'pos'", "\"pos\""},
		{"10n ** 2n\n", "100n", ""}, /* BigInt: not JSON */
		/* still a CommonJS main module: require, module, exports,
		 * __filename, top-level this and return, strict as written */
		{"'use strict';\nconst path = require('path');\nexports.a = 1;\n"
		 "if (this !== module.exports || require.main !== module) throw new Error('not main');\n"
		 "try { undeclared = 1; } catch (e) { module.exports.strict = e instanceof ReferenceError; }\n"
		 "if (process.argv.length > 9) return;\n"
		 "[path.basename(__filename), __dirname, module.exports]\n",
		 "[ 'main.js', '/.capibox', { a: 1, strict: true } ]",
		 "[\"main.js\",\"/.capibox\",{\"a\":1,\"strict\":true}]"},
		/* the last statement found from the end: a line that goes on
		 * the statement before, a string that is no directive */
		{"let a = 1, b\nb = a\n+1\n", "2", "2"},
		{"const s = 'x';\n'y' + s\n", "'yx'", "\"yx\""},
		{"let n = 2;\n'str'\n", "'str'", "\"str\""},
		/* exitCode set, the program still ends on its own */
		{"process.exitCode = 3;\n'three'\n", "'three'", "\"three\""},
	};
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	js_warm_runs = 0;
	for (int cold = 0; cold < 2; cold++) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			struct run r = {0};
			struct events e;
			run_js(d, cases[i].code, cold, &r, &e);
			if (e.n_results != 1 || strcmp(e.text[0], cases[i].text) != 0 ||
			    strcmp(e.json[0], cases[i].json) != 0 ||
			    strcmp(e.mime[0], "text/plain") != 0) {
				harness_run_print(&r);
				fail_msg("%s case %zu: %d results, \"%s\" \"%s\"",
					 cold ? "cold" : "warm", i, e.n_results,
					 e.n_results > 0 ? e.text[0] : "",
					 e.n_results > 0 ? e.json[0] : "");
			}
			assert_run_exited(&r, strstr(cases[i].code, "exitCode") != NULL ? 3 : 0);
			events_free(&e);
			harness_run_free(&r);
		}
	}
	/* back to back, the pool (one javascript sandbox) may not keep up:
	 * some of the "warm" runs are cold, but not all */
	printf("javascript: %d of %zu warm runs were warm\n", js_warm_runs,
	       sizeof(cases) / sizeof(cases[0]));
	assert_true(js_warm_runs > 0);
}

static void test_javascript_result_after_output(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;

	HARNESS_REQUIRE(d);
	for (int cold = 0; cold < 2; cold++) {
		run_js(d, "console.log('out');\nsetTimeout(() => console.log('later'), 10);\n42\n",
		       cold, &r, &e);
		assert_run_exited(&r, 0);
		expect_one_result(&r, &e, "42", "42");
		/* sent when the program ends: after everything it wrote */
		assert_run_stdout(&r, "out\nlater\n");
		assert_int_equal(e.out_len_at_result, r.out_len);
		events_free(&e);
		harness_run_free(&r);
	}
}

static void test_javascript_no_result(void **state)
{
	static const char *const codes[] = {
		"undefined\n", "console.log('hi')\n", /* undefined */
		"'use strict'\n",		      /* a directive */
		"'use strict';\nlet y = 2;\n", "function f() {\n  return 3;\n}\n",
		"if (true) {\n  3;\n}\n", "// only a comment\n", "\n", "process.exit(0);\n5\n",
		/* documented: process.exit() ends the run without a result */
		"setTimeout(() => process.exit(0), 10);\n'never'\n",
		"new Promise(() => {})\n", /* never settles */
		"Promise.resolve(undefined)\n",
		"const p = Promise.reject(new Error('x'));\np.catch(() => {});\np\n",
		"let q = 1\nq = undefined\n", "'use strict'\n'another directive'\n",
		"let\nfoo\n",			/* a declaration of foo, sloppy mode */
		"var u = 1\nlet w = u\n/2/1\n", /* let w = u / 2 / 1 */
	};
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	for (int cold = 0; cold < 2; cold++) {
		for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
			struct run r = {0};
			struct events e;
			run_js(d, codes[i], cold, &r, &e);
			assert_run_exited(&r, 0);
			if (e.n_results != 0) {
				harness_run_print(&r);
				fail_msg("%s code %zu: expected no result, got \"%s\"",
					 cold ? "cold" : "warm", i, e.text[0]);
			}
			events_free(&e);
			harness_run_free(&r);
		}
	}
}

/* Fails unless the run's stderr holds needle. */
static void expect_stderr(struct run *r, const char *needle)
{
	if (r->err == NULL || strstr((char *)r->err, needle) == NULL) {
		harness_run_print(r);
		fail_msg("stderr lacks \"%s\"", needle);
	}
}

static void test_javascript_errors(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;

	HARNESS_REQUIRE(d);
	for (int cold = 0; cold < 2; cold++) {
		/* a throw: node's report, the lines as written, no result */
		run_js(d,
		       "const a = 1;\nfunction boom() {\n  throw new Error('boom');\n}\nboom()\n",
		       cold, &r, &e);
		assert_run_exited(&r, 1);
		assert_int_equal(e.n_results, 0);
		expect_stderr(&r, "/.capibox/main.js:3\n  throw new Error('boom');\n  ^\n");
		expect_stderr(&r, "Error: boom\n    at boom (/.capibox/main.js:3:9)\n"
				  "    at Object.<anonymous> (/.capibox/main.js:5:1)\n");
		if (strstr((char *)r.err, "__capibox") != NULL ||
		    strstr((char *)r.err, "runner") != NULL) {
			harness_run_print(&r);
			fail_msg("the runner shows in the report");
		}
		events_free(&e);
		harness_run_free(&r);

		/* thrown by the last expression itself: its line unchanged */
		run_js(d, "const o = null;\no.x\n", cold, &r, &e);
		assert_run_exited(&r, 1);
		assert_int_equal(e.n_results, 0);
		expect_stderr(&r, "/.capibox/main.js:2\no.x\n  ^\n");
		expect_stderr(&r, "at Object.<anonymous> (/.capibox/main.js:2:3)\n");
		events_free(&e);
		harness_run_free(&r);

		/* alone on the first line */
		run_js(d, "null.x\n", cold, &r, &e);
		assert_run_exited(&r, 1);
		expect_stderr(&r, "/.capibox/main.js:1\nnull.x\n     ^\n");
		expect_stderr(&r, "(/.capibox/main.js:1:6)\n");
		events_free(&e);
		harness_run_free(&r);

		/* a rejected promise: node's unhandled rejection, no result */
		run_js(d, "async function f() {\n  throw new Error('nope');\n}\nf()\n", cold, &r,
		       &e);
		assert_run_exited(&r, 1);
		assert_int_equal(e.n_results, 0);
		expect_stderr(&r, "Error: nope\n    at f (/.capibox/main.js:2:9)\n");
		events_free(&e);
		harness_run_free(&r);

		/* a syntax error: node's SyntaxError, as before */
		run_js(d, "const x = 1;\nlet y = (x +;\n", cold, &r, &e);
		assert_run_exited(&r, 1);
		assert_int_equal(e.n_results, 0);
		expect_stderr(&r, "/.capibox/main.js:2\nlet y = (x +;\n");
		expect_stderr(&r, "SyntaxError: Unexpected token ';'");
		events_free(&e);
		harness_run_free(&r);
	}
}

/* Python that writes raw frames (a list of bytes expressions) to fd 4. */
static char *raw_frames(const char *frames)
{
	static const char head[] =
		"import os\n"
		"def frame(kind, payload):\n"
		"    b = kind + payload\n"
		"    return len(b).to_bytes(4, 'little') + b\n"
		"def art(path, off, size, flags, data):\n"
		"    p = path.encode() if isinstance(path, str) else path\n"
		"    return frame(b'A', len(p).to_bytes(2, 'little') + p + off.to_bytes(8, 'little')\n"
		"                 + size.to_bytes(8, 'little') + bytes([flags]) + data)\n"
		"for f in [";
	size_t n = sizeof(head) + strlen(frames) + 64;
	char *s = malloc(n);

	assert_non_null(s);
	snprintf(s, n, "%s%s]:\n    os.write(4, f)\nprint('done')\n", head, frames);
	return s;
}

static void expect_sandbox_error(struct daemon *d, const char *language, const char *code,
				 const char *why)
{
	struct run r = {0};
	struct events e;

	run_env(d, language, code, NULL, NULL, &r, &e);
	if (r.rc != 0 || r.n_finished != 1 || r.reason != CAPIBOX_REASON_SANDBOX_ERROR ||
	    strstr(r.message, why) == NULL || strstr(r.message, "events pipe") == NULL) {
		harness_run_print(&r);
		fail_msg("expected SANDBOX_ERROR naming \"%s\"", why);
	}
	events_free(&e);
	harness_run_free(&r);
}

static void test_hostile_frames(void **state)
{
	static const struct {
		const char *frames, *why;
	} cases[] = {
		{"b'\\xff\\xff\\xff\\xff'", "frame of 4294967295 bytes"},
		{"b'\\0\\0\\0\\0'", "frame of 0 bytes"},
		{"frame(b'Z', b'x')", "unknown frame type"},
		{"frame(b'R', b'not json')", "result: not a JSON object"},
		{"frame(b'R', b'{\"text\": \"a\", \"evil\": 1}')", "result: unknown key"},
		{"frame(b'R', b'{\"json\": null}')", "result: no text"},
		{"frame(b'R', b'{\"text\": 1}')", "result: bad string value"},
		{"frame(b'R', b'{\"text\": \"a\"} x')", "result: not a JSON object"},
		{"frame(b'R', b'{\"text\": \"a\"')", "result: not a JSON object"},
		{"art('../x', 0, 1, 1, b'x')", "artifact: bad path"},
		{"art('/etc/x', 0, 1, 1, b'x')", "artifact: bad path"},
		{"art('a/../../x', 0, 1, 1, b'x')", "artifact: bad path"},
		{"art(b'a\\0b', 0, 1, 1, b'x')", "artifact: bad path"},
		{"art('x', 0, 1, 4, b'x')", "artifact: bad flags"},
		{"art('x', 0, 1, 1, b'xy')", "beyond the file's size"},
		{"art('x', 5, 2, 1, b'x')", "beyond the file's size"},
		{"art('x', 0, 2, 1, b'x')", "artifact: bad eof"},
		{"art('x', 0, 2, 0, b'x'), art('y', 1, 2, 1, b'y')", "out of order"},
		{"art('x', 1, 3, 0, b'x')", "out of order"},
		{"frame(b'A', b'\\x05\\x00ab')", "artifact: short frame"},
	};
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;

	HARNESS_REQUIRE(d);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *code = raw_frames(cases[i].frames);
		expect_sandbox_error(d, "python", code, cases[i].why);
		free(code);
	}
	/* any program can write there: bash too */
	expect_sandbox_error(d, "bash", "printf '\\xff\\xff\\xff\\x7f' >&4; sleep 5\n",
			     "frame of 2147483647 bytes");
	/* a frame cut by the end of the run is not delivered, and not an error */
	run_env(d, "bash", "printf '\\x10\\0\\0\\0R{' >&4\n", NULL, NULL, &r, &e);
	assert_run_exited(&r, 0);
	assert_int_equal(e.n_results, 0);
	events_free(&e);
	harness_run_free(&r);
	/* the daemon serves on */
	run_py(d, "40 + 2\n", &r, &e);
	assert_run_exited(&r, 0);
	expect_one_result(&r, &e, "42", "42");
	events_free(&e);
	harness_run_free(&r);
}

static void test_frames_cleaned_and_capped(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;
	char *code;

	HARNESS_REQUIRE(d);
	/* text that is not UTF-8 arrives cleaned (a NUL as '?', a lone
	 * surrogate as U+FFFD); a default MIME type */
	code = raw_frames("frame(b'R', b'{\"text\": \"a\\xffb\\\\u0000c\\\\ud800\"}')");
	run_py(d, code, &r, &e);
	free(code);
	assert_run_exited(&r, 0);
	expect_one_result(&r, &e, "a?b?c\xef\xbf\xbd", "");
	events_free(&e);
	harness_run_free(&r);

	/* at most 16 results per run */
	code = raw_frames("*[frame(b'R', b'{\"text\": \"%d\"}' % i) for i in range(40)]");
	run_py(d, code, &r, &e);
	free(code);
	assert_run_exited(&r, 0);
	assert_int_equal(e.n_results, 16);
	assert_string_equal(e.text[15], "15");
	events_free(&e);
	harness_run_free(&r);

	/* a sandbox writing nonsense never reaches a client's disk: safe paths */
	assert_false(capibox_artifact_path_ok("../x"));
	assert_false(capibox_artifact_path_ok("/etc/passwd"));
	assert_false(capibox_artifact_path_ok("a/../../x"));
	assert_false(capibox_artifact_path_ok("a//b"));
	assert_false(capibox_artifact_path_ok("a/."));
	assert_false(capibox_artifact_path_ok(""));
	assert_false(capibox_artifact_path_ok("a\\..\\b"));
	assert_true(capibox_artifact_path_ok("figure-1.png"));
	assert_true(capibox_artifact_path_ok("out/..x/fig.png"));
}

static void test_artifact_budget(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;
	const char *code =
		"import os\n"
		"def send(kind, payload):\n"
		"    b = len(payload + b'.').to_bytes(4, 'little') + kind + payload\n"
		"    v = memoryview(b)\n"
		"    while v:\n"
		"        v = v[os.write(4, v):]\n"
		"def art(path, data):\n"
		"    p = path.encode(); size = len(data); off = 0\n"
		"    while True:\n"
		"        piece = data[off:off + (1 << 20)]; eof = off + len(piece) == size\n"
		"        send(b'A', len(p).to_bytes(2, 'little') + p + off.to_bytes(8, 'little')\n"
		"             + size.to_bytes(8, 'little') + bytes([eof]) + piece)\n"
		"        off += len(piece)\n"
		"        if eof: return\n"
		"art('big.bin', bytes(70 << 20))\n"
		"art('after.bin', b'abc')\n"
		"print('done')\n";

	HARNESS_REQUIRE(d);
	run_py(d, code, &r, &e);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "done\n");
	/* 64 whole pieces of big.bin fill the budget; then one empty piece
	 * ends it as truncated, and after.bin gets one empty truncated piece */
	assert_int_equal(e.artifact_bytes, 64ull << 20);
	assert_int_equal(e.n_pieces, 66);
	assert_false(e.pieces[63].truncated || e.pieces[63].eof);
	assert_string_equal(e.pieces[64].path, "big.bin");
	assert_true(e.pieces[64].truncated && e.pieces[64].eof);
	assert_int_equal(e.pieces[64].len, 0);
	assert_int_equal(e.pieces[64].offset, 64ull << 20);
	assert_int_equal(e.pieces[64].size, 70ull << 20);
	assert_string_equal(e.pieces[65].path, "after.bin");
	assert_true(e.pieces[65].truncated && e.pieces[65].eof);
	assert_int_equal(e.pieces[65].len, 0);
	assert_int_equal(e.pieces[65].size, 3);
	events_free(&e);
	harness_run_free(&r);
}

static void test_figure_not_counted_as_output(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;
	struct capibox_exec_request req = {
		.language = "python",
		.code = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nprint('ok')\n",
		.limits = {.max_output_bytes = 100},
	};

	HARNESS_REQUIRE(d);
	/* a figure far above the output limit: the events pipe counts toward
	 * nothing else */
	memset(&e, 0, sizeof(e));
	r.hook = hook;
	r.hook_arg = &e;
	harness_run(d, &req, &r);
	assert_run_exited(&r, 0);
	assert_int_equal(e.n_pieces, 1);
	assert_true(e.file_len > 100);
	events_free(&e);
	harness_run_free(&r);
}

static void test_descriptors_at_exec(void **state)
{
	static const char code[] = "import os, stat\n"
				   "def ok(fd):\n"
				   "    try:\n"
				   "        os.fstat(fd)\n"
				   "        return True\n"
				   "    except OSError:\n"
				   "        return False\n"
				   "print([fd for fd in range(1024) if ok(fd)], "
				   "stat.S_ISFIFO(os.fstat(4).st_mode), os.get_inheritable(4), "
				   "ok(1000) and (stat.S_ISSOCK(os.fstat(1000).st_mode), "
				   "os.get_inheritable(1000)))\n";
	struct daemon *d = *state;
	struct run r = {0};
	struct events e;

	HARNESS_REQUIRE(d);
	/* the program gets 0, 1, 2 and the events pipe as 4, nothing else of
	 * the server: cold, and warm, where the go socket moves from 3 to 1000
	 * (close-on-exec: no program it runs inherits it), the runner's to tell
	 * the sandbox's init that the program has ended */
	run_py(d, code, &r, &e);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "[0, 1, 2, 4, 1000] True True (True, False)\n");
	events_free(&e);
	harness_run_free(&r);
	run_env(d, "python", code, "PYTHONHASHSEED", "1", &r, &e);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "[0, 1, 2, 4] True True False\n");
	events_free(&e);
	harness_run_free(&r);
	/* which descriptors bash holds open (a builtin test: nothing forked or
	 * opened meanwhile); 255 is bash's own, its script */
	run_env(d, "bash",
		"for fd in {0..64} 255; do [ -e /proc/$$/fd/$fd ] && printf '%s ' $fd; done\n",
		NULL, NULL, &r, &e);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "0 1 2 4 255 ");
	events_free(&e);
	harness_run_free(&r);
}

/* Runs `capibox -a ADDR exec -l python ARGS...` (NULL-terminated); its stdout in *out. */
static int cli_exec(struct daemon *d, char **out, ...)
{
	const char *argv[32] = {CAPIBOX_CLI_PATH, "-a", d->addr, "exec", "-l", "python"};
	size_t n = 6;
	va_list ap;
	const char *a;

	va_start(ap, out);
	while ((a = va_arg(ap, const char *)) != NULL && n < 31)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	return harness_command(argv, out);
}

static void test_cli(void **state)
{
	static const char big[] = "import numpy as np, matplotlib.pyplot as plt\n"
				  "fig = plt.figure(figsize=(10, 10), dpi=100)\n"
				  "fig.figimage(np.random.rand(1000, 1000, 3))\n"
				  "print('drawn')\n";
	struct daemon *d = *state;
	char dir[160], png[200], *out = NULL;
	uint8_t head[8];
	long size;
	FILE *f;

	HARNESS_REQUIRE(d);
	/* the result after the output */
	assert_int_equal(cli_exec(d, &out, "-c", "print('out')\n6 * 7\n", NULL), 0);
	assert_string_equal(out, "out\n42\n");
	free(out);
	out = NULL;
	assert_int_equal(cli_exec(d, &out, "--json", "-c", "{'k': [1]}\n", NULL), 0);
	assert_non_null(strstr(out, "{\"result\":{\"text\":\"{'k': [1]}\",\"json\":\"{\\\"k\\\": "
				    "[1]}\",\"mime_type\":\"text/plain\"}}\n"));
	free(out);
	out = NULL;
	/* --out makes the directory and reassembles a figure sent in pieces */
	snprintf(dir, sizeof(dir), "%s/figures", d->tmpdir);
	snprintf(png, sizeof(png), "%s/figure-1.png", dir);
	assert_int_equal(cli_exec(d, &out, "--out", dir, "-c", big, NULL), 0);
	assert_string_equal(out, "drawn\n");
	free(out);
	f = fopen(png, "rb");
	if (f == NULL)
		fail_msg("%s was not saved", png);
	assert_int_equal(fread(head, 1, sizeof(head), f), sizeof(head));
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	fclose(f);
	assert_true(is_png(head, sizeof(head)));
	assert_true(size > 1024 * 1024);
	print_message("--out: %ld bytes of PNG reassembled\n", size);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expression_result),
		cmocka_unit_test(test_no_result_for_statements),
		cmocka_unit_test(test_result_after_output),
		cmocka_unit_test(test_json_result),
		cmocka_unit_test(test_repr_raises),
		cmocka_unit_test(test_exception_in_last_expression),
		cmocka_unit_test(test_matplotlib_figure),
		cmocka_unit_test(test_two_figures_and_show),
		cmocka_unit_test(test_big_figure_in_pieces),
		cmocka_unit_test(test_cold_python),
		cmocka_unit_test(test_javascript_results),
		cmocka_unit_test(test_javascript_result_after_output),
		cmocka_unit_test(test_javascript_no_result),
		cmocka_unit_test(test_javascript_errors),
		cmocka_unit_test(test_hostile_frames),
		cmocka_unit_test(test_frames_cleaned_and_capped),
		cmocka_unit_test(test_artifact_budget),
		cmocka_unit_test(test_figure_not_counted_as_output),
		cmocka_unit_test(test_descriptors_at_exec),
		cmocka_unit_test(test_cli),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	harness_init();
	rc = cmocka_run_group_tests(tests, setup, harness_group_teardown);
	return harness_finish(rc);
}
