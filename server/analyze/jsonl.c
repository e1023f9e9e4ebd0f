/*
 * JSON lines as pandas.read_json(lines=True) reads them: one object per
 * line, blank lines skipped, columns in order of first appearance, a key
 * missing from a line is null, a repeated key in one line keeps the last
 * value. Every value is interned as text with its JSON type; the type of
 * the column is settled at the end (column.c, column_finish_json).
 * Nested objects and arrays are kept as their JSON text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct jp {
	const char *p, *end;
	char *buf; /* unescaped string */
	size_t blen, bcap;
};

static void skip_ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n'))
		j->p++;
}

static int buf_put(struct jp *j, const char *s, size_t n)
{
	if (n == 0)
		return 0;
	if (j->blen + n > j->bcap) {
		size_t cap = j->bcap ? j->bcap : 256;

		while (cap < j->blen + n)
			cap *= 2;
		char *b = realloc(j->buf, cap);

		if (!b)
			return -1;
		j->buf = b;
		j->bcap = cap;
	}
	memcpy(j->buf + j->blen, s, n);
	j->blen += n;
	return 0;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/*
 * A string at j->p (the opening quote). Sets the string (s, len): into the data when
 * it has no escapes (*stable), else into j->buf. Returns 0, -1 on bad JSON,
 * -2 out of memory.
 */
static int parse_string(struct jp *j, const char **s, size_t *len, bool *stable)
{
	const char *p = ++j->p, *start = p;

	j->blen = 0;
	*stable = true;
	for (;;) {
		if (p >= j->end)
			return -1;
		unsigned char c = (unsigned char)*p;

		if (c == '"')
			break;
		if (c < 0x20)
			return -1;
		if (c != '\\') {
			p++;
			continue;
		}
		if (*stable) {
			*stable = false;
			if (buf_put(j, start, (size_t)(p - start)) < 0)
				return -2;
		} else if (buf_put(j, start, (size_t)(p - start)) < 0) {
			return -2;
		}
		if (p + 1 >= j->end)
			return -1;
		char e = p[1], out[4];
		size_t n = 1;

		p += 2;
		switch (e) {
		case '"': out[0] = '"'; break;
		case '\\': out[0] = '\\'; break;
		case '/': out[0] = '/'; break;
		case 'b': out[0] = '\b'; break;
		case 'f': out[0] = '\f'; break;
		case 'n': out[0] = '\n'; break;
		case 'r': out[0] = '\r'; break;
		case 't': out[0] = '\t'; break;
		case 'u': {
			unsigned cp, lo;

			if (j->end - p < 4 || hex4(p, &cp) < 0)
				return -1;
			p += 4;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (j->end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
				    hex4(p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
					return -1;
				p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp <= 0xdfff) {
				return -1; /* a lone surrogate is no UTF-8 */
			}
			if (cp == 0)
				return -1; /* NUL cannot be in a protobuf-c string */
			if (cp < 0x80) {
				out[0] = (char)cp;
			} else if (cp < 0x800) {
				out[0] = (char)(0xc0 | cp >> 6);
				out[1] = (char)(0x80 | (cp & 0x3f));
				n = 2;
			} else if (cp < 0x10000) {
				out[0] = (char)(0xe0 | cp >> 12);
				out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
				out[2] = (char)(0x80 | (cp & 0x3f));
				n = 3;
			} else {
				out[0] = (char)(0xf0 | cp >> 18);
				out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
				out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
				out[3] = (char)(0x80 | (cp & 0x3f));
				n = 4;
			}
			break;
		}
		default: return -1;
		}
		if (buf_put(j, out, n) < 0)
			return -2;
		start = p;
	}
	if (*stable) {
		*s = start;
		*len = (size_t)(p - start);
	} else {
		if (buf_put(j, start, (size_t)(p - start)) < 0)
			return -2;
		*s = j->buf;
		*len = j->blen;
	}
	j->p = p + 1;
	return 0;
}

static int parse_value(struct jp *j, int *jk, const char **s, size_t *len, bool *stable, int depth);

/* Checks and skips a nested object or array at j->p; -1 when it is not JSON. */
static int skip_nested(struct jp *j, int depth)
{
	bool obj = *j->p == '{';
	char close = obj ? '}' : ']';

	if (depth > 200)
		return -1;
	j->p++;
	skip_ws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		return 0;
	}
	for (;;) {
		const char *s;
		size_t l;
		bool st;
		int jk, r;

		skip_ws(j);
		if (obj) {
			if (j->p >= j->end || *j->p != '"')
				return -1;
			if ((r = parse_string(j, &s, &l, &st)) < 0)
				return r;
			skip_ws(j);
			if (j->p >= j->end || *j->p != ':')
				return -1;
			j->p++;
			skip_ws(j);
		}
		if ((r = parse_value(j, &jk, &s, &l, &st, depth + 1)) < 0)
			return r;
		skip_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == close) {
			j->p++;
			return 0;
		}
		return -1;
	}
}

