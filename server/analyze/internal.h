/*
 * What the files of the Analyze engine share: the arena that owns every
 * string and response object, the interned text of a column, the typed
 * columns, the readers (csv.c, jsonl.c), statistics (stats.c) and group-by
 * (group.c). Not exported beyond server/analyze/.
 */
#ifndef CAPIBOX_ANALYZE_INTERNAL_H
#define CAPIBOX_ANALYZE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "analyze.h"

/* --- arena: many small allocations freed at once ------------------------- */
struct arena_block;
struct arena {
	struct arena_block *head;
	size_t used, size; /* in head */
};

/* Zeroed memory owned by a (NULL when out of memory). */
void *arena_alloc(struct arena *a, size_t n);
/* A NUL-terminated copy of s[0..n) owned by a. */
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* Frees every block of a. */
void arena_free(struct arena *a);

/* --- interned text of one column ----------------------------------------- */
struct dict_entry {
	const char *s; /* in the dataset or the arena; not NUL-terminated */
	uint32_t len;
	uint32_t hash;
	uint8_t jkinds; /* JSON lines: which JSON types produced this text (JK_*) */
};

struct dict {
	uint32_t *slots; /* id + 1; 0 = empty */
	uint32_t mask;	 /* slots - 1 */
	uint32_t n;	 /* entries */
	uint32_t cap;
	struct dict_entry *entries;
};

#define ID_NULL UINT32_MAX

/* JSON value kinds (dict_entry.jkinds bits) */
enum {
	JK_STRING = 1,
	JK_INT = 2,
	JK_FLOAT = 4,
	JK_TRUE = 8,
	JK_FALSE = 16,
	JK_NESTED = 32,
};

/* The id of s[0..len), adding it (copied into a unless stable) when new; ID_NULL when out of memory. */
uint32_t dict_intern(struct dict *d, struct arena *a, const char *s, size_t len, bool stable);
void dict_free(struct dict *d);
/* A 32-bit hash of s[0..len). */
uint32_t hash_bytes(const char *s, size_t len);

/* --- columns --------------------------------------------------------------- */
enum kind {
	KIND_NULL,  /* only nulls so far (an all-null column ends as FLOAT) */
	KIND_INT,   /* int64, no nulls */
	KIND_UINT,  /* uint64 (pandas' uint64 for ints above INT64_MAX), no nulls */
	KIND_FLOAT, /* double, NaN = null */
	KIND_BOOL,  /* uint8: 0, 1, 2 = null (ends as TEXT if any null) */
	KIND_TEXT,  /* uint32 dict ids, ID_NULL = null */
};

struct column {
	char *name; /* in the arena, NUL-terminated */
	bool used;  /* summarised, grouped or aggregated: typed and stored */
	enum kind kind;
	bool demoted;	/* became TEXT after cells were stored as numbers: pass 2 reads text */
	bool only_ints; /* FLOAT: no cell so far needed a float (pandas' int attempt failed on NA) */
	bool saw_na;
	bool has_neg;
	bool json; /* JSON lines: all cells interned, typed at the end */
	size_t n, cap;
	union {
		int64_t *i;
		uint64_t *u;
		double *f;
		uint8_t *b;
		uint32_t *t;
		void *p;
	} v;
	struct dict dict;
	size_t nulls;
};

/* Strings read as null (pandas' na_values). */
struct nullset {
	size_t n;
	const char **s;
	size_t *len;
	uint32_t lens[256]; /* by first byte: bit L for a null string of length L (31: longer) */
	bool empty_is_null;
};

struct table {
	struct arena arena;
	size_t ncols;
	struct column *cols;
	size_t nrows;
	struct nullset na;
	char delim; /* CSV: the delimiter and the bytes that end an unquoted field */
	uint8_t delim_special[256];
	char err[512];
};

/* Adds one CSV cell to column c (c->used); s stays valid after the call only when stable. Returns 0, -1 on out of memory. */
int column_add_csv(struct table *t, struct column *c, const char *s, size_t len, bool stable)
	__attribute__((warn_unused_result));
/* Adds a null cell (a short row's missing field). */
int column_add_null(struct table *t, struct column *c) __attribute__((warn_unused_result));
/* Adds one cell as text, for pass 2 of a demoted column (NA strings and s == NULL are null). */
int column_add_text(struct table *t, struct column *c, const char *s, size_t len, bool stable)
	__attribute__((warn_unused_result));
/* Adds one JSON value of kind jk (0 = null) with its text (unescaped for strings). */
int column_add_json(struct table *t, struct column *c, int jk, const char *s, size_t len,
		    bool stable) __attribute__((warn_unused_result));
