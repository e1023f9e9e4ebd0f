/*
 * Statistics as pandas 1.5 computes them, down to the algorithm where the
 * algorithm shows in the last bits:
 *  - mean and sum of floats: numpy's pairwise summation over the column
 *    with nulls as 0 (nanops.nanmean/nansum fill NaN with 0 first);
 *  - std: bottleneck's nanstd (pandas uses it when installed, as Debian's
 *    python3-pandas does): two sequential passes, ddof 1;
 *  - quantiles: numpy's "linear" method with its lerp;
 *  - value_counts order: counts in order of first appearance, sorted
 *    descending by pandas' nargsort over numpy's (unstable) quicksort,
 *    which decides the order of ties.
 * Exact quantiles and distinct counts come from one LSD radix sort.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PW_BLOCKSIZE 128

/*
 * numpy's pairwise_sum (loops_utils.h.src) for a source type, its values
 * read through CONV (NaN as 0 for doubles, ints converted to double).
 */
#define PAIRWISE(name, type, CONV)                                                               \
	static double name(const type *a, size_t n)                                              \
	{                                                                                        \
		if (n < 8) {                                                                     \
			double res = 0.;                                                         \
			for (size_t i = 0; i < n; i++)                                           \
				res += CONV(a[i]);                                               \
			return res;                                                              \
		} else if (n <= PW_BLOCKSIZE) {                                                  \
			double r[8], res;                                                        \
			size_t i;                                                                \
			for (i = 0; i < 8; i++)                                                  \
				r[i] = CONV(a[i]);                                               \
			for (i = 8; i < n - (n % 8); i += 8)                                     \
				for (int k = 0; k < 8; k++)                                      \
					r[k] += CONV(a[i + k]);                                  \
			res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])); \
			for (; i < n; i++)                                                       \
				res += CONV(a[i]);                                               \
			return res;                                                              \
		} else {                                                                         \
			size_t n2 = n / 2;                                                       \
			n2 -= n2 % 8;                                                            \
			return name(a, n2) + name(a + n2, n - n2);                               \
		}                                                                                \
	}

#define NZ(x) ((x) == (x) ? (x) : 0.0)
#define TO_D(x) ((double)(x))
PAIRWISE(pairwise_nz, double, NZ)
PAIRWISE(pairwise_i64, int64_t, TO_D)
PAIRWISE(pairwise_u64, uint64_t, TO_D)

/* np.add.reduce sums from 0 in buffers of 8192 (the ufunc buffer size), pairwise within each */
#define NP_BUFSIZE 8192

double stats_pairwise(const double *v, size_t n)
{
	double res = 0.0;

	for (size_t i = 0; i < n; i += NP_BUFSIZE)
		res += pairwise_nz(v + i, n - i < NP_BUFSIZE ? n - i : NP_BUFSIZE);
	return res;
}

/* values.sum(dtype=float64) of an int column, as nanops.nanmean does it */
static double int_float_sum(const struct column *c, size_t n)
{
	double res = 0.0;

	for (size_t i = 0; i < n; i += NP_BUFSIZE) {
		size_t m = n - i < NP_BUFSIZE ? n - i : NP_BUFSIZE;

		res += c->kind == KIND_INT ? pairwise_i64(c->v.i + i, m) :
					     pairwise_u64(c->v.u + i, m);
	}
	return res;
}

static int cmp_key(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return (a > b) - (a < b);
}

uint64_t stats_double_key(double d)
{
	uint64_t u;

	if (d == 0)
		d = 0.0; /* -0.0 == 0.0 for nunique */
	memcpy(&u, &d, 8);
	return (u & (1ULL << 63)) ? ~u : u | (1ULL << 63);
}

double stats_key_double(uint64_t k)
{
	uint64_t u = (k & (1ULL << 63)) ? k & ~(1ULL << 63) : ~k;
	double d;

	memcpy(&d, &u, 8);
	return d;
}

