/*
 * Analyze against the real daemon through libcapibox: the README demo's
 * sales CSV (examples/sales.csv) gives the means pandas gives, column
 * selection, group-by with aggregates, every request error the client can
 * see (each naming the field), a malformed dataset as a finished run (not
 * an RPC error), hostile datasets that end their own sandbox and never the
 * daemon, and deadline and cancel. Code mode (pandas code with `df`
 * preloaded): result tables against pandas' answers, stdout, stderr,
 * figures, exceptions, an unreadable dataset, hostile code, the CLI.
 *
 * Until the statistics engine (capibox-analyze) is built next to capiboxd
 * the server answers UNIMPLEMENTED "... not installed": the tests that need
 * it skip with that reason. The exact semantics against pandas are the
 * engine's oracle test (tests/analyze/); these check the RPC end to end.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

#ifndef CAPIBOX_SOURCE_DIR
#error "CAPIBOX_SOURCE_DIR must name the source tree (examples/sales.csv)"
#endif
#ifndef CAPIBOX_CLI_PATH
#error "CAPIBOX_CLI_PATH must name the capibox command-line client"
#endif

#define SALES_CSV CAPIBOX_SOURCE_DIR "/examples/sales.csv"

/* True when the len bytes at p contain s. */
static bool has_bytes(const void *p, size_t len, const char *s)
{
	return p != NULL && memmem(p, len, s, strlen(s)) != NULL;
}
static struct daemon daemon_;
static uint8_t *sales;
static size_t sales_len;

static int setup(void **state)
{
	static const struct daemon_opts opts = {.uid_slot = 1};
	FILE *f = fopen(SALES_CSV, "re");

	if (f == NULL) {
		printf("cannot open %s: %s\n", SALES_CSV, strerror(errno));
		return -1;
	}
	sales = malloc(4096);
	if (sales == NULL) {
		fclose(f);
		return -1;
	}
	sales_len = fread(sales, 1, 4096, f);
	fclose(f);
	if (sales_len == 0 || sales_len == 4096)
		return -1;
	return harness_group_setup(state, &daemon_, &opts);
}

static int teardown(void **state)
{
	free(sales);
	return harness_group_teardown(state);
}

/* True when rel(a, b) is within 1e-9 (the tolerance against pandas). */
static bool close_to(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(fabs(a), fabs(b)); }