/* Prepares column c for pass 2 (its text). */
void column_reset_text(struct column *c);
/* Settles c's final type once every row is in (bool with nulls -> TEXT, all-null -> FLOAT, JSON typing). */
int column_finish(struct table *t, struct column *c) __attribute__((warn_unused_result));
void column_free(struct column *c);
/* Back to no cells read (name and used kept). */
void column_reset(struct column *c);
/*
 * Appends b (the rows after a's, read by another thread) to a, as if a had
 * read them: 0, 1 when the pair needs the sequential read (a type change
 * whose outcome depends on row order), -1 out of memory. b is emptied.
 */
int column_merge(struct table *t, struct column *a, struct column *b)
	__attribute__((warn_unused_result));

/* Is s[0..len) one of the null strings? */
bool nullset_has(const struct nullset *na, const char *s, size_t len);

/* Number parsing as pandas' C parser does it (str_to_int64, precise_xstrtod). */
enum numparse { NUM_OK, NUM_NOTNUM, NUM_OVERFLOW };
enum numparse parse_int64(const char *s, size_t len, int64_t *out);
enum numparse parse_uint64(const char *s, size_t len, uint64_t *out);
enum numparse parse_double(const char *s, size_t len, double *out);
/* Python's float(str) (read_json's object -> float64 conversion). */
bool parse_pyfloat(const char *s, size_t len, double *out);

/* --- readers ------------------------------------------------------------- */
struct read_opts {
	char delim;
	bool no_header;
	bool jsonl;
	int threads; /* 2 and more: CSV halves read in parallel where possible */
	/* selected by name after the header; returns ANALYZE_ECOLUMN with t->err set */
	enum analyze_status (*select)(struct table *t, void *arg);
	void *select_arg;
};

/* Reads CSV/TSV data into t (names, used columns typed). */
enum analyze_status csv_read(struct table *t, const char *data, size_t len,
			     const struct read_opts *o);
/* Reads JSON lines data into t. */
enum analyze_status jsonl_read(struct table *t, const char *data, size_t len,
			       const struct read_opts *o);

/* --- statistics ---------------------------------------------------------- */
struct numstats {
	uint64_t count, distinct;
	double mean, std, min, p25, median, p75, max, sum;
};

/* Sort buffers a thread reuses from column to column (fresh pages cost more than the sort). */
struct stats_scratch {
	uint64_t *keys, *tmp;
	size_t cap;
};

/* describe(), nunique() and sum() of a numeric column (INT, UINT, FLOAT); scratch may be NULL. */
int stats_numeric(const struct column *c, size_t nrows, struct numstats *st,
		  struct stats_scratch *scratch) __attribute__((warn_unused_result));
void stats_scratch_free(struct stats_scratch *s);
/* value_counts() of a TEXT or BOOL column: ids of the top k in pandas' order, counts; returns distinct. */
int stats_top(const struct column *c, size_t nrows, size_t k, uint32_t *ids, uint64_t *counts,
	      size_t *ntop, uint64_t *distinct) __attribute__((warn_unused_result));
/* Exact sum of an INT/UINT column as pandas' int64 (wrapping) or uint64. */
double stats_int_sum(const struct column *c, size_t nrows);
/* numpy's pairwise summation of v[0..n) (np.add.reduce on float64). */
double stats_pairwise(const double *v, size_t n);
/* Sorts a[0..n) ascending (LSD radix); tmp has room for n. */
void stats_radix_sort(uint64_t *a, uint64_t *tmp, size_t n);
/* Maps a double to a uint64 that sorts like it (-0.0 as 0.0). */
uint64_t stats_double_key(double d);
double stats_key_double(uint64_t k);
/* numpy's linear-interpolation quantile of sorted[0..n). */
double stats_quantile(const double *sorted, size_t n, double q);
/* numpy argsort(kind="quicksort") of v[0..n) into idx. */
void stats_np_argsort(const int64_t *v, size_t n, size_t *idx);

/* --- group-by ------------------------------------------------------------ */
/* Builds resp->groups for req's group_by/aggregates over t. */
enum analyze_status group_run(struct table *t, const Capibox__V1__AnalyzeRequest *req,
			      const size_t *keycols, const size_t *aggcols,
			      Capibox__V1__Table **out);

/* Table cells owned by the arena (NULL when out of memory); NaN becomes is_null. */
Capibox__V1__Value *value_number(struct arena *a, double d);
Capibox__V1__Value *value_text(struct arena *a, const char *s, size_t len);
Capibox__V1__Value *value_null(struct arena *a);

#endif
