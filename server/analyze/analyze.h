/*
 * The Analyze engine (issue 5): parses one dataset (CSV, TSV, JSON lines)
 * and computes what pandas 1.5 would say about it -- describe(), nunique(),
 * value_counts(), groupby().agg() -- as a capibox.v1.AnalyzeResponse.
 *
 * It runs inside a sandbox as the program capibox-analyze (main.c); this
 * library holds no global state so that a fuzz target can link it too.
 * docs/ANALYZE.md describes the semantics and where they differ from pandas.
 */
#ifndef CAPIBOX_ANALYZE_H
#define CAPIBOX_ANALYZE_H

#include <stddef.h>

#include "capibox/v1/sandbox.pb-c.h"

/* Outcomes of analyze_run; they are also capibox-analyze's exit codes. */
enum analyze_status {
	ANALYZE_OK = 0,
	ANALYZE_EFAIL = 1,   /* anything else (out of memory, too many groups) */
	ANALYZE_EDATA = 2,   /* malformed dataset: "dataset: line 17: ..." */
	ANALYZE_ECOLUMN = 3, /* unknown column in columns, group_by or aggregates */
	ANALYZE_EAGG = 4,    /* aggregate that does not apply to the column's type */
};

struct analyze_result;

/*
 * Analyzes data[0..len) as described by req (req->dataset->content is
 * ignored), using up to threads threads. Always sets *res (NULL only when
 * even that allocation failed); on ANALYZE_OK analyze_response() holds the
 * answer, otherwise analyze_error() says what is wrong in one line.
 * Caller frees *res with analyze_result_free().
 */
enum analyze_status analyze_run(const Capibox__V1__AnalyzeRequest *req, const char *data,
				size_t len, int threads, struct analyze_result **res)
	__attribute__((warn_unused_result));

/* The response (rows, columns, groups); owned by res. */
const Capibox__V1__AnalyzeResponse *analyze_response(const struct analyze_result *res);

/* The one-line error message, or "" on success; owned by res. */
const char *analyze_error(const struct analyze_result *res);

/* Frees res and everything its response points to; NULL is fine. */
void analyze_result_free(struct analyze_result *res);

#endif
