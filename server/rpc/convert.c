/*
 * protobuf-c <-> plain C conversion, and a small protobuf wire walker.
 *
 * Why the walker: protobuf-c unpacks a string field into a NUL-terminated
 * char * and keeps no length, so "print(1)\0rm -rf" arrives as "print(1)"
 * and an env name "A\0B" as "A". Code that silently differs from what the
 * client sent is worse than a clear error, so before unpacking we read the
 * raw bytes of the string fields that reach the sandbox and refuse NULs.
 * The walker is bounded: it only moves forward through the buffer, checks
 * every length against what is left, and descends one level (files, env).
 */
#include "convert.h"
#include "../utf8.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ExecuteRequest field numbers (proto/capibox/v1/sandbox.proto). */
enum {
	F_LANGUAGE = 1,
	F_CODE = 2,
	F_FILES = 3,
	F_ENV = 4,
	F_COLLECT = 7,
	F_SESSION_ID = 8,
	F_REQUEST_ID = 9,
};
/* File.path, and the key and value of a map entry. */
enum { F_FILE_PATH = 1, F_ENTRY_KEY = 1, F_ENTRY_VALUE = 2 };

enum wire_type { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

struct wire {
	const uint8_t *p;
	const uint8_t *end;
};

struct wire_field {
	uint32_t number;
	unsigned type;
	const uint8_t *data; /* WT_LEN only */
	size_t len;
};

static bool wire_varint(struct wire *w, uint64_t *out)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 10; i++) {
		uint8_t b;

		if (w->p == w->end)
			return false;
		b = *w->p++;
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if ((b & 0x80) == 0) {
			*out = v;
			return true;
		}
	}
	return false;
}

/* Reads the next field; false on malformed input (groups included). */
static bool wire_next(struct wire *w, struct wire_field *f)
{
	uint64_t key, len;

	if (!wire_varint(w, &key))
		return false;
	f->number = (uint32_t)(key >> 3);
	f->type = (unsigned)(key & 7);
	if (f->number == 0 || (key >> 3) > 0x1fffffff)
		return false;
	f->data = NULL;
	f->len = 0;
	switch (f->type) {
	case WT_VARINT: return wire_varint(w, &len);
	case WT_I64:
		if (w->end - w->p < 8)
			return false;
		w->p += 8;
		return true;
	case WT_I32:
		if (w->end - w->p < 4)
			return false;
		w->p += 4;
		return true;
	case WT_LEN:
		if (!wire_varint(w, &len) || len > (uint64_t)(w->end - w->p))
			return false;
		f->data = w->p;
		f->len = (size_t)len;
		w->p += len;
		return true;
	default:
		/* Groups are not proto3, and protobuf-c would refuse them too. */
		return false;
	}
}

static bool has_nul(const struct wire_field *f)
{
	return f->type == WT_LEN && memchr(f->data, '\0', f->len) != NULL;
}

/* Shows a map key in a message only when it is short, plain ASCII. */
static bool key_printable(const uint8_t *s, size_t len)
{
	if (len == 0 || len > 64)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
			return false;
	return true;
}

static int scan_file(const struct wire_field *outer, size_t index, char *err, size_t errlen)
{
	struct wire w = {outer->data, outer->data + outer->len};
	struct wire_field f;

	while (w.p < w.end) {
		if (!wire_next(&w, &f))
			goto malformed;
		if (f.number == F_FILE_PATH && has_nul(&f)) {
			snprintf(err, errlen, "files[%zu].path: contains a NUL byte", index);
			return -1;
		}
	}
	return 0;
malformed:
	snprintf(err, errlen, "malformed ExecuteRequest");
	return -1;
}

static int scan_env_entry(const struct wire_field *outer, char *err, size_t errlen)
{
	struct wire w = {outer->data, outer->data + outer->len};
	struct wire_field f, key = {0};
	bool value_nul = false;

	while (w.p < w.end) {
		if (!wire_next(&w, &f))
			goto malformed;
		if (f.number == F_ENTRY_KEY && f.type == WT_LEN) {
			if (has_nul(&f)) {
				snprintf(err, errlen, "env: name contains a NUL byte");
				return -1;
			}
			key = f;
		} else if (f.number == F_ENTRY_VALUE && has_nul(&f)) {
			value_nul = true;
		}
	}
	if (!value_nul)
		return 0;
	/* The key may come after the value on the wire: name it only now. */
	if (key_printable(key.data, key.len))
		snprintf(err, errlen, "env[\"%.*s\"]: value contains a NUL byte", (int)key.len,
			 (const char *)key.data);
	else
		snprintf(err, errlen, "env: a value contains a NUL byte");
	return -1;
malformed:
	snprintf(err, errlen, "malformed ExecuteRequest");
	return -1;
}