#define assert_close(a, b)                                                  \
	do {                                                                \
		double a_ = (a), b_ = (b);                                  \
		if (!close_to(a_, b_))                                      \
			fail_msg("%s = %.17g, expected %.17g", #a, a_, b_); \
	} while (0)

/*
 * Calls Analyze on d's client. Skips the test, printing why, when the
 * server has no engine yet; otherwise returns the status code.
 */
static int analyze(struct daemon *d, const struct capibox_analyze_request *req,
		   struct capibox_analysis **out, struct capibox_status *st)
{
	int rc = capibox_analyze(d->client, req, out, st);

	if (rc == CAPIBOX_UNIMPLEMENTED && strstr(st->message, "not installed") != NULL) {
		print_message("SKIP: Analyze: %s\n", st->message);
		skip();
	}
	return rc;
}

/* Prints what an analysis holds, for a failing test. */
static void analysis_print(const struct capibox_analysis *an)
{
	size_t i, r, k;

	print_message("analysis: %llu rows, %zu columns; finished %s exit %d signal %d: %s\n",
		      (unsigned long long)an->rows, an->n_columns,
		      capibox_reason_name(an->finished.reason), an->finished.exit_code,
		      an->finished.signal, an->finished.message);
	for (i = 0; i < an->n_columns; i++)
		print_message("  %s (%s): count %llu mean %.17g\n", an->columns[i].name,
			      capibox_column_type_name(an->columns[i].type),
			      (unsigned long long)an->columns[i].count, an->columns[i].mean);
	for (k = 0; k < an->groups.n_columns; k++)
		print_message("  groups[%zu] %s\n", k, an->groups.columns[k]);
	for (r = 0; r < an->groups.n_rows && r < 10; r++)
		for (k = 0; k < an->groups.n_columns; k++) {
			const struct capibox_cell *c =
				&an->groups.cells[r * an->groups.n_columns + k];

			print_message("    [%zu][%zu] kind %d %.17g %s\n", r, k, c->kind, c->number,
				      c->text ? c->text : "");
		}
}

/* Fails unless the call was OK and the engine exited 0. */
static void assert_analysis_ok(int rc, const struct capibox_status *st,
			       const struct capibox_analysis *an)
{
	if (rc != CAPIBOX_OK)
		fail_msg("Analyze: %s: %s", capibox_code_name(rc), st->message);
	if (an->finished.reason != CAPIBOX_REASON_EXITED || an->finished.exit_code != 0) {
		analysis_print(an);
		fail_msg("expected the engine to exit 0");
	}
}

static const struct capibox_column_summary *column(const struct capibox_analysis *an,
						   const char *name)
{
	size_t i;

	for (i = 0; i < an->n_columns; i++)
		if (strcmp(an->columns[i].name, name) == 0)
			return &an->columns[i];
	analysis_print(an);
	fail_msg("no column \"%s\" in the summary", name);
	return NULL;
}

static struct capibox_analyze_request sales_request(void)
{
	struct capibox_analyze_request req = {
		.dataset_name = "sales.csv",
		.content = sales,
		.content_len = sales_len,
		.request_id = "test-analyze",
	};

	return req;
}

static void test_sales_describe(void **state)
{
	struct daemon *d = *state;
	struct capibox_analyze_request req = sales_request();
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	const struct capibox_column_summary *c;
	int rc;

	HARNESS_REQUIRE(d);
	rc = analyze(d, &req, &an, &st);
	assert_analysis_ok(rc, &st, an);
	assert_int_equal(an->rows, 20);
	assert_int_equal(an->n_columns, 5);
	assert_string_equal(an->columns[0].name, "date");
	assert_string_equal(an->columns[4].name, "customers");

	/* the README demo's figures, through Analyze */
	c = column(an, "sales");
	assert_int_equal(c->type, CAPIBOX_COLUMN_INTEGER);
	assert_int_equal(c->count, 20);
	assert_int_equal(c->nulls, 0);
	assert_close(c->mean, 547.25);
	/* pandas 1.5: describe() of the same file */
	assert_close(c->std, 50.84742398898679);
	assert_close(c->min, 470);
	assert_close(c->p25, 503.75);
	assert_close(c->median, 542.5);
	assert_close(c->p75, 588.75);
	assert_close(c->max, 630);
	assert_close(c->sum, 10945);
	c = column(an, "customers");
	assert_int_equal(c->type, CAPIBOX_COLUMN_INTEGER);
	assert_close(c->mean, 69.1);
	assert_close(c->std, 6.007889549759156);
	assert_int_equal(c->distinct, 18);
	print_message("mean sales %.2f, mean customers %.2f\n", column(an, "sales")->mean, c->mean);

	c = column(an, "region");
	assert_int_equal(c->type, CAPIBOX_COLUMN_TEXT);
	assert_int_equal(c->distinct, 4);
	assert_int_equal(c->n_top, 4);
	assert_int_equal(c->top[0].count, 5);
	c = column(an, "product");
	assert_int_equal(c->distinct, 3);
	assert_true(c->n_top == 3);
	assert_int_equal(c->top[0].count + c->top[1].count + c->top[2].count, 20);
	assert_string_equal(c->top[2].value, "Gizmo"); /* 6, after Widget and Gadget (7) */
	assert_int_equal(an->groups.n_columns, 0);
	assert_true(an->finished.wall_time_us > 0);
	capibox_analysis_free(an);
}

static void test_columns_selection(void **state)
{
	struct daemon *d = *state;
	static const char *const cols[] = {"customers", "region"};
	struct capibox_analyze_request req = sales_request();
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	int rc;

	HARNESS_REQUIRE(d);
	req.columns = cols;
	req.n_columns = 2;
	rc = analyze(d, &req, &an, &st);
	assert_analysis_ok(rc, &st, an);
	assert_int_equal(an->rows, 20);
	assert_int_equal(an->n_columns, 2);
	assert_close(column(an, "customers")->mean, 69.1);
	assert_int_equal(column(an, "region")->distinct, 4);
	capibox_analysis_free(an);
}

/* The cell of t at row r, column k. */
static const struct capibox_cell *cell(const struct capibox_table *t, size_t r, size_t k)
{
	assert_true(r < t->n_rows && k < t->n_columns);
	return &t->cells[r * t->n_columns + k];
}

static void test_group_by(void **state)
{
	struct daemon *d = *state;
	static const char *const keys[] = {"region"};
	static const struct capibox_aggregate aggs[] = {
		{"sales", CAPIBOX_AGG_MEAN},
		{"sales", CAPIBOX_AGG_SUM},
		{"customers", CAPIBOX_AGG_COUNT},
		{"customers", CAPIBOX_AGG_STD},
	};
	/* pandas: df.groupby("region").agg(...) */
	static const struct {
		const char *region;
		double mean, sum, count, std;
	} want[] = {
		{"East", 512, 2560, 5, 4.61519230368573030},
		{"North", 563, 2815, 5, 6.58027355054483998},
		{"South", 571, 2855, 5, 5.68330889535312789},
		{"West", 543, 2715, 5, 6.12372435695794426},
	};
	struct capibox_analyze_request req = sales_request();
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	const struct capibox_table *t;
	size_t r;
	int rc;

	HARNESS_REQUIRE(d);
	req.group_by = keys;
	req.n_group_by = 1;
	req.aggregates = aggs;
	req.n_aggregates = 4;
	rc = analyze(d, &req, &an, &st);
	assert_analysis_ok(rc, &st, an);
	t = &an->groups;
	if (t->n_columns != 5 || t->n_rows != 4) {
		analysis_print(an);
		fail_msg("expected 4 groups of 5 columns, got %zu x %zu", t->n_rows, t->n_columns);
	}
	assert_string_equal(t->columns[0], "region");
	assert_string_equal(t->columns[1], "sales_mean");
	assert_string_equal(t->columns[2], "sales_sum");
	assert_string_equal(t->columns[3], "customers_count");
	assert_string_equal(t->columns[4], "customers_std");
	for (r = 0; r < 4; r++) {
		assert_int_equal(cell(t, r, 0)->kind, CAPIBOX_CELL_TEXT);
		assert_string_equal(cell(t, r, 0)->text, want[r].region); /* sorted keys */
		assert_int_equal(cell(t, r, 1)->kind, CAPIBOX_CELL_NUMBER);
		assert_close(cell(t, r, 1)->number, want[r].mean);
		assert_close(cell(t, r, 2)->number, want[r].sum);
		assert_close(cell(t, r, 3)->number, want[r].count);
		assert_close(cell(t, r, 4)->number, want[r].std);
	}
	capibox_analysis_free(an);
}

static void test_aggregates_without_group_by(void **state)
{
	struct daemon *d = *state;
	static const struct capibox_aggregate aggs[] = {
		{"sales", CAPIBOX_AGG_MEAN},
		{"product", CAPIBOX_AGG_NUNIQUE},
		{"customers", CAPIBOX_AGG_MEDIAN},
	};
	struct capibox_analyze_request req = sales_request();
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	int rc;

	HARNESS_REQUIRE(d);
	req.aggregates = aggs;
	req.n_aggregates = 3;
	rc = analyze(d, &req, &an, &st);
	assert_analysis_ok(rc, &st, an);
	if (an->groups.n_rows != 1 || an->groups.n_columns != 3) {
		analysis_print(an);
		fail_msg("expected one row of 3 aggregates");
	}
	assert_close(cell(&an->groups, 0, 0)->number, 547.25);
	assert_close(cell(&an->groups, 0, 1)->number, 3);
	assert_close(cell(&an->groups, 0, 2)->number, 69.5);
	capibox_analysis_free(an);
}

/* Fails unless req is answered with code and a message holding needle. */
static void expect_error(struct daemon *d, const struct capibox_analyze_request *req, int code,
			 const char *needle)
{
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	int rc = analyze(d, req, &an, &st);

	if (rc != code) {
		if (an != NULL)
			analysis_print(an);
		fail_msg("expected %s, got %s: %s", capibox_code_name(code), capibox_code_name(rc),
			 st.message);
	}
	assert_null(an);
	if (strstr(st.message, needle) == NULL)
		fail_msg("%s message \"%s\" does not mention \"%s\"", capibox_code_name(rc),
			 st.message, needle);
	print_message("%s: %s\n", capibox_code_name(rc), st.message);
}

static void test_unknown_columns(void **state)
{
	struct daemon *d = *state;
	static const char *const bad_cols[] = {"sales", "no_such_col"};
	static const char *const bad_keys[] = {"no_such_key"};
	static const char *const keys[] = {"region"};
	static const struct capibox_aggregate bad_agg[] = {{"no_such_agg", CAPIBOX_AGG_SUM}};
	struct capibox_analyze_request req = sales_request();

	HARNESS_REQUIRE(d);
	req.columns = bad_cols;
	req.n_columns = 2;
	expect_error(d, &req, CAPIBOX_INVALID_ARGUMENT, "no_such_col");

	req = sales_request();
	req.group_by = bad_keys;
	req.n_group_by = 1;
	req.aggregates = (const struct capibox_aggregate[]){{"sales", CAPIBOX_AGG_MEAN}};
	req.n_aggregates = 1;
	expect_error(d, &req, CAPIBOX_INVALID_ARGUMENT, "no_such_key");

	req = sales_request();
	req.group_by = keys;
	req.n_group_by = 1;
	req.aggregates = bad_agg;
	req.n_aggregates = 1;
	expect_error(d, &req, CAPIBOX_INVALID_ARGUMENT, "no_such_agg");
}

static void test_mean_of_text(void **state)
{
	struct daemon *d = *state;
	static const struct capibox_aggregate aggs[] = {{"region", CAPIBOX_AGG_MEAN}};
	struct capibox_analyze_request req = sales_request();

	HARNESS_REQUIRE(d);
	req.aggregates = aggs;
	req.n_aggregates = 1;
	expect_error(d, &req, CAPIBOX_INVALID_ARGUMENT, "region");
}

/* The server's own checks: these need no engine. */
static void test_request_errors(void **state)
{
	struct daemon *d = *state;
	static const struct capibox_aggregate unset[] = {{"sales", CAPIBOX_AGG_UNSPECIFIED}};
	struct capibox_analyze_request req = sales_request();

	HARNESS_REQUIRE(d);
	req.content = NULL; /* no dataset at all */
	req.content_len = 0;
	expect_error(d, &req, CAPIBOX_INVALID_ARGUMENT, "dataset");

	req = sales_request();
	req.aggregates = unset;
	req.n_aggregates = 1;
	expect_error(d, &req, CAPIBOX_INVALID_ARGUMENT, "aggregates[0].function");

	req = sales_request();
	req.delimiter = "ab";
	expect_error(d, &req, CAPIBOX_INVALID_ARGUMENT, "dataset.delimiter");
}

static void test_dataset_over_limit(void **state)
{
	struct daemon *d = *state;
	/* the default maximum is 64 MiB; its request still fits the 96 MiB message limit */
	const size_t len = (64u << 20) + 1;
	uint8_t *big = malloc(len);
	struct capibox_analyze_request req = {.dataset_name = "big.csv", .content = big};
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	int rc;

	HARNESS_REQUIRE(d);
	assert_non_null(big);
	memset(big, '1', len);
	memcpy(big, "a\n", 2);
	for (size_t i = 3; i < len; i += 2)
		big[i] = '\n';
	req.content_len = len;
	rc = capibox_analyze(d->client, &req, &an, &st);
	free(big);
	if (rc != CAPIBOX_RESOURCE_EXHAUSTED)
		fail_msg("expected RESOURCE_EXHAUSTED, got %s: %s", capibox_code_name(rc),
			 st.message);
	assert_non_null(strstr(st.message, "dataset"));
	print_message("RESOURCE_EXHAUSTED: %s\n", st.message);
	assert_null(an);
}

static void test_ragged_csv(void **state)
{
	struct daemon *d = *state;
	static const char csv[] = "a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n11,12,13\n";
	struct capibox_analyze_request req = {
		.dataset_name = "ragged.csv",
		.content = (const uint8_t *)csv,
		.content_len = sizeof(csv) - 1,
	};
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	int rc;

	HARNESS_REQUIRE(d);
	rc = analyze(d, &req, &an, &st);
	/* a malformed dataset is not an RPC error: the run says what and where */
	if (rc != CAPIBOX_OK)
		fail_msg("expected OK, got %s: %s", capibox_code_name(rc), st.message);
	if (an->finished.reason != CAPIBOX_REASON_EXITED || an->finished.exit_code != 2 ||
	    strstr(an->finished.message, "line 4") == NULL) {
		analysis_print(an);
		fail_msg("expected Finished EXITED, exit_code 2, a message naming line 4");
	}
	print_message("finished: %s\n", an->finished.message);
	assert_int_equal(an->n_columns, 0);
	capibox_analysis_free(an);
}

/* Fails unless Analyze of the sales CSV still gives the demo's means. */
static void assert_still_serves(struct daemon *d)
{
	struct capibox_analyze_request req = sales_request();
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	int rc;

	rc = capibox_analyze(d->client, &req, &an, &st);
	assert_analysis_ok(rc, &st, an);
	assert_close(column(an, "sales")->mean, 547.25);
	capibox_analysis_free(an);
	assert_true(harness_proc_alive(d->pid));
}

/*
 * Runs a hostile dataset: the call must end (OK with a finished reason, or
 * a status) and the daemon keep serving.
 */
static void hostile(struct daemon *d, const char *what, uint8_t *data, size_t len)
{
	struct capibox_analyze_request req = {
		.dataset_name = "hostile.csv",
		.content = data,
		.content_len = len,
		.deadline_ms = 120000,
	};
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	double t0 = harness_now();
	int rc;

	rc = analyze(d, &req, &an, &st);
	if (rc == CAPIBOX_OK) {
		print_message("%s (%zu bytes): finished %s, exit %d, %.0f ms, peak %llu KiB: %s\n",
			      what, len, capibox_reason_name(an->finished.reason),
			      an->finished.exit_code, (harness_now() - t0) * 1000,
			      (unsigned long long)an->finished.peak_memory_bytes >> 10,
			      an->finished.message);
		assert_true(an->finished.reason != CAPIBOX_REASON_UNSPECIFIED);
		capibox_analysis_free(an);
	} else {
		print_message("%s (%zu bytes): %s: %s\n", what, len, capibox_code_name(rc),
			      st.message);
		/* the daemon answers; it does not drop the connection */
		assert_true(rc != CAPIBOX_UNAVAILABLE && rc != CAPIBOX_DEADLINE_EXCEEDED);
	}
	assert_still_serves(d);
}

static void test_hostile_datasets(void **state)
{
	struct daemon *d = *state;
	const size_t field = 50u << 20, ncols = 1000000;
	size_t len, i;
	uint8_t *buf;

	HARNESS_REQUIRE(d);
	/* one quoted field of 50 MiB, closed */
	buf = malloc(field + 16);
	assert_non_null(buf);
	memcpy(buf, "a\n\"", 3);
	memset(buf + 3, 'x', field);
	memcpy(buf + 3 + field, "\"\n", 2);
	hostile(d, "one 50 MiB quoted field", buf, field + 5);
	/* the same, never closed */
	hostile(d, "an unclosed 50 MiB quoted field", buf, field + 3);
	free(buf);

	/* a million columns, with one row of data */
	buf = malloc(ncols * 16);
	assert_non_null(buf);
	len = 0;
	for (i = 0; i < ncols; i++)
		len += (size_t)snprintf((char *)buf + len, 16, "%sc%zu", i ? "," : "", i);
	buf[len++] = '\n';
	for (i = 0; i < ncols; i++) {
		buf[len++] = (uint8_t)('0' + i % 10);
		buf[len++] = i + 1 < ncols ? ',' : '\n';
	}
	hostile(d, "a million columns", buf, len);
	free(buf);
}

static void test_deadline(void **state)
{
	struct daemon *d = *state;
	const size_t rows = 2000000;
	size_t len = 0, i;
	uint8_t *buf = malloc(rows * 16 + 16);
	struct capibox_analyze_request req = {.dataset_name = "slow.csv"};
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	int rc;

	HARNESS_REQUIRE(d);
	assert_non_null(buf);
	memcpy(buf, "x,y,z\n", 6);
	len = 6;
	for (i = 0; i < rows; i++)
		len += (size_t)snprintf((char *)buf + len, 16, "%zu,%zu,t%zu\n", i % 1000, i % 7,
					i % 13);
	req.content = buf;
	req.content_len = len;
	req.deadline_ms = 5; /* passes while the request is still on its way */
	rc = capibox_analyze(d->client, &req, &an, &st);
	free(buf);
	if (rc == CAPIBOX_UNIMPLEMENTED)
		skip();
	if (rc != CAPIBOX_DEADLINE_EXCEEDED)
		fail_msg("expected DEADLINE_EXCEEDED, got %s: %s", capibox_code_name(rc),
			 st.message);
	assert_null(an);
	assert_still_serves(d);
}

struct cancel_arg {
	struct capibox_client *client;
	int delay_ms;
};

static void *cancel_main(void *p)
{
	struct cancel_arg *a = p;

	harness_sleep_ms(a->delay_ms);
	capibox_cancel_all(a->client);
	return NULL;
}

static void test_cancel(void **state)
{
	struct daemon *d = *state;
	const size_t rows = 3000000;
	size_t len, i;
	uint8_t *buf = malloc(rows * 24 + 16);
	struct capibox_analyze_request req = {.dataset_name = "cancel.csv", .deadline_ms = 60000};
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	struct cancel_arg ca = {.delay_ms = 30};
	pthread_t t;
	char err[256];
	double t0;
	int rc;

	HARNESS_REQUIRE(d);
	assert_non_null(buf);
	/* its own client: capibox_cancel_all ends every later call on it too */
	ca.client = capibox_connect(d->addr, NULL, err, sizeof(err));
	if (ca.client == NULL)
		fail_msg("connect %s: %s", d->addr, err);
	memcpy(buf, "a,b,c\n", 6);
	len = 6;
	for (i = 0; i < rows; i++)
		len += (size_t)snprintf((char *)buf + len, 24, "%zu,%zu.5,k%zu\n", i, i % 97,
					i % 31);
	req.content = buf;
	req.content_len = len;
	assert_int_equal(pthread_create(&t, NULL, cancel_main, &ca), 0);
	t0 = harness_now();
	rc = capibox_analyze(ca.client, &req, &an, &st);
	pthread_join(t, NULL);
	free(buf);
	req = sales_request();
	if (rc == CAPIBOX_UNIMPLEMENTED) {
		capibox_close(ca.client);
		skip();
	}
	print_message("cancelled after %.0f ms: %s %s\n", (harness_now() - t0) * 1000,
		      capibox_code_name(rc), st.message);
	if (rc != CAPIBOX_CANCELLED) {
		if (an != NULL)
			analysis_print(an);
		fail_msg("expected CANCELLED, got %s: %s", capibox_code_name(rc), st.message);
	}
	/* and later calls on that client fail at once */
	rc = capibox_analyze(ca.client, &req, &an, &st);
	assert_int_equal(rc, CAPIBOX_CANCELLED);
	capibox_close(ca.client);
	assert_still_serves(d);
}

/* --- the command-line client ------------------------------------------- */

/* Skips when the server has no engine (the CLI would only exit 69). */
static void require_engine(struct daemon *d)
{
	struct capibox_analyze_request req = sales_request();
	struct capibox_analysis *an = NULL;
	struct capibox_status st;

	if (analyze(d, &req, &an, &st) == CAPIBOX_OK)
		capibox_analysis_free(an);
}

/* Runs `capibox -a ADDR analyze ARGS...` (NULL-terminated); its stdout in *out. */
static int cli(struct daemon *d, char **out, ...)
{
	const char *argv[32] = {CAPIBOX_CLI_PATH, "-a", d->addr, "analyze"};
	size_t n = 4;
	va_list ap;
	const char *a;
	int rc;

	va_start(ap, out);
	while ((a = va_arg(ap, const char *)) != NULL && n < 31)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	rc = harness_command(argv, out);
	print_message("capibox analyze ... %s: exit %d\n", argv[4], rc);
	return rc;
}

static void test_cli_table(void **state)
{
	struct daemon *d = *state;
	char *out = NULL;
	int rc;

	HARNESS_REQUIRE(d);
	require_engine(d);
	rc = cli(d, &out, SALES_CSV, NULL);
	print_message("%s", out);
	assert_int_equal(rc, 0);
	/* describe() transposed: a header, one line per column, the footer */
	assert_non_null(strstr(out, "column"));
	assert_non_null(strstr(out, "mean"));
	assert_non_null(strstr(out, "\nsales      integer     20      0        20  547.25"));
	assert_non_null(strstr(out, "\ncustomers  integer"));
	assert_non_null(strstr(out, "  69.1  "));
	assert_non_null(strstr(out, "North (5)"));
	assert_non_null(strstr(out, "\n20 rows; "));
	free(out);

	rc = cli(d, &out, SALES_CSV, "--group-by", "region", "--agg", "sales:mean,sales:sum", NULL);
	print_message("%s", out);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "region  sales_mean  sales_sum\n"));
	assert_non_null(strstr(out, "\nEast           512       2560\n"));
	free(out);
}

