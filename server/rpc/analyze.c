#include "analyze.h"
#include "../utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "../log.h"
#include "convert.h"
#include "runners/analyze.h"

#define ENGINE_MAX (64u << 20) /* a sanity bound on the program's size */

/* The engine program, read once before serving and never written again. */
static uint8_t *engine;
static size_t engine_len;

int analyze_engine_load(const char *path, char *err, size_t errlen)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t off = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (uint64_t)st.st_size > ENGINE_MAX) {
		snprintf(err, errlen, "%s: not a regular file of a sensible size", path);
		goto fail;
	}
	buf = malloc((size_t)st.st_size);
	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "%s: read: %s", path,
				 n < 0 ? strerror(errno) : "short");
			goto fail;
		}
		off += (size_t)n;
	}
	close(fd);
	free(engine);
	engine = buf;
	engine_len = off;
	return 0;
fail:
	free(buf);
	close(fd);
	return -1;
}

static bool function_known(Capibox__V1__AggregateFunction f)
{
	return f >= CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_COUNT &&
	       f <= CAPIBOX__V1__AGGREGATE_FUNCTION__AGGREGATE_FUNCTION_NUNIQUE;
}

static bool format_known(Capibox__V1__DatasetFormat f)
{
	return f >= CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_UNSPECIFIED &&
	       f <= CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_JSONL;
}

/* The request's own checks: what the engine needs to be well-defined. */
static enum request_rc check_request(const struct config *cfg, const Capibox__V1__AnalyzeRequest *m,
				     char *err, size_t errlen)
{
	const Capibox__V1__Dataset *d = m->dataset;

	if (d == NULL) {
		snprintf(err, errlen, "dataset: missing");
		return REQUEST_INVALID;
	}
	if (d->content.len > cfg->max_dataset_bytes) {
		snprintf(err, errlen, "dataset.content: %zu bytes exceed the maximum %zu",
			 d->content.len, cfg->max_dataset_bytes);
		return REQUEST_TOO_LARGE;
	}
	if (!format_known(d->format)) {
		snprintf(err, errlen, "dataset.format: %d is not a DatasetFormat", (int)d->format);
		return REQUEST_INVALID;
	}
	if (strlen(d->delimiter) > 1) {
		snprintf(err, errlen, "dataset.delimiter: must be one character, or empty");
		return REQUEST_INVALID;
	}
	if (d->delimiter[0] == '"' || d->delimiter[0] == '\n' || d->delimiter[0] == '\r') {
		snprintf(err, errlen, "dataset.delimiter: %s cannot be a delimiter",
			 d->delimiter[0] == '"' ? "a quote" : "a line break");
		return REQUEST_INVALID;
	}
	for (size_t i = 0; i < m->n_columns; i++)
		if (m->columns[i][0] == '\0') {
			snprintf(err, errlen, "columns[%zu]: empty", i);
			return REQUEST_INVALID;
		}
	for (size_t i = 0; i < m->n_group_by; i++)
		if (m->group_by[i][0] == '\0') {
			snprintf(err, errlen, "group_by[%zu]: empty", i);
			return REQUEST_INVALID;
		}
	for (size_t i = 0; i < m->n_aggregates; i++) {
		const Capibox__V1__Aggregate *a = m->aggregates[i];

		if (a->column[0] == '\0') {
			snprintf(err, errlen, "aggregates[%zu].column: empty", i);
			return REQUEST_INVALID;
		}
		if (!function_known(a->function)) {
			snprintf(err, errlen, "aggregates[%zu].function: %s", i,
				 a->function == 0 ? "not set" : "not an AggregateFunction");
			return REQUEST_INVALID;
		}
	}
	if (m->code[0] != '\0') {
		/* the code computes what it wants from df: statistics asked
		 * for beside it would be silently ignored, so they are refused */
		if (m->n_columns || m->n_group_by || m->n_aggregates) {
			snprintf(err, errlen,
				 "code: cannot be combined with %s (compute them in the code)",
				 m->n_columns  ? "columns" :
				 m->n_group_by ? "group_by" :
						 "aggregates");
			return REQUEST_INVALID;
		}
		if (strlen(m->code) > cfg->max_code_bytes) {
			snprintf(err, errlen, "code: %zu bytes exceeds the maximum %zu",
				 strlen(m->code), cfg->max_code_bytes);
			return REQUEST_INVALID;
		}
		return REQUEST_OK;
	}
	if (m->n_group_by > 0 && m->n_aggregates == 0) {
		snprintf(err, errlen, "aggregates: group_by needs at least one aggregate");
		return REQUEST_INVALID;
	}
	return REQUEST_OK;
}