int convert_scan_execute(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct wire w = {buf, buf + len};
	struct wire_field f;
	size_t n_files = 0, n_collect = 0;

	if (len == 0)
		return 0;
	while (w.p < w.end) {
		const char *name = NULL;

		if (!wire_next(&w, &f))
			goto malformed;
		if (f.type != WT_LEN)
			continue; /* wrong wire types are left to the unpacker */
		switch (f.number) {
		case F_LANGUAGE: name = "language"; break;
		case F_CODE: name = "code"; break;
		case F_SESSION_ID: name = "session_id"; break;
		case F_REQUEST_ID: name = "request_id"; break;
		case F_FILES:
			if (scan_file(&f, n_files++, err, errlen) < 0)
				return -1;
			break;
		case F_ENV:
			if (scan_env_entry(&f, err, errlen) < 0)
				return -1;
			break;
		case F_COLLECT:
			if (has_nul(&f)) {
				snprintf(err, errlen, "collect[%zu]: contains a NUL byte",
					 n_collect);
				return -1;
			}
			n_collect++;
			break;
		default: break;
		}
		if (name && has_nul(&f)) {
			snprintf(err, errlen, "%s: contains a NUL byte", name);
			return -1;
		}
	}
	return 0;
malformed:
	snprintf(err, errlen, "malformed ExecuteRequest");
	return -1;
}

void convert_limits(const Capibox__V1__Limits *m, struct exec_limits *out)
{
	memset(out, 0, sizeof(*out));
	if (m == NULL)
		return;
	out->wall_time_ms = m->wall_time_ms;
	out->cpu_time_ms = m->cpu_time_ms;
	out->memory_bytes = m->memory_bytes;
	out->max_processes = m->max_processes;
	out->max_output_bytes = m->max_output_bytes;
	out->max_file_bytes = m->max_file_bytes;
}

void convert_file(const Capibox__V1__File *m, struct exec_file *out)
{
	out->path = m->path;
	out->data = m->content.data;
	out->len = m->content.len;
	out->mode = m->mode;
}

/*
 * Clears out and fills its request's files (converted) and room for n_env
 * environment entries, which the caller fills: ExecuteRequest and
 * CreateSessionRequest carry both, their env entries as two generated
 * types. Returns 0, or -1 out of memory (out freed).
 */
static int convert_files_env(struct convert_exec *out, Capibox__V1__File *const *files,
			     size_t n_files, size_t n_env)
{
	memset(out, 0, sizeof(*out));
	if (n_files) {
		out->files = calloc(n_files, sizeof(out->files[0]));
		if (out->files == NULL)
			goto fail;
	}
	if (n_env) {
		out->env = calloc(n_env, sizeof(out->env[0]));
		if (out->env == NULL)
			goto fail;
	}
	for (size_t i = 0; i < n_files; i++)
		convert_file(files[i], &out->files[i]);
	out->req.files = out->files;
	out->req.n_files = n_files;
	out->req.env = out->env;
	out->req.n_env = n_env;
	return 0;
fail:
	convert_exec_free(out);
	return -1;
}

int convert_execute_request(const Capibox__V1__ExecuteRequest *m, struct convert_exec *out)
{
	struct exec_request *req = &out->req;

	if (convert_files_env(out, m->files, m->n_files, m->n_env) < 0)
		return -1;
	for (size_t i = 0; i < m->n_env; i++) {
		out->env[i].name = m->env[i]->key;
		out->env[i].value = m->env[i]->value;
	}
	req->language = m->language;
	req->code = m->code;
	req->code_len = strlen(m->code); /* no NULs: convert_scan_execute ran first */
	req->stdin_data = m->stdin.data;
	req->stdin_len = m->stdin.len;
	convert_limits(m->limits, &req->limits);
	if (m->limits) {
		req->wall_set = m->limits->wall_time_ms != 0;
		req->cpu_set = m->limits->cpu_time_ms != 0;
		req->output_set = m->limits->max_output_bytes != 0;
	}
	req->collect = (const char *const *)m->collect;
	req->n_collect = m->n_collect;
	req->session_id = m->session_id;
	req->request_id = m->request_id;
	return 0;
}

int convert_scan_create_session(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	/* CreateSessionRequest: 1 language, 4 env, 5 files */
	struct wire w = {buf, buf + len};
	struct wire_field f;
	size_t n_files = 0;

	while (w.p < w.end) {
		if (!wire_next(&w, &f)) {
			snprintf(err, errlen, "malformed CreateSessionRequest");
			return -1;
		}
		if (f.type != WT_LEN)
			continue;
		if (f.number == 1 && has_nul(&f)) {
			snprintf(err, errlen, "language: contains a NUL byte");
			return -1;
		}
		if (f.number == 4 && scan_env_entry(&f, err, errlen) < 0)
			return -1;
		if (f.number == 5 && scan_file(&f, n_files++, err, errlen) < 0)
			return -1;
	}
	return 0;
}