void stats_radix_sort(uint64_t *a, uint64_t *tmp, size_t n)
{
	/* 11-bit digits: six passes, and none where every key has the same digit */
	enum { BITS = 11, BUCKETS = 1 << BITS, PASSES = (64 + BITS - 1) / BITS };
	uint32_t(*hist)[BUCKETS] = calloc(PASSES, sizeof(*hist));

	if (!hist || n > UINT32_MAX) {
		/* no room for counts: a comparison sort does the same */
		free(hist);
		qsort(a, n, sizeof(*a), cmp_key);
		return;
	}
	/* only the digits some key has: small offsets need one or two passes */
	uint64_t any = 0;
	int passes = 0;

	for (size_t i = 0; i < n; i++)
		any |= a[i];
	while (passes < PASSES && (any >> (BITS * passes)))
		passes++;
	for (size_t i = 0; i < n; i++) {
		uint64_t k = a[i];

		for (int b = 0; b < passes; b++)
			hist[b][(k >> (BITS * b)) & (BUCKETS - 1)]++;
	}
	uint64_t *src = a, *dst = tmp;

	for (int b = 0; b < passes; b++) {
		uint32_t *h = hist[b], sum = 0;
		uint64_t first = n ? (src[0] >> (BITS * b)) & (BUCKETS - 1) : 0;

		if (h[first] == n)
			continue; /* every key has this digit: the pass changes nothing */
		for (int i = 0; i < BUCKETS; i++) {
			uint32_t c = h[i];

			h[i] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++) {
			uint64_t k = src[i];

			dst[h[(k >> (BITS * b)) & (BUCKETS - 1)]++] = k;
		}
		uint64_t *x = src;

		src = dst;
		dst = x;
	}
	if (src != a)
		memcpy(a, src, n * sizeof(*a));
	free(hist);
}

