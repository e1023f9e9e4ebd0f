/*
 * libcapibox: a synchronous client for capiboxd over gRPC C core.
 *
 * Theory of operation. One client is one grpc_channel with the methods
 * it uses registered once (registered calls skip the per-call method-path
 * lookup). Every call gets its own pluck completion queue, so calls on one
 * client from several threads never see each other's events and need no
 * lock; the only shared mutable state is the list of calls in flight, kept
 * so that capibox_cancel_all() can reach them from another thread.
 *
 * protobuf-c and gRPC types stay in this file: callers see the plain structs
 * of capibox.h.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "capibox.h"
#include "capibox/v1/sandbox.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

/* As the server's default receive limit: a 64 MiB dataset (the server's
 * default maximum) and its request fit in one message. */
#define DEFAULT_MAX_MESSAGE (96u << 20)

/* A call in flight, linked into its client while it may be cancelled. */
struct live_call {
	grpc_call *call;
	struct live_call *prev, *next;
};

struct capibox_client {
	grpc_channel *channel;
	void *m_execute;
	void *m_analyze;
	void *m_health;
	void *m_check;
	void *m_create_session, *m_close_session, *m_list_sessions;
	uint32_t md_flags;     /* initial-metadata flags of every call */
	grpc_metadata auth_md; /* "authorization: Bearer ..." when has_auth */
	bool has_auth;
	pthread_mutex_t lock; /* protects live and cancelled */
	struct live_call *live;
	bool cancelled;
};

/* Tags of the batches of one call; each call has its own queue. */
enum {
	TAG_START = 1,
	TAG_STATUS,
	TAG_MESSAGE,
	TAG_UNARY,
};

#define TAG(t) ((void *)(intptr_t)(t))

const char *capibox_code_name(int code)
{
	static const char *const names[] = {
		"OK",
		"CANCELLED",
		"UNKNOWN",
		"INVALID_ARGUMENT",
		"DEADLINE_EXCEEDED",
		"NOT_FOUND",
		"ALREADY_EXISTS",
		"PERMISSION_DENIED",
		"RESOURCE_EXHAUSTED",
		"FAILED_PRECONDITION",
		"ABORTED",
		"OUT_OF_RANGE",
		"UNIMPLEMENTED",
		"INTERNAL",
		"UNAVAILABLE",
		"DATA_LOSS",
		"UNAUTHENTICATED",
	};

	if (code < 0 || (size_t)code >= sizeof(names) / sizeof(names[0]))
		return "UNKNOWN";
	return names[code];
}