/* A value: its kind in jk (0 = null), its text in s, len. */
static int parse_value(struct jp *j, int *jk, const char **s, size_t *len, bool *stable, int depth)
{
	const char *p = j->p, *end = j->end;

	*stable = true;
	if (p >= end)
		return -1;
	switch (*p) {
	case '"': *jk = JK_STRING; return parse_string(j, s, len, stable);
	case '{':
	case '[': {
		int r = skip_nested(j, depth);

		if (r < 0)
			return r;
		*jk = JK_NESTED;
		*s = p;
		*len = (size_t)(j->p - p);
		return 0;
	}
	case 't':
		if (end - p >= 4 && !memcmp(p, "true", 4)) {
			*jk = JK_TRUE;
			*s = "True"; /* as pandas shows the Python bool */
			*len = 4;
			j->p += 4;
			return 0;
		}
		return -1;
	case 'f':
		if (end - p >= 5 && !memcmp(p, "false", 5)) {
			*jk = JK_FALSE;
			*s = "False";
			*len = 5;
			j->p += 5;
			return 0;
		}
		return -1;
	case 'n':
		if (end - p >= 4 && !memcmp(p, "null", 4)) {
			*jk = 0;
			*s = "";
			*len = 0;
			j->p += 4;
			return 0;
		}
		return -1;
	default: break;
	}
	/* number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
	const char *q = p;
	bool isfloat = false;

	if (q < end && *q == '-')
		q++;
	if (q >= end || *q < '0' || *q > '9')
		return -1;
	if (*q == '0')
		q++;
	else
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	if (q < end && *q == '.') {
		isfloat = true;
		q++;
		if (q >= end || *q < '0' || *q > '9')
			return -1;
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < end && (*q == 'e' || *q == 'E')) {
		isfloat = true;
		q++;
		if (q < end && (*q == '+' || *q == '-'))
			q++;
		if (q >= end || *q < '0' || *q > '9')
			return -1;
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	}
	if (!isfloat) {
		int64_t v;

		if (parse_int64(p, (size_t)(q - p), &v) != NUM_OK)
			return -3; /* pandas (ujson): "Value is too big" */
	}
	*jk = isfloat ? JK_FLOAT : JK_INT;
	*s = p;
	*len = (size_t)(q - p);
	j->p = q;
	return 0;
}

static int add_column(struct table *t, struct dict *names, const char *s, size_t len, bool stable,
		      size_t row, size_t *idx)
{
	uint32_t id = dict_intern(names, &t->arena, s, len, stable);

	if (id == ID_NULL)
		return -1;
	if (id < t->ncols) {
		*idx = id;
		return 0;
	}
	struct column *cols = realloc(t->cols, (t->ncols + 1) * sizeof(*cols));

	if (!cols)
		return -1;
	t->cols = cols;
	struct column *c = &cols[t->ncols];

	memset(c, 0, sizeof(*c));
	c->name = arena_strndup(&t->arena, s, len);
	if (!c->name)
		return -1;
	/* interned strings must outlive j->buf */
	names->entries[id].s = c->name;
	c->used = true;
	c->json = true;
	c->kind = KIND_TEXT;
	for (size_t r = 0; r < row; r++)
		if (column_add_json(t, c, 0, "", 0, true) < 0)
			return -1;
	*idx = t->ncols++;
	return 0;
}