/* numpy's _lerp: a + (b - a) * t, from the other end when t >= 0.5 */
static double lerp(double a, double diff, double b, double t)
{
	return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

/* numpy's virtual index for method "linear" (alpha = beta = 1) */
static double virtual_index(size_t n, double q, size_t *prev, double *gamma)
{
	double v = (double)n * q + (1 + q * (1 - 1 - 1)) - 1;
	double f = floor(v);

	*gamma = v - f;
	if (v >= (double)n - 1) {
		*prev = n - 1;
		*gamma = 0;
	} else {
		*prev = (size_t)f;
	}
	return v;
}

double stats_quantile(const double *sorted, size_t n, double q)
{
	size_t i;
	double g;

	if (n == 0)
		return NAN;
	virtual_index(n, q, &i, &g);
	double a = sorted[i], b = sorted[i + 1 < n ? i + 1 : n - 1];

	return lerp(a, b - a, b, g);
}

/*
 * How sort keys map back to values. Keys are made small where the values
 * allow it, so that the radix sort skips the digits all keys share: ints
 * as the offset from the minimum, and floats that are all decimals of at
 * most 6 places (prices, rates: most real columns) as the offset of
 * value * 10^places, which maps back exactly (s / 10^k is the double
 * nearest to the decimal, as parsing made it).
 */
enum keymode { KEY_DOUBLE, KEY_INT, KEY_UINT, KEY_DECIMAL };

struct keyfmt {
	enum keymode mode;
	uint64_t base; /* added back (mod 2^64) */
	double scale;  /* KEY_DECIMAL: 10^places */
};

static double key_value(uint64_t k, const struct keyfmt *f)
{
	switch (f->mode) {
	case KEY_DOUBLE: return stats_key_double(k);
	case KEY_INT: return (double)(int64_t)(k + f->base);
	case KEY_UINT: return (double)(k + f->base);
	default: return (double)(int64_t)(k + f->base) / f->scale;
	}
}

/* numpy's quantile of sorted keys; ints with numpy's integer b - a */
static double quantile_keys(const uint64_t *keys, size_t n, double q, const struct keyfmt *f)
{
	size_t i;
	double g;

	if (n == 0)
		return NAN;
	virtual_index(n, q, &i, &g);
	uint64_t ka = keys[i], kb = keys[i + 1 < n ? i + 1 : n - 1];
	double a = key_value(ka, f), b = key_value(kb, f);

	if (f->mode == KEY_INT)
		return lerp(a, (double)(int64_t)(kb - ka), b, g);
	if (f->mode == KEY_UINT)
		return lerp(a, (double)(kb - ka), b, g);
	return lerp(a, b - a, b, g);
}

static const double pow10_keys[] = {1, 10, 100, 1000, 10000, 100000, 1000000};

/* the fewest decimal places (at most 6) that every non-null value has exactly, or -1 */
static int decimal_places(const double *v, size_t n, int64_t *smin, int64_t *smax)
{
	for (int k = 0; k < 7; k++) {
		double p = pow10_keys[k];
		int64_t lo = INT64_MAX, hi = INT64_MIN;
		size_t i;

		for (i = 0; i < n; i++) {
			double x = v[i];

			if (x != x)
				continue;
			double y = x * p;

			if (!(y > -9007199254740992.0 && y < 9007199254740992.0))
				return -1; /* too big (or inf) for exact scaling */
			int64_t s = llround(y);

			if ((double)s / p != x)
				break;
			if (s < lo)
				lo = s;
			if (s > hi)
				hi = s;
		}
		if (i == n) {
			*smin = lo;
			*smax = hi;
			return k;
		}
	}
	return -1;
}

double stats_int_sum(const struct column *c, size_t nrows)
{
	uint64_t s = 0; /* numpy's int64 sum wraps; so does this */

	for (size_t i = 0; i < nrows; i++)
		s += c->v.u[i];
	return c->kind == KIND_INT ? (double)(int64_t)s : (double)s;
}

void stats_scratch_free(struct stats_scratch *s)
{
	free(s->keys);
	free(s->tmp);
	memset(s, 0, sizeof(*s));
}

int stats_numeric(const struct column *c, size_t nrows, struct numstats *st,
		  struct stats_scratch *scratch)
{
	struct stats_scratch own = {0}, *sc = scratch ? scratch : &own;
	uint64_t *keys, *tmp;
	size_t n = 0;

	memset(st, 0, sizeof(*st));
	if (sc->cap < nrows || !sc->keys) {
		stats_scratch_free(sc);
		sc->keys = malloc((nrows ? nrows : 1) * sizeof(*keys));
		sc->tmp = malloc((nrows ? nrows : 1) * sizeof(*tmp));
		if (!sc->keys || !sc->tmp) {
			stats_scratch_free(sc);
			return -1;
		}
		sc->cap = nrows;
	}
	keys = sc->keys;
	tmp = sc->tmp;
	struct keyfmt fmt = {.mode = KEY_DOUBLE};

	if (c->kind == KIND_FLOAT) {
		double s = 0;
		int64_t smin = 0, smax = 0;
		int places = decimal_places(c->v.f, nrows, &smin, &smax);

		if (places >= 0) {
			fmt.mode = KEY_DECIMAL;
			fmt.scale = pow10_keys[places];
			fmt.base = (uint64_t)smin;
		}
		for (size_t i = 0; i < nrows; i++) {
			double v = c->v.f[i];

			if (v != v)
				continue;
			keys[n++] = places >= 0 ? (uint64_t)llround(v * fmt.scale) - fmt.base :
						  stats_double_key(v);
			s += v;
		}
		st->count = n;
		st->sum = stats_pairwise(c->v.f, nrows);
		st->mean = n ? st->sum / (double)n : NAN;
		/* bottleneck's nanstd: sequential mean, then squares around it */
		if (n > 1) {
			double m = s / (double)n, ss = 0;

			for (size_t i = 0; i < nrows; i++) {
				double v = c->v.f[i];

				if (v == v) {
					v -= m;
					ss += v * v;
				}
			}
			st->std = sqrt(ss / (double)(n - 1));
		} else {
			st->std = NAN;
		}
	} else {
		bool sgn = c->kind == KIND_INT;
		double s = 0;
		uint64_t lo = UINT64_MAX;

		fmt.mode = sgn ? KEY_INT : KEY_UINT;
		for (size_t i = 0; i < nrows; i++) {
			uint64_t u = sgn ? c->v.u[i] ^ (1ULL << 63) : c->v.u[i];

			if (u < lo)
				lo = u;
		}
		/* offsets from the minimum; base turns them back into the values' bits */
		fmt.base = sgn ? lo ^ (1ULL << 63) : lo;
		for (size_t i = 0; i < nrows; i++) {
			uint64_t u = c->v.u[i];

			keys[i] = u - fmt.base;
			s += sgn ? (double)(int64_t)u : (double)u;
		}
		n = nrows;
		st->count = n;
		st->sum = stats_int_sum(c, nrows);
		st->mean = n ? int_float_sum(c, nrows) / (double)n : NAN;
		if (n > 1) {
			double m = s / (double)n, ss = 0;

			for (size_t i = 0; i < nrows; i++) {
				double v = sgn ? (double)c->v.i[i] : (double)c->v.u[i];

				v -= m;
				ss += v * v;
			}
			st->std = sqrt(ss / (double)(n - 1));
		} else {
			st->std = NAN;
		}
	}
	stats_radix_sort(keys, tmp, n);
	if (n) {
		st->min = key_value(keys[0], &fmt);
		st->max = key_value(keys[n - 1], &fmt);
		st->p25 = quantile_keys(keys, n, 0.25, &fmt);
		st->median = quantile_keys(keys, n, 0.5, &fmt);
		st->p75 = quantile_keys(keys, n, 0.75, &fmt);
		st->distinct = 1;
		for (size_t i = 1; i < n; i++)
			st->distinct += keys[i] != keys[i - 1];
	} else {
		st->min = st->max = st->p25 = st->median = st->p75 = NAN;
	}
	stats_scratch_free(&own);
	return 0;
}

/* --- numpy's argsort(kind="quicksort") for int64 (npysort/quicksort.cpp) --- */
#define SMALL_QUICKSORT 16

static void np_aheapsort(const int64_t *v, size_t *tosort, size_t n)
{
	size_t *a = tosort - 1; /* 1-based */
	size_t i, j, l, tmp;

	for (l = n >> 1; l > 0; --l) {
		tmp = a[l];
		for (i = l, j = l << 1; j <= n;) {
			if (j < n && v[a[j]] < v[a[j + 1]])
				j += 1;
			if (v[tmp] < v[a[j]]) {
				a[i] = a[j];
				i = j;
				j += j;
			} else {
				break;
			}
		}
		a[i] = tmp;
	}
	for (; n > 1;) {
		tmp = a[n];
		a[n] = a[1];
		n -= 1;
		for (i = 1, j = 2; j <= n;) {
			if (j < n && v[a[j]] < v[a[j + 1]])
				j++;
			if (v[tmp] < v[a[j]]) {
				a[i] = a[j];
				i = j;
				j += j;
			} else {
				break;
			}
		}
		a[i] = tmp;
	}
}

#define SWAP(a, b)                 \
	do {                       \
		size_t tmp_ = (a); \
		(a) = (b);         \
		(b) = tmp_;        \
	} while (0)

void stats_np_argsort(const int64_t *v, size_t num, size_t *tosort)
{
	size_t *pl, *pr, *stack[128], **sptr = stack, *pm, *pi, *pj, *pk, vi;
	int depth[64], *psdepth = depth, cdepth = 0;
	int64_t vp;

	for (size_t i = 0; i < num; i++)
		tosort[i] = i;
	if (num < 2)
		return;
	pl = tosort;
	pr = tosort + num - 1;
	for (size_t u = num; u >>= 1;)
		cdepth++;
	cdepth *= 2;
	for (;;) {
		if (cdepth < 0) {
			np_aheapsort(v, pl, (size_t)(pr - pl + 1));
			goto stack_pop;
		}
		while ((pr - pl) > SMALL_QUICKSORT) {
			pm = pl + ((pr - pl) >> 1);
			if (v[*pm] < v[*pl])
				SWAP(*pm, *pl);
			if (v[*pr] < v[*pm])
				SWAP(*pr, *pm);
			if (v[*pm] < v[*pl])
				SWAP(*pm, *pl);
			vp = v[*pm];
			pi = pl;
			pj = pr - 1;
			SWAP(*pm, *pj);
			for (;;) {
				do {
					++pi;
				} while (v[*pi] < vp);
				do {
					--pj;
				} while (vp < v[*pj]);
				if (pi >= pj)
					break;
				SWAP(*pi, *pj);
			}
			pk = pr - 1;
			SWAP(*pi, *pk);
			/* push the larger partition */
			if (pi - pl < pr - pi) {
				*sptr++ = pi + 1;
				*sptr++ = pr;
				pr = pi - 1;
			} else {
				*sptr++ = pl;
				*sptr++ = pi - 1;
				pl = pi + 1;
			}
			*psdepth++ = --cdepth;
		}
		/* insertion sort */
		for (pi = pl + 1; pi <= pr; ++pi) {
			vi = *pi;
			vp = v[vi];
			pj = pi;
			pk = pi - 1;
			while (pj > pl && vp < v[*pk])
				*pj-- = *pk--;
			*pj = vi;
		}
stack_pop:
		if (sptr == stack)
			break;
		pr = *(--sptr);
		pl = *(--sptr);
		cdepth = *(--psdepth);
	}
}

int stats_top(const struct column *c, size_t nrows, size_t k, uint32_t *ids, uint64_t *counts,
	      size_t *ntop, uint64_t *distinct)
{
	size_t nd;
	int64_t *cnt, *rev;
	size_t *idx;
	uint32_t *order = NULL; /* dict id of the i-th value in order of first appearance */

	if (c->kind == KIND_BOOL) {
		uint32_t first[2] = {ID_NULL, ID_NULL};
		size_t seen = 0;
		int64_t bc[2] = {0, 0};

		for (size_t i = 0; i < nrows; i++) {
			uint8_t b = c->v.b[i];

			if (b < 2) {
				bc[b]++;
				if (first[b] == ID_NULL)
					first[b] = (uint32_t)seen++;
			}
		}
		nd = seen;
		cnt = malloc(2 * sizeof(*cnt));
		order = malloc(2 * sizeof(*order));
		if (!cnt || !order) {
			free(cnt);
			free(order);
			return -1;
		}
		for (uint32_t b = 0; b < 2; b++)
			if (first[b] != ID_NULL) {
				cnt[first[b]] = bc[b];
				order[first[b]] = b; /* ids: 0 = False, 1 = True */
			}
	} else {
		nd = c->dict.n;
		cnt = calloc(nd ? nd : 1, sizeof(*cnt));
		if (!cnt)
			return -1;
		for (size_t i = 0; i < nrows; i++)
			if (c->v.t[i] != ID_NULL)
				cnt[c->v.t[i]]++;
		/* dict ids were given in order of first appearance already; drop unused (pass 2) */
		size_t m = 0;

		order = malloc((nd ? nd : 1) * sizeof(*order));
		if (!order) {
			free(cnt);
			return -1;
		}
		for (size_t i = 0; i < nd; i++)
			if (cnt[i]) {
				order[m] = (uint32_t)i;
				cnt[m++] = cnt[i];
			}
		nd = m;
	}
	*distinct = nd;
	rev = calloc(nd ? nd : 1, sizeof(*rev));
	idx = malloc((nd ? nd : 1) * sizeof(*idx));
	if (!rev || !idx) {
		free(cnt);
		free(order);
		free(rev);
		free(idx);
		return -1;
	}
	/* pandas' nargsort(ascending=False): argsort the reversed counts, map back, reverse */
	for (size_t i = 0; i < nd; i++)
		rev[i] = cnt[nd - 1 - i];
	stats_np_argsort(rev, nd, idx);
	*ntop = nd < k ? nd : k;
	for (size_t j = 0; j < *ntop; j++) {
		size_t pos = nd - 1 - idx[nd - 1 - j];

		ids[j] = order[pos];
		counts[j] = (uint64_t)cnt[pos];
	}
	free(cnt);
	free(order);
	free(rev);
	free(idx);
	return 0;
}
