/*
 * CSV and TSV as pandas' C tokenizer reads them: RFC 4180 quoting with
 * doubled quotes, text after a closing quote appended to the field, quotes
 * inside an unquoted field taken literally, \n, \r\n and a lone \r ending
 * a line, blank and whitespace-only lines skipped, short rows padded with
 * nulls, long rows an error naming the line as pandas counts lines (every
 * line end outside quotes, blank lines included).
 *
 * Fields point into the dataset (zero copy) unless unquoting changed them;
 * those are built in a scratch buffer and copied only when interned new.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct field {
	const char *s;
	size_t len;
	size_t off; /* in scratch when copied */
	bool copied;
};

struct tok {
	const char *p, *end;
	char delim;
	uint64_t line; /* pandas' line number of the next record */
	struct field *f;
	size_t nf, fcap;
	char *scratch;
	size_t slen, scap;
	uint8_t special[256]; /* delimiter, \n, \r: end an unquoted field */
};

enum { TOK_EOF = 0, TOK_RECORD = 1, TOK_ERROR = -1, TOK_NOMEM = -2 };

static int scratch_put(struct tok *k, const char *s, size_t n)
{
	if (n == 0)
		return 0;
	if (k->slen + n > k->scap) {
		size_t cap = k->scap ? k->scap : 256;

		while (cap < k->slen + n)
			cap *= 2;
		char *p = realloc(k->scratch, cap);

		if (!p)
			return -1;
		k->scratch = p;
		k->scap = cap;
	}
	memcpy(k->scratch + k->slen, s, n);
	k->slen += n;
	return 0;
}

static int field_push(struct tok *k)
{
	if (k->nf == k->fcap) {
		size_t cap = k->fcap ? k->fcap * 2 : 64;
		struct field *f = realloc(k->f, cap * sizeof(*f));

		if (!f)
			return -1;
		k->f = f;
		k->fcap = cap;
	}
	k->nf++;
	return 0;
}

/* Reads one record into k->f; *recline is its line. */
static int tok_record(struct tok *k, uint64_t *recline)
{
	const char *p = k->p, *end = k->end;
	const char d = k->delim;

again:
	if (p >= end) {
		k->p = end;
		return TOK_EOF;
	}
	{
		/* blank and whitespace-only lines are skipped (pandas' skip_blank_lines) */
		const char *q = p;

		while (q < end && (*q == ' ' || *q == '\t') && *q != d)
			q++;
		if (q == end) {
			k->p = end;
			return TOK_EOF;
		}
		if (*q == '\n' || *q == '\r') {
			k->line++;
			p = q + 1;
			if (*q == '\r' && p < end && *p == '\n')
				p++;
			goto again;
		}
	}
	*recline = k->line;
	k->nf = 0;
	k->slen = 0;
	for (;;) {
		struct field *f;

		if (field_push(k) < 0)
			return TOK_NOMEM;
		f = &k->f[k->nf - 1];
		if (p < end && *p == '"') {
			/* quoted: zero copy unless a doubled quote or trailing text changes it */
			const char *s = ++p;

			f->copied = false;
			for (;;) {
				const char *qq = memchr(p, '"', (size_t)(end - p));

				if (!qq) {
					k->p = end;
					return TOK_ERROR;
				}
				if (qq + 1 < end && qq[1] == '"') {
					if (!f->copied) {
						f->copied = true;
						f->off = k->slen;
					}
					if (scratch_put(k, s, (size_t)(qq + 1 - s)) < 0)
						return TOK_NOMEM;
					p = s = qq + 2;
					continue;
				}
				if (f->copied && scratch_put(k, s, (size_t)(qq - s)) < 0)
					return TOK_NOMEM;
				if (!f->copied) {
					f->s = s;
					f->len = (size_t)(qq - s);
				}
				p = qq + 1;
				break;
			}
			if (p < end && !k->special[(unsigned char)*p]) {
				/* text after the closing quote belongs to the field */
				if (!f->copied) {
					f->copied = true;
					f->off = k->slen;
					if (scratch_put(k, f->s, f->len) < 0)
						return TOK_NOMEM;
				}
				const char *s2 = p;

				while (p < end && !k->special[(unsigned char)*p])
					p++;
				if (scratch_put(k, s2, (size_t)(p - s2)) < 0)
					return TOK_NOMEM;
			}
			if (f->copied)
				f->len = k->slen - f->off;
		} else {
			const char *s = p;

			while (p < end && !k->special[(unsigned char)*p])
				p++;
			f->s = s;
			f->len = (size_t)(p - s);
			f->copied = false;
		}
		if (p >= end)
			break;
		if (*p == d) {
			p++;
			if (p >= end) {
				/* "a,b," at the very end: one more empty field */
				if (field_push(k) < 0)
					return TOK_NOMEM;
				k->f[k->nf - 1] = (struct field){.s = p, .len = 0};
				break;
			}
			continue;
		}
		/* line end */
		k->line++;
		if (*p == '\r' && p + 1 < end && p[1] == '\n')
			p++;
		p++;
		break;
	}
	for (size_t i = 0; i < k->nf; i++)
		if (k->f[i].copied)
			k->f[i].s = k->scratch + k->f[i].off;
	k->p = p;
	return TOK_RECORD;
}