static const char *format_name(Capibox__V1__DatasetFormat f)
{
	switch (f) {
	case CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_CSV: return "csv";
	case CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_TSV: return "tsv";
	case CAPIBOX__V1__DATASET_FORMAT__DATASET_FORMAT_JSONL: return "jsonl";
	default: return ""; /* guessed by the runner, as the engine guesses */
	}
}

/*
 * Code mode's options file: the dataset's reading options as JSON for the
 * runner (server/runners/analyze.py). Returns 0, or -1 out of memory.
 */
static int code_options(struct analyze_job *job)
{
	const Capibox__V1__Dataset *d = job->msg->dataset;
	struct json_object *o = json_object_new_object(), *nulls = json_object_new_array();
	const char *text;
	int rc = -1;

	if (o == NULL || nulls == NULL) {
		json_object_put(nulls);
		goto out;
	}
	json_object_object_add(o, "format", json_object_new_string(format_name(d->format)));
	json_object_object_add(o, "name", json_object_new_string(d->name));
	json_object_object_add(o, "delimiter", json_object_new_string(d->delimiter));
	json_object_object_add(o, "no_header", json_object_new_boolean(d->no_header));
	for (size_t i = 0; i < d->n_null_values; i++)
		json_object_array_add(nulls, json_object_new_string(d->null_values[i]));
	json_object_object_add(o, "null_values", nulls);
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (text == NULL)
		goto out;
	job->options_len = strlen(text);
	job->options = malloc(job->options_len + 1);
	if (job->options == NULL)
		goto out;
	memcpy(job->options, text, job->options_len + 1);
	rc = 0;
out:
	json_object_put(o);
	return rc;
}

enum request_rc analyze_decode(const struct config *cfg, const uint8_t *buf, size_t len,
			       struct analyze_job *job, char *err, size_t errlen)
{
	Capibox__V1__AnalyzeRequest *m;
	struct exec_request *req = &job->req;
	ProtobufCBinaryData content;
	enum request_rc rc;

	memset(job, 0, sizeof(*job));
	m = capibox__v1__analyze_request__unpack(NULL, len, buf);
	if (m == NULL) {
		snprintf(err, errlen, "malformed AnalyzeRequest");
		return REQUEST_INVALID;
	}
	job->msg = m;
	rc = check_request(cfg, m, err, errlen);
	if (rc != REQUEST_OK)
		return rc;
	job->code_mode = m->code[0] != '\0';
	if (engine == NULL && !job->code_mode) {
		snprintf(err, errlen, "the statistics engine (capibox-analyze) is not installed");
		return REQUEST_UNIMPLEMENTED;
	}

	/* limits and files as Execute checks them: a python request stands in
	 * (the engine is no language a client may name) */
	job->files = calloc(m->n_files + 2, sizeof(job->files[0]));
	if (job->files == NULL)
		goto oom;
	for (size_t i = 0; i < m->n_files; i++) {
		const char *p = m->files[i]->path;

		/* the files this side adds must be the ones the sandbox reads */
		if (strcmp(p, ANALYZE_OPTIONS_PATH) == 0 || strcmp(p, ANALYZE_CODE_PATH) == 0 ||
		    strcmp(p, ANALYZE_CODE_OPTIONS_PATH) == 0) {
			snprintf(err, errlen, "files[%zu].path: \"%s\" is reserved for Analyze", i,
				 p);
			return REQUEST_INVALID;
		}
		convert_file(m->files[i], &job->files[i]);
	}
	req->language = "python";
	req->code = "#"; /* the real code (the program) comes after the checks */
	req->code_len = 1;
	req->files = job->files;
	req->n_files = m->n_files;
	req->request_id = m->request_id;
	convert_limits(m->limits, &req->limits);
	rc = request_validate_execute(cfg, req, err, errlen);
	if (rc != REQUEST_OK)
		return rc;