const char *capibox_reason_name(int reason)
{
	static const char *const names[] = {
		"unspecified",	"exited",	"signaled",  "wall_timeout",  "cpu_timeout",
		"memory_limit", "output_limit", "cancelled", "sandbox_error",
	};

	if (reason < 0 || (size_t)reason >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[reason];
}

const char *capibox_serving_status_name(int status)
{
	switch (status) {
	case CAPIBOX__V1__SERVING_STATUS__SERVING_STATUS_SERVING: return "serving";
	case CAPIBOX__V1__SERVING_STATUS__SERVING_STATUS_DEGRADED: return "degraded";
	case CAPIBOX__V1__SERVING_STATUS__SERVING_STATUS_NOT_SERVING: return "not_serving";
	default: return "unspecified";
	}
}

/* Sets st to code and a formatted message; returns code. */
__attribute__((format(printf, 3, 4))) static int status_set(struct capibox_status *st, int code,
							    const char *fmt, ...)
{
	va_list ap;

	st->code = code;
	va_start(ap, fmt);
	vsnprintf(st->message, sizeof(st->message), fmt, ap);
	va_end(ap);
	return code;
}

/* Copies a status-details slice (not NUL-terminated) into st. */
static void status_set_slice(struct capibox_status *st, grpc_status_code code, grpc_slice details)
{
	size_t n = GRPC_SLICE_LENGTH(details);

	if (n >= sizeof(st->message))
		n = sizeof(st->message) - 1;
	st->code = (int)code;
	memcpy(st->message, GRPC_SLICE_START_PTR(details), n);
	st->message[n] = '\0';
}

/*
 * The token goes into every call's initial metadata ourselves: insecure
 * channels refuse call credentials, and a token over loopback or a unix
 * socket is a supported setup.
 */
static void client_md(const struct capibox_client *c, grpc_op *op)
{
	if (c->has_auth) {
		op->data.send_initial_metadata.count = 1;
		op->data.send_initial_metadata.metadata = (grpc_metadata *)&c->auth_md;
	}
}

/* Reads a PEM file into a NUL-terminated malloc'd string; NULL with err. */
static char *pem_read(const char *what, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0, n;

	if (f == NULL) {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	for (;;) {
		char *nb = realloc(buf, len + 4096 + 1);

		if (nb == NULL) {
			snprintf(err, errlen, "%s %s: out of memory", what, path);
			goto fail;
		}
		buf = nb;
		n = fread(buf + len, 1, 4096, f);
		len += n;
		if (n < 4096)
			break;
		if (len > (1u << 20)) {
			snprintf(err, errlen, "%s %s: larger than 1 MiB", what, path);
			goto fail;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s %s: read error", what, path);
		goto fail;
	}
	fclose(f);
	buf[len] = '\0';
	if (strstr(buf, "-----BEGIN ") == NULL) {
		snprintf(err, errlen, "%s %s: not a PEM file", what, path);
		free(buf);
		return NULL;
	}
	return buf;
fail:
	fclose(f);
	free(buf);
	return NULL;
}

/* TLS or plaintext credentials from opts; NULL with err. */
static grpc_channel_credentials *client_creds(const struct capibox_connect_opts *opts, char *err,
					      size_t errlen)
{
	grpc_channel_credentials *creds = NULL;
	grpc_ssl_pem_key_cert_pair pair = {0};
	char *ca = NULL, *cert = NULL, *key = NULL;

	if (opts == NULL || (!opts->tls && !opts->ca_file && !opts->cert_file && !opts->key_file))
		return grpc_insecure_credentials_create();
	if ((opts->cert_file == NULL) != (opts->key_file == NULL)) {
		snprintf(err, errlen, "a client certificate needs both --cert and --key");
		return NULL;
	}
	if (opts->ca_file && (ca = pem_read("CA file", opts->ca_file, err, errlen)) == NULL)
		goto out;
	if (opts->cert_file) {
		cert = pem_read("certificate", opts->cert_file, err, errlen);
		if (cert == NULL)
			goto out;
		key = pem_read("key", opts->key_file, err, errlen);
		if (key == NULL)
			goto out;
		pair.cert_chain = cert;
		pair.private_key = key;
	}
	creds = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
	if (creds == NULL)
		snprintf(err, errlen, "cannot create TLS credentials");
out:
	free(ca);
	free(cert);
	if (key) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	return creds;
}

struct capibox_client *capibox_connect(const char *target, const struct capibox_connect_opts *opts,
				       char *err, size_t errlen)
{
	struct capibox_client *c = NULL;
	grpc_channel_credentials *creds;
	size_t max = DEFAULT_MAX_MESSAGE;
	grpc_arg args[3];
	grpc_channel_args chargs;

	if (target == NULL || *target == '\0') {
		snprintf(err, errlen, "no target address");
		return NULL;
	}
	if (opts != NULL && opts->max_message_bytes != 0)
		max = opts->max_message_bytes;
	if (max > INT_MAX)
		max = INT_MAX; /* channel arguments are ints */

	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (pthread_mutex_init(&c->lock, NULL) != 0) {
		snprintf(err, errlen, "pthread_mutex_init failed");
		free(c);
		return NULL;
	}
	if (opts != NULL && opts->wait_for_ready)
		c->md_flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY |
			      GRPC_INITIAL_METADATA_WAIT_FOR_READY_EXPLICITLY_SET;

	grpc_init();
	/*
	 * The 4 MiB default receive limit is too small for artifacts and
	 * datasets; send likewise, so a too-large request fails here with a
	 * clear RESOURCE_EXHAUSTED instead of at the server.
	 */
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[0].value.integer = (int)max;
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
	args[1].value.integer = (int)max;
	chargs.num_args = 2;
	chargs.args = args;
	if (opts != NULL && opts->server_name != NULL) {
		args[2].type = GRPC_ARG_STRING;
		args[2].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
		args[2].value.string = (char *)opts->server_name;
		chargs.num_args = 3;
	}
	if (opts != NULL && opts->token != NULL && opts->token[0] != '\0') {
		size_t tl = strlen(opts->token);
		char *v = malloc(tl + sizeof("Bearer "));

		if (v == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		memcpy(v, "Bearer ", 7);
		memcpy(v + 7, opts->token, tl + 1);
		c->auth_md.key = grpc_slice_from_static_string("authorization");
		c->auth_md.value = grpc_slice_from_copied_buffer(v, tl + 7);
		explicit_bzero(v, tl + 7);
		free(v);
		c->has_auth = true;
	}

	creds = client_creds(opts, err, errlen);
	if (creds == NULL)
		goto fail;
	c->channel = grpc_channel_create(target, creds, &chargs);
	grpc_channel_credentials_release(creds);
	if (c->channel == NULL) {
		snprintf(err, errlen, "cannot create a channel to %s", target);
		goto fail;
	}
	c->m_execute = grpc_channel_register_call(c->channel, "/capibox.v1.SandboxService/Execute",
						  NULL, NULL);
	c->m_analyze = grpc_channel_register_call(c->channel, "/capibox.v1.SandboxService/Analyze",
						  NULL, NULL);
	c->m_health = grpc_channel_register_call(c->channel, "/capibox.v1.SandboxService/Health",
						 NULL, NULL);
	c->m_check =
		grpc_channel_register_call(c->channel, "/grpc.health.v1.Health/Check", NULL, NULL);
	c->m_create_session = grpc_channel_register_call(
		c->channel, "/capibox.v1.SandboxService/CreateSession", NULL, NULL);
	c->m_close_session = grpc_channel_register_call(
		c->channel, "/capibox.v1.SandboxService/CloseSession", NULL, NULL);
	c->m_list_sessions = grpc_channel_register_call(
		c->channel, "/capibox.v1.SandboxService/ListSessions", NULL, NULL);
	return c;
fail:
	if (c->has_auth)
		grpc_slice_unref(c->auth_md.value);
	pthread_mutex_destroy(&c->lock);
	free(c);
	grpc_shutdown();
	return NULL;
}

void capibox_close(struct capibox_client *c)
{
	if (c == NULL)
		return;
	grpc_channel_destroy(c->channel);
	if (c->has_auth)
		grpc_slice_unref(c->auth_md.value);
	pthread_mutex_destroy(&c->lock);
	free(c);
	grpc_shutdown();
}

void capibox_cancel_all(struct capibox_client *c)
{
	struct live_call *lc;

	pthread_mutex_lock(&c->lock);
	c->cancelled = true;
	/* grpc_call_cancel is thread-safe; the calls stay referenced until
	 * call_untrack, which takes this lock first. */
	for (lc = c->live; lc != NULL; lc = lc->next)
		grpc_call_cancel(lc->call, NULL);
	pthread_mutex_unlock(&c->lock);
}

/* Links lc into c's live list; false when c was cancelled (do not start). */
static bool call_track(struct capibox_client *c, struct live_call *lc)
{
	bool ok;

	pthread_mutex_lock(&c->lock);
	ok = !c->cancelled;
	if (ok) {
		lc->prev = NULL;
		lc->next = c->live;
		if (c->live != NULL)
			c->live->prev = lc;
		c->live = lc;
	}
	pthread_mutex_unlock(&c->lock);
	return ok;
}

static void call_untrack(struct capibox_client *c, struct live_call *lc)
{
	pthread_mutex_lock(&c->lock);
	if (lc->prev != NULL)
		lc->prev->next = lc->next;
	else
		c->live = lc->next;
	if (lc->next != NULL)
		lc->next->prev = lc->prev;
	pthread_mutex_unlock(&c->lock);
}

static bool client_cancelled(struct capibox_client *c)
{
	bool v;

	pthread_mutex_lock(&c->lock);
	v = c->cancelled;
	pthread_mutex_unlock(&c->lock);
	return v;
}

static gpr_timespec deadline_from_ms(int64_t ms)
{
	if (ms <= 0)
		return gpr_inf_future(GPR_CLOCK_MONOTONIC);
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* Serialises m into a new byte buffer; the caller destroys it. */
static grpc_byte_buffer *message_encode(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(len);
	grpc_byte_buffer *bb;

	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

/* Parses bb as a d message; NULL when it does not decode. Caller frees. */
static ProtobufCMessage *message_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d)
{
	grpc_byte_buffer_reader r;
	ProtobufCMessage *m;
	grpc_slice s;

	if (!grpc_byte_buffer_reader_init(&r, bb))
		return NULL;
	s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	return m;
}

/* Waits for tag on the call's own queue. The call deadline bounds it. */
static bool cq_wait(grpc_completion_queue *cq, intptr_t tag)
{
	grpc_event ev =
		grpc_completion_queue_pluck(cq, TAG(tag), gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static void cq_destroy(grpc_completion_queue *cq)
{
	/* Every batch has been plucked by now, so nothing is left to drain. */
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
}

/*
 * The request as protobuf-c structs pointing into the caller's data. Only the
 * arrays of pointers and the NUL-terminated copy of code are allocated.
 */

/* The request's limits as a message (m is initialised here). */
static void limits_to_msg(const struct capibox_limits *l, Capibox__V1__Limits *m)
{
	capibox__v1__limits__init(m);
	m->wall_time_ms = l->wall_time_ms;
	m->cpu_time_ms = l->cpu_time_ms;
	m->memory_bytes = l->memory_bytes;
	m->max_processes = l->max_processes;
	m->max_output_bytes = l->max_output_bytes;
	m->max_file_bytes = l->max_file_bytes;
}

/*
 * The request's files as messages: *files and *ptrs (the caller frees both,
 * also after a failure) borrow the paths and bytes. Returns 0, or the status.
 */
static int files_to_msg(const struct capibox_file *f, size_t n, Capibox__V1__File **files,
			Capibox__V1__File ***ptrs, struct capibox_status *st)
{
	if (n == 0)
		return 0;
	if (f == NULL)
		return status_set(st, CAPIBOX_INVALID_ARGUMENT, "files: NULL array");
	*files = calloc(n, sizeof(**files));
	*ptrs = calloc(n, sizeof(**ptrs));
	if (*files == NULL || *ptrs == NULL)
		return status_set(st, CAPIBOX_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (f[i].path == NULL || (f[i].data == NULL && f[i].len != 0))
			return status_set(st, CAPIBOX_INVALID_ARGUMENT,
					  "files[%zu]: missing path or data", i);
		capibox__v1__file__init(&(*files)[i]);
		(*files)[i].path = (char *)f[i].path;
		(*files)[i].content.data = (uint8_t *)f[i].data;
		(*files)[i].content.len = f[i].len;
		(*files)[i].mode = f[i].mode;
		(*ptrs)[i] = &(*files)[i];
	}
	return 0;
}

struct exec_msg {
	Capibox__V1__ExecuteRequest req;
	Capibox__V1__Limits limits;
	Capibox__V1__File *files;
	Capibox__V1__File **file_ptrs;
	Capibox__V1__ExecuteRequest__EnvEntry *env;
	Capibox__V1__ExecuteRequest__EnvEntry **env_ptrs;
	char *code;
};

static void exec_msg_free(struct exec_msg *m)
{
	free(m->files);
	free(m->file_ptrs);
	free(m->env);
	free(m->env_ptrs);
	free(m->code);
}

/* Fills m from r; returns 0 or a status code with st set. */
static int exec_msg_build(struct exec_msg *m, const struct capibox_exec_request *r,
			  struct capibox_status *st)
{
	size_t i, code_len;

	memset(m, 0, sizeof(*m));
	capibox__v1__execute_request__init(&m->req);

	if (r->language == NULL || r->code == NULL)
		return status_set(st, CAPIBOX_INVALID_ARGUMENT, "language and code are required");
	code_len = r->code_len != 0 ? r->code_len : strlen(r->code);
	/* protobuf-c packs strings up to their NUL: an inner NUL would cut the code silently. */
	if (memchr(r->code, '\0', code_len) != NULL)
		return status_set(st, CAPIBOX_INVALID_ARGUMENT, "code: contains a NUL byte");
	m->code = malloc(code_len + 1);
	if (m->code == NULL)
		return status_set(st, CAPIBOX_RESOURCE_EXHAUSTED, "out of memory");
	memcpy(m->code, r->code, code_len);
	m->code[code_len] = '\0';

	m->req.language = (char *)r->language;
	m->req.code = m->code;
	if (r->request_id != NULL)
		m->req.request_id = (char *)r->request_id;
	if (r->session_id != NULL)
		m->req.session_id = (char *)r->session_id;
	m->req.stdin.data = (uint8_t *)r->stdin_data;
	m->req.stdin.len = r->stdin_data != NULL ? r->stdin_len : 0;

	limits_to_msg(&r->limits, &m->limits);
	m->req.limits = &m->limits;

	if (files_to_msg(r->files, r->n_files, &m->files, &m->file_ptrs, st) != 0)
		return st->code; /* files_to_msg set it */
	m->req.n_files = r->n_files;
	m->req.files = m->file_ptrs;
	if (r->n_env > 0) {
		m->env = calloc(r->n_env, sizeof(*m->env));
		m->env_ptrs = calloc(r->n_env, sizeof(*m->env_ptrs));
		if (m->env == NULL || m->env_ptrs == NULL)
			return status_set(st, CAPIBOX_RESOURCE_EXHAUSTED, "out of memory");
		for (i = 0; i < r->n_env; i++) {
			if (r->env[i].name == NULL || r->env[i].value == NULL)
				return status_set(st, CAPIBOX_INVALID_ARGUMENT,
						  "env[%zu]: missing name or value", i);
			capibox__v1__execute_request__env_entry__init(&m->env[i]);
			m->env[i].key = (char *)r->env[i].name;
			m->env[i].value = (char *)r->env[i].value;
			m->env_ptrs[i] = &m->env[i];
		}
		m->req.n_env = r->n_env;
		m->req.env = m->env_ptrs;
	}
	if (r->n_collect > 0) {
		for (i = 0; i < r->n_collect; i++)
			if (r->collect[i] == NULL)
				return status_set(st, CAPIBOX_INVALID_ARGUMENT,
						  "collect[%zu]: NULL", i);
		m->req.n_collect = r->n_collect;
		m->req.collect = (char **)r->collect;
	}
	return 0;
}

/* Translates one decoded response into the plain event; false if it has no known event. */
static bool event_from_msg(const Capibox__V1__ExecuteResponse *m, struct capibox_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	switch (m->event_case) {
	case CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_STARTED:
		ev->kind = CAPIBOX_EVENT_STARTED;
		ev->u.started.sandbox_id = m->started->sandbox_id;
		ev->u.started.language = m->started->language;
		ev->u.started.queued_us = m->started->queued_us;
		ev->u.started.start_us = m->started->start_us;
		ev->u.started.backend = m->started->backend;
		ev->u.started.warm = m->started->warm;
		return true;
	case CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_STDOUT:
	case CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_STDERR: {
		const Capibox__V1__Output *o =
			m->event_case == CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_STDOUT ? m->stdout :
										       m->stderr;

		ev->kind = m->event_case == CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_STDOUT ?
				   CAPIBOX_EVENT_STDOUT :
				   CAPIBOX_EVENT_STDERR;
		ev->u.output.data = o->data.data;
		ev->u.output.len = o->data.len;
		return true;
	}
	case CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_ARTIFACT:
		ev->kind = CAPIBOX_EVENT_ARTIFACT;
		ev->u.artifact.path = m->artifact->path;
		ev->u.artifact.mime_type = m->artifact->mime_type;
		ev->u.artifact.content = m->artifact->content.data;
		ev->u.artifact.len = m->artifact->content.len;
		ev->u.artifact.size = m->artifact->size;
		ev->u.artifact.truncated = m->artifact->truncated;
		ev->u.artifact.offset = m->artifact->offset;
		ev->u.artifact.eof = m->artifact->eof;
		return true;
	case CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_RESULT:
		ev->kind = CAPIBOX_EVENT_RESULT;
		ev->u.result.text = m->result->text;
		ev->u.result.json = m->result->json;
		ev->u.result.mime_type = m->result->mime_type;
		return true;
	case CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_FINISHED:
		ev->kind = CAPIBOX_EVENT_FINISHED;
		ev->u.finished.reason = (int)m->finished->reason;
		ev->u.finished.exit_code = m->finished->exit_code;
		ev->u.finished.signal = m->finished->signal;
		ev->u.finished.wall_time_us = m->finished->wall_time_us;
		ev->u.finished.cpu_time_us = m->finished->cpu_time_us;
		ev->u.finished.peak_memory_bytes = m->finished->peak_memory_bytes;
		ev->u.finished.message = m->finished->message;
		ev->u.finished.stdout_bytes = m->finished->stdout_bytes;
		ev->u.finished.stderr_bytes = m->finished->stderr_bytes;
		return true;
	default:
		/* An event added to the proto after this library: skip it. */
		return false;
	}
}

int capibox_execute(struct capibox_client *c, const struct capibox_exec_request *req,
		    capibox_event_cb cb, void *arg, struct capibox_status *st)
{
	struct capibox_status local_st;
	struct exec_msg msg;
	struct live_call lc = {0};
	grpc_completion_queue *cq = NULL;
	grpc_call *call = NULL;
	grpc_byte_buffer *send_bb = NULL, *recv_bb = NULL;
	grpc_metadata_array initial_md, trailing_md;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	const char *error_string = NULL;
	grpc_op ops[4];
	bool tracked = false, status_pending = false;
	int local_code = 0; /* set when we ended the call ourselves */
	const char *local_msg = NULL;

	if (st == NULL)
		st = &local_st;
	status_set(st, CAPIBOX_OK, "%s", "");
	grpc_metadata_array_init(&initial_md);
	grpc_metadata_array_init(&trailing_md);
	memset(&msg, 0, sizeof(msg));
	if (c == NULL || req == NULL || cb == NULL) {
		status_set(st, CAPIBOX_INVALID_ARGUMENT, "capibox_execute: NULL argument");
		goto out;
	}
	if (exec_msg_build(&msg, req, st) != 0)
		goto out;
	send_bb = message_encode(&msg.req.base);

	cq = grpc_completion_queue_create_for_pluck(NULL);
	call = grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
						   c->m_execute, deadline_from_ms(req->deadline_ms),
						   NULL);
	lc.call = call;
	if (!call_track(c, &lc)) {
		status_set(st, CAPIBOX_CANCELLED, "cancelled");
		goto out;
	}
	tracked = true;

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].flags = c->md_flags;
	client_md(c, &ops[0]);
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send_bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
	if (grpc_call_start_batch(call, ops, 4, TAG(TAG_START), NULL) != GRPC_CALL_OK) {
		status_set(st, CAPIBOX_INTERNAL, "grpc_call_start_batch failed");
		goto out;
	}

	/* Posted early so a cancel or deadline ends the call while we wait. */
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &trailing_md;
	ops[0].data.recv_status_on_client.status = &status;
	ops[0].data.recv_status_on_client.status_details = &details;
	ops[0].data.recv_status_on_client.error_string = &error_string;
	if (grpc_call_start_batch(call, ops, 1, TAG(TAG_STATUS), NULL) != GRPC_CALL_OK) {
		/* The start batch is in flight: end it and collect it. */
		grpc_call_cancel(call, NULL);
		cq_wait(cq, TAG_START);
		status_set(st, CAPIBOX_INTERNAL, "grpc_call_start_batch failed");
		goto out;
	}
	status_pending = true;

	/* A failed start batch means the call is already over; the status says why. */
	if (cq_wait(cq, TAG_START)) {
		for (;;) {
			Capibox__V1__ExecuteResponse *resp;
			struct capibox_event ev;
			int stop;

			memset(ops, 0, sizeof(ops));
			ops[0].op = GRPC_OP_RECV_MESSAGE;
			ops[0].data.recv_message.recv_message = &recv_bb;
			recv_bb = NULL;
			if (grpc_call_start_batch(call, ops, 1, TAG(TAG_MESSAGE), NULL) !=
			    GRPC_CALL_OK) {
				grpc_call_cancel(call, NULL);
				local_code = CAPIBOX_INTERNAL;
				local_msg = "grpc_call_start_batch failed";
				break;
			}
			if (!cq_wait(cq, TAG_MESSAGE) || recv_bb == NULL)
				break; /* end of stream, or the call failed */
			resp = (Capibox__V1__ExecuteResponse *)message_decode(
				recv_bb, &capibox__v1__execute_response__descriptor);
			grpc_byte_buffer_destroy(recv_bb);
			recv_bb = NULL;
			if (resp == NULL) {
				/* Tell the server too, so it stops the sandbox. */
				grpc_call_cancel_with_status(call, GRPC_STATUS_INTERNAL,
							     "malformed ExecuteResponse", NULL);
				local_code = CAPIBOX_INTERNAL;
				local_msg = "malformed ExecuteResponse";
				break;
			}
			stop = event_from_msg(resp, &ev) ? cb(&ev, arg) : 0;
			capibox__v1__execute_response__free_unpacked(resp, NULL);
			if (stop) {
				grpc_call_cancel(call, NULL);
				local_code = CAPIBOX_CANCELLED;
				local_msg = "cancelled by the callback";
				break;
			}
		}
	}

	cq_wait(cq, TAG_STATUS);
	status_pending = false;
	if (local_code != 0)
		status_set(st, local_code, "%s", local_msg);
	else if (status == GRPC_STATUS_CANCELLED && client_cancelled(c))
		status_set(st, CAPIBOX_CANCELLED, "cancelled");
	else
		status_set_slice(st, status, details);

out:
	if (status_pending)
		cq_wait(cq, TAG_STATUS);
	if (tracked)
		call_untrack(c, &lc);
	if (call != NULL)
		grpc_call_unref(call);
	if (cq != NULL)
		cq_destroy(cq);
	if (send_bb != NULL)
		grpc_byte_buffer_destroy(send_bb);
	if (recv_bb != NULL)
		grpc_byte_buffer_destroy(recv_bb);
	grpc_metadata_array_destroy(&initial_md);
	grpc_metadata_array_destroy(&trailing_md);
	grpc_slice_unref(details);
	gpr_free((void *)error_string);
	exec_msg_free(&msg);
	return st->code;
}

/*
 * One unary call: sends req, decodes the answer as resp_desc into *resp
 * (caller frees) when the status is OK. Returns the status code, st set.
 */
static int unary_call(struct capibox_client *c, void *method, int64_t deadline_ms,
		      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
		      ProtobufCMessage **resp, struct capibox_status *st)
{
	struct live_call lc = {0};
	grpc_completion_queue *cq = NULL;
	grpc_call *call = NULL;
	grpc_byte_buffer *send_bb = NULL, *recv_bb = NULL;
	grpc_metadata_array initial_md, trailing_md;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	const char *error_string = NULL;
	bool tracked = false;
	grpc_op ops[6];

	*resp = NULL;
	grpc_metadata_array_init(&initial_md);
	grpc_metadata_array_init(&trailing_md);
	send_bb = message_encode(req);
	cq = grpc_completion_queue_create_for_pluck(NULL);
	call = grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
						   method, deadline_from_ms(deadline_ms), NULL);
	lc.call = call;
	if (!call_track(c, &lc)) {
		status_set(st, CAPIBOX_CANCELLED, "cancelled");
		goto out;
	}
	tracked = true;

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].flags = c->md_flags;
	client_md(c, &ops[0]);
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send_bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &recv_bb;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
	ops[5].data.recv_status_on_client.status = &status;
	ops[5].data.recv_status_on_client.status_details = &details;
	ops[5].data.recv_status_on_client.error_string = &error_string;
	if (grpc_call_start_batch(call, ops, 6, TAG(TAG_UNARY), NULL) != GRPC_CALL_OK) {
		status_set(st, CAPIBOX_INTERNAL, "grpc_call_start_batch failed");
		goto out;
	}
	/* The batch holds RECV_STATUS, so it completes even when the call fails. */
	cq_wait(cq, TAG_UNARY);

	if (status == GRPC_STATUS_CANCELLED && client_cancelled(c)) {
		status_set(st, CAPIBOX_CANCELLED, "cancelled");
	} else if (status != GRPC_STATUS_OK) {
		status_set_slice(st, status, details);
	} else if (recv_bb == NULL) {
		status_set(st, CAPIBOX_INTERNAL, "no %s in the reply", resp_desc->short_name);
	} else {
		*resp = message_decode(recv_bb, resp_desc);
		if (*resp == NULL)
			status_set(st, CAPIBOX_INTERNAL, "malformed %s", resp_desc->short_name);
		else
			status_set(st, CAPIBOX_OK, "%s", "");
	}

out:
	if (tracked)
		call_untrack(c, &lc);
	if (call != NULL)
		grpc_call_unref(call);
	if (cq != NULL)
		cq_destroy(cq);
	if (send_bb != NULL)
		grpc_byte_buffer_destroy(send_bb);
	if (recv_bb != NULL)
		grpc_byte_buffer_destroy(recv_bb);
	grpc_metadata_array_destroy(&initial_md);
	grpc_metadata_array_destroy(&trailing_md);
	grpc_slice_unref(details);
	gpr_free((void *)error_string);
	return st->code;
}

void capibox_health_free(struct capibox_health *h)
{
	size_t i, j;

	if (h == NULL)
		return;
	for (i = 0; i < h->n_backends; i++) {
		struct capibox_backend_health *b = &h->backends[i];

		for (j = 0; j < b->n_pools; j++) {
			free(b->pools[j].language);
			free(b->pools[j].runtime_version);
		}
		free(b->pools);
		free(b->name);
		free(b->message);
	}
	free(h->backends);
	free(h->version);
	free(h);
}

/* Deep-copies the decoded reply into the plain struct; NULL when out of memory. */
static struct capibox_health *health_from_msg(const Capibox__V1__HealthResponse *m)
{
	struct capibox_health *h;
	size_t i, j;

	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->status = (int)m->status;
	h->uptime_s = m->uptime_s;
	h->sessions_open = m->sessions_open;
	h->max_sessions = m->max_sessions;
	h->version = strdup(m->version);
	if (h->version == NULL)
		goto fail;
	if (m->n_backends > 0) {
		h->backends = calloc(m->n_backends, sizeof(*h->backends));
		if (h->backends == NULL)
			goto fail;
	}
	for (i = 0; i < m->n_backends; i++) {
		const Capibox__V1__BackendHealth *mb = m->backends[i];
		struct capibox_backend_health *b = &h->backends[i];

		h->n_backends++;
		b->status = (int)mb->status;
		b->canary_us = mb->canary_us;
		b->name = strdup(mb->name);
		b->message = strdup(mb->message);
		if (b->name == NULL || b->message == NULL)
			goto fail;
		if (mb->n_pools > 0) {
			b->pools = calloc(mb->n_pools, sizeof(*b->pools));
			if (b->pools == NULL)
				goto fail;
		}
		for (j = 0; j < mb->n_pools; j++) {
			const Capibox__V1__RuntimePool *mp = mb->pools[j];
			struct capibox_runtime_pool *p = &b->pools[j];

			b->n_pools++;
			p->idle = mp->idle;
			p->busy = mp->busy;
			p->target = mp->target;
			p->language = strdup(mp->language);
			p->runtime_version = strdup(mp->runtime_version);
			if (p->language == NULL || p->runtime_version == NULL)
				goto fail;
		}
	}
	return h;
fail:
	capibox_health_free(h);
	return NULL;
}

int capibox_health(struct capibox_client *c, bool deep, int64_t deadline_ms,
		   struct capibox_health **out, struct capibox_status *st)
{
	Capibox__V1__HealthRequest req = CAPIBOX__V1__HEALTH_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct capibox_status local_st;

	if (st == NULL)
		st = &local_st;
	if (out == NULL || c == NULL)
		return status_set(st, CAPIBOX_INVALID_ARGUMENT, "capibox_health: NULL argument");
	*out = NULL;
	req.deep = deep;
	if (unary_call(c, c->m_health, deadline_ms, &req.base,
		       &capibox__v1__health_response__descriptor, &resp, st) != CAPIBOX_OK)
		return st->code;
	*out = health_from_msg((Capibox__V1__HealthResponse *)resp);
	capibox__v1__health_response__free_unpacked((Capibox__V1__HealthResponse *)resp, NULL);
	if (*out == NULL)
		return status_set(st, CAPIBOX_RESOURCE_EXHAUSTED, "out of memory");
	return CAPIBOX_OK;
}

/* --- sessions ------------------------------------------------------------ */

static void session_from_msg(const Capibox__V1__Session *m, struct capibox_session *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%s", m->session_id);
	snprintf(out->language, sizeof(out->language), "%s", m->language);
	out->created_unix_ms = m->created_unix_ms;
	out->last_used_unix_ms = m->last_used_unix_ms;
	out->executions = m->executions;
	out->idle_timeout_s = m->idle_timeout_s;
}

int capibox_session_create(struct capibox_client *c, const struct capibox_session_request *r,
			   struct capibox_session *out, struct capibox_status *st)
{
	Capibox__V1__CreateSessionRequest req = CAPIBOX__V1__CREATE_SESSION_REQUEST__INIT;
	Capibox__V1__Limits limits = CAPIBOX__V1__LIMITS__INIT;
	Capibox__V1__File *files = NULL, **file_ptrs = NULL;
	Capibox__V1__CreateSessionRequest__EnvEntry *env = NULL, **env_ptrs = NULL;
	ProtobufCMessage *resp = NULL;
	struct capibox_status local_st;
	size_t i;

	if (st == NULL)
		st = &local_st;
	if (c == NULL || r == NULL || out == NULL || r->language == NULL)
		return status_set(st, CAPIBOX_INVALID_ARGUMENT,
				  "capibox_session_create: NULL argument");
	req.language = (char *)r->language;
	req.idle_timeout_s = r->idle_timeout_s;
	limits_to_msg(&r->limits, &limits);
	req.limits = &limits;
	if (files_to_msg(r->files, r->n_files, &files, &file_ptrs, st) != 0)
		goto out;
	req.files = file_ptrs;
	req.n_files = r->n_files;
	if (r->n_env > 0) {
		env = calloc(r->n_env, sizeof(*env));
		env_ptrs = calloc(r->n_env, sizeof(*env_ptrs));
		if (env == NULL || env_ptrs == NULL) {
			status_set(st, CAPIBOX_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		for (i = 0; i < r->n_env; i++) {
			if (r->env[i].name == NULL || r->env[i].value == NULL) {
				status_set(st, CAPIBOX_INVALID_ARGUMENT,
					   "env[%zu]: missing name or value", i);
				goto out;
			}
			capibox__v1__create_session_request__env_entry__init(&env[i]);
			env[i].key = (char *)r->env[i].name;
			env[i].value = (char *)r->env[i].value;
			env_ptrs[i] = &env[i];
		}
		req.env = env_ptrs;
		req.n_env = r->n_env;
	}
	if (unary_call(c, c->m_create_session, r->deadline_ms, &req.base,
		       &capibox__v1__session__descriptor, &resp, st) != CAPIBOX_OK)
		goto out;
	session_from_msg((Capibox__V1__Session *)resp, out);
	capibox__v1__session__free_unpacked((Capibox__V1__Session *)resp, NULL);
out:
	free(files);
	free(file_ptrs);
	free(env);
	free(env_ptrs);
	return st->code;
}

int capibox_session_close(struct capibox_client *c, const char *id, int64_t deadline_ms,
			  struct capibox_session *out, struct capibox_status *st)
{
	Capibox__V1__CloseSessionRequest req = CAPIBOX__V1__CLOSE_SESSION_REQUEST__INIT;
	Capibox__V1__CloseSessionResponse *m;
	ProtobufCMessage *resp = NULL;
	struct capibox_status local_st;

	if (st == NULL)
		st = &local_st;
	if (c == NULL || id == NULL)
		return status_set(st, CAPIBOX_INVALID_ARGUMENT,
				  "capibox_session_close: NULL argument");
	req.session_id = (char *)id;
	if (unary_call(c, c->m_close_session, deadline_ms, &req.base,
		       &capibox__v1__close_session_response__descriptor, &resp, st) != CAPIBOX_OK)
		return st->code;
	m = (Capibox__V1__CloseSessionResponse *)resp;
	if (out != NULL) {
		if (m->session != NULL)
			session_from_msg(m->session, out);
		else
			memset(out, 0, sizeof(*out));
	}
	capibox__v1__close_session_response__free_unpacked(m, NULL);
	return CAPIBOX_OK;
}

int capibox_session_list(struct capibox_client *c, int64_t deadline_ms,
			 struct capibox_session **out, size_t *n, struct capibox_status *st)
{
	Capibox__V1__ListSessionsRequest req = CAPIBOX__V1__LIST_SESSIONS_REQUEST__INIT;
	Capibox__V1__ListSessionsResponse *m;
	ProtobufCMessage *resp = NULL;
	struct capibox_status local_st;

	if (st == NULL)
		st = &local_st;
	if (c == NULL || out == NULL || n == NULL)
		return status_set(st, CAPIBOX_INVALID_ARGUMENT,
				  "capibox_session_list: NULL argument");
	*out = NULL;
	*n = 0;
	if (unary_call(c, c->m_list_sessions, deadline_ms, &req.base,
		       &capibox__v1__list_sessions_response__descriptor, &resp, st) != CAPIBOX_OK)
		return st->code;
	m = (Capibox__V1__ListSessionsResponse *)resp;
	*out = calloc(m->n_sessions + 1, sizeof(**out));
	if (*out == NULL) {
		capibox__v1__list_sessions_response__free_unpacked(m, NULL);
		return status_set(st, CAPIBOX_RESOURCE_EXHAUSTED, "out of memory");
	}
	for (size_t i = 0; i < m->n_sessions; i++)
		session_from_msg(m->sessions[i], &(*out)[i]);
	*n = m->n_sessions;
	capibox__v1__list_sessions_response__free_unpacked(m, NULL);
	return CAPIBOX_OK;
}

int capibox_health_check(struct capibox_client *c, const char *service, int64_t deadline_ms,
			 int *serving_status, struct capibox_status *st)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct capibox_status local_st;

	if (st == NULL)
		st = &local_st;
	if (c == NULL || serving_status == NULL)
		return status_set(st, CAPIBOX_INVALID_ARGUMENT,
				  "capibox_health_check: NULL argument");
	*serving_status = 0;
	if (service != NULL)
		req.service = (char *)service;
	if (unary_call(c, c->m_check, deadline_ms, &req.base,
		       &grpc__health__v1__health_check_response__descriptor, &resp,
		       st) != CAPIBOX_OK)
		return st->code;
	*serving_status = (int)((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
	grpc__health__v1__health_check_response__free_unpacked(
		(Grpc__Health__V1__HealthCheckResponse *)resp, NULL);
	return CAPIBOX_OK;
}

/* --- Analyze ------------------------------------------------------------ */

static const char *const agg_names[] = {
	"unspecified", "count", "sum", "mean", "min", "max", "std", "median", "nunique",
};

const char *capibox_agg_function_name(int function)
{
	if (function < 0 || (size_t)function >= sizeof(agg_names) / sizeof(agg_names[0]))
		return "unspecified";
	return agg_names[function];
}

int capibox_agg_function_parse(const char *name)
{
	size_t i;

	if (name == NULL)
		return CAPIBOX_AGG_UNSPECIFIED;
	for (i = 1; i < sizeof(agg_names) / sizeof(agg_names[0]); i++)
		if (strcmp(name, agg_names[i]) == 0)
			return (int)i;
	return CAPIBOX_AGG_UNSPECIFIED;
}

const char *capibox_column_type_name(int type)
{
	switch (type) {
	case CAPIBOX_COLUMN_INTEGER: return "integer";
	case CAPIBOX_COLUMN_FLOAT: return "float";
	case CAPIBOX_COLUMN_BOOLEAN: return "boolean";
	case CAPIBOX_COLUMN_TEXT: return "text";
	default: return "unspecified";
	}
}

/* The request as protobuf-c structs pointing into the caller's data. */
struct analyze_msg {
	Capibox__V1__AnalyzeRequest req;
	Capibox__V1__Dataset dataset;
	Capibox__V1__Limits limits;
	Capibox__V1__Aggregate *aggs;
	Capibox__V1__Aggregate **agg_ptrs;
	Capibox__V1__File *files;
	Capibox__V1__File **file_ptrs;
};

static void analyze_msg_free(struct analyze_msg *m)
{
	free(m->aggs);
	free(m->agg_ptrs);
	free(m->files);
	free(m->file_ptrs);
}

/* Checks that none of the n strings is NULL; 0 or INVALID_ARGUMENT naming field[i]. */
static int strings_check(const char *const *v, size_t n, const char *field,
			 struct capibox_status *st)
{
	size_t i;

	if (n > 0 && v == NULL)
		return status_set(st, CAPIBOX_INVALID_ARGUMENT, "%s: NULL array", field);
	for (i = 0; i < n; i++)
		if (v[i] == NULL)
			return status_set(st, CAPIBOX_INVALID_ARGUMENT, "%s[%zu]: NULL", field, i);
	return 0;
}

/* Fills m from r; returns 0 or a status code with st set. */
static int analyze_msg_build(struct analyze_msg *m, const struct capibox_analyze_request *r,
			     struct capibox_status *st)
{
	size_t i;

	memset(m, 0, sizeof(*m));
	capibox__v1__analyze_request__init(&m->req);
	capibox__v1__dataset__init(&m->dataset);

	if (strings_check(r->null_values, r->n_null_values, "dataset.null_values", st) != 0 ||
	    strings_check(r->columns, r->n_columns, "columns", st) != 0 ||
	    strings_check(r->group_by, r->n_group_by, "group_by", st) != 0)
		return st->code;
	/* No content: no dataset, so the server's own check answers. */
	if (r->content != NULL) {
		if (r->dataset_name != NULL)
			m->dataset.name = (char *)r->dataset_name;
		m->dataset.format = (Capibox__V1__DatasetFormat)r->format;
		m->dataset.content.data = (uint8_t *)r->content;
		m->dataset.content.len = r->content_len;
		m->dataset.no_header = r->no_header;
		if (r->delimiter != NULL)
			m->dataset.delimiter = (char *)r->delimiter;
		m->dataset.n_null_values = r->n_null_values;
		m->dataset.null_values = (char **)r->null_values;
		m->req.dataset = &m->dataset;
	}
	m->req.n_columns = r->n_columns;
	m->req.columns = (char **)r->columns;
	m->req.n_group_by = r->n_group_by;
	m->req.group_by = (char **)r->group_by;
	if (r->code != NULL)
		m->req.code = (char *)r->code;
	if (r->request_id != NULL)
		m->req.request_id = (char *)r->request_id;

	limits_to_msg(&r->limits, &m->limits);
	m->req.limits = &m->limits;

	if (r->n_aggregates > 0) {
		if (r->aggregates == NULL)
			return status_set(st, CAPIBOX_INVALID_ARGUMENT, "aggregates: NULL array");
		m->aggs = calloc(r->n_aggregates, sizeof(*m->aggs));
		m->agg_ptrs = calloc(r->n_aggregates, sizeof(*m->agg_ptrs));
		if (m->aggs == NULL || m->agg_ptrs == NULL)
			return status_set(st, CAPIBOX_RESOURCE_EXHAUSTED, "out of memory");
		for (i = 0; i < r->n_aggregates; i++) {
			if (r->aggregates[i].column == NULL)
				return status_set(st, CAPIBOX_INVALID_ARGUMENT,
						  "aggregates[%zu].column: NULL", i);
			capibox__v1__aggregate__init(&m->aggs[i]);
			m->aggs[i].column = (char *)r->aggregates[i].column;
			/* unset and unknown functions go as they are: the server names them */
			m->aggs[i].function =
				(Capibox__V1__AggregateFunction)r->aggregates[i].function;
			m->agg_ptrs[i] = &m->aggs[i];
		}
		m->req.n_aggregates = r->n_aggregates;
		m->req.aggregates = m->agg_ptrs;
	}
	if (files_to_msg(r->files, r->n_files, &m->files, &m->file_ptrs, st) != 0)
		return st->code; /* files_to_msg set it */
	m->req.n_files = r->n_files;
	m->req.files = m->file_ptrs;
	return 0;
}

/* The analysis and the arrays it hands out; pub comes first. */
struct analysis_box {
	struct capibox_analysis pub;
	Capibox__V1__AnalyzeResponse *msg;
	struct capibox_column_summary *cols;
	struct capibox_value_count *tops;
	struct capibox_cell *group_cells, *result_cells;
	struct capibox_analysis_artifact *artifacts;
};

void capibox_analysis_free(struct capibox_analysis *a)
{
	struct analysis_box *b;

	if (a == NULL)
		return;
	b = a->priv_;
	free(b->cols);
	free(b->tops);
	free(b->group_cells);
	free(b->result_cells);
	free(b->artifacts);
	if (b->msg != NULL)
		capibox__v1__analyze_response__free_unpacked(b->msg, NULL);
	free(b);
}

/*
 * Flattens a decoded Table into t with row-major cells in *cells. A row
 * shorter than the header reads as nulls; extra values are ignored.
 * Returns false when out of memory.
 */
static bool table_from_msg(const Capibox__V1__Table *m, struct capibox_table *t,
			   struct capibox_cell **cells)
{
	size_t r, k;

	memset(t, 0, sizeof(*t));
	*cells = NULL;
	if (m == NULL || m->n_columns == 0)
		return true;
	/* the reply is bounded by the receive limit, but a row costs the
	 * sender 2 bytes and us n_columns cells: check the product */
	if (m->n_rows > SIZE_MAX / sizeof(**cells) / m->n_columns)
		return false;
	if (m->n_rows > 0) {
		*cells = calloc(m->n_rows * m->n_columns, sizeof(**cells));
		if (*cells == NULL)
			return false;
	}
	for (r = 0; r < m->n_rows; r++) {
		const Capibox__V1__Row *row = m->rows[r];

		for (k = 0; k < m->n_columns && k < row->n_values; k++) {
			const Capibox__V1__Value *v = row->values[k];
			struct capibox_cell *c = &(*cells)[r * m->n_columns + k];

			switch (v->kind_case) {
			case CAPIBOX__V1__VALUE__KIND_NUMBER:
				c->kind = CAPIBOX_CELL_NUMBER;
				c->number = v->number;
				break;
			case CAPIBOX__V1__VALUE__KIND_TEXT:
				c->kind = CAPIBOX_CELL_TEXT;
				c->text = v->text;
				break;
			default: c->kind = CAPIBOX_CELL_NULL; break;
			}
		}
	}
	t->columns = (const char *const *)m->columns;
	t->n_columns = m->n_columns;
	t->n_rows = m->n_rows;
	t->cells = *cells;
	return true;
}

/* Builds the plain analysis over the decoded reply m (which it takes); NULL when out of memory. */
static struct capibox_analysis *analysis_from_msg(Capibox__V1__AnalyzeResponse *m)
{
	struct analysis_box *b = calloc(1, sizeof(*b));
	struct capibox_analysis *a;
	size_t i, k, n_top = 0, ti = 0;

	if (b == NULL) {
		capibox__v1__analyze_response__free_unpacked(m, NULL);
		return NULL;
	}
	a = &b->pub;
	a->priv_ = b;
	b->msg = m;
	a->rows = m->rows;
	if (m->n_columns > 0) {
		b->cols = calloc(m->n_columns, sizeof(*b->cols));
		if (b->cols == NULL)
			goto fail;
	}
	for (i = 0; i < m->n_columns; i++)
		n_top += m->columns[i]->n_top;
	if (n_top > 0) {
		b->tops = calloc(n_top, sizeof(*b->tops));
		if (b->tops == NULL)
			goto fail;
	}
	for (i = 0; i < m->n_columns; i++) {
		const Capibox__V1__ColumnSummary *mc = m->columns[i];
		struct capibox_column_summary *c = &b->cols[i];

		c->name = mc->name;
		c->type = (int)mc->type;
		c->count = mc->count;
		c->nulls = mc->nulls;
		c->distinct = mc->distinct;
		c->mean = mc->mean;
		c->std = mc->std;
		c->min = mc->min;
		c->p25 = mc->p25;
		c->median = mc->median;
		c->p75 = mc->p75;
		c->max = mc->max;
		c->sum = mc->sum;
		c->top = mc->n_top > 0 ? &b->tops[ti] : NULL;
		c->n_top = mc->n_top;
		for (k = 0; k < mc->n_top; k++, ti++) {
			b->tops[ti].value = mc->top[k]->value;
			b->tops[ti].count = mc->top[k]->count;
		}
	}
	a->columns = b->cols;
	a->n_columns = m->n_columns;
	if (!table_from_msg(m->groups, &a->groups, &b->group_cells) ||
	    !table_from_msg(m->result, &a->result, &b->result_cells))
		goto fail;
	a->stdout_data = m->stdout.data;
	a->stdout_len = m->stdout.len;
	a->stderr_data = m->stderr.data;
	a->stderr_len = m->stderr.len;
	if (m->n_artifacts > 0) {
		b->artifacts = calloc(m->n_artifacts, sizeof(*b->artifacts));
		if (b->artifacts == NULL)
			goto fail;
		for (i = 0; i < m->n_artifacts; i++) {
			const Capibox__V1__Artifact *ma = m->artifacts[i];

			b->artifacts[i].path = ma->path;
			b->artifacts[i].mime_type = ma->mime_type;
			b->artifacts[i].content = ma->content.data;
			b->artifacts[i].len = ma->content.len;
			b->artifacts[i].size = ma->size;
			b->artifacts[i].truncated = ma->truncated;
		}
	}
	a->artifacts = b->artifacts;
	a->n_artifacts = m->n_artifacts;
	a->finished.message = "";
	if (m->finished != NULL) {
		a->finished.reason = (int)m->finished->reason;
		a->finished.exit_code = m->finished->exit_code;
		a->finished.signal = m->finished->signal;
		a->finished.wall_time_us = m->finished->wall_time_us;
		a->finished.cpu_time_us = m->finished->cpu_time_us;
		a->finished.peak_memory_bytes = m->finished->peak_memory_bytes;
		a->finished.message = m->finished->message;
	}
	return a;
fail:
	capibox_analysis_free(a);
	return NULL;
}

int capibox_analyze(struct capibox_client *c, const struct capibox_analyze_request *req,
		    struct capibox_analysis **out, struct capibox_status *st)
{
	struct capibox_status local_st;
	struct analyze_msg msg;
	ProtobufCMessage *resp = NULL;

	if (st == NULL)
		st = &local_st;
	status_set(st, CAPIBOX_OK, "%s", "");
	memset(&msg, 0, sizeof(msg));
	if (out == NULL || c == NULL || req == NULL)
		return status_set(st, CAPIBOX_INVALID_ARGUMENT, "capibox_analyze: NULL argument");
	*out = NULL;
	if (analyze_msg_build(&msg, req, st) != 0)
		goto out;
	if (unary_call(c, c->m_analyze, req->deadline_ms, &msg.req.base,
		       &capibox__v1__analyze_response__descriptor, &resp, st) != CAPIBOX_OK)
		goto out;
	*out = analysis_from_msg((Capibox__V1__AnalyzeResponse *)resp);
	if (*out == NULL)
		status_set(st, CAPIBOX_RESOURCE_EXHAUSTED, "out of memory");
out:
	analyze_msg_free(&msg);
	return st->code;
}

bool capibox_artifact_path_ok(const char *path)
{
	size_t len, part = 0;

	if (path == NULL || path[0] == '\0' || path[0] == '/')
		return false;
	len = strnlen(path, 4096);
	if (len > 4095)
		return false;
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = (unsigned char)path[i];
		if (c == '/' || c == '\0') {
			/* the part is path[i - part .. i) */
			if (part == 0 || (part == 1 && path[i - 1] == '.') ||
			    (part == 2 && path[i - 2] == '.' && path[i - 1] == '.'))
				return false;
			part = 0;
			continue;
		}
		if (c < 0x20 || c == 0x7f || c == '\\')
			return false;
		part++;
	}
	return true;
}