static void tok_init(struct tok *k, const char *data, size_t len, char delim)
{
	memset(k, 0, sizeof(*k));
	k->p = data;
	k->end = data + len;
	k->delim = delim;
	k->line = 1;
	k->special[(unsigned char)delim] = 1;
	k->special['\n'] = 1;
	k->special['\r'] = 1;
	/* a UTF-8 byte order mark is not data */
	if (len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3))
		k->p += 3;
}

static void tok_free(struct tok *k)
{
	free(k->f);
	free(k->scratch);
}

/* grows a per-dict-id counter array to cover id */
static int counts_fit(size_t **v, size_t *cap, uint32_t id)
{
	if (id < *cap)
		return 0;
	size_t n = *cap ? *cap : 64;

	while (n <= id)
		n *= 2;
	size_t *p = realloc(*v, n * sizeof(*p));

	if (!p)
		return -1;
	memset(p + *cap, 0, (n - *cap) * sizeof(*p));
	*v = p;
	*cap = n;
	return 0;
}

/*
 * pandas' names (parsers.pyx, _get_header): "Unnamed: i" for an empty
 * header cell; a repeated name becomes "name.N" with N counting up past
 * names the header already has, named columns first, unnamed ones last.
 */
static int set_names(struct table *t, struct tok *k)
{
	size_t n = k->nf, ccap = 0, hcap = 0;
	struct dict seen = {0};
	size_t *counts = NULL, *inheader = NULL; /* by dict id */
	bool *unnamed = calloc(n ? n : 1, sizeof(bool));
	int rc = -1;

	if (!unnamed)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char buf[64];
		const char *s = k->f[i].s;
		size_t len = k->f[i].len;

		if (len == 0) {
			len = (size_t)snprintf(buf, sizeof(buf), "Unnamed: %zu", i);
			s = buf;
			unnamed[i] = true;
		}
		t->cols[i].name = arena_strndup(&t->arena, s, len);
		if (!t->cols[i].name)
			goto out;
		uint32_t id = dict_intern(&seen, &t->arena, t->cols[i].name, len, true);

		if (id == ID_NULL || counts_fit(&inheader, &hcap, id) < 0)
			goto out;
		inheader[id]++;
	}
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			if (unnamed[i] != (pass == 1))
				continue;
			char *col = t->cols[i].name, *old = col;
			uint32_t oid = dict_intern(&seen, &t->arena, old, strlen(old), true),
				 id = oid;

			if (oid == ID_NULL || counts_fit(&counts, &ccap, oid) < 0)
				goto out;
			size_t cur = counts[oid];

			while (cur > 0) {
				counts[oid] = cur + 1;
				size_t l = strlen(old) + 24;

				col = arena_alloc(&t->arena, l);
				if (!col)
					goto out;
				snprintf(col, l, "%s.%zu", old, cur);
				id = dict_intern(&seen, &t->arena, col, strlen(col), true);
				if (id == ID_NULL || counts_fit(&counts, &ccap, id) < 0 ||
				    counts_fit(&inheader, &hcap, id) < 0)
					goto out;
				if (inheader[id])
					cur++;
				else
					cur = counts[id];
			}
			if (id != oid) {
				inheader[oid]--;
				inheader[id]++;
			}
			t->cols[i].name = col;
			counts[id] = cur + 1;
		}
	}
	rc = 0;
