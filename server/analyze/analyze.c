/*
 * The engine's entry point: checks the dataset's bytes, picks the format,
 * reads the columns the request needs, summarises them (two threads: one
 * column each at a time) and runs the group-by. Everything the response
 * points to lives in the table's arena, freed with the result.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct analyze_result {
	struct table t;
	Capibox__V1__AnalyzeResponse resp;
};

/* pandas' STR_NA_VALUES (pandas/_libs/parsers.pyx) */
static const char *const default_na[] = {
	"",	   "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
	"1.#QNAN", "<NA>", "N/A",      "NA",  "NULL",	 "NaN",	     "n/a",  "nan",  "null",
};

Capibox__V1__Value *value_number(struct arena *a, double d)
{
	Capibox__V1__Value *v = arena_alloc(a, sizeof(*v));

	if (!v)
		return NULL;
	capibox__v1__value__init(v);
	if (d != d) {
		v->kind_case = CAPIBOX__V1__VALUE__KIND_IS_NULL;
		v->is_null = 1;
	} else {
		v->kind_case = CAPIBOX__V1__VALUE__KIND_NUMBER;
		v->number = d;
	}
	return v;
}

Capibox__V1__Value *value_text(struct arena *a, const char *s, size_t len)
{
	Capibox__V1__Value *v = arena_alloc(a, sizeof(*v));

	if (!v)
		return NULL;
	capibox__v1__value__init(v);
	v->kind_case = CAPIBOX__V1__VALUE__KIND_TEXT;
	v->text = arena_strndup(a, s, len);
	return v->text ? v : NULL;
}

Capibox__V1__Value *value_null(struct arena *a)
{
	Capibox__V1__Value *v = arena_alloc(a, sizeof(*v));

	if (!v)
		return NULL;
	capibox__v1__value__init(v);
	v->kind_case = CAPIBOX__V1__VALUE__KIND_IS_NULL;
	v->is_null = 1;
	return v;
}

static int nullset_init(struct nullset *na, struct arena *a, char **vals, size_t n)
{
	const char *const *src = n ? (const char *const *)vals : default_na;
	size_t cnt = n ? n : sizeof(default_na) / sizeof(default_na[0]);

	na->s = arena_alloc(a, cnt * sizeof(*na->s));
	na->len = arena_alloc(a, cnt * sizeof(*na->len));
	if (!na->s || !na->len)
		return -1;
	for (size_t i = 0; i < cnt; i++) {
		size_t l = strlen(src[i]);

		if (l == 0) {
			na->empty_is_null = true;
			continue;
		}
		na->s[na->n] = src[i];
		na->len[na->n++] = l;
		na->lens[(unsigned char)src[i][0]] |= 1u << (l < 31 ? l : 31);
	}
	return 0;
}

/*
 * The dataset must be UTF-8 without NUL bytes: pandas decodes UTF-8 and
 * fails otherwise, and protobuf strings can carry neither.
 */
static enum analyze_status check_bytes(struct table *t, const char *data, size_t len)
{
	const unsigned char *s = (const unsigned char *)data, *end = s + len;
	const char *what = NULL;