	if (job->code_mode) {
		/* an ordinary python run (a public runtime: warm pools apply)
		 * of the runner, with the code and the options as files */
		if (code_options(job) < 0)
			goto oom;
		job->files[m->n_files].path = ANALYZE_CODE_PATH;
		job->files[m->n_files].data = (const uint8_t *)m->code;
		job->files[m->n_files].len = strlen(m->code);
		job->files[m->n_files].mode = 0444;
		job->files[m->n_files + 1].path = ANALYZE_CODE_OPTIONS_PATH;
		job->files[m->n_files + 1].data = job->options;
		job->files[m->n_files + 1].len = job->options_len;
		job->files[m->n_files + 1].mode = 0444;
		req->n_files = m->n_files + 2;
		req->code = runner_analyze;
		req->code_len = sizeof(runner_analyze) - 1;
		req->stdin_data = m->dataset->content.data;
		req->stdin_len = m->dataset->content.len;
		return REQUEST_OK;
	}

	/* the options: the request without the dataset's bytes */
	content = m->dataset->content;
	m->dataset->content.data = NULL;
	m->dataset->content.len = 0;
	job->options_len = capibox__v1__analyze_request__get_packed_size(m);
	job->options = malloc(job->options_len ? job->options_len : 1);
	if (job->options != NULL)
		capibox__v1__analyze_request__pack(m, job->options);
	m->dataset->content = content;
	if (job->options == NULL)
		goto oom;
	job->files[m->n_files].path = ANALYZE_OPTIONS_PATH;
	job->files[m->n_files].data = job->options;
	job->files[m->n_files].len = job->options_len;
	job->files[m->n_files].mode = 0444;
	req->n_files = m->n_files + 1;
	req->language = "analyze";
	req->code = (const char *)engine;
	req->code_len = engine_len;
	req->stdin_data = content.data;
	req->stdin_len = content.len;
	return REQUEST_OK;
oom:
	snprintf(err, errlen, "out of memory");
	return REQUEST_TOO_LARGE;
}

void analyze_job_free(struct analyze_job *job)
{
	free(job->files);
	free(job->options);
	free(job->err);
	if (job->msg)
		capibox__v1__analyze_request__free_unpacked(job->msg, NULL);
	memset(job, 0, sizeof(*job));
}

static void table_fix(Capibox__V1__Table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_columns; i++)
		utf8_fix(t->columns[i]);
	for (size_t r = 0; r < t->n_rows; r++)
		for (size_t v = 0; v < t->rows[r]->n_values; v++)
			if (t->rows[r]->values[v]->kind_case == CAPIBOX__V1__VALUE__KIND_TEXT)
				utf8_fix(t->rows[r]->values[v]->text);
}

/* The first line of the engine's stderr, cleaned, for a message. */
static void first_line(const uint8_t *b, size_t len, char *out, size_t outlen)
{
	char tmp[512];
	size_t n = 0;

	while (n < len && n < sizeof(tmp) - 1 && b[n] != '\n')
		n++;
	if (n > 0) /* b is NULL when nothing came */
		memcpy(tmp, b, n);
	tmp[n] = '\0';
	convert_utf8_clean(tmp, out, outlen);
}

void analyze_stderr_add(struct analyze_job *job, const uint8_t *data, size_t len)
{
	size_t max = job->code_mode ? ANALYZE_CODE_STDERR_MAX : ANALYZE_STDERR_MAX;

	if (len > max - job->err_len)
		len = max - job->err_len;
	if (len == 0)
		return;
	if (job->err_len + len > job->err_cap) {
		size_t cap = job->err_cap ? job->err_cap : 1024;
		uint8_t *p;

		while (cap < job->err_len + len)
			cap *= 2;
		if (cap > max)
			cap = max;
		p = realloc(job->err, cap);
		if (p == NULL)
			return; /* what was kept stays; the rest is lost */
		job->err = p;
		job->err_cap = cap;
	}
	memcpy(job->err + job->err_len, data, len);
	job->err_len += len;
}