/* The value of key in obj, failing when it is missing. */
static struct json_object *jget(struct json_object *obj, const char *key)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(obj, key, &v))
		fail_msg("no \"%s\" in %s", key, json_object_to_json_string(obj));
	return v;
}

static void test_cli_json(void **state)
{
	struct daemon *d = *state;
	struct json_object *obj, *cols, *c, *g, *rows;
	char *out = NULL;
	size_t i;
	int rc;

	HARNESS_REQUIRE(d);
	require_engine(d);
	rc = cli(d, &out, SALES_CSV, "--json", NULL);
	assert_int_equal(rc, 0);
	obj = json_tokener_parse(out);
	if (obj == NULL)
		fail_msg("not one JSON object: %s", out);
	assert_int_equal(json_object_get_uint64(jget(obj, "rows")), 20);
	cols = jget(obj, "columns");
	assert_int_equal(json_object_array_length(cols), 5);
	for (i = 0; i < 5; i++) {
		const char *name;

		c = json_object_array_get_idx(cols, i);
		name = json_object_get_string(jget(c, "name"));
		if (strcmp(name, "sales") == 0) {
			assert_string_equal(json_object_get_string(jget(c, "type")), "integer");
			assert_close(json_object_get_double(jget(c, "mean")), 547.25);
			assert_close(json_object_get_double(jget(c, "p75")), 588.75);
		} else if (strcmp(name, "customers") == 0) {
			assert_close(json_object_get_double(jget(c, "mean")), 69.1);
		} else if (strcmp(name, "region") == 0) {
			/* no mean for text: null, and its most frequent values */
			assert_true(json_object_get_type(jget(c, "mean")) == json_type_null);
			assert_int_equal(json_object_array_length(jget(c, "top")), 4);
		}
	}
	assert_string_equal(json_object_get_string(jget(jget(obj, "finished"), "reason")),
			    "exited");
	json_object_put(obj);
	free(out);

	rc = cli(d, &out, SALES_CSV, "--json", "--group-by", "region", "--agg", "customers:max",
		 NULL);
	assert_int_equal(rc, 0);
	obj = json_tokener_parse(out);
	if (obj == NULL)
		fail_msg("not one JSON object: %s", out);
	g = jget(obj, "groups");
	assert_string_equal(
		json_object_get_string(json_object_array_get_idx(jget(g, "columns"), 1)),
		"customers_max");
	rows = jget(g, "rows");
	assert_int_equal(json_object_array_length(rows), 4);
	c = json_object_array_get_idx(rows, 3);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(c, 0)), "West");
	assert_close(json_object_get_double(json_object_array_get_idx(c, 1)), 79);
	json_object_put(obj);
	free(out);
}

