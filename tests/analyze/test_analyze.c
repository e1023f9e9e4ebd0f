/*
 * unit.analyze: the engine's parser and statistics on hand-made inputs
 * whose answers are known (the pandas comparison is analyze.oracle).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "analyze.h"

struct run {
	struct analyze_result *res;
	const Capibox__V1__AnalyzeResponse *resp;
	enum analyze_status st;
};

static struct run run_csv(const char *data, const char *name, char **group_by, size_t ngroup,
			  Capibox__V1__Aggregate **aggs, size_t naggs)
{
	Capibox__V1__AnalyzeRequest req = CAPIBOX__V1__ANALYZE_REQUEST__INIT;
	Capibox__V1__Dataset ds = CAPIBOX__V1__DATASET__INIT;
	struct run r;

	ds.name = (char *)name;
	req.dataset = &ds;
	req.group_by = group_by;
	req.n_group_by = ngroup;
	req.aggregates = aggs;
	req.n_aggregates = naggs;
	r.st = analyze_run(&req, data, strlen(data), 2, &r.res);
	assert_non_null(r.res);
	r.resp = r.st == ANALYZE_OK ? analyze_response(r.res) : NULL;
	return r;
}

static const Capibox__V1__ColumnSummary *col(const struct run *r, const char *name)
{
	for (size_t i = 0; i < r->resp->n_columns; i++)
		if (!strcmp(r->resp->columns[i]->name, name))
			return r->resp->columns[i];
	fail_msg("no column %s", name);
	return NULL;
}

static void test_quoting(void **state)
{
	(void)state;
	struct run r = run_csv("a,b\n\"x,\"\"y\"\"\nz\",1\r\n\"q\"tail,2\rin\"side,3\n", "t.csv",
			       NULL, 0, NULL, 0);

	assert_int_equal(r.st, ANALYZE_OK);
	assert_int_equal(r.resp->rows, 3);
	const Capibox__V1__ColumnSummary *a = col(&r, "a");

	assert_int_equal(a->type, CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_TEXT);
	assert_int_equal(a->distinct, 3);
	assert_string_equal(a->top[0]->value, "x,\"y\"\nz");
	assert_string_equal(a->top[1]->value, "qtail");
	assert_string_equal(a->top[2]->value, "in\"side");
	assert_int_equal(col(&r, "b")->sum, 6);
	analyze_result_free(r.res);
}

static void test_errors(void **state)
{
	(void)state;
	struct run r = run_csv("a,b\n\"1\n2\",3\n\n4,5,6\n", "t.csv", NULL, 0, NULL, 0);

	/* pandas counts lines outside quotes, blank lines included */
	assert_int_equal(r.st, ANALYZE_EDATA);
	assert_string_equal(analyze_error(r.res), "dataset: line 4: expected 2 fields, saw 3");
	analyze_result_free(r.res);
	r = run_csv("a\n\"open\n", "t.csv", NULL, 0, NULL, 0);
	assert_int_equal(r.st, ANALYZE_EDATA);
	assert_string_equal(analyze_error(r.res), "dataset: line 2: unterminated quoted field");
	analyze_result_free(r.res);
	r = run_csv("{\"a\": 1}\n{\"a\": [1,}\n", "t.jsonl", NULL, 0, NULL, 0);
	assert_int_equal(r.st, ANALYZE_EDATA);
	assert_string_equal(analyze_error(r.res), "dataset: line 2: bad value");
	analyze_result_free(r.res);
}

static void test_types(void **state)
{
	(void)state;
	struct run r = run_csv("i,f,b,bn,t,u,n\n1,1,True,True,1,9223372036854775808,\n"
			       "2,2.5,false,,x,1,\n",
			       "t.csv", NULL, 0, NULL, 0);

	assert_int_equal(r.st, ANALYZE_OK);
	assert_int_equal(col(&r, "i")->type, CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_INTEGER);
	assert_int_equal(col(&r, "f")->type, CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_FLOAT);
	assert_int_equal(col(&r, "b")->type, CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_BOOLEAN);
	/* bool with a null is pandas' object column */
	assert_int_equal(col(&r, "bn")->type, CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_TEXT);
	assert_int_equal(col(&r, "t")->type, CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_TEXT);
	assert_int_equal(col(&r, "u")->type, CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_INTEGER);
	assert_int_equal(col(&r, "n")->type, CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_FLOAT);
	assert_int_equal(col(&r, "n")->count, 0);
	assert_true(isnan(col(&r, "n")->mean));
	assert_true(col(&r, "f")->mean == 1.75);
	analyze_result_free(r.res);
}

static void test_group(void **state)
{
	(void)state;
	char *keys[] = {"k"};
	Capibox__V1__Aggregate a = CAPIBOX__V1__AGGREGATE__INIT, b = CAPIBOX__V1__AGGREGATE__INIT;
	Capibox__V1__Aggregate *aggs[] = {&a, &b};

	a.column = "v";
	a.function = CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MEAN;
	b.column = "v";
	b.function = CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_SUM;
	struct run r = run_csv("k,v\nb,1\na,2\n,3\nb,4\n", "t.csv", keys, 1, aggs, 2);

	assert_int_equal(r.st, ANALYZE_OK);
	const Capibox__V1__Table *g = r.resp->groups;

	assert_non_null(g);
	assert_int_equal(g->n_columns, 3);
	assert_string_equal(g->columns[1], "v_mean");
	assert_int_equal(g->n_rows, 2); /* the null key is dropped */
	assert_string_equal(g->rows[0]->values[0]->text, "a");
	assert_true(g->rows[1]->values[1]->number == 2.5);
	assert_true(g->rows[1]->values[2]->number == 5);
	analyze_result_free(r.res);

	a.column = "k";
	r = run_csv("k,v\nb,1\n", "t.csv", keys, 1, aggs, 1);
	assert_int_equal(r.st, ANALYZE_EAGG);
	assert_string_equal(analyze_error(r.res),
			    "aggregates[0]: mean does not apply to text column \"k\"");
	analyze_result_free(r.res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quoting),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_group),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