/* ---- code mode: the runner's document -------------------------------- */

#define DOC_MAGIC "CAPIBOX-ANALYZE "
#define DOC_DEPTH 8 /* doc, result, rows, row, cell: anything deeper is junk */

static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Decodes padded standard base64 (what Python's b64encode writes) into a
 * new buffer. Returns 0 with *out (NULL when empty; the caller frees it),
 * -1 when the text is not such base64, -2 out of memory.
 */
static int b64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len)
{
	uint8_t *buf;
	size_t o = 0;

	*out = NULL;
	*out_len = 0;
	if (len % 4 != 0)
		return -1;
	if (len == 0)
		return 0;
	buf = malloc(len / 4 * 3);
	if (buf == NULL)
		return -2;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;

		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)s[i + k];

			/* '=' only at the end: "xx==" or "xxx=" */
			if (c == '=' && i + 4 == len && k >= 2 && (k == 3 || s[i + 3] == '=')) {
				v[k] = 0;
				pad++;
				continue;
			}
			v[k] = pad ? -1 : b64_value(c);
			if (v[k] < 0) {
				free(buf);
				return -1;
			}
		}
		buf[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			buf[o++] = (uint8_t)((v[1] & 0xf) << 4 | v[2] >> 2);
		if (pad < 1)
			buf[o++] = (uint8_t)((v[2] & 0x3) << 6 | v[3]);
	}
	*out = buf;
	*out_len = o;
	return 0;
}

/* Why a document was refused: malformed, or the daemon's memory ran out. */
enum doc_rc { DOC_OK = 0, DOC_BAD = -1, DOC_OOM = -2 };

/* A copy of a JSON string with invalid UTF-8 replaced (untrusted text). */
static char *doc_strdup(struct json_object *o)
{
	char *p = strdup(json_object_get_string(o));

	if (p != NULL)
		utf8_fix(p);
	return p;
}

/* One cell: a number, a text, or null (booleans as the engine's "True"/"False"). */
static enum doc_rc doc_value(struct json_object *o, Capibox__V1__Value **out)
{
	Capibox__V1__Value *v = malloc(sizeof(*v));

	if (v == NULL)
		return DOC_OOM;
	capibox__v1__value__init(v);
	switch (json_object_get_type(o)) {
	case json_type_null:
		v->kind_case = CAPIBOX__V1__VALUE__KIND_IS_NULL;
		v->is_null = true;
		break;
	case json_type_int:
	case json_type_double:
		v->kind_case = CAPIBOX__V1__VALUE__KIND_NUMBER;
		v->number = json_object_get_double(o);
		break;
	case json_type_boolean:
	case json_type_string:
		v->text = json_object_get_type(o) == json_type_boolean ?
				  strdup(json_object_get_boolean(o) ? "True" : "False") :
				  doc_strdup(o);
		if (v->text == NULL) {
			free(v);
			return DOC_OOM;
		}
		v->kind_case = CAPIBOX__V1__VALUE__KIND_TEXT;
		break;
	default: free(v); return DOC_BAD;
	}
	*out = v;
	return DOC_OK;
}

/*
 * The result table: {"columns": [text...], "rows": [[cell...]...]}, every
 * row as wide as the columns. Counts grow as entries are added, so a
 * half-built table is always fit for free_unpacked.
 */
static enum doc_rc doc_table(struct json_object *o, Capibox__V1__Table **out)
{
	struct json_object *cols, *rows;
	Capibox__V1__Table *t;
	size_t nc, nr;
	enum doc_rc rc;