out:
	free(unnamed);
	free(counts);
	free(inheader);
	dict_free(&seen);
	return rc;
}

static enum analyze_status tok_error(struct table *t, uint64_t line, const char *what)
{
	snprintf(t->err, sizeof(t->err), "dataset: line %llu: %s", (unsigned long long)line, what);
	return ANALYZE_EDATA;
}

/* One pass over the records after the header; pass 2 feeds demoted columns only. */
static enum analyze_status read_body(struct table *t, struct tok *k, size_t skip, bool pass2)
{
	size_t ncols = t->ncols;
	uint64_t line = 0;
	size_t rows = 0;
	int r;

	while ((r = tok_record(k, &line)) == TOK_RECORD) {
		size_t nf = k->nf;

		if (nf > ncols + skip) {
			char msg[96];

			snprintf(msg, sizeof(msg), "expected %zu fields, saw %zu", ncols + skip,
				 nf);
			return tok_error(t, line, msg);
		}
		for (size_t j = 0; j < ncols; j++) {
			struct column *c = &t->cols[j];
			size_t i = j + skip;
			int rc;

			if (!c->used || (pass2 && !c->demoted))
				continue;
			if (i >= nf)
				rc = pass2 ? column_add_text(t, c, NULL, 0, true) :
					     column_add_null(t, c);
			else if (pass2)
				rc = column_add_text(t, c, k->f[i].s, k->f[i].len, !k->f[i].copied);
			else
				rc = column_add_csv(t, c, k->f[i].s, k->f[i].len, !k->f[i].copied);
			if (rc < 0) {
				snprintf(t->err, sizeof(t->err), "out of memory");
				return ANALYZE_EFAIL;
			}
		}
		rows++;
	}
	if (r == TOK_ERROR)
		return tok_error(t, line, "unterminated quoted field");
	if (r == TOK_NOMEM) {
		snprintf(t->err, sizeof(t->err), "out of memory");
		return ANALYZE_EFAIL;
	}
	t->nrows = rows;
	return ANALYZE_OK;
}

/* the second half of the body, read by a second thread into its own columns */
struct half {
	struct table t;
	struct tok k;
	size_t skip;
	enum analyze_status st;
};

static void *half_run(void *arg)
{
	struct half *h = arg;

	h->st = read_body(&h->t, &h->k, h->skip, false);
	return NULL;
}

/*
 * Reads the body in two halves on two threads. Only for bodies without a
 * quote character: then every line end is a record boundary and no field
 * is ever copied, so the halves are independent. Returns 1 when the
 * sequential read must do it instead (an error, whose line only the
 * sequential read knows; a type change that depends on row order).
 */
static int read_halves(struct table *t, const char *body, const char *end, size_t skip)
{
	const char *mid = body + (size_t)(end - body) / 2;
	const char *nl = memchr(mid, '\n', (size_t)(end - mid));
	struct half h = {.skip = skip};
	pthread_t th;
	struct tok ka;
	int rc = 1;

	if (!nl || nl + 1 >= end)
		return 1;
	tok_init(&ka, body, (size_t)(nl + 1 - body), ',');
	ka.p = body; /* no BOM here */
	tok_init(&h.k, nl + 1, (size_t)(end - nl - 1), ',');
	h.k.p = nl + 1;
	memcpy(ka.special, t->delim_special, sizeof(ka.special));
	memcpy(h.k.special, t->delim_special, sizeof(h.k.special));
	ka.delim = h.k.delim = t->delim;
	h.t.na = t->na;
	h.t.ncols = t->ncols;
	h.t.cols = calloc(t->ncols ? t->ncols : 1, sizeof(*h.t.cols));
	if (!h.t.cols)
		goto out;
	for (size_t j = 0; j < t->ncols; j++) {
		h.t.cols[j].name = t->cols[j].name;
		h.t.cols[j].used = t->cols[j].used;
	}
	if (pthread_create(&th, NULL, half_run, &h) != 0)
		goto out;
	enum analyze_status st = read_body(t, &ka, skip, false);

	pthread_join(th, NULL);
	if (st != ANALYZE_OK || h.st != ANALYZE_OK)
		goto out;
	for (size_t j = 0; j < t->ncols; j++) {
		if (!t->cols[j].used)
			continue;
		int m = column_merge(t, &t->cols[j], &h.t.cols[j]);

		if (m != 0)
			goto out; /* out of memory also: the sequential read reports it */
	}
	t->nrows += h.t.nrows;
	rc = 0;
out:
	tok_free(&ka);
	tok_free(&h.k);
	for (size_t j = 0; h.t.cols && j < t->ncols; j++)
		column_free(&h.t.cols[j]);
	free(h.t.cols);
	arena_free(&h.t.arena);
	if (rc)
		for (size_t j = 0; j < t->ncols; j++)
			column_reset(&t->cols[j]);
	return rc;
}