static void test_cli_exit_status(void **state)
{
	struct daemon *d = *state;
	char path[160], *out = NULL;
	FILE *f;
	int rc;

	HARNESS_REQUIRE(d);
	require_engine(d);
	/* a malformed dataset: 65 (EX_DATAERR), and --json still prints the reply */
	snprintf(path, sizeof(path), "%s/ragged.csv", d->tmpdir);
	f = fopen(path, "we");
	assert_non_null(f);
	fputs("a,b\n1,2\n3,4,5\n", f);
	assert_int_equal(fclose(f), 0);
	rc = cli(d, &out, path, NULL);
	assert_int_equal(rc, 65);
	assert_string_equal(out, "");
	free(out);
	rc = cli(d, &out, path, "--json", NULL);
	assert_int_equal(rc, 65);
	assert_non_null(strstr(out, "\"exit_code\":2"));
	assert_non_null(strstr(out, "line 3"));
	free(out);
	/* an RPC error (unknown column): 69; a usage error: 64 */
	rc = cli(d, &out, SALES_CSV, "--columns", "nope", NULL);
	assert_int_equal(rc, 69);
	free(out);
	rc = cli(d, &out, SALES_CSV, "--agg", "sales:average", NULL);
	assert_int_equal(rc, 64);
	free(out);
	rc = cli(d, &out, SALES_CSV, "--group-by", "region", NULL);
	assert_int_equal(rc, 64);
	free(out);
}

