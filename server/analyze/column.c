/*
 * Typed columns: the arena, interned text, number parsing as pandas' C
 * parser does it and the per-column type state machine.
 *
 * pandas types a CSV column after reading it all: int64, else (on int64
 * overflow) uint64, else float64, else bool, else object, where a null
 * turns int64 into float64 and bool into object. We type while reading,
 * one cell at a time, keeping numbers as numbers; a column that turns out
 * to be text after numbers were stored is "demoted" and its text is read in
 * a second pass (csv.c), which real files rarely need.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* --- arena ------------------------------------------------------------- */
struct arena_block {
	struct arena_block *next;
	max_align_t data[];
};

void *arena_alloc(struct arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (!a->head || a->size - a->used < n) {
		size_t sz = n > 65536 ? n : 65536;
		struct arena_block *b = malloc(sizeof(*b) + sz);

		if (!b)
			return NULL;
		b->next = a->head;
		a->head = b;
		a->used = 0;
		a->size = sz;
	}
	void *p = (char *)a->head->data + a->used;
	a->used += n;
	memset(p, 0, n);
	return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);

	if (p && n)
		memcpy(p, s, n);
	return p;
}

void arena_free(struct arena *a)
{
	while (a->head) {
		struct arena_block *b = a->head;

		a->head = b->next;
		free(b);
	}
	a->used = a->size = 0;
}

/* --- interned text --------------------------------------------------------- */
uint32_t hash_bytes(const char *s, size_t len)
{
	/* 8 bytes at a time, multiply-xorshift: fast and good enough for a table that re-checks bytes */
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ len;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, s + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	if (i < len) {
		uint64_t w = 0;

		memcpy(&w, s + i, len - i);
		h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
	}
	h ^= h >> 29;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 32;
	return (uint32_t)h;
}

static int dict_grow(struct dict *d)
{
	uint32_t nslots = d->slots ? (d->mask + 1) * 2 : 64;
	uint32_t *slots;

	if (nslots == 0 || nslots > (1u << 31))
		return -1;
	slots = calloc(nslots, sizeof(*slots));
	if (!slots)
		return -1;
	for (uint32_t id = 0; id < d->n; id++) {
		uint32_t j = d->entries[id].hash & (nslots - 1);

		while (slots[j])
			j = (j + 1) & (nslots - 1);
		slots[j] = id + 1;
	}
	free(d->slots);
	d->slots = slots;
	d->mask = nslots - 1;
	return 0;
}

/* short keys are the common case: no call into libc for them */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
	if (n > 16)
		return memcmp(a, b, n) == 0;
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

uint32_t dict_intern(struct dict *d, struct arena *a, const char *s, size_t len, bool stable)
{
	uint32_t h, j;

	if (len > UINT32_MAX - 1)
		return ID_NULL;
	if (!d->slots && dict_grow(d) < 0)
		return ID_NULL;
	h = hash_bytes(s, len);
	for (j = h & d->mask; d->slots[j]; j = (j + 1) & d->mask) {
		struct dict_entry *e = &d->entries[d->slots[j] - 1];

		if (e->hash == h && e->len == len && same_bytes(e->s, s, len))
			return d->slots[j] - 1;
	}
	if (d->n == ID_NULL - 1)
		return ID_NULL;
	if (d->n == d->cap) {
		uint32_t cap = d->cap ? d->cap * 2 : 16;
		struct dict_entry *e = realloc(d->entries, (size_t)cap * sizeof(*e));

		if (!e)
			return ID_NULL;
		d->entries = e;
		d->cap = cap;
	}
	if (!stable) {
		s = arena_strndup(a, s, len);
		if (!s)
			return ID_NULL;
	}
	d->entries[d->n] = (struct dict_entry){.s = s, .len = (uint32_t)len, .hash = h};
	d->slots[j] = d->n + 1;
	d->n++;
	/* load factor 1/2: probes stay short */
	if (d->n * 2 > d->mask + 1 && dict_grow(d) < 0)
		return ID_NULL;
	return d->n - 1;
}

void dict_free(struct dict *d)
{
	free(d->slots);
	free(d->entries);
	memset(d, 0, sizeof(*d));
}

