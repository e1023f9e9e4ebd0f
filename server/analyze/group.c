/*
 * groupby(keys).agg(...) as pandas 1.5 computes it: rows with a null key
 * dropped, groups in sorted key order (numbers numerically, text by code
 * point, False before True), and the cython kernels' arithmetic: Kahan
 * summation for sum and mean, Welford for std (ddof 1), the middle of the
 * sorted values for median. Without group_by the aggregates are the Series
 * methods (stats.c) over the whole column, in one row.
 *
 * Each key column maps its rows to dense ids, ranked by sorting the
 * distinct values; the ranks of all keys make one mixed-radix code per row
 * (the first key most significant, so codes sort as key tuples do), and
 * the distinct codes, sorted, are the groups.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* --- a uint64 -> dense id map ------------------------------------------------ */
struct u64map {
	uint64_t *keys;
	uint32_t *vals; /* id + 1; 0 = empty */
	size_t mask, n;
};

static int u64map_grow(struct u64map *m)
{
	size_t ns = m->keys ? (m->mask + 1) * 2 : 1024;
	uint64_t *k = malloc(ns * sizeof(*k));
	uint32_t *v = calloc(ns, sizeof(*v));

	if (!k || !v) {
		free(k);
		free(v);
		return -1;
	}
	for (size_t i = 0; m->keys && i <= m->mask; i++) {
		if (!m->vals[i])
			continue;
		size_t j = (m->keys[i] * 0x9e3779b97f4a7c15ULL) >> 20 & (ns - 1);

		while (v[j])
			j = (j + 1) & (ns - 1);
		k[j] = m->keys[i];
		v[j] = m->vals[i];
	}
	free(m->keys);
	free(m->vals);
	m->keys = k;
	m->vals = v;
	m->mask = ns - 1;
	return 0;
}

/* The id of key (new ids count up from 0); ID_NULL when out of memory. */
static uint32_t u64map_id(struct u64map *m, uint64_t key)
{
	if ((!m->keys || (m->n + 1) * 2 > m->mask + 1) && u64map_grow(m) < 0)
		return ID_NULL;
	size_t j = (key * 0x9e3779b97f4a7c15ULL) >> 20 & m->mask;

	while (m->vals[j]) {
		if (m->keys[j] == key)
			return m->vals[j] - 1;
		j = (j + 1) & m->mask;
	}
	if (m->n >= ID_NULL - 1)
		return ID_NULL;
	m->keys[j] = key;
	m->vals[j] = (uint32_t)++m->n;
	return (uint32_t)(m->n - 1);
}

static void u64map_free(struct u64map *m)
{
	free(m->keys);
	free(m->vals);
}

/* --- keys ------------------------------------------------------------------- */
struct key {
	const struct column *c;
	uint32_t *id;	   /* per row: dense id, ID_NULL = null */
	uint32_t nid;	   /* distinct */
	uint32_t *rank;	   /* id -> rank in sorted order */
	uint32_t *byrank;  /* rank -> id */
	uint64_t *idvalue; /* numeric keys: id -> sortable key */
};

static int cmp_text_ids(const void *a, const void *b, void *ctx)
{
	const struct dict *d = ctx;
	const struct dict_entry *x = &d->entries[*(const uint32_t *)a];
	const struct dict_entry *y = &d->entries[*(const uint32_t *)b];
	size_t n = x->len < y->len ? x->len : y->len;
	int r = memcmp(x->s, y->s, n);

	return r ? r : (x->len > y->len) - (x->len < y->len);
}

static int cmp_u64_by_id(const void *a, const void *b, void *ctx)
{
	const uint64_t *v = ctx;
	uint64_t x = v[*(const uint32_t *)a], y = v[*(const uint32_t *)b];

	return (x > y) - (x < y);
}

static uint64_t row_numkey(const struct column *c, size_t r, bool *null)
{
	*null = false;
	switch (c->kind) {
	case KIND_INT: return c->v.u[r] ^ (1ULL << 63);
	case KIND_UINT: return c->v.u[r];
	default:
		if (c->v.f[r] != c->v.f[r]) {
			*null = true;
			return 0;
		}
		return stats_double_key(c->v.f[r]);
	}
}