/* --- code mode: pandas code with `df` preloaded ------------------------- */

/* Runs code against the sales CSV; fails unless the call is OK. */
static struct capibox_analysis *code_run(struct daemon *d, const char *code,
					 const struct capibox_file *files, size_t n_files)
{
	struct capibox_analyze_request req = sales_request();
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	int rc;

	req.code = code;
	req.files = files;
	req.n_files = n_files;
	rc = capibox_analyze(d->client, &req, &an, &st);
	if (rc != CAPIBOX_OK)
		fail_msg("Analyze (code): %s: %s", capibox_code_name(rc), st.message);
	return an;
}

/* Prints what code mode answered, for a failing test. */
static void code_print(const struct capibox_analysis *an)
{
	analysis_print(an);
	print_message("stdout: %.*s\nstderr: %.*s\n", (int)an->stdout_len,
		      (const char *)an->stdout_data, (int)an->stderr_len,
		      (const char *)an->stderr_data);
	for (size_t k = 0; k < an->result.n_columns; k++)
		print_message("  result[%zu] %s\n", k, an->result.columns[k]);
	for (size_t r = 0; r < an->result.n_rows && r < 10; r++)
		for (size_t k = 0; k < an->result.n_columns; k++) {
			const struct capibox_cell *c =
				&an->result.cells[r * an->result.n_columns + k];

			print_message("    [%zu][%zu] kind %d %.17g %s\n", r, k, c->kind, c->number,
				      c->text ? c->text : "");
		}
}