/* --- nulls ----------------------------------------------------------------- */
bool nullset_has(const struct nullset *na, const char *s, size_t len)
{
	if (len == 0)
		return na->empty_is_null;
	/* nearly every cell fails this one lookup: no null string starts so and is this long */
	if (!(na->lens[(unsigned char)s[0]] & (1u << (len < 31 ? len : 31))))
		return false;
	for (size_t i = 0; i < na->n; i++)
		if (na->len[i] == len && memcmp(na->s[i], s, len) == 0)
			return true;
	return false;
}

/* --- numbers --------------------------------------------------------------- */
/* pandas' isspace_ascii */
static inline bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static inline bool is_digit(char c) { return (unsigned char)(c - '0') < 10; }

enum numparse parse_int64(const char *s, size_t len, int64_t *out)
{
	const char *p = s, *end = s + len;
	bool neg = false;
	uint64_t v = 0;

	while (p < end && is_space(*p))
		p++;
	if (p < end && (*p == '+' || *p == '-'))
		neg = *p++ == '-';
	if (p == end || !is_digit(*p))
		return NUM_NOTNUM;
	bool over = false;

	for (; p < end && is_digit(*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			over = true;
		else
			v = v * 10 + d;
	}
	while (p < end && is_space(*p))
		p++;
	if (p != end)
		return NUM_NOTNUM;
	if (over || v > (uint64_t)INT64_MAX + neg)
		return NUM_OVERFLOW;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return NUM_OK;
}

enum numparse parse_uint64(const char *s, size_t len, uint64_t *out)
{
	const char *p = s, *end = s + len;
	uint64_t v = 0;

	while (p < end && is_space(*p))
		p++;
	if (p < end && *p == '+')
		p++;
	else if (p < end && *p == '-')
		return NUM_OVERFLOW; /* the caller treats a negative like pandas: no uint64 */
	if (p == end || !is_digit(*p))
		return NUM_NOTNUM;
	for (; p < end && is_digit(*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return NUM_OVERFLOW;
		v = v * 10 + d;
	}
	while (p < end && is_space(*p))
		p++;
	if (p != end)
		return NUM_NOTNUM;
	*out = v;
	return NUM_OK;
}

static const double pow10_exact[] = {1e0,  1e1,	 1e2,  1e3,  1e4,  1e5,	 1e6,  1e7,
				     1e8,  1e9,	 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
				     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static bool word_is(const char *s, size_t len, const char *w)
{
	return strlen(w) == len && strncasecmp(s, w, len) == 0;
}

enum numparse parse_double(const char *s, size_t len, double *out)
{
	const char *p = s, *end = s + len, *num;
	uint64_t mant = 0;
	int ndig = 0, dropped = 0, frac = 0, exp = 0;
	bool neg = false, any = false;

	while (p < end && is_space(*p))
		p++;
	num = p;
	if (p < end && (*p == '+' || *p == '-'))
		neg = *p++ == '-';
	for (; p < end && is_digit(*p); p++, any = true) {
		if (ndig < 19) {
			mant = mant * 10 + (uint64_t)(*p - '0');
			if (mant)
				ndig++;
		} else {
			dropped++;
		}
	}
	if (p < end && *p == '.') {
		p++;
		for (; p < end && is_digit(*p); p++, any = true) {
			if (ndig < 19) {
				mant = mant * 10 + (uint64_t)(*p - '0');
				if (mant)
					ndig++;
				frac++;
			}
		}
	}
	if (!any)
		goto special;
	const char *numend = p;

	if (p < end && (*p == 'e' || *p == 'E')) {
		const char *q = p + 1;
		bool eneg = false;
		int e = 0;

		if (q < end && (*q == '+' || *q == '-'))
			eneg = *q++ == '-';
		if (q < end && is_digit(*q)) {
			for (; q < end && is_digit(*q); q++)
				if (e < 100000)
					e = e * 10 + (*q - '0');
			exp = eneg ? -e : e;
			p = q;
			numend = q;
		}
	}
	while (p < end && is_space(*p))
		p++;
	if (p != end)
		goto special;
	int e10 = exp - frac + dropped;

	if (mant == 0) {
		*out = neg ? -0.0 : 0.0;
		return NUM_OK;
	}
	if (mant < (1ULL << 53) && e10 >= -22 && e10 <= 22) {
		/* Clinger's fast path: one exact operation, correctly rounded */
		double d = (double)mant;

		d = e10 < 0 ? d / pow10_exact[-e10] : d * pow10_exact[e10];
		*out = neg ? -d : d;
		return NUM_OK;
	}
	/* the general case: strtod on a bounded, validated copy */
	char buf[128];
	size_t n = (size_t)(numend - num);
	char *heap = NULL, *b = buf;

	if (n >= sizeof(buf)) {
		heap = malloc(n + 1);
		if (!heap)
			return NUM_NOTNUM;
		b = heap;
	}
	memcpy(b, num, n);
	b[n] = 0;
	errno = 0;
	double d = strtod(b, NULL);

	free(heap);
	if (isinf(d))
		return NUM_OVERFLOW; /* pandas: ERANGE, not a number */
	*out = d;
	return NUM_OK;
special:
	/* pandas' _try_double: these words, whole and in any case */
	if (word_is(s, len, "inf") || word_is(s, len, "+inf") || word_is(s, len, "infinity") ||
	    word_is(s, len, "+infinity")) {
		*out = INFINITY;
		return NUM_OK;
	}
	if (word_is(s, len, "-inf") || word_is(s, len, "-infinity")) {
		*out = -INFINITY;
		return NUM_OK;
	}
	return NUM_NOTNUM;
}

bool parse_pyfloat(const char *s, size_t len, double *out)
{
	/* Python's float(): surrounding whitespace, '_' between digits, inf/nan words */
	char buf[256];
	size_t n = 0;

	while (len && is_space(*s))
		s++, len--;
	while (len && is_space(s[len - 1]))
		len--;
	if (len == 0 || len >= sizeof(buf))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '_') {
			if (i == 0 || i + 1 == len || !is_digit(s[i - 1]) || !is_digit(s[i + 1]))
				return false;
			continue;
		}
		buf[n++] = s[i];
	}
	const char *w = buf;
	bool neg = false;