	while (s < end) {
		if (end - s >= 8) {
			uint64_t w;

			memcpy(&w, s, 8);
			/* ASCII without NUL: no high bit, no zero byte */
			if (!(w & 0x8080808080808080ULL) &&
			    !((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL)) {
				s += 8;
				continue;
			}
		}
		unsigned c = *s;

		if (c == 0) {
			what = "NUL byte";
			break;
		}
		if (c < 0x80) {
			s++;
			continue;
		}
		int more;
		uint32_t cp;

		if ((c & 0xe0) == 0xc0) {
			more = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			more = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			more = 3;
			cp = c & 0x07;
		} else {
			what = "invalid UTF-8";
			break;
		}
		if (end - s <= more) {
			what = "invalid UTF-8";
			break;
		}
		bool bad = false;

		for (int i = 1; i <= more; i++) {
			if ((s[i] & 0xc0) != 0x80)
				bad = true;
			cp = cp << 6 | (s[i] & 0x3f);
		}
		if (bad || (more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) ||
		    (more == 3 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
		    cp > 0x10ffff) {
			what = "invalid UTF-8";
			break;
		}
		s += more + 1;
	}
	if (!what)
		return ANALYZE_OK;
	size_t line = 1;

	for (const char *p = data; p < (const char *)s; p++)
		line += *p == '\n';
	snprintf(t->err, sizeof(t->err), "dataset: line %zu: %s", line, what);
	return ANALYZE_EDATA;
}

struct bytes_half {
	struct table t; /* only its err */
	const char *data;
	size_t len;
	enum analyze_status st;
};

static void *bytes_half_run(void *arg)
{
	struct bytes_half *h = arg;

	h->st = check_bytes(&h->t, h->data, h->len);
	return NULL;
}

/* check_bytes on two threads for big inputs, split at an ASCII byte (never inside a sequence) */
static enum analyze_status check_bytes_parallel(struct table *t, const char *data, size_t len,
						int threads)
{
	size_t mid = len / 2;
	struct bytes_half *h;
	pthread_t th;
	enum analyze_status st;

	if (threads < 2 || len < (1 << 20))
		return check_bytes(t, data, len);
	while (mid < len && (unsigned char)data[mid] >= 0x80)
		mid++;
	h = calloc(1, sizeof(*h));
	if (!h)
		return check_bytes(t, data, len);
	h->data = data + mid;
	h->len = len - mid;
	if (pthread_create(&th, NULL, bytes_half_run, h) != 0) {
		free(h);
		return check_bytes(t, data, len);
	}
	st = check_bytes(t, data, mid);
	pthread_join(th, NULL);
	if (st == ANALYZE_OK && h->st != ANALYZE_OK)
		st = check_bytes(t, data, len); /* again for the right line number */
	free(h);
	return st;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* DATASET_FORMAT_UNSPECIFIED: the name's extension, then the content */
static Capibox__V1__DatasetFormat guess_format(const char *name, const char *data, size_t len)
{
	if (name && (ends_with(name, ".csv")))
		return CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_CSV;
	if (name && (ends_with(name, ".tsv") || ends_with(name, ".tab")))
		return CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_TSV;
	if (name &&
	    (ends_with(name, ".jsonl") || ends_with(name, ".ndjson") || ends_with(name, ".json")))
		return CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_JSONL;
	size_t i = len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3) ? 3 : 0;

	while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
		i++;
	if (i < len && data[i] == '{')
		return CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_JSONL;
	size_t tabs = 0, commas = 0;

	for (; i < len && data[i] != '\n'; i++) {
		tabs += data[i] == '\t';
		commas += data[i] == ',';
	}
	return tabs > commas ? CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_TSV :
			       CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_CSV;
}

/*
 * name for a one-line message: quotes, backslashes and control bytes
 * escaped, cut at 120 bytes on a UTF-8 boundary ("..." then).
 */
static const char *msg_name(char *buf, size_t size, const char *name)
{
	size_t o = 0;
	const unsigned char *p = (const unsigned char *)name;

	for (; *p && o + 8 < size; p++) {
		if (o >= 120 && (*p & 0xc0) != 0x80) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (*p == '"' || *p == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)*p;
		} else if (*p < 0x20 || *p == 0x7f) {
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", *p);
		} else {
			buf[o++] = (char)*p;
		}
	}
	buf[o] = 0;
	return buf;
}

/* --- which columns the request needs --------------------------------------- */
struct selection {
	const Capibox__V1__AnalyzeRequest *req;
	bool summaries; /* describe the columns (all when req->columns is empty) */
	size_t *sumcols, nsum;
	size_t *keycols, *aggcols;
};

static ssize_t column_index(const struct table *t, const char *name)
{
	for (size_t i = 0; i < t->ncols; i++)
		if (strcmp(t->cols[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

static enum analyze_status select_columns(struct table *t, void *arg)
{
	struct selection *sel = arg;
	const Capibox__V1__AnalyzeRequest *req = sel->req;
	ssize_t ix;
	char nb[160];

	for (size_t i = 0; i < req->n_columns; i++) {
		if ((ix = column_index(t, req->columns[i])) < 0) {
			snprintf(t->err, sizeof(t->err), "columns: unknown column \"%s\"",
				 msg_name(nb, sizeof(nb), req->columns[i]));
			return ANALYZE_ECOLUMN;
		}
		sel->sumcols[i] = (size_t)ix;
	}
	for (size_t i = 0; i < req->n_group_by; i++) {
		if ((ix = column_index(t, req->group_by[i])) < 0) {
			snprintf(t->err, sizeof(t->err), "group_by: unknown column \"%s\"",
				 msg_name(nb, sizeof(nb), req->group_by[i]));
			return ANALYZE_ECOLUMN;
		}
		sel->keycols[i] = (size_t)ix;
		t->cols[ix].used = true;
	}
	for (size_t i = 0; i < req->n_aggregates; i++) {
		const char *name = req->aggregates[i]->column ? req->aggregates[i]->column : "";

		if ((ix = column_index(t, name)) < 0) {
			snprintf(t->err, sizeof(t->err),
				 "aggregates[%zu].column: unknown column \"%s\"", i,
				 msg_name(nb, sizeof(nb), name));
			return ANALYZE_ECOLUMN;
		}
		sel->aggcols[i] = (size_t)ix;
		t->cols[ix].used = true;
	}
	if (!sel->summaries) {
		sel->nsum = 0;
	} else if (req->n_columns) {
		sel->nsum = req->n_columns;
		for (size_t i = 0; i < sel->nsum; i++)
			t->cols[sel->sumcols[i]].used = true;
	} else {
		sel->nsum = t->ncols;
		sel->sumcols = arena_alloc(&t->arena, (t->ncols ? t->ncols : 1) * sizeof(size_t));
		if (!sel->sumcols) {
			snprintf(t->err, sizeof(t->err), "out of memory");
			return ANALYZE_EFAIL;
		}
		for (size_t i = 0; i < t->ncols; i++) {
			sel->sumcols[i] = i;
			t->cols[i].used = true;
		}
	}
	return ANALYZE_OK;
}

/* --- summaries ------------------------------------------------------------- */
static Capibox__V1__ColumnType column_type(const struct column *c)
{
	switch (c->kind) {
	case KIND_INT:
	case KIND_UINT: return CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_INTEGER;
	case KIND_BOOL: return CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_BOOLEAN;
	case KIND_TEXT: return CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_TEXT;
	default: return CAPIBOX__V1__COLUMN_TYPE__COLUMN_TYPE_FLOAT;
	}
}

struct job {
	struct table *t;
	const size_t *cols; /* distinct column indices to summarise */
	size_t n;
	Capibox__V1__ColumnSummary **out; /* by column index */
	atomic_size_t next;
	atomic_int failed;
	pthread_mutex_t arena_lock; /* the arena is shared */
};

#define TOP_K 5

static int summarise(struct job *j, size_t ci, struct stats_scratch *sc)
{
	struct table *t = j->t;
	const struct column *c = &t->cols[ci];
	Capibox__V1__ColumnSummary *s;
	int rc = -1;

	pthread_mutex_lock(&j->arena_lock);
	s = arena_alloc(&t->arena, sizeof(*s));
	pthread_mutex_unlock(&j->arena_lock);
	if (!s)
		return -1;
	capibox__v1__column_summary__init(s);
	s->name = c->name;
	s->type = column_type(c);
	if (c->kind == KIND_TEXT || c->kind == KIND_BOOL) {
		uint32_t ids[TOP_K];
		uint64_t counts[TOP_K], distinct;
		size_t ntop, nonnull = 0;

		if (c->kind == KIND_TEXT) {
			for (size_t r = 0; r < t->nrows; r++)
				nonnull += c->v.t[r] != ID_NULL;
		} else {
			for (size_t r = 0; r < t->nrows; r++)
				nonnull += c->v.b[r] < 2;
		}
		s->count = nonnull;
		s->nulls = t->nrows - nonnull;
		if (stats_top(c, t->nrows, TOP_K, ids, counts, &ntop, &distinct) < 0)
			return -1;
		s->distinct = distinct;
		pthread_mutex_lock(&j->arena_lock);
		s->top = arena_alloc(&t->arena, TOP_K * sizeof(*s->top));
		for (size_t i = 0; s->top && i < ntop; i++) {
			Capibox__V1__ValueCount *vc = arena_alloc(&t->arena, sizeof(*vc));

			if (!vc)
				goto unlock;
			capibox__v1__value_count__init(vc);
			if (c->kind == KIND_BOOL)
				vc->value = ids[i] ? "True" : "False";
			else
				vc->value = arena_strndup(&t->arena, c->dict.entries[ids[i]].s,
							  c->dict.entries[ids[i]].len);
			if (!vc->value)
				goto unlock;
			vc->count = counts[i];
			s->top[s->n_top++] = vc;
		}
		rc = s->top ? 0 : -1;
unlock:
		pthread_mutex_unlock(&j->arena_lock);
		if (rc < 0)
			return -1;
	} else {
		struct numstats st;

		if (stats_numeric(c, t->nrows, &st, sc) < 0)
			return -1;
		s->count = st.count;
		s->nulls = t->nrows - st.count;
		s->distinct = st.distinct;
		s->mean = st.mean;
		s->std = st.std;
		s->min = st.min;
		s->p25 = st.p25;
		s->median = st.median;
		s->p75 = st.p75;
		s->max = st.max;
		s->sum = st.sum;
	}
	j->out[ci] = s;
	return 0;
}

static void *summarise_worker(void *arg)
{
	struct job *j = arg;
	struct stats_scratch sc = {0};
	size_t i;

	while ((i = atomic_fetch_add(&j->next, 1)) < j->n)
		if (!atomic_load(&j->failed) && summarise(j, j->cols[i], &sc) < 0)
			atomic_store(&j->failed, 1);
	stats_scratch_free(&sc);
	return NULL;
}

static int summarise_all(struct table *t, const size_t *sumcols, size_t nsum, int threads,
			 Capibox__V1__AnalyzeResponse *resp)
{
	Capibox__V1__ColumnSummary **bycol = calloc(t->ncols ? t->ncols : 1, sizeof(*bycol));
	size_t *uniq = malloc((nsum ? nsum : 1) * sizeof(size_t)), nu = 0;
	pthread_t th[8];
	int nth = 0, rc = -1;
	struct job j = {.t = t, .out = bycol};

	bool *seen = calloc(t->ncols ? t->ncols : 1, sizeof(bool));

	if (!bycol || !uniq || !seen) {
		free(seen);
		goto out;
	}
	/* a column named twice is summarised once */
	for (size_t i = 0; i < nsum; i++)
		if (!seen[sumcols[i]]) {
			seen[sumcols[i]] = true;
			uniq[nu++] = sumcols[i];
		}
	free(seen);
	j.cols = uniq;
	j.n = nu;
	pthread_mutex_init(&j.arena_lock, NULL);
	if (threads > 8)
		threads = 8;
	for (int i = 1; i < threads && (size_t)i < nu; i++)
		if (pthread_create(&th[nth], NULL, summarise_worker, &j) == 0)
			nth++;
	summarise_worker(&j);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&j.arena_lock);
	if (atomic_load(&j.failed))
		goto out;
	resp->n_columns = nsum;
	resp->columns = arena_alloc(&t->arena, (nsum ? nsum : 1) * sizeof(*resp->columns));
	if (!resp->columns)
		goto out;
	for (size_t i = 0; i < nsum; i++)
		resp->columns[i] = bycol[sumcols[i]];
	rc = 0;
out:
	free(bycol);
	free(uniq);
	return rc;
}

/* exit 4: an aggregate that does not apply to its column's type */
static enum analyze_status check_aggregates(struct table *t, const Capibox__V1__AnalyzeRequest *req,
					    const size_t *aggcols)
{
	for (size_t i = 0; i < req->n_aggregates; i++) {
		Capibox__V1__AggregateFunction f = req->aggregates[i]->function;
		const struct column *c = &t->cols[aggcols[i]];
		const char *fname = NULL;
		char nb[160];

		switch (f) {
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_COUNT:
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MIN:
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MAX:
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_NUNIQUE: continue;
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_SUM: fname = "sum"; break;
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MEAN:
			fname = "mean";
			break;
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_STD: fname = "std"; break;
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MEDIAN:
			fname = "median";
			break;
		default:
			snprintf(t->err, sizeof(t->err), "aggregates[%zu]: function not set", i);
			return ANALYZE_EAGG;
		}
		if (c->kind == KIND_TEXT) {
			snprintf(t->err, sizeof(t->err),
				 "aggregates[%zu]: %s does not apply to text column \"%s\"", i,
				 fname, msg_name(nb, sizeof(nb), c->name));
			return ANALYZE_EAGG;
		}
	}
	return ANALYZE_OK;
}

enum analyze_status analyze_run(const Capibox__V1__AnalyzeRequest *req, const char *data,
				size_t len, int threads, struct analyze_result **resp)
{
	struct analyze_result *res = calloc(1, sizeof(*res));
	struct table *t;
	enum analyze_status st;
	struct selection sel = {.req = req};
	struct read_opts o = {.select = select_columns, .select_arg = &sel};
	const Capibox__V1__Dataset *ds = req->dataset;
	Capibox__V1__DatasetFormat fmt;

	*resp = res;
	if (!res)
		return ANALYZE_EFAIL;
	t = &res->t;
	capibox__v1__analyze_response__init(&res->resp);
	if (nullset_init(&t->na, &t->arena, ds ? ds->null_values : NULL,
			 ds ? ds->n_null_values : 0) < 0)
		goto nomem;
	sel.summaries = req->n_columns > 0 || (req->n_group_by == 0 && req->n_aggregates == 0);
	sel.sumcols = arena_alloc(&t->arena, (req->n_columns + 1) * sizeof(size_t));
	sel.keycols = arena_alloc(&t->arena, (req->n_group_by + 1) * sizeof(size_t));
	sel.aggcols = arena_alloc(&t->arena, (req->n_aggregates + 1) * sizeof(size_t));
	if (!sel.sumcols || !sel.keycols || !sel.aggcols)
		goto nomem;
	fmt = ds ? ds->format : CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_UNSPECIFIED;
	if (fmt == CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_UNSPECIFIED)
		fmt = guess_format(ds ? ds->name : NULL, data, len);
	o.no_header = ds && ds->no_header;
	o.delim = fmt == CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_TSV ? '\t' : ',';
	if (ds && ds->delimiter && ds->delimiter[0]) {
		char d = ds->delimiter[0];

		if (ds->delimiter[1] || d == '"' || d == '\n' || d == '\r' ||
		    (unsigned char)d >= 0x80) {
			snprintf(
				t->err, sizeof(t->err),
				"dataset.delimiter: one ASCII character other than a quote or line end");
			st = ANALYZE_EFAIL;
			goto out;
		}
		o.delim = d;
	}
	if ((st = check_bytes_parallel(t, data, len, threads)) != ANALYZE_OK)
		goto out;
	o.threads = threads;
	if (fmt == CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_JSONL)
		st = jsonl_read(t, data, len, &o);
	else
		st = csv_read(t, data, len, &o);
	if (st != ANALYZE_OK)
		goto out;
	if ((st = check_aggregates(t, req, sel.aggcols)) != ANALYZE_OK)
		goto out;
	res->resp.rows = t->nrows;
	if (sel.nsum && summarise_all(t, sel.sumcols, sel.nsum, threads, &res->resp) < 0)
		goto nomem;
	if (req->n_group_by || req->n_aggregates)
		if ((st = group_run(t, req, sel.keycols, sel.aggcols, &res->resp.groups)) !=
		    ANALYZE_OK)
			goto out;
	st = ANALYZE_OK;
out:
	return st;
nomem:
	snprintf(t->err, sizeof(t->err), "out of memory");
	st = ANALYZE_EFAIL;
	goto out;
}

const Capibox__V1__AnalyzeResponse *analyze_response(const struct analyze_result *res)
{
	return &res->resp;
}

const char *analyze_error(const struct analyze_result *res) { return res->t.err; }

void analyze_result_free(struct analyze_result *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->t.ncols; i++)
		column_free(&res->t.cols[i]);
	free(res->t.cols);
	arena_free(&res->t.arena);
	free(res);
}