/* Fails unless the code exited 0. */
static void assert_code_ok(const struct capibox_analysis *an)
{
	if (an->finished.reason != CAPIBOX_REASON_EXITED || an->finished.exit_code != 0) {
		code_print(an);
		fail_msg("expected the code to exit 0");
	}
}

static void assert_cell_text(const struct capibox_table *t, size_t r, size_t k, const char *s)
{
	const struct capibox_cell *c = cell(t, r, k);

	assert_int_equal(c->kind, CAPIBOX_CELL_TEXT);
	assert_string_equal(c->text, s);
}

static void assert_cell_number(const struct capibox_table *t, size_t r, size_t k, double v)
{
	const struct capibox_cell *c = cell(t, r, k);

	assert_int_equal(c->kind, CAPIBOX_CELL_NUMBER);
	assert_close(c->number, v);
}

static void test_code_group_by_mean(void **state)
{
	struct daemon *d = *state;
	struct capibox_analysis *an;
	/* pandas 1.5 on examples/sales.csv: the group keys (the index) come first */
	static const char *const regions[] = {"East", "North", "South", "West"};
	static const double means[][2] = {{512, 64.4}, {563, 70.6}, {571, 70.4}, {543, 71}};

	HARNESS_REQUIRE(d);
	an = code_run(d, "result = df.groupby('region')[['sales', 'customers']].mean()\n", NULL, 0);
	assert_code_ok(an);
	assert_int_equal(an->rows, 20);
	assert_int_equal(an->n_columns, 0); /* no summaries in code mode */
	assert_int_equal(an->result.n_columns, 3);
	assert_string_equal(an->result.columns[0], "region");
	assert_string_equal(an->result.columns[1], "sales");
	assert_string_equal(an->result.columns[2], "customers");
	assert_int_equal(an->result.n_rows, 4);
	for (size_t r = 0; r < 4; r++) {
		assert_cell_text(&an->result, r, 0, regions[r]);
		assert_cell_number(&an->result, r, 1, means[r][0]);
		assert_cell_number(&an->result, r, 2, means[r][1]);
	}
	assert_int_equal(an->stdout_len, 0);
	assert_int_equal(an->n_artifacts, 0);
	print_message("code mode: %.1f ms, peak %llu KiB\n", an->finished.wall_time_us / 1000.0,
		      (unsigned long long)an->finished.peak_memory_bytes >> 10);
	capibox_analysis_free(an);
}

static void test_code_series_and_scalar(void **state)
{
	struct daemon *d = *state;
	struct capibox_analysis *an;

	HARNESS_REQUIRE(d);
	/* a Series with a labelled index: the index, then the values */
	an = code_run(d, "result = df.groupby('region')['sales'].sum()\n", NULL, 0);
	assert_code_ok(an);
	assert_int_equal(an->result.n_columns, 2);
	assert_string_equal(an->result.columns[0], "region");
	assert_string_equal(an->result.columns[1], "sales");
	assert_int_equal(an->result.n_rows, 4);
	assert_cell_text(&an->result, 0, 0, "East");
	assert_cell_number(&an->result, 0, 1, 2560);
	capibox_analysis_free(an);

	/* an unnamed Series: "value"; NaN and None are null; booleans text */
	an = code_run(d,
		      "result = pd.Series([1.5, float('nan'), None, True], index=list('abcd'))\n",
		      NULL, 0);
	assert_code_ok(an);
	assert_int_equal(an->result.n_columns, 2);
	assert_string_equal(an->result.columns[0], "index");
	assert_string_equal(an->result.columns[1], "value");
	assert_int_equal(an->result.n_rows, 4);
	assert_cell_number(&an->result, 0, 1, 1.5);
	assert_int_equal(cell(&an->result, 1, 1)->kind, CAPIBOX_CELL_NULL);
	assert_int_equal(cell(&an->result, 2, 1)->kind, CAPIBOX_CELL_NULL);
	assert_cell_text(&an->result, 3, 1, "True");
	capibox_analysis_free(an);

	/* a scalar: a 1x1 table; the README demo's means through code */
	an = code_run(d, "result = df['sales'].mean()\n", NULL, 0);
	assert_code_ok(an);
	assert_int_equal(an->result.n_columns, 1);
	assert_string_equal(an->result.columns[0], "result");
	assert_int_equal(an->result.n_rows, 1);
	assert_cell_number(&an->result, 0, 0, 547.25);
	print_message("mean sales via code: %.2f\n", cell(&an->result, 0, 0)->number);
	capibox_analysis_free(an);
	an = code_run(d, "result = round(df.customers.mean(), 2)\n", NULL, 0);
	assert_code_ok(an);
	assert_cell_number(&an->result, 0, 0, 69.1);
	capibox_analysis_free(an);

	/* no `result`: no table */
	an = code_run(d, "x = 1\n", NULL, 0);
	assert_code_ok(an);
	assert_int_equal(an->result.n_columns, 0);
	capibox_analysis_free(an);
}