	if (*w == '+' || *w == '-')
		neg = *w++ == '-';
	size_t wl = n - (size_t)(w - buf);

	if (word_is(w, wl, "inf") || word_is(w, wl, "infinity")) {
		*out = neg ? -INFINITY : INFINITY;
		return true;
	}
	if (word_is(w, wl, "nan")) {
		*out = NAN;
		return true;
	}
	/* what is left must be decimal syntax: digits, one '.', exponent */
	bool dig = false;
	size_t i = 0;

	for (; i < wl && is_digit(w[i]); i++)
		dig = true;
	if (i < wl && w[i] == '.')
		for (i++; i < wl && is_digit(w[i]); i++)
			dig = true;
	if (!dig)
		return false;
	if (i < wl && (w[i] == 'e' || w[i] == 'E')) {
		i++;
		if (i < wl && (w[i] == '+' || w[i] == '-'))
			i++;
		if (i == wl || !is_digit(w[i]))
			return false;
		while (i < wl && is_digit(w[i]))
			i++;
	}
	if (i != wl)
		return false;
	buf[n] = 0;
	*out = strtod(buf, NULL);
	return true;
}

/* --- the state machine ------------------------------------------------------ */
static int column_reserve(struct column *c, size_t elem)
{
	if (c->n < c->cap)
		return 0;
	size_t cap = c->cap ? c->cap * 2 : 1024;
	void *p = realloc(c->v.p, cap * elem);

	if (!p)
		return -1;
	c->v.p = p;
	c->cap = cap;
	return 0;
}

static size_t kind_size(enum kind k)
{
	switch (k) {
	case KIND_BOOL: return 1;
	case KIND_TEXT: return 4;
	default: return 8;
	}
}

/* Leaves KIND_NULL for k: the rows so far become nulls of k. */
static int column_start(struct column *c, enum kind k)
{
	size_t n = c->n;

	size_t cap = n < 512 ? 1024 : 2 * n;

	c->kind = k;
	free(c->v.p);
	c->v.p = malloc(cap * kind_size(k));
	if (!c->v.p)
		return -1;
	c->cap = cap;
	c->n = n;
	for (size_t i = 0; i < n; i++) {
		switch (k) {
		case KIND_FLOAT: c->v.f[i] = NAN; break;
		case KIND_BOOL: c->v.b[i] = 2; break;
		case KIND_TEXT: c->v.t[i] = ID_NULL; break;
		default: break; /* INT/UINT never start after nulls */
		}
	}
	return 0;
}

/* INT/UINT -> FLOAT, in place */
static void column_to_float(struct column *c, bool only_ints)
{
	if (c->kind == KIND_INT)
		for (size_t i = 0; i < c->n; i++)
			c->v.f[i] = (double)c->v.i[i];
	else if (c->kind == KIND_UINT)
		for (size_t i = 0; i < c->n; i++)
			c->v.f[i] = (double)c->v.u[i];
	c->kind = KIND_FLOAT;
	c->only_ints = only_ints;
}

/* Numbers stored so far are of no use: the text comes in pass 2. */
static void column_demote(struct column *c)
{
	free(c->v.p);
	c->v.p = NULL;
	c->cap = 0;
	c->kind = KIND_TEXT;
	c->demoted = true;
}

static bool bool_word(const char *s, size_t len, uint8_t *b)
{
	if ((len == 4 &&
	     (!memcmp(s, "True", 4) || !memcmp(s, "TRUE", 4) || !memcmp(s, "true", 4)))) {
		*b = 1;
		return true;
	}
	if ((len == 5 &&
	     (!memcmp(s, "False", 5) || !memcmp(s, "FALSE", 5) || !memcmp(s, "false", 5)))) {
		*b = 0;
		return true;
	}
	return false;
}

int column_add_null(struct table *t, struct column *c)
{
	(void)t;
	c->nulls++;
	c->saw_na = true;
	switch (c->kind) {
	case KIND_NULL: c->n++; return 0;
	case KIND_INT:
	case KIND_UINT:
		if (c->kind == KIND_UINT) {
			/* pandas' uint64 attempt fails on a null: object */
			column_demote(c);
			c->n++;
			return 0;
		}
		column_to_float(c, true);
		/* fall through */
	case KIND_FLOAT:
		if (column_reserve(c, 8) < 0)
			return -1;
		c->v.f[c->n++] = NAN;
		return 0;
	case KIND_BOOL:
		if (column_reserve(c, 1) < 0)
			return -1;
		c->v.b[c->n++] = 2;
		return 0;
	case KIND_TEXT:
		if (c->demoted) {
			c->n++;
			return 0;
		}
		if (column_reserve(c, 4) < 0)
			return -1;
		c->v.t[c->n++] = ID_NULL;
		return 0;
	}
	return 0;
}

static int column_push_text(struct table *t, struct column *c, const char *s, size_t len,
			    bool stable)
{
	uint32_t id;

	if (column_reserve(c, 4) < 0)
		return -1;
	id = dict_intern(&c->dict, &t->arena, s, len, stable);
	if (id == ID_NULL)
		return -1;
	c->v.t[c->n++] = id;
	return 0;
}

int column_add_csv(struct table *t, struct column *c, const char *s, size_t len, bool stable)
{
	int64_t iv;
	uint64_t uv;
	double dv;
	uint8_t bv;
	enum numparse r;

	if (nullset_has(&t->na, s, len))
		return column_add_null(t, c);
	switch (c->kind) {
	case KIND_NULL:
		r = parse_int64(s, len, &iv);
		if (r == NUM_OK && !c->saw_na) {
			if (column_start(c, KIND_INT) < 0)
				return -1;
			goto add_int;
		}
		if (r == NUM_OK) {
			if (column_start(c, KIND_FLOAT) < 0)
				return -1;
			c->only_ints = true;
			dv = (double)iv;
			goto add_float;
		}
		if (r == NUM_OVERFLOW) {
			/* pandas tries uint64, which fails on nulls, negatives and overflow */
			if (!c->saw_na && parse_uint64(s, len, &uv) == NUM_OK) {
				if (column_start(c, KIND_UINT) < 0)
					return -1;
				goto add_uint;
			}
			goto demote;
		}
		if (parse_double(s, len, &dv) == NUM_OK) {
			if (column_start(c, KIND_FLOAT) < 0)
				return -1;
			c->only_ints = false;
			goto add_float;
		}
		if (bool_word(s, len, &bv)) {
			if (column_start(c, KIND_BOOL) < 0)
				return -1;
			goto add_bool;
		}
		if (column_start(c, KIND_TEXT) < 0)
			return -1;
		return column_push_text(t, c, s, len, stable);
	case KIND_INT:
		r = parse_int64(s, len, &iv);
		if (r == NUM_OK)
			goto add_int;
		if (r == NUM_OVERFLOW) {
			if (!c->has_neg && parse_uint64(s, len, &uv) == NUM_OK) {
				c->kind = KIND_UINT; /* int64 values >= 0 are the same bits */
				goto add_uint;
			}
			goto demote;
		}
		if (parse_double(s, len, &dv) == NUM_OK) {
			column_to_float(c, false);
			goto add_float;
		}
		goto demote;
	case KIND_UINT:
		r = parse_uint64(s, len, &uv);
		if (r == NUM_OK)
			goto add_uint;
		if (r == NUM_OVERFLOW)
			goto demote;
		if (parse_double(s, len, &dv) == NUM_OK) {
			column_to_float(c, false);
			goto add_float;
		}
		goto demote;
	case KIND_FLOAT:
		if (c->only_ints) {
			r = parse_int64(s, len, &iv);
			if (r == NUM_OK) {
				dv = (double)iv;
				goto add_float;
			}
			if (r == NUM_OVERFLOW)
				goto demote; /* int64 overflow after a null: pandas' uint64 attempt fails */
			c->only_ints = false;
		}
		if (parse_double(s, len, &dv) == NUM_OK)
			goto add_float;
		goto demote;
	case KIND_BOOL:
		if (bool_word(s, len, &bv))
			goto add_bool;
		goto demote;
	case KIND_TEXT:
		if (c->demoted) {
			c->n++;
			return 0;
		}
		return column_push_text(t, c, s, len, stable);
	}
	return 0;
add_int:
	if (column_reserve(c, 8) < 0)
		return -1;
	if (iv < 0)
		c->has_neg = true;
	c->v.i[c->n++] = iv;
	return 0;
add_uint:
	if (column_reserve(c, 8) < 0)
		return -1;
	c->v.u[c->n++] = uv;
	return 0;
add_float:
	if (column_reserve(c, 8) < 0)
		return -1;
	c->v.f[c->n++] = dv;
	return 0;
add_bool:
	if (column_reserve(c, 1) < 0)
		return -1;
	c->v.b[c->n++] = bv;
	return 0;
demote:
	column_demote(c);
	c->n++;
	return 0;
}

void column_reset_text(struct column *c)
{
	free(c->v.p);
	c->v.p = NULL;
	c->n = c->cap = 0;
	c->nulls = 0;
	c->demoted = false;
	c->kind = KIND_TEXT;
	dict_free(&c->dict);
}

int column_add_text(struct table *t, struct column *c, const char *s, size_t len, bool stable)
{
	if (!s || nullset_has(&t->na, s, len)) {
		c->nulls++;
		if (column_reserve(c, 4) < 0)
			return -1;
		c->v.t[c->n++] = ID_NULL;
		return 0;
	}
	return column_push_text(t, c, s, len, stable);
}

int column_add_json(struct table *t, struct column *c, int jk, const char *s, size_t len,
		    bool stable)
{
	uint32_t id;

	if (column_reserve(c, 4) < 0)
		return -1;
	if (jk == 0) {
		c->nulls++;
		c->v.t[c->n++] = ID_NULL;
		return 0;
	}
	id = dict_intern(&c->dict, &t->arena, s, len, stable);
	if (id == ID_NULL)
		return -1;
	c->dict.entries[id].jkinds |= (uint8_t)jk;
	c->v.t[c->n++] = id;
	return 0;
}

/*
 * read_json's typing: the DataFrame constructor makes int64 (ints only),
 * float64 (numbers, or numbers and nulls), bool (bools only) or object;
 * then an object column becomes float64 when every value converts with
 * float() (None -> NaN, True -> 1.0, "1_0" -> 10.0), and a float64
 * column without NaN whose values are all whole becomes int64.
 */
static int column_finish_json(struct column *c)
{
	struct dict *d = &c->dict;
	uint8_t all = 0;
	bool tofloat = true, integral = true;
	double *num = NULL;

	for (uint32_t i = 0; i < d->n; i++)
		all |= d->entries[i].jkinds;
	if (all == 0) {
		/* all null: float64 NaN */
		free(c->v.p);
		c->v.p = NULL;
		c->kind = KIND_FLOAT;
		c->cap = 0;
		size_t n = c->n;

		c->n = 0;
		c->v.f = malloc((n ? n : 1) * sizeof(double));
		if (!c->v.f)
			return -1;
		for (size_t i = 0; i < n; i++)
			c->v.f[i] = NAN;
		c->n = c->cap = n;
		return 0;
	}
	if ((all & ~(JK_TRUE | JK_FALSE)) == 0 && c->nulls == 0) {
		uint8_t *b = malloc(c->n ? c->n : 1);

		if (!b)
			return -1;
		for (size_t i = 0; i < c->n; i++)
			b[i] = (d->entries[c->v.t[i]].jkinds & JK_TRUE) ? 1 : 0;
		free(c->v.p);
		c->v.b = b;
		c->kind = KIND_BOOL;
		c->cap = c->n;
		dict_free(d);
		return 0;
	}
	num = malloc((d->n ? d->n : 1) * sizeof(double));
	if (!num)
		return -1;
	for (uint32_t i = 0; i < d->n && tofloat; i++) {
		struct dict_entry *e = &d->entries[i];

		if (e->jkinds & JK_NESTED) {
			tofloat = false;
		} else if (e->jkinds & JK_STRING) {
			/* the same text from a string and a number converts the same way */
			tofloat = parse_pyfloat(e->s, e->len, &num[i]);
		} else if (e->jkinds & (JK_TRUE | JK_FALSE)) {
			if ((e->jkinds & (JK_INT | JK_FLOAT)))
				tofloat = false;
			num[i] = (e->jkinds & JK_TRUE) ? 1.0 : 0.0;
		} else {
			char buf[64];
			size_t n = e->len < sizeof(buf) - 1 ? e->len : sizeof(buf) - 1;

			memcpy(buf, e->s, n);
			buf[n] = 0;
			num[i] = strtod(buf, NULL);
		}
	}
	if (!tofloat) {
		free(num);
		return 0; /* TEXT as interned */
	}
	size_t nulls = 0;

	for (size_t i = 0; i < c->n; i++) {
		double v = c->v.t[i] == ID_NULL ? NAN : num[c->v.t[i]];

		if (isnan(v))
			nulls++;
		if (!(v == v && v >= -9223372036854775808.0 && v < 9223372036854775808.0 &&
		      v == floor(v)))
			integral = false;
	}
	bool ints_only = (all & ~JK_INT) == 0 && c->nulls == 0;

	if (ints_only || (integral && nulls == 0)) {
		int64_t *iv = malloc((c->n ? c->n : 1) * sizeof(int64_t));

		if (!iv) {
			free(num);
			return -1;
		}
		for (size_t i = 0; i < c->n; i++) {
			struct dict_entry *e = &d->entries[c->v.t[i]];

			if (ints_only && e->len < 40) {
				/* exact: not through a double */
				int64_t x;

				if (parse_int64(e->s, e->len, &x) == NUM_OK) {
					iv[i] = x;
					continue;
				}
			}
			iv[i] = (int64_t)num[c->v.t[i]];
		}
		free(c->v.p);
		c->v.i = iv;
		c->kind = KIND_INT;
		c->has_neg = true;
	} else {
		double *fv = malloc((c->n ? c->n : 1) * sizeof(double));

		if (!fv) {
			free(num);
			return -1;
		}
		for (size_t i = 0; i < c->n; i++)
			fv[i] = c->v.t[i] == ID_NULL ? NAN : num[c->v.t[i]];
		free(c->v.p);
		c->v.f = fv;
		c->kind = KIND_FLOAT;
	}
	c->nulls = nulls;
	c->cap = c->n;
	free(num);
	dict_free(d);
	return 0;
}

int column_finish(struct table *t, struct column *c)
{
	(void)t;
	if (c->json)
		return column_finish_json(c);
	if (c->kind == KIND_NULL)
		return column_start(c, KIND_FLOAT);
	if (c->kind == KIND_BOOL && c->nulls) {
		/* bool with nulls is pandas' object column of True, False and NaN */
		uint32_t *ids = malloc((c->n ? c->n : 1) * sizeof(uint32_t));
		uint32_t map[2] = {ID_NULL, ID_NULL};

		if (!ids)
			return -1;
		for (size_t i = 0; i < c->n; i++) {
			uint8_t b = c->v.b[i];

			if (b == 2) {
				ids[i] = ID_NULL;
				continue;
			}
			if (map[b] == ID_NULL) {
				map[b] = dict_intern(&c->dict, &t->arena, b ? "True" : "False",
						     b ? 4 : 5, true);
				if (map[b] == ID_NULL) {
					free(ids);
					return -1;
				}
			}
			ids[i] = map[b];
		}
		free(c->v.p);
		c->v.t = ids;
		c->kind = KIND_TEXT;
		c->cap = c->n;
	}
	return 0;
}

void column_free(struct column *c)
{
	free(c->v.p);
	c->v.p = NULL;
	dict_free(&c->dict);
}

void column_reset(struct column *c)
{
	char *name = c->name;
	bool used = c->used;

	column_free(c);
	memset(c, 0, sizeof(*c));
	c->name = name;
	c->used = used;
}

/* a (all rows so far null) takes b's kind: the nulls first, as column_start does */
static int merge_after_nulls(struct column *a, struct column *b)
{
	size_t n = a->n;

	if (b->kind == KIND_INT) {
		/* ints after a null: pandas' float64 */
		if (column_start(a, KIND_FLOAT) < 0)
			return -1;
		a->only_ints = true;
		a->n = n;
		b->kind = KIND_FLOAT;
		for (size_t i = 0; i < b->n; i++)
			b->v.f[i] = (double)b->v.i[i];
		b->only_ints = true;
		return 0;
	}
	if (column_start(a, b->kind) < 0)
		return -1;
	a->only_ints = b->only_ints;
	return 0;
}

int column_merge(struct table *t, struct column *a, struct column *b)
{
	if (a->demoted || b->demoted || a->kind == KIND_UINT || b->kind == KIND_UINT || a->json)
		return 1;
	if (b->kind == KIND_NULL) {
		for (size_t i = 0; i < b->n; i++)
			if (column_add_null(t, a) < 0)
				return -1;
		a->nulls -= b->n; /* column_add_null counted them; b->nulls adds them below */
		a->nulls += b->nulls;
		column_reset(b);
		return a->demoted ? 1 : 0;
	}
	if (a->kind == KIND_NULL && merge_after_nulls(a, b) < 0)
		return -1;
	if (a->kind != b->kind) {
		if (a->kind == KIND_INT && b->kind == KIND_FLOAT) {
			column_to_float(a, b->only_ints);
		} else if (a->kind == KIND_FLOAT && b->kind == KIND_INT) {
			for (size_t i = 0; i < b->n; i++)
				b->v.f[i] = (double)b->v.i[i];
			b->kind = KIND_FLOAT;
			b->only_ints = true;
		} else {
			return 1;
		}
	}
	if (a->kind == KIND_FLOAT)
		a->only_ints = a->only_ints && b->only_ints;
	a->saw_na |= b->saw_na;
	a->has_neg |= b->has_neg;
	size_t el = kind_size(a->kind);

	if (a->kind == KIND_TEXT) {
		/* b's values in b's order of appearance, after a's: the same order a read alone gives */
		uint32_t *map = malloc((b->dict.n ? b->dict.n : 1) * sizeof(uint32_t));

		if (!map)
			return -1;
		for (uint32_t i = 0; i < b->dict.n; i++) {
			map[i] = dict_intern(&a->dict, &t->arena, b->dict.entries[i].s,
					     b->dict.entries[i].len, true);
			if (map[i] == ID_NULL) {
				free(map);
				return -1;
			}
		}
		for (size_t i = 0; i < b->n; i++)
			if (b->v.t[i] != ID_NULL)
				b->v.t[i] = map[b->v.t[i]];
		free(map);
	}
	if (a->cap < a->n + b->n) {
		void *p = realloc(a->v.p, (a->n + b->n) * el);

		if (!p)
			return -1;
		a->v.p = p;
		a->cap = a->n + b->n;
	}
	if (b->n)
		memcpy((char *)a->v.p + a->n * el, b->v.p, b->n * el);
	a->n += b->n;
	a->nulls += b->nulls;
	column_reset(b);
	return 0;
}
