#include "analyze.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../log.h"
#include "convert.h"

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
	if (m->n_group_by > 0 && m->n_aggregates == 0) {
		snprintf(err, errlen, "aggregates: group_by needs at least one aggregate");
		return REQUEST_INVALID;
	}
	if (m->code[0] != '\0') {
		snprintf(err, errlen, "code: pandas code mode is not served yet");
		return REQUEST_UNIMPLEMENTED;
	}
	return REQUEST_OK;
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
	if (engine == NULL) {
		snprintf(err, errlen, "the statistics engine (capibox-analyze) is not installed");
		return REQUEST_UNIMPLEMENTED;
	}

	/* limits and files as Execute checks them: a python request stands in
	 * (the engine is no language a client may name) */
	job->files = calloc(m->n_files + 1, sizeof(job->files[0]));
	if (job->files == NULL)
		goto oom;
	for (size_t i = 0; i < m->n_files; i++) {
		job->files[i].path = m->files[i]->path;
		job->files[i].data = m->files[i]->content.data;
		job->files[i].len = m->files[i]->content.len;
		job->files[i].mode = m->files[i]->mode;
	}
	req->language = "python";
	req->code = "#"; /* the real code (the program) comes after the checks */
	req->code_len = 1;
	req->files = job->files;
	req->n_files = m->n_files;
	req->request_id = m->request_id;
	if (m->limits) {
		req->limits.wall_time_ms = m->limits->wall_time_ms;
		req->limits.cpu_time_ms = m->limits->cpu_time_ms;
		req->limits.memory_bytes = m->limits->memory_bytes;
		req->limits.max_processes = m->limits->max_processes;
		req->limits.max_output_bytes = m->limits->max_output_bytes;
		req->limits.max_file_bytes = m->limits->max_file_bytes;
	}
	rc = request_validate_execute(cfg, req, err, errlen);
	if (rc != REQUEST_OK)
		return rc;

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
	if (job->msg)
		capibox__v1__analyze_request__free_unpacked(job->msg, NULL);
	memset(job, 0, sizeof(*job));
}

/* Replaces each byte that is not part of valid UTF-8 with '?', in place. */
static void utf8_fix(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p) {
		size_t n = 0;

		if (*p < 0x80)
			n = 1;
		else if (*p >= 0xc2 && *p <= 0xdf)
			n = 2;
		else if (*p >= 0xe0 && *p <= 0xef)
			n = 3;
		else if (*p >= 0xf0 && *p <= 0xf4)
			n = 4;
		for (size_t i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				n = 0;
		/* overlong, surrogate and beyond-U+10FFFF forms */
		if ((n == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f))) ||
		    (n == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))))
			n = 0;
		if (n == 0) {
			*p++ = '?';
			continue;
		}
		p += n;
	}
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
	memcpy(tmp, b, n);
	tmp[n] = '\0';
	convert_utf8_clean(tmp, out, outlen);
}

enum request_rc analyze_result(const struct exec_result *res, const uint8_t *out, size_t out_len,
			       const uint8_t *errb, size_t err_len,
			       Capibox__V1__AnalyzeResponse **resp, Capibox__V1__Finished *fin,
			       char *fin_msg, size_t fin_len, char *msg, size_t msglen)
{
	Capibox__V1__AnalyzeResponse *r = NULL;
	struct exec_result fr = *res;
	char line[512];

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