	if (!json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "columns", &cols) ||
	    !json_object_object_get_ex(o, "rows", &rows) ||
	    !json_object_is_type(cols, json_type_array) ||
	    !json_object_is_type(rows, json_type_array))
		return DOC_BAD;
	nc = json_object_array_length(cols);
	nr = json_object_array_length(rows);
	t = malloc(sizeof(*t));
	if (t == NULL)
		return DOC_OOM;
	capibox__v1__table__init(t);
	*out = t; /* the caller frees it, whole or half-built */
	t->columns = calloc(nc ? nc : 1, sizeof(*t->columns));
	t->rows = calloc(nr ? nr : 1, sizeof(*t->rows));
	if (t->columns == NULL || t->rows == NULL)
		return DOC_OOM;
	for (size_t k = 0; k < nc; k++) {
		struct json_object *c = json_object_array_get_idx(cols, k);

		if (!json_object_is_type(c, json_type_string))
			return DOC_BAD;
		t->columns[k] = doc_strdup(c);
		if (t->columns[k] == NULL)
			return DOC_OOM;
		t->n_columns++;
	}
	for (size_t r = 0; r < nr; r++) {
		struct json_object *jr = json_object_array_get_idx(rows, r);
		Capibox__V1__Row *row;

		if (!json_object_is_type(jr, json_type_array) || json_object_array_length(jr) != nc)
			return DOC_BAD;
		row = malloc(sizeof(*row));
		if (row == NULL)
			return DOC_OOM;
		capibox__v1__row__init(row);
		t->rows[t->n_rows++] = row;
		row->values = calloc(nc ? nc : 1, sizeof(*row->values));
		if (row->values == NULL)
			return DOC_OOM;
		for (size_t k = 0; k < nc; k++) {
			rc = doc_value(json_object_array_get_idx(jr, k), &row->values[k]);
			if (rc != DOC_OK)
				return rc;
			row->n_values++;
		}
	}
	return DOC_OK;
}

/* Figures: base64 PNG images, as artifacts "figure-N.png". */
static enum doc_rc doc_figures(struct json_object *figs, Capibox__V1__AnalyzeResponse *r)
{
	size_t n = json_object_array_length(figs);

	r->artifacts = calloc(n ? n : 1, sizeof(*r->artifacts));
	if (r->artifacts == NULL)
		return DOC_OOM;
	for (size_t i = 0; i < n; i++) {
		struct json_object *f = json_object_array_get_idx(figs, i);
		Capibox__V1__Artifact *a;
		char path[32];
		uint8_t *data;
		size_t len;
		int b;

		if (!json_object_is_type(f, json_type_string))
			return DOC_BAD;
		b = b64_decode(json_object_get_string(f), (size_t)json_object_get_string_len(f),
			       &data, &len);
		if (b != 0)
			return b == -2 ? DOC_OOM : DOC_BAD;
		/* the runner's savefig(format="png"); anything else is junk */
		if (len < sizeof(png_signature) ||
		    memcmp(data, png_signature, sizeof(png_signature))) {
			free(data);
			return DOC_BAD;
		}
		a = malloc(sizeof(*a));
		if (a == NULL) {
			free(data);
			return DOC_OOM;
		}
		capibox__v1__artifact__init(a);
		r->artifacts[r->n_artifacts++] = a;
		a->content.data = data;
		a->content.len = len;
		a->size = len;
		snprintf(path, sizeof(path), "figure-%zu.png", i + 1);
		a->path = strdup(path);
		a->mime_type = strdup("image/png");
		if (a->path == NULL || a->mime_type == NULL)
			return DOC_OOM;
	}
	return DOC_OK;
}

/* A member that must be there with one of two types (t2 may be t1). */
static struct json_object *doc_member(struct json_object *doc, const char *key, json_type t1,
				      json_type t2, bool *ok)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(doc, key, &v) ||
	    (!json_object_is_type(v, t1) && !json_object_is_type(v, t2)))
		*ok = false;
	return v;
}

/*
 * Parses the runner's framed document (untrusted: the code ran beside the
 * runner and may have written anything) into r. On DOC_OK, *why holds the
 * message for a failed run ("" when none): the dataset's error or the
 * exception's line.
 */