int convert_create_session_request(const Capibox__V1__CreateSessionRequest *m,
				   struct convert_exec *out)
{
	struct exec_request *req = &out->req;

	if (convert_files_env(out, m->files, m->n_files, m->n_env) < 0)
		return -1;
	for (size_t i = 0; i < m->n_env; i++) {
		out->env[i].name = m->env[i]->key;
		out->env[i].value = m->env[i]->value;
	}
	req->language = m->language;
	req->code = "#"; /* a session has no code of its own; validation wants some */
	req->code_len = 1;
	convert_limits(m->limits, &req->limits);
	return 0;
}

enum request_rc convert_decode_execute(const struct config *cfg, const uint8_t *buf, size_t len,
				       struct convert_exec *out, char *err, size_t errlen)
{
	Capibox__V1__ExecuteRequest *m;

	memset(out, 0, sizeof(*out));
	if (convert_scan_execute(buf, len, err, errlen) < 0)
		return REQUEST_INVALID;
	m = capibox__v1__execute_request__unpack(NULL, len, buf);
	if (m == NULL) {
		snprintf(err, errlen, "malformed ExecuteRequest");
		return REQUEST_INVALID;
	}
	if (convert_execute_request(m, out) < 0) {
		capibox__v1__execute_request__free_unpacked(m, NULL);
		snprintf(err, errlen, "out of memory");
		return REQUEST_TOO_LARGE;
	}
	out->msg = m; /* after convert_execute_request, which clears out */
	return request_validate_execute(cfg, &out->req, err, errlen);
}

void convert_exec_free(struct convert_exec *cx)
{
	free(cx->files);
	free(cx->env);
	if (cx->msg)
		capibox__v1__execute_request__free_unpacked(cx->msg, NULL);
	cx->files = NULL;
	cx->env = NULL;
	cx->msg = NULL;
}

void convert_started(const struct exec_started *st, const char *backend, Capibox__V1__Started *out)
{
	capibox__v1__started__init(out);
	out->sandbox_id = (char *)(st->sandbox_id ? st->sandbox_id : "");
	out->language = (char *)(st->language ? st->language : "");
	out->queued_us = st->queued_us;
	out->start_us = st->start_us;
	out->backend = (char *)(st->backend && st->backend[0] ? st->backend : backend);
	out->warm = st->warm;
}

void convert_finished(const struct exec_result *res, Capibox__V1__Finished *out, char *buf,
		      size_t buflen)
{
	capibox__v1__finished__init(out);
	/* exec_reason values are capibox.v1.Reason values by construction. */
	out->reason = (Capibox__V1__Reason)res->reason;
	out->exit_code = res->exit_code;
	out->signal = res->signal;
	out->wall_time_us = res->wall_time_us;
	out->cpu_time_us = res->cpu_time_us;
	out->peak_memory_bytes = res->peak_memory_bytes;
	out->stdout_bytes = res->stdout_bytes;
	out->stderr_bytes = res->stderr_bytes;
	if (res->message[0] != '\0') {
		char msg[sizeof(res->message) + 1];

		/* message is a fixed array: do not trust it to be terminated. */
		memcpy(msg, res->message, sizeof(res->message));
		msg[sizeof(res->message)] = '\0';
		out->message = convert_utf8_clean(msg, buf, buflen);
	}
}

char *convert_utf8_clean(const char *s, char *buf, size_t buflen)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;

	if (buflen == 0)
		return (char *)"";
	/* A string field that is not UTF-8 makes other languages' decoders
	 * reject the whole message; replace rather than pass it on. The NUL
	 * terminator stops utf8_seq_len_str from reading past the string. */
	while (*p && o + 1 < buflen) {
		size_t n = utf8_seq_len_str((const char *)p);

		if (n == 0 || (n == 1 && *p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f) {
			buf[o++] = '?';
			p++;
			continue;
		}
		if (o + n >= buflen)
			break;
		memcpy(buf + o, p, n);
		o += n;
		p += n;
	}
	buf[o] = '\0';
	return buf;
}

char *convert_utf8_dup(const char *s)
{
	/* The value's own text: every valid character is kept (a repr may
	 * hold any); only what is not UTF-8 becomes '?'. */
	char *buf = strdup(s);

	if (buf != NULL)
		utf8_fix(buf);
	return buf;
}