static void test_code_stdout_and_files(void **state)
{
	struct daemon *d = *state;
	static const uint8_t extra[] = "3\n";
	const struct capibox_file files[] = {{.path = "factor.txt", .data = extra, .len = 2}};
	struct capibox_analysis *an;

	HARNESS_REQUIRE(d);
	/* print() goes to stdout only, a child's output too; the protocol
	 * never shows there, and the files come with the code */
	an = code_run(d,
		      "import os, sys\n"
		      "print('hello from code')\n"
		      "sys.stdout.flush()\n"
		      "os.system('echo from a child')\n"
		      "print('to stderr', file=sys.stderr)\n"
		      "k = int(open('factor.txt').read())\n"
		      "result = df[['sales']].head(2) * k\n",
		      files, 1);
	assert_code_ok(an);
	if (an->stdout_len != strlen("hello from code\nfrom a child\n"))
		code_print(an);
	assert_int_equal(an->stdout_len, strlen("hello from code\nfrom a child\n"));
	assert_memory_equal(an->stdout_data, "hello from code\nfrom a child\n", an->stdout_len);
	assert_int_equal(an->stderr_len, strlen("to stderr\n"));
	assert_memory_equal(an->stderr_data, "to stderr\n", an->stderr_len);
	assert_int_equal(an->result.n_columns, 1);
	assert_string_equal(an->result.columns[0], "sales");
	assert_cell_number(&an->result, 0, 0, 520 * 3);
	assert_cell_number(&an->result, 1, 0, 610 * 3);
	capibox_analysis_free(an);
}

static void test_code_figure(void **state)
{
	struct daemon *d = *state;
	static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	struct capibox_analysis *an;

	HARNESS_REQUIRE(d);
	an = code_run(d,
		      "import matplotlib.pyplot as plt\n"
		      "df.groupby('region')['sales'].sum().plot.bar()\n"
		      "plt.title('sales by region')\n",
		      NULL, 0);
	assert_code_ok(an);
	assert_int_equal(an->n_artifacts, 1);
	assert_string_equal(an->artifacts[0].path, "figure-1.png");
	assert_string_equal(an->artifacts[0].mime_type, "image/png");
	assert_true(an->artifacts[0].len > 1000);
	assert_int_equal(an->artifacts[0].size, an->artifacts[0].len);
	assert_false(an->artifacts[0].truncated);
	assert_memory_equal(an->artifacts[0].content, png, sizeof(png));
	print_message("figure: %zu bytes of PNG\n", an->artifacts[0].len);
	capibox_analysis_free(an);
}

static void test_code_exception(void **state)
{
	struct daemon *d = *state;
	struct capibox_analysis *an;

	HARNESS_REQUIRE(d);
	/* not an RPC error: exit 1, the exception's line, the traceback */
	an = code_run(d,
		      "print('before')\n"
		      "def pick(name):\n"
		      "    return df[name]\n"
		      "pick('nope')\n",
		      NULL, 0);
	if (an->finished.reason != CAPIBOX_REASON_EXITED || an->finished.exit_code != 1) {
		code_print(an);
		fail_msg("expected exit 1");
	}
	assert_string_equal(an->finished.message, "KeyError: 'nope'");
	assert_non_null(an->stderr_data);
	/* the bytes are not NUL-terminated: search within their length */
	assert_true(
		has_bytes(an->stderr_data, an->stderr_len, "Traceback (most recent call last)"));
	assert_true(has_bytes(an->stderr_data, an->stderr_len,
			      "File \"/home/user/.capibox-analyze-code.py\", line 4, in <module>"));
	assert_true(has_bytes(an->stderr_data, an->stderr_len, "line 3, in pick"));
	assert_int_equal(an->stdout_len, 7);
	assert_memory_equal(an->stdout_data, "before\n", 7);
	assert_int_equal(an->result.n_columns, 0);
	capibox_analysis_free(an);

	/* a syntax error is the code's too */
	an = code_run(d, "result = (\n", NULL, 0);
	assert_int_equal(an->finished.reason, CAPIBOX_REASON_EXITED);
	assert_int_equal(an->finished.exit_code, 1);
	assert_non_null(strstr(an->finished.message, "SyntaxError"));
	capibox_analysis_free(an);

	/* sys.exit(n): the code's status */
	an = code_run(d, "import sys\nresult = 5\nsys.exit(3)\n", NULL, 0);
	assert_int_equal(an->finished.reason, CAPIBOX_REASON_EXITED);
	assert_int_equal(an->finished.exit_code, 3);
	assert_int_equal(an->result.n_rows, 1);
	capibox_analysis_free(an);
}

static void test_code_bad_dataset_and_requests(void **state)
{
	struct daemon *d = *state;
	static const char csv[] = "a,b\n1,2\n3,4,5\n";
	struct capibox_analyze_request req = {
		.dataset_name = "ragged.csv",
		.content = (const uint8_t *)csv,
		.content_len = sizeof(csv) - 1,
		.code = "result = df\n",
	};
	const char *columns[] = {"sales"};
	const struct capibox_file reserved[] = {
		{.path = ".capibox-analyze.json", .data = (const uint8_t *)"{}", .len = 2}};
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	int rc;

	HARNESS_REQUIRE(d);
	/* pandas cannot read it: exit 2 and pandas' words, as the engine's case */
	rc = capibox_analyze(d->client, &req, &an, &st);
	if (rc != CAPIBOX_OK)
		fail_msg("expected OK, got %s: %s", capibox_code_name(rc), st.message);
	if (an->finished.reason != CAPIBOX_REASON_EXITED || an->finished.exit_code != 2 ||
	    strstr(an->finished.message, "Expected 2 fields in line 3, saw 3") == NULL) {
		code_print(an);
		fail_msg("expected exit 2 with pandas' message");
	}
	print_message("finished: %s\n", an->finished.message);
	capibox_analysis_free(an);
	an = NULL;

	/* statistics beside code, and the runner's own file names: refused */
	req = sales_request();
	req.code = "result = 1\n";
	req.columns = columns;
	req.n_columns = 1;
	expect_error(d, &req, CAPIBOX_INVALID_ARGUMENT, "code: cannot be combined with columns");
	req.n_columns = 0;
	req.files = reserved;
	req.n_files = 1;
	expect_error(d, &req, CAPIBOX_INVALID_ARGUMENT, "files[0].path");
}