static int key_build(struct key *k, const struct column *c, size_t nrows)
{
	k->c = c;
	k->id = malloc((nrows ? nrows : 1) * sizeof(*k->id));
	if (!k->id)
		return -1;
	if (c->kind == KIND_TEXT) {
		if (nrows)
			memcpy(k->id, c->v.t, nrows * sizeof(*k->id));
		k->nid = c->dict.n;
	} else if (c->kind == KIND_BOOL) {
		for (size_t r = 0; r < nrows; r++)
			k->id[r] = c->v.b[r] < 2 ? c->v.b[r] : ID_NULL;
		k->nid = 2;
	} else {
		struct u64map m = {0};

		for (size_t r = 0; r < nrows; r++) {
			bool null;
			uint64_t v = row_numkey(c, r, &null);

			k->id[r] = null ? ID_NULL : u64map_id(&m, v);
			if (!null && k->id[r] == ID_NULL) {
				u64map_free(&m);
				return -1;
			}
		}
		k->nid = (uint32_t)m.n;
		k->idvalue = malloc((m.n ? m.n : 1) * sizeof(uint64_t));
		if (!k->idvalue) {
			u64map_free(&m);
			return -1;
		}
		for (size_t i = 0; m.keys && i <= m.mask; i++)
			if (m.vals[i])
				k->idvalue[m.vals[i] - 1] = m.keys[i];
		u64map_free(&m);
	}
	k->rank = malloc((k->nid ? k->nid : 1) * sizeof(uint32_t));
	k->byrank = malloc((k->nid ? k->nid : 1) * sizeof(uint32_t));
	if (!k->rank || !k->byrank)
		return -1;
	for (uint32_t i = 0; i < k->nid; i++)
		k->byrank[i] = i;
	if (c->kind == KIND_TEXT) {
		qsort_r(k->byrank, k->nid, sizeof(uint32_t), cmp_text_ids, (void *)&c->dict);
	} else if (c->kind != KIND_BOOL) {
		qsort_r(k->byrank, k->nid, sizeof(uint32_t), cmp_u64_by_id, k->idvalue);
	}
	for (uint32_t i = 0; i < k->nid; i++)
		k->rank[k->byrank[i]] = i;
	return 0;
}

static void key_free(struct key *k)
{
	free(k->id);
	free(k->rank);
	free(k->byrank);
	free(k->idvalue);
}

static Capibox__V1__Value *key_value(struct arena *a, const struct key *k, uint32_t rank)
{
	uint32_t id = k->byrank[rank];
	const struct column *c = k->c;

	switch (c->kind) {
	case KIND_TEXT: return value_text(a, c->dict.entries[id].s, c->dict.entries[id].len);
	case KIND_BOOL: return id ? value_text(a, "True", 4) : value_text(a, "False", 5);
	case KIND_INT: return value_number(a, (double)(int64_t)(k->idvalue[id] ^ (1ULL << 63)));
	case KIND_UINT: return value_number(a, (double)k->idvalue[id]);
	default: return value_number(a, stats_key_double(k->idvalue[id]));
	}
}

/* --- aggregates --------------------------------------------------------------- */
static const char *fn_name(Capibox__V1__AggregateFunction f)
{
	switch (f) {
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_COUNT: return "count";
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_SUM: return "sum";
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MEAN: return "mean";
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MIN: return "min";
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MAX: return "max";
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_STD: return "std";
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MEDIAN: return "median";
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_NUNIQUE: return "nunique";
	default: return "?";
	}
}

/* a cell as a double (bools 0/1), false when null */
static bool cell_number(const struct column *c, size_t r, double *v)
{
	switch (c->kind) {
	case KIND_INT: *v = (double)c->v.i[r]; return true;
	case KIND_UINT: *v = (double)c->v.u[r]; return true;
	case KIND_FLOAT: *v = c->v.f[r]; return *v == *v;
	case KIND_BOOL: *v = c->v.b[r]; return c->v.b[r] < 2;
	default: return false;
	}
}