static enum analyze_status read_all(struct table *t, const char *data, size_t len,
				    const struct read_opts *o)
{
	struct tok k;
	uint64_t line = 0;
	enum analyze_status st = ANALYZE_OK;
	int r;
	size_t skip = 0;
	bool demoted = false;

	tok_init(&k, data, len, o->delim);
	r = tok_record(&k, &line);
	if (r == TOK_EOF) {
		snprintf(t->err, sizeof(t->err), "dataset: no columns to parse");
		st = ANALYZE_EDATA;
		goto out;
	}
	if (r == TOK_ERROR) {
		st = tok_error(t, line, "unterminated quoted field");
		goto out;
	}
	if (r == TOK_NOMEM)
		goto nomem;
	t->ncols = k.nf;
	t->cols = calloc(k.nf, sizeof(*t->cols));
	if (!t->cols)
		goto nomem;
	if (o->no_header) {
		for (size_t i = 0; i < k.nf; i++) {
			char buf[32];
			int n = snprintf(buf, sizeof(buf), "%zu", i);

			t->cols[i].name = arena_strndup(&t->arena, buf, (size_t)n);
			if (!t->cols[i].name)
				goto nomem;
		}
	} else if (set_names(t, &k) < 0) {
		goto nomem;
	}
	if ((st = o->select(t, o->select_arg)) != ANALYZE_OK)
		goto out;

	const char *body = k.p;
	uint64_t body_line = k.line;

	if (o->no_header) {
		/* the first record is data: start over */
		k.p = data + ((len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3)) ? 3 : 0);
		k.line = 1;
		body = k.p;
		body_line = 1;
	} else {
		/* pandas' implicit index: a first data row with one field more than the header */
		struct tok peek = k;

		peek.f = NULL;
		peek.fcap = 0;
		peek.scratch = NULL;
		peek.scap = 0;
		r = tok_record(&peek, &line);
		if (r == TOK_RECORD && peek.nf == t->ncols + 1)
			skip = 1;
		tok_free(&peek);
	}
	/* big bodies without quotes: two halves in parallel */
	t->delim = o->delim;
	memcpy(t->delim_special, k.special, sizeof(t->delim_special));
	if (o->threads < 2 || k.end - body < (1 << 20) ||
	    memchr(body, '"', (size_t)(k.end - body)) || read_halves(t, body, k.end, skip) != 0) {
		k.p = body;
		k.line = body_line;
		if ((st = read_body(t, &k, skip, false)) != ANALYZE_OK)
			goto out;
	}
	for (size_t j = 0; j < t->ncols; j++)
		if (t->cols[j].used && t->cols[j].demoted) {
			column_reset_text(&t->cols[j]);
			t->cols[j].demoted = true;
			demoted = true;
		}
	if (demoted) {
		k.p = body;
		k.line = body_line;
		if ((st = read_body(t, &k, skip, true)) != ANALYZE_OK)
			goto out;
		for (size_t j = 0; j < t->ncols; j++)
			t->cols[j].demoted = false;
	}
	for (size_t j = 0; j < t->ncols; j++) {
		struct column *c = &t->cols[j];

		if (!c->used)
			continue;
		if (t->nrows == 0) {
			/* pandas: a header without rows gives object columns */
			c->kind = KIND_TEXT;
			continue;
		}
		if (column_finish(t, c) < 0)
			goto nomem;
	}
out:
	tok_free(&k);
	return st;
nomem:
	snprintf(t->err, sizeof(t->err), "out of memory");
	st = ANALYZE_EFAIL;
	goto out;
}

enum analyze_status csv_read(struct table *t, const char *data, size_t len,
			     const struct read_opts *o)
{
	return read_all(t, data, len, o);
}