static enum doc_rc doc_parse(const uint8_t *out, size_t out_len, Capibox__V1__AnalyzeResponse *r,
			     char *why, size_t whylen)
{
	struct json_tokener *tok = NULL;
	struct json_object *doc = NULL, *v, *stdo, *res, *figs, *err, *derr;
	size_t hdr = sizeof(DOC_MAGIC) - 1, body_len;
	unsigned long long len;
	enum doc_rc rc = DOC_BAD;
	char num[24], *end;
	bool ok = true;
	size_t n = 0;
	int b;

	why[0] = '\0';
	if (out_len <= hdr || memcmp(out, DOC_MAGIC, hdr) != 0)
		return DOC_BAD;
	while (hdr + n < out_len && n < sizeof(num) - 1 && out[hdr + n] >= '0' &&
	       out[hdr + n] <= '9') {
		num[n] = (char)out[hdr + n];
		n++;
	}
	num[n] = '\0';
	if (n == 0 || hdr + n >= out_len || out[hdr + n] != '\n')
		return DOC_BAD;
	errno = 0;
	len = strtoull(num, &end, 10);
	body_len = out_len - hdr - n - 1;
	/* exactly one document: nothing before it, nothing after it */
	if (errno != 0 || *end != '\0' || len != body_len || body_len > ANALYZE_CODE_DOC_MAX)
		return DOC_BAD;
	tok = json_tokener_new_ex(DOC_DEPTH);
	if (tok == NULL)
		return DOC_OOM;
	doc = json_tokener_parse_ex(tok, (const char *)out + hdr + n + 1, (int)body_len);
	if (doc == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != body_len ||
	    !json_object_is_type(doc, json_type_object))
		goto out;

	stdo = doc_member(doc, "stdout", json_type_string, json_type_string, &ok);
	v = doc_member(doc, "rows", json_type_int, json_type_null, &ok);
	res = doc_member(doc, "result", json_type_object, json_type_null, &ok);
	figs = doc_member(doc, "figures", json_type_array, json_type_array, &ok);
	err = doc_member(doc, "error", json_type_string, json_type_null, &ok);
	derr = doc_member(doc, "dataset_error", json_type_string, json_type_null, &ok);
	if (!ok)
		goto out;
	if (json_object_is_type(v, json_type_int)) {
		int64_t rows = json_object_get_int64(v);

		if (rows < 0)
			goto out;
		r->rows = (uint64_t)rows;
	}
	b = b64_decode(json_object_get_string(stdo), (size_t)json_object_get_string_len(stdo),
		       &r->stdout.data, &r->stdout.len);
	if (b != 0) {
		rc = b == -2 ? DOC_OOM : DOC_BAD;
		goto out;
	}
	if (json_object_is_type(res, json_type_object)) {
		rc = doc_table(res, &r->result);
		if (rc != DOC_OK)
			goto out;
	}
	rc = doc_figures(figs, r);
	if (rc != DOC_OK)
		goto out;
	if (json_object_is_type(derr, json_type_string))
		convert_utf8_clean(json_object_get_string(derr), why, whylen);
	else if (json_object_is_type(err, json_type_string))
		convert_utf8_clean(json_object_get_string(err), why, whylen);
	rc = DOC_OK;
out:
	json_object_put(doc);
	json_tokener_free(tok);
	return rc;
}