/* a cell as a sortable key (text: its dict id), false when null */
static bool cell_key(const struct column *c, size_t r, uint64_t *k)
{
	bool null;

	switch (c->kind) {
	case KIND_TEXT: *k = c->v.t[r]; return c->v.t[r] != ID_NULL;
	case KIND_BOOL: *k = c->v.b[r]; return c->v.b[r] < 2;
	default: *k = row_numkey(c, r, &null); return !null;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static int text_less(const struct dict *d, uint32_t a, uint32_t b)
{
	const struct dict_entry *x = &d->entries[a], *y = &d->entries[b];
	size_t n = x->len < y->len ? x->len : y->len;
	int r = memcmp(x->s, y->s, n);

	return r ? r < 0 : x->len < y->len;
}

/*
 * One aggregate over the groups: out[g] for g < ng. gid maps rows to groups
 * (ID_NULL: dropped); start/order list each group's rows.
 */
static int agg_compute(struct arena *a, const struct column *c, Capibox__V1__AggregateFunction f,
		       size_t nrows, const uint32_t *gid, size_t ng, const size_t *start,
		       const size_t *order, Capibox__V1__Value **out)
{
	int rc = -1;
	double *s1 = calloc(ng ? ng : 1, sizeof(double)), *s2 = calloc(ng ? ng : 1, sizeof(double));
	uint64_t *cnt = calloc(ng ? ng : 1, sizeof(uint64_t));
	uint64_t *isum = calloc(ng ? ng : 1, sizeof(uint64_t));
	double *buf = NULL;
	uint64_t *kbuf = NULL;
	uint32_t *best = NULL;

	if (!s1 || !s2 || !cnt || !isum)
		goto out;
	switch (f) {
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_COUNT:
		for (size_t r = 0; r < nrows; r++) {
			uint64_t k;

			if (gid[r] != ID_NULL && cell_key(c, r, &k))
				cnt[gid[r]]++;
		}
		for (size_t g = 0; g < ng; g++)
			if (!(out[g] = value_number(a, (double)cnt[g])))
				goto out;
		break;
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_SUM:
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MEAN:
		/* group_sum / group_mean: Kahan; int64 sums are exact integers (sum) */
		for (size_t r = 0; r < nrows; r++) {
			double v;
			uint32_t g = gid[r];

			if (g == ID_NULL || !cell_number(c, r, &v))
				continue;
			cnt[g]++;
			if (c->kind == KIND_INT || c->kind == KIND_UINT || c->kind == KIND_BOOL)
				isum[g] += c->kind == KIND_BOOL ? c->v.b[r] : c->v.u[r];
			double y = v - s2[g], t = s1[g] + y;

			s2[g] = t - s1[g] - y;
			s1[g] = t;
		}
		for (size_t g = 0; g < ng; g++) {
			double v;

			if (f == CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MEAN)
				v = cnt[g] ? s1[g] / (double)cnt[g] : NAN;
			else if (c->kind == KIND_INT)
				v = (double)(int64_t)isum[g];
			else if (c->kind == KIND_UINT || c->kind == KIND_BOOL)
				v = (double)isum[g];
			else
				v = s1[g];
			if (!(out[g] = value_number(a, v)))
				goto out;
		}
		break;
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_STD:
		/* group_var: Welford */
		for (size_t r = 0; r < nrows; r++) {
			double v;
			uint32_t g = gid[r];

			if (g == ID_NULL || !cell_number(c, r, &v))
				continue;
			cnt[g]++;
			double old = s1[g];

			s1[g] += (v - old) / (double)cnt[g];
			s2[g] += (v - s1[g]) * (v - old);
		}
		for (size_t g = 0; g < ng; g++)
			if (!(out[g] = value_number(
				      a, cnt[g] > 1 ? sqrt(s2[g] / (double)(cnt[g] - 1)) : NAN)))
				goto out;
		break;
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MEDIAN:
		buf = malloc((nrows ? nrows : 1) * sizeof(double));
		if (!buf)
			goto out;
		for (size_t g = 0; g < ng; g++) {
			size_t m = 0;

			for (size_t i = start[g]; i < start[g + 1]; i++) {
				double v;

				if (cell_number(c, order[i], &v))
					buf[m++] = v;
			}
			qsort(buf, m, sizeof(double), cmp_double);
			double v = m == 0 ? NAN :
				   m % 2  ? buf[m / 2] :
					    (buf[m / 2 - 1] + buf[m / 2]) / 2;

			if (!(out[g] = value_number(a, v)))
				goto out;
		}
		break;
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_NUNIQUE:
		kbuf = malloc((nrows ? nrows : 1) * sizeof(uint64_t));
		if (!kbuf)
			goto out;
		for (size_t g = 0; g < ng; g++) {
			size_t m = 0, d = 0;

			for (size_t i = start[g]; i < start[g + 1]; i++)
				if (cell_key(c, order[i], &kbuf[m]))
					m++;
			qsort(kbuf, m, sizeof(uint64_t), cmp_u64);
			for (size_t i = 0; i < m; i++)
				d += i == 0 || kbuf[i] != kbuf[i - 1];
			if (!(out[g] = value_number(a, (double)d)))
				goto out;
		}
		break;
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MIN:
	case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MAX: {
		bool want_min = f == CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MIN;

		best = malloc((ng ? ng : 1) * sizeof(uint32_t));
		if (!best)
			goto out;
		for (size_t g = 0; g < ng; g++)
			best[g] = ID_NULL;
		for (size_t r = 0; r < nrows; r++) {
			uint32_t g = gid[r];

			if (g == ID_NULL)
				continue;
			if (c->kind == KIND_TEXT) {
				uint32_t id = c->v.t[r];

				if (id == ID_NULL)
					continue;
				if (best[g] == ID_NULL ||
				    (want_min ? text_less(&c->dict, id, best[g]) :
						text_less(&c->dict, best[g], id)))
					best[g] = id;
				continue;
			}
			uint64_t k;

			if (!cell_key(c, r, &k))
				continue;
			if (!cnt[g] || (want_min ? k < isum[g] : k > isum[g]))
				isum[g] = k;
			cnt[g] = 1;
		}
		for (size_t g = 0; g < ng; g++) {
			Capibox__V1__Value *v;

			if (c->kind == KIND_TEXT)
				v = best[g] == ID_NULL ? value_null(a) :
							 value_text(a, c->dict.entries[best[g]].s,
								    c->dict.entries[best[g]].len);
			else if (!cnt[g])
				v = value_null(a);
			else if (c->kind == KIND_BOOL)
				v = isum[g] ? value_text(a, "True", 4) : value_text(a, "False", 5);
			else if (c->kind == KIND_INT)
				v = value_number(a, (double)(int64_t)(isum[g] ^ (1ULL << 63)));
			else if (c->kind == KIND_UINT)
				v = value_number(a, (double)isum[g]);
			else
				v = value_number(a, stats_key_double(isum[g]));
			if (!(out[g] = v))
				goto out;
		}
		break;
	}
	default: goto out;
	}
	rc = 0;
out:
	free(s1);
	free(s2);
	free(cnt);
	free(isum);
	free(buf);
	free(kbuf);
	free(best);
	return rc;
}

/* Without group_by: the Series methods over the whole column (stats.c), one row. */
static int agg_whole(struct table *t, const struct column *c, Capibox__V1__AggregateFunction f,
		     Capibox__V1__Value **out)
{
	struct arena *a = &t->arena;

	if (c->kind == KIND_INT || c->kind == KIND_UINT || c->kind == KIND_FLOAT) {
		struct numstats st;
		double v;

		if (stats_numeric(c, t->nrows, &st, NULL) < 0)
			return -1;
		switch (f) {
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_COUNT:
			v = (double)st.count;
			break;
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_SUM: v = st.sum; break;
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MEAN: v = st.mean; break;
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MIN: v = st.min; break;
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MAX: v = st.max; break;
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_STD: v = st.std; break;
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_MEDIAN:
			v = st.median;
			break;
		case CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_NUNIQUE:
			v = (double)st.distinct;
			break;
		default: return -1;
		}
		*out = value_number(a, v);
		return *out ? 0 : -1;
	}
	/* TEXT and BOOL: the group kernels over one group */
	uint32_t *gid = calloc(t->nrows ? t->nrows : 1, sizeof(uint32_t));
	size_t *order = malloc((t->nrows ? t->nrows : 1) * sizeof(size_t));
	size_t start[2] = {0, t->nrows};
	int rc = -1;

	if (gid && order) {
		for (size_t r = 0; r < t->nrows; r++)
			order[r] = r;
		rc = agg_compute(a, c, f, t->nrows, gid, 1, start, order, out);
	}
	free(gid);
	free(order);
	return rc;
}

enum analyze_status group_run(struct table *t, const Capibox__V1__AnalyzeRequest *req,
			      const size_t *keycols, const size_t *aggcols,
			      Capibox__V1__Table **outp)
{
	struct arena *a = &t->arena;
	size_t nk = req->n_group_by, na = req->n_aggregates, nrows = t->nrows;
	size_t ncolumns = nk + (na ? na : 1), ng = 0;
	struct key *keys = calloc(nk ? nk : 1, sizeof(*keys));
	uint64_t *code = NULL, *gcode = NULL;
	uint32_t *gid = NULL;
	size_t *start = NULL, *order = NULL;
	Capibox__V1__Value **cells = NULL;
	enum analyze_status st = ANALYZE_EFAIL;
	struct u64map m = {0};
	Capibox__V1__Table *tab = arena_alloc(a, sizeof(*tab));

	if (!keys || !tab)
		goto nomem;
	capibox__v1__table__init(tab);
	tab->n_columns = ncolumns;
	tab->columns = arena_alloc(a, ncolumns * sizeof(char *));
	if (!tab->columns)
		goto nomem;
	for (size_t k = 0; k < nk; k++)
		tab->columns[k] = t->cols[keycols[k]].name;
	for (size_t i = 0; i < na; i++) {
		const char *cn = t->cols[aggcols[i]].name;
		size_t l = strlen(cn) + 16;

		tab->columns[nk + i] = arena_alloc(a, l);
		if (!tab->columns[nk + i])
			goto nomem;
		snprintf(tab->columns[nk + i], l, "%s_%s", cn,
			 fn_name(req->aggregates[i]->function));
	}
	if (!na)
		tab->columns[nk] = "size";

	if (nk == 0) {
		/* one row over everything */
		cells = arena_alloc(a, ncolumns * sizeof(*cells));
		if (!cells)
			goto nomem;
		for (size_t i = 0; i < na; i++)
			if (agg_whole(t, &t->cols[aggcols[i]], req->aggregates[i]->function,
				      &cells[i]) < 0)
				goto nomem;
		if (!na && !(cells[0] = value_number(a, (double)nrows)))
			goto nomem;
		ng = 1;
		goto rows;
	}

	/* group codes: mixed radix over the key ranks */
	uint64_t mult[64];

	if (nk > 64) {
		snprintf(t->err, sizeof(t->err), "group_by: too many keys (at most 64)");
		goto out;
	}
	for (size_t k = 0; k < nk; k++)
		if (key_build(&keys[k], &t->cols[keycols[k]], nrows) < 0)
			goto nomem;
	{
		unsigned __int128 span = 1;

		for (size_t k = nk; k-- > 0;) {
			mult[k] = (uint64_t)span;
			span *= keys[k].nid ? keys[k].nid : 1;
			if (span >= ((unsigned __int128)1 << 63)) {
				snprintf(t->err, sizeof(t->err),
					 "group_by: too many distinct key combinations");
				goto out;
			}
		}
	}
	code = malloc((nrows ? nrows : 1) * sizeof(*code));
	gid = malloc((nrows ? nrows : 1) * sizeof(*gid));
	if (!code || !gid)
		goto nomem;
	for (size_t r = 0; r < nrows; r++) {
		uint64_t cd = 0;

		for (size_t k = 0; k < nk; k++) {
			uint32_t id = keys[k].id[r];

			if (id == ID_NULL) {
				cd = UINT64_MAX; /* a null key drops the row (dropna) */
				break;
			}
			cd += (uint64_t)keys[k].rank[id] * mult[k];
		}
		code[r] = cd;
		if (cd == UINT64_MAX) {
			gid[r] = ID_NULL;
			continue;
		}
		gid[r] = u64map_id(&m, cd);
		if (gid[r] == ID_NULL)
			goto nomem;
	}
	ng = m.n;
	/* order groups by code: tmp id -> final id */
	{
		uint32_t *byid = malloc((ng ? ng : 1) * sizeof(uint32_t));
		uint32_t *remap = malloc((ng ? ng : 1) * sizeof(uint32_t));

		gcode = malloc((ng ? ng : 1) * sizeof(uint64_t));
		if (!byid || !remap || !gcode) {
			free(byid);
			free(remap);
			goto nomem;
		}
		for (size_t i = 0; m.keys && i <= m.mask; i++)
			if (m.vals[i])
				gcode[m.vals[i] - 1] = m.keys[i];
		for (uint32_t i = 0; i < ng; i++)
			byid[i] = i;
		qsort_r(byid, ng, sizeof(uint32_t), cmp_u64_by_id, gcode);
		for (uint32_t i = 0; i < ng; i++)
			remap[byid[i]] = i;
		for (size_t r = 0; r < nrows; r++)
			if (gid[r] != ID_NULL)
				gid[r] = remap[gid[r]];
		uint64_t *sorted = malloc((ng ? ng : 1) * sizeof(uint64_t));

		if (!sorted) {
			free(byid);
			free(remap);
			goto nomem;
		}
		for (uint32_t i = 0; i < ng; i++)
			sorted[i] = gcode[byid[i]];
		free(gcode);
		gcode = sorted;
		free(byid);
		free(remap);
	}
	/* rows of each group, in row order (counting sort) */
	start = calloc(ng + 1, sizeof(size_t));
	order = malloc((nrows ? nrows : 1) * sizeof(size_t));
	if (!start || !order)
		goto nomem;
	for (size_t r = 0; r < nrows; r++)
		if (gid[r] != ID_NULL)
			start[gid[r] + 1]++;
	for (size_t g = 0; g < ng; g++)
		start[g + 1] += start[g];
	{
		size_t *pos = malloc((ng ? ng : 1) * sizeof(size_t));

		if (!pos)
			goto nomem;
		memcpy(pos, start, (ng ? ng : 1) * sizeof(size_t));
		for (size_t r = 0; r < nrows; r++)
			if (gid[r] != ID_NULL)
				order[pos[gid[r]]++] = r;
		free(pos);
	}
	if (ng > SIZE_MAX / sizeof(*cells) / ncolumns)
		goto nomem;
	cells = arena_alloc(a, ng * ncolumns * sizeof(*cells));
	if (!cells && ng)
		goto nomem;
	for (size_t g = 0; g < ng; g++) {
		uint64_t cd = gcode[g];

		for (size_t k = 0; k < nk; k++) {
			uint32_t rank = (uint32_t)(cd / mult[k]);

			cd %= mult[k];
			if (!(cells[g * ncolumns + k] = key_value(a, &keys[k], rank)))
				goto nomem;
		}
		if (!na && !(cells[g * ncolumns + nk] =
				     value_number(a, (double)(start[g + 1] - start[g]))))
			goto nomem;
	}
	{
		Capibox__V1__Value **col = malloc((ng ? ng : 1) * sizeof(*col));

		if (!col)
			goto nomem;
		for (size_t i = 0; i < na; i++) {
			if (agg_compute(a, &t->cols[aggcols[i]], req->aggregates[i]->function,
					nrows, gid, ng, start, order, col) < 0) {
				free(col);
				goto nomem;
			}
			for (size_t g = 0; g < ng; g++)
				cells[g * ncolumns + nk + i] = col[g];
		}
		free(col);
	}
rows:
	tab->n_rows = ng;
	tab->rows = arena_alloc(a, (ng ? ng : 1) * sizeof(*tab->rows));
	if (!tab->rows)
		goto nomem;
	for (size_t g = 0; g < ng; g++) {
		Capibox__V1__Row *row = arena_alloc(a, sizeof(*row));

		if (!row)
			goto nomem;
		capibox__v1__row__init(row);
		row->n_values = ncolumns;
		row->values = &cells[g * ncolumns];
		tab->rows[g] = row;
	}
	*outp = tab;
	st = ANALYZE_OK;
	goto out;
nomem:
	snprintf(t->err, sizeof(t->err), "out of memory");
	st = ANALYZE_EFAIL;
out:
	for (size_t k = 0; keys && k < nk; k++)
		key_free(&keys[k]);
	free(keys);
	free(code);
	free(gcode);
	free(gid);
	free(start);
	free(order);
	u64map_free(&m);
	return st;
}
