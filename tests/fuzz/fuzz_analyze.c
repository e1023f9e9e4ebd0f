/*
 * Fuzz target: the Analyze engine (server/analyze/), which parses hostile
 * datasets inside the sandbox. A crash there only ends that sandbox, but it
 * would still be a wrong answer, and the engine promises more than not
 * crashing; this checks it.
 *
 * Input: byte 0 the options (bits 0-1 format: unspecified, CSV, TSV, JSON
 * lines; bit 2 no_header; bit 3 null_values {"x", ""}; bit 4 delimiter
 * ';'; bit 5 group by the first column; bit 6 aggregates over every
 * column; bit 7 two threads), byte 1 the aggregate function, the rest the
 * dataset. A first run summarises every column; a second, with the names
 * it found, groups and aggregates.
 *
 * Checked: every failure has a one-line message and a documented status;
 * every summary has count + nulls == rows, distinct <= count, at most five
 * top values in non-increasing count order, quantiles in order; a group
 * table's rows are as wide as its columns; every string is UTF-8 (what
 * protobuf needs); the response packs and unpacks again.
 */
#include <math.h>
#include <string.h>

#include "analyze.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

static int utf8_valid(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		int more;
		uint32_t cp;

		if (*s < 0x80) {
			s++;
			continue;
		}
		if ((*s & 0xe0) == 0xc0) {
			cp = *s & 0x1f;
			more = 1;
		} else if ((*s & 0xf0) == 0xe0) {
			cp = *s & 0x0f;
			more = 2;
		} else if ((*s & 0xf8) == 0xf0) {
			cp = *s & 0x07;
			more = 3;
		} else {
			return 0;
		}
		s++;
		for (int i = 0; i < more; i++, s++) {
			if ((*s & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (*s & 0x3f);
		}
		if ((more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) ||
		    (more == 3 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return 0;
	}
	return 1;
}

static void check_response(const Capibox__V1__AnalyzeResponse *r)
{
	for (size_t i = 0; i < r->n_columns; i++) {
		const Capibox__V1__ColumnSummary *c = r->columns[i];

		FUZZ_CHECK(c && c->name && utf8_valid(c->name), "column %zu name", i);
		FUZZ_CHECK(c->count + c->nulls == r->rows, "%s: %llu + %llu != %llu rows", c->name,
			   (unsigned long long)c->count, (unsigned long long)c->nulls,
			   (unsigned long long)r->rows);
		FUZZ_CHECK(c->distinct <= c->count, "%s: distinct > count", c->name);
		FUZZ_CHECK(c->n_top <= 5, "%s: %zu top values", c->name, c->n_top);
		uint64_t topsum = 0;

		for (size_t k = 0; k < c->n_top; k++) {
			FUZZ_CHECK(c->top[k]->value && utf8_valid(c->top[k]->value), "top value");
			FUZZ_CHECK(c->top[k]->count > 0, "top count 0");
			FUZZ_CHECK(k == 0 || c->top[k]->count <= c->top[k - 1]->count,
				   "%s: top not in count order", c->name);
			topsum += c->top[k]->count;
		}
		FUZZ_CHECK(topsum <= c->count, "%s: top counts exceed count", c->name);
		if ((c->type == CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_INTEGER ||
		     c->type == CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_FLOAT) &&
		    c->count > 0) {
			/* !(a > b): NaN (the lerp of -inf and inf, as in numpy) is no disorder */
			FUZZ_CHECK(!(c->min > c->p25) && !(c->p25 > c->median) &&
					   !(c->median > c->p75) && !(c->p75 > c->max) &&
					   c->min <= c->max,
				   "%s: quantiles out of order", c->name);
		}
	}
	if (r->groups) {
		const Capibox__V1__Table *g = r->groups;

		for (size_t i = 0; i < g->n_columns; i++)
			FUZZ_CHECK(g->columns[i] && utf8_valid(g->columns[i]), "group column name");
		for (size_t i = 0; i < g->n_rows; i++) {
			FUZZ_CHECK(g->rows[i]->n_values == g->n_columns, "group row %zu width", i);
			for (size_t k = 0; k < g->rows[i]->n_values; k++) {
				const Capibox__V1__Value *v = g->rows[i]->values[k];

				FUZZ_CHECK(v && v->kind_case != CAPIBOX__V1__VALUE__KIND__NOT_SET,
					   "group cell unset");
				if (v->kind_case == CAPIBOX__V1__VALUE__KIND_TEXT)
					FUZZ_CHECK(utf8_valid(v->text), "group cell text");
			}
		}
	}
	size_t n = capibox__v1__analyze_response__get_packed_size(r);
	uint8_t *buf = malloc(n ? n : 1);

	FUZZ_CHECK(buf != NULL, "malloc");
	capibox__v1__analyze_response__pack(r, buf);
	Capibox__V1__AnalyzeResponse *back = capibox__v1__analyze_response__unpack(NULL, n, buf);

	FUZZ_CHECK(back != NULL, "the response does not unpack");
	FUZZ_CHECK(back->rows == r->rows && back->n_columns == r->n_columns, "round trip");
	capibox__v1__analyze_response__free_unpacked(back, NULL);
	free(buf);
}

static void check_status(enum analyze_status st, const struct analyze_result *res)
{
	FUZZ_CHECK(st <= ANALYZE_EAGG, "status %d", (int)st);
	if (st == ANALYZE_OK)
		return;
	const char *e = analyze_error(res);

	FUZZ_CHECK(e[0] != 0, "status %d without a message", (int)st);
	FUZZ_CHECK(strchr(e, '\n') == NULL, "message of two lines: %s", e);
	FUZZ_CHECK(utf8_valid(e), "message not UTF-8: %s", e);
	FUZZ_CHECK(st != ANALYZE_EFAIL, "status 1 (%s) on a small input", e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Capibox__V1__AnalyzeRequest req = CAPIBOX__V1__ANALYZE_REQUEST__INIT;
	Capibox__V1__Dataset ds = CAPIBOX__V1__DATASET__INIT;
	char *nulls[] = {"x", ""};
	struct analyze_result *res = NULL;
	enum analyze_status st;

	if (size < 2)
		return 0;
	uint8_t o = data[0], fn = data[1];
	const char *text = (const char *)data + 2;
	size_t len = size - 2;
	int threads = (o & 0x80) ? 2 : 1;

	ds.format = (Capibox__V1__DatasetFormat)(o & 3);
	ds.no_header = (o >> 2) & 1;
	if (o & 8) {
		ds.null_values = nulls;
		ds.n_null_values = 2;
	}
	if (o & 16)
		ds.delimiter = ";";
	req.dataset = &ds;
	st = analyze_run(&req, text, len, threads, &res);
	FUZZ_CHECK(res != NULL, "no result");
	check_status(st, res);
	if (st != ANALYZE_OK) {
		analyze_result_free(res);
		return 0;
	}
	check_response(analyze_response(res));
	if (!(o & 0x60)) {
		analyze_result_free(res);
		return 0;
	}

	/* second run: group by the first column, aggregate every column with one function */
	const Capibox__V1__AnalyzeResponse *first = analyze_response(res);
	size_t nc = first->n_columns < 16 ? first->n_columns : 16;
	char *names[16], *keys[1];
	Capibox__V1__Aggregate agg[16], *aggs[16];
	struct analyze_result *res2 = NULL;

	if (nc == 0) {
		analyze_result_free(res);
		return 0;
	}
	for (size_t i = 0; i < nc; i++) {
		names[i] = first->columns[i]->name;
		capibox__v1__aggregate__init(&agg[i]);
		agg[i].column = names[i];
		agg[i].function = (Capibox__V1__AggregateFunction)(1 + (fn + i) % 8);
		aggs[i] = &agg[i];
	}
	keys[0] = names[0];
	if (o & 0x20) {
		req.group_by = keys;
		req.n_group_by = 1;
	}
	if (o & 0x40) {
		req.aggregates = aggs;
		req.n_aggregates = nc;
	}
	st = analyze_run(&req, text, len, threads, &res2);
	FUZZ_CHECK(res2 != NULL, "no result");
	check_status(st, res2);
	FUZZ_CHECK(st == ANALYZE_OK || st == ANALYZE_EAGG, "second run: status %d (%s)", (int)st,
		   analyze_error(res2));
	if (st == ANALYZE_OK) {
		const Capibox__V1__AnalyzeResponse *r = analyze_response(res2);

		check_response(r);
		FUZZ_CHECK(r->groups != NULL, "no groups");
		FUZZ_CHECK(r->groups->n_columns == req.n_group_by + (req.n_aggregates ? nc : 1),
			   "group columns");
		if (!req.n_group_by)
			FUZZ_CHECK(r->groups->n_rows == 1, "aggregates without keys: one row");
	}
	analyze_result_free(res2);
	analyze_result_free(res);
	return 0;
}