/* Fails unless code mode still answers (and the daemon lives). */
static void assert_code_serves(struct daemon *d)
{
	struct capibox_analysis *an = code_run(d, "result = df.sales.sum()\n", NULL, 0);

	assert_code_ok(an);
	assert_cell_number(&an->result, 0, 0, 10945);
	capibox_analysis_free(an);
	assert_true(harness_proc_alive(d->pid));
}

static void test_code_hostile(void **state)
{
	struct daemon *d = *state;
	struct capibox_analyze_request req = sales_request();
	struct capibox_analysis *an = NULL;
	struct capibox_status st;
	int rc;

	HARNESS_REQUIRE(d);
	/* an endless loop ends by a time limit, with what it printed so far lost
	 * (the runner never reports) but the call answered */
	req.code = "print('spinning')\nwhile True:\n    pass\n";
	req.limits.wall_time_ms = 3000;
	req.limits.cpu_time_ms = 2000;
	rc = capibox_analyze(d->client, &req, &an, &st);
	if (rc != CAPIBOX_OK)
		fail_msg("expected OK, got %s: %s", capibox_code_name(rc), st.message);
	if (an->finished.reason != CAPIBOX_REASON_CPU_TIMEOUT &&
	    an->finished.reason != CAPIBOX_REASON_WALL_TIMEOUT) {
		code_print(an);
		fail_msg("expected a time limit, got %s", capibox_reason_name(an->finished.reason));
	}
	print_message("endless loop: %s after %.0f ms\n", capibox_reason_name(an->finished.reason),
		      an->finished.wall_time_us / 1000.0);
	capibox_analysis_free(an);
	an = NULL;
	assert_code_serves(d);

	/* a forged protocol document on the runner's private descriptor (its
	 * module global, found by the code) is refused, not trusted */
	req.code = "import os, sys\n"
		   "os.write(sys.modules['__main__']._proto, b'CAPIBOX-ANALYZE 5\\n{\"x\"')\n"
		   "result = 1\n";
	req.limits.wall_time_ms = 0;
	req.limits.cpu_time_ms = 0;
	rc = capibox_analyze(d->client, &req, &an, &st);
	if (rc != CAPIBOX_OK)
		fail_msg("expected OK, got %s: %s", capibox_code_name(rc), st.message);
	print_message("forged document: %s exit %d: %s\n", capibox_reason_name(an->finished.reason),
		      an->finished.exit_code, an->finished.message);
	assert_int_equal(an->finished.reason, CAPIBOX_REASON_SANDBOX_ERROR);
	assert_non_null(strstr(an->finished.message, "malformed"));
	capibox_analysis_free(an);
	assert_code_serves(d);
}

static void test_cli_code(void **state)
{
	struct daemon *d = *state;
	char code[160], dir[160], png[200], *out = NULL;
	FILE *f;
	int rc;

	HARNESS_REQUIRE(d);
	snprintf(code, sizeof(code), "%s/code.py", d->tmpdir);
	f = fopen(code, "we");
	assert_non_null(f);
	fputs("import matplotlib.pyplot as plt\n"
	      "print('mean sales', df.sales.mean())\n"
	      "df.plot(x='date', y='sales')\n"
	      "result = df.groupby('region')['customers'].max()\n",
	      f);
	assert_int_equal(fclose(f), 0);
	snprintf(dir, sizeof(dir), "%s/figures", d->tmpdir);
	assert_int_equal(mkdir(dir, 0755), 0);
	rc = cli(d, &out, SALES_CSV, "--code", code, "--artifact-dir", dir, NULL);
	print_message("%s", out);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "mean sales 547.25\n"));
	assert_non_null(strstr(out, "result:\nregion  customers\n"));
	assert_non_null(strstr(out, "\nWest           79\n"));
	free(out);
	snprintf(png, sizeof(png), "%s/figure-1.png", dir);
	f = fopen(png, "re");
	assert_non_null(f);
	{
		unsigned char sig[8];

		assert_int_equal(fread(sig, 1, 8, f), 8);
		assert_memory_equal(sig, "\x89PNG\r\n\x1a\n", 8);
	}
	fclose(f);

	/* the code's exception: its exit status, stdout still printed */
	f = fopen(code, "we");
	assert_non_null(f);
	fputs("print('partial')\nraise ValueError('bad')\n", f);
	assert_int_equal(fclose(f), 0);
	rc = cli(d, &out, SALES_CSV, "--code", code, NULL);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(out, "partial\n"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sales_describe),
		cmocka_unit_test(test_columns_selection),
		cmocka_unit_test(test_group_by),
		cmocka_unit_test(test_aggregates_without_group_by),
		cmocka_unit_test(test_unknown_columns),
		cmocka_unit_test(test_mean_of_text),
		cmocka_unit_test(test_request_errors),
		cmocka_unit_test(test_dataset_over_limit),
		cmocka_unit_test(test_ragged_csv),
		cmocka_unit_test(test_hostile_datasets),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_cli_table),
		cmocka_unit_test(test_cli_json),
		cmocka_unit_test(test_cli_exit_status),
		cmocka_unit_test(test_code_group_by_mean),
		cmocka_unit_test(test_code_series_and_scalar),
		cmocka_unit_test(test_code_stdout_and_files),
		cmocka_unit_test(test_code_figure),
		cmocka_unit_test(test_code_exception),
		cmocka_unit_test(test_code_bad_dataset_and_requests),
		cmocka_unit_test(test_code_hostile),
		cmocka_unit_test(test_cli_code),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	harness_init();
	rc = cmocka_run_group_tests_name("analyze", tests, setup, teardown);
	return harness_finish(rc);
}