/* Copies s into a fixed message, cut at a character, not inside one. */
static void message_set(char *dst, size_t dstlen, const char *s)
{
	size_t n = strlen(s);

	if (n >= dstlen) {
		n = dstlen - 1;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* analyze_result for code mode: the runner's document and the run's stderr. */
static enum request_rc code_result(const struct analyze_job *job, const struct exec_result *res,
				   const uint8_t *out, size_t out_len,
				   Capibox__V1__AnalyzeResponse **resp, Capibox__V1__Finished *fin,
				   char *fin_msg, size_t fin_len, char *msg, size_t msglen)
{
	Capibox__V1__AnalyzeResponse *r = malloc(sizeof(*r));
	struct exec_result fr = *res;
	char why[sizeof(fr.message)];
	enum doc_rc rc;

	*resp = NULL;
	if (r == NULL)
		goto oom;
	capibox__v1__analyze_response__init(r);
	rc = doc_parse(out, out_len, r, why, sizeof(why));
	if (rc == DOC_OOM)
		goto oom;
	if (rc == DOC_BAD) {
		/* what a half-parsed document left is not to be trusted */
		capibox__v1__analyze_response__free_unpacked(r, NULL);
		r = malloc(sizeof(*r));
		if (r == NULL)
			goto oom;
		capibox__v1__analyze_response__init(r);
		if (res->reason == EXEC_REASON_EXITED && out_len > 0) {
			fr.reason = EXEC_REASON_SANDBOX_ERROR;
			snprintf(fr.message, sizeof(fr.message),
				 "the code mode runner's result is malformed (%zu bytes)", out_len);
		} else if (res->reason == EXEC_REASON_EXITED) {
			/* e.g. os._exit() in the code: the run's status stands */
			snprintf(fr.message, sizeof(fr.message),
				 "no result: the process ended before the runner reported");
		}
		/* a limit or a signal: the run's own reason and message */
	} else if (res->reason == EXEC_REASON_EXITED && res->exit_code != 0 && why[0] != '\0') {
		/* 1: the code raised (the line; the traceback is stderr),
		 * 2: pandas could not read the dataset */
		message_set(fr.message, sizeof(fr.message), why);
	}
	if (job->err_len > 0) {
		r->stderr.data = malloc(job->err_len);
		if (r->stderr.data == NULL)
			goto oom;
		memcpy(r->stderr.data, job->err, job->err_len);
		r->stderr.len = job->err_len;
	}
	convert_finished(&fr, fin, fin_msg, fin_len);
	r->finished = fin;
	*resp = r;
	return REQUEST_OK;
oom:
	if (r != NULL)
		capibox__v1__analyze_response__free_unpacked(r, NULL);
	snprintf(msg, msglen, "out of memory");
	return REQUEST_TOO_LARGE;
}

enum request_rc analyze_result(const struct analyze_job *job, const struct exec_result *res,
			       const uint8_t *out, size_t out_len,
			       Capibox__V1__AnalyzeResponse **resp, Capibox__V1__Finished *fin,
			       char *fin_msg, size_t fin_len, char *msg, size_t msglen)
{
	Capibox__V1__AnalyzeResponse *r = NULL;
	struct exec_result fr = *res;
	const uint8_t *errb = job->err;
	size_t err_len = job->err_len;
	char line[512];

	if (job->code_mode)
		return code_result(job, res, out, out_len, resp, fin, fin_msg, fin_len, msg,
				   msglen);
	*resp = NULL;
	first_line(errb, err_len, line, sizeof(line));
	if (res->reason == EXEC_REASON_EXITED && (res->exit_code == 3 || res->exit_code == 4)) {
		snprintf(msg, msglen, "%s",
			 line[0] ? line : "the request does not fit the dataset");
		return REQUEST_INVALID;
	}
	if (res->reason == EXEC_REASON_EXITED && res->exit_code == 0) {
		/* untrusted bytes: the engine ran where the dataset could attack it */
		r = capibox__v1__analyze_response__unpack(NULL, out_len, out);
		if (r != NULL && (r->stdout.len || r->stderr.len || r->n_artifacts || r->finished ||
				  r->result)) {
			capibox__v1__analyze_response__free_unpacked(r, NULL);
			r = NULL;
		}
		if (r == NULL) {
			fr.reason = EXEC_REASON_SANDBOX_ERROR;
			snprintf(fr.message, sizeof(fr.message),
				 "the statistics engine's result is malformed (%zu bytes)",
				 out_len);
		}
	} else if (res->reason == EXEC_REASON_EXITED) {
		/* 2: the dataset is malformed, and the line says where */
		snprintf(fr.message, sizeof(fr.message), "%.255s",
			 line[0] ? line : "the statistics engine failed");
	}
	if (r == NULL) {
		r = malloc(sizeof(*r));
		if (r == NULL) {
			snprintf(msg, msglen, "out of memory");
			return REQUEST_TOO_LARGE;
		}
		capibox__v1__analyze_response__init(r);
	}
	for (size_t i = 0; i < r->n_columns; i++) {
		utf8_fix(r->columns[i]->name);
		for (size_t k = 0; k < r->columns[i]->n_top; k++)
			utf8_fix(r->columns[i]->top[k]->value);
	}
	table_fix(r->groups);
	convert_finished(&fr, fin, fin_msg, fin_len);
	r->finished = fin;
	*resp = r;
	return REQUEST_OK;
}

void analyze_response_free(Capibox__V1__AnalyzeResponse *resp)
{
	if (resp == NULL)
		return;
	resp->finished = NULL; /* the caller's */
	capibox__v1__analyze_response__free_unpacked(resp, NULL);
}