enum analyze_status jsonl_read(struct table *t, const char *data, size_t len,
			       const struct read_opts *o)
{
	struct jp j = {.p = data, .end = data + len};
	struct dict names = {0};
	enum analyze_status st = ANALYZE_OK;
	uint64_t line = 0;
	size_t row = 0;
	const char *p = data, *end = data + len;
	const char *what = NULL;

	if (len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3))
		p += 3;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;

		line++;
		j.p = p;
		j.end = le;
		p = nl ? nl + 1 : end;
		skip_ws(&j);
		if (j.p == j.end)
			continue;
		if (*j.p != '{') {
			what = "expected a JSON object";
			goto bad;
		}
		j.p++;
		skip_ws(&j);
		if (j.p < j.end && *j.p == '}') {
			j.p++;
		} else {
			for (;;) {
				const char *ks, *vs;
				size_t kl, vl, idx;
				bool kstable, vstable;
				int jk, r;

				skip_ws(&j);
				if (j.p >= j.end || *j.p != '"') {
					what = "expected a key";
					goto bad;
				}
				r = parse_string(&j, &ks, &kl, &kstable);
				if (r == -2)
					goto nomem;
				if (r < 0) {
					what = "bad string";
					goto bad;
				}
				if (add_column(t, &names, ks, kl, kstable, row, &idx) < 0)
					goto nomem;
				skip_ws(&j);
				if (j.p >= j.end || *j.p != ':') {
					what = "expected ':'";
					goto bad;
				}
				j.p++;
				skip_ws(&j);
				r = parse_value(&j, &jk, &vs, &vl, &vstable, 0);
				if (r == -2)
					goto nomem;
				if (r == -3) {
					what = "integer too big";
					goto bad;
				}
				if (r < 0) {
					what = "bad value";
					goto bad;
				}
				struct column *c = &t->cols[idx];

				if (c->n > row) {
					/* a repeated key: the last value wins */
					if (c->v.t[row] == ID_NULL)
						c->nulls--;
					c->n--;
				}
				if (column_add_json(t, c, jk, vs, vl, vstable) < 0)
					goto nomem;
				skip_ws(&j);
				if (j.p < j.end && *j.p == ',') {
					j.p++;
					continue;
				}
				if (j.p < j.end && *j.p == '}') {
					j.p++;
					break;
				}
				what = "expected ',' or '}'";
				goto bad;
			}
		}
		skip_ws(&j);
		if (j.p != j.end) {
			what = "text after the object";
			goto bad;
		}
		row++;
		for (size_t i = 0; i < t->ncols; i++)
			if (t->cols[i].n < row &&
			    column_add_json(t, &t->cols[i], 0, "", 0, true) < 0)
				goto nomem;
	}
	if (t->ncols == 0) {
		snprintf(t->err, sizeof(t->err), "dataset: no columns to parse");
		st = ANALYZE_EDATA;
		goto out;
	}
	t->nrows = row;
	if ((st = o->select(t, o->select_arg)) != ANALYZE_OK)
		goto out;
	for (size_t i = 0; i < t->ncols; i++)
		if (column_finish(t, &t->cols[i]) < 0)
			goto nomem;
out:
	free(j.buf);
	dict_free(&names);
	return st;
bad:
	snprintf(t->err, sizeof(t->err), "dataset: line %llu: %s", (unsigned long long)line, what);
	st = ANALYZE_EDATA;
	goto out;
nomem:
	snprintf(t->err, sizeof(t->err), "out of memory");
	st = ANALYZE_EFAIL;
	goto out;
}
