/*
 * The gRPC front: one completion queue, a few worker threads, and a method
 * table of our own (protoc-c has no gRPC plugin we can use).
 *
 * Theory of operation
 *
 * Every call is a struct rpc_call with three tags: new (a request slot was
 * filled), close (RECV_CLOSE_ON_SERVER completed: the call is over, cancelled
 * or not) and send (the one batch that may be in flight). Worker threads take
 * events off the queue and run the tag's function; nothing they run blocks.
 *
 * Execute events come from the backend's own thread through an exec_sink.
 * Each event becomes one message and one batch; the backend is resumed when
 * that batch completes, so there is never more than one SEND_MESSAGE in
 * flight and a slow client stalls the sandbox's pipe, not our memory.
 *
 * Locks: srv->lock (server state, watcher list) may be taken before a call's
 * lock, never after. No lock of ours is held while calling into the backend,
 * whose thread holds its own locks while it calls our sink: holding ours
 * across backend_* calls could deadlock the two threads against each other.
 *
 * Lifetime: a call struct is reference counted (the handler, the close
 * batch, the send batch, the backend until finished, the watcher list, a
 * running canary). The grpc_call itself is released as soon as the call is
 * over and no batch is in flight, so a backend that is slow to deliver
 * finished after a cancel does not hold up server shutdown.
 */
#include "rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <json-c/json.h>

#include "capibox/v1/sandbox.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include "../admission.h"
#include "../audit.h"
#include "../auth.h"
#include "../health.h"
#include "../log.h"
#include "../metrics.h"
#include "../request.h"
#include "analyze.h"
#include "convert.h"
#include "reflection.h"
#include "tls.h"

#define SANDBOX_SERVICE "capibox.v1.SandboxService"
#define SLOTS_PER_METHOD 2    /* request slots kept posted per method */
#define CANCEL_WAIT_MS 3000   /* after cancelling executions, before cancelling calls */
#define LEFTOVER_WAIT_MS 5000 /* for backends to deliver finished of cancelled calls */
#define MAX_POOLS 32
#define DEADLINE_SLACK_MS 100 /* a cancel this close to the deadline is the deadline */

enum rpc_kind {
	RPC_EXECUTE,
	RPC_ANALYZE,
	RPC_HEALTH,
	RPC_CHECK,
	RPC_WATCH,
	RPC_REFLECT_V1,
	RPC_REFLECT_V1ALPHA,
	RPC_CREATE_SESSION,
	RPC_CLOSE_SESSION,
	RPC_LIST_SESSIONS,
	RPC_N_REGISTERED,
	RPC_UNKNOWN = RPC_N_REGISTERED, /* catch-all slot: grpc_server_request_call */
	RPC_N_KINDS,
};

struct rpc_server;
struct rpc_call;

struct rpc_tag {
	void (*fn)(struct rpc_server *srv, struct rpc_call *c, bool ok);
	struct rpc_call *call;
};

struct rpc_call {
	struct rpc_server *srv;
	enum rpc_kind kind;
	struct rpc_tag new_tag, close_tag, send_tag, recv_tag;

	/* Out-parameters of the request slot; owned by us once new fires. */
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *payload;
	grpc_call_details details; /* RPC_UNKNOWN only */

	pthread_mutex_t lock; /* guards everything below */
	unsigned refs;
	bool md_sent;	   /* initial metadata sent or in flight */
	bool close_posted; /* RECV_CLOSE_ON_SERVER started */
	bool closed;	   /* the call is over: send nothing more */
	int cancelled;	   /* RECV_CLOSE_ON_SERVER out-parameter */
	bool send_busy;	   /* a batch is in flight */
	bool recv_busy;	   /* a RECV_MESSAGE batch is in flight (reflection) */
	grpc_byte_buffer *recv_buf;
	bool send_has_close; /* ... and it carries RECV_CLOSE_ON_SERVER */
	bool send_is_final;  /* ... and SEND_STATUS_FROM_SERVER */
	bool status_started; /* a status was sent or is in flight */
	grpc_byte_buffer *send_buf;
	grpc_slice status_details;
	bool has_status_details;

	/* Authentication: the caller's key (NULL when keys are off), and
	 * whether it holds one of the key's concurrent-execution slots. */
	struct auth_key *key;
	bool key_entered;

	/* How the call ended, for metrics: set once, read when it is freed. */
	bool served;		 /* the slot was filled: a real call */
	struct timespec t_start; /* CLOCK_MONOTONIC, when it arrived */
	struct timespec t_end;	 /* when it was over (has_end) */
	bool has_end;
	bool end_cancelled;	      /* the client cancelled or the deadline passed */
	bool deadline_passed;	      /* ... the latter */
	grpc_status_code status_code; /* the status sent (status_started) */
	char language[32];	      /* Execute: the validated language */

	/* ... and for its JSON log record (--log-format json): who called,
	 * what the status said, how the execution went. Never code, output
	 * or secrets. */
	char peer[64];
	char client_cert[256]; /* mTLS: the client certificate's subject */
	char status_msg[256];  /* the status message, when not OK */
	char request_id[129];  /* Execute: the caller's id, cleaned, cut */
	char session_id[64];   /* Execute in a session, or a session call */
	char sandbox_id[64];
	bool has_started, warm;
	uint64_t queued_us, start_us;
	bool has_result;
	struct exec_result result; /* message not kept */

	/* Execute: admission. The waiter is in the queue or was; admitted: the
	 * call holds a running slot (until finished, or until the start fails);
	 * cx: the decoded request, kept while the call waits. */
	struct admission_waiter waiter;
	bool admitted;
	uint64_t admit_wait_us;
	struct convert_exec cx;

	/* The audit record's request facts, taken while the request is
	 * decoded (the request itself is freed before the call ends). */
	bool audited;
	char code_sha256[AUDIT_SHA256_HEX];
	char *audit_code; /* only when the audit log keeps code */
	size_t code_len, n_files;
	uint64_t files_bytes, stdin_bytes;
	struct exec_limits limits;

	/* Analyze: the decoded request (which keeps the start of the run's
	 * stderr) and the engine's stdout (the backend's thread writes them,
	 * one event at a time) */
	struct analyze_job *job;
	uint8_t *out_buf;
	size_t out_len, out_cap;
	bool out_lost; /* out of memory while collecting */

	/* Execute */
	struct exec *exec;
	bool exec_known;     /* backend_execute returned the handle */
	bool resume_pending; /* a send completed before the handle was known */
	bool cancel_pending; /* cancelled before the handle was known */
	bool finished;	     /* the backend delivered finished */

	/* Watch (watch_next and listed are guarded by srv->lock) */
	struct rpc_call *watch_next;
	bool watch_listed;
	bool watch_known; /* the service name is one we serve */
	bool watch_end;	  /* shutdown: send NOT_SERVING and end the stream */
};

struct rpc_server {
	const struct config *cfg;
	struct backend *backend;
	struct admission *admission; /* running slots and the wait queue */
	struct audit *audit;	     /* the audit log (a no-op when off) */
	struct auth *auth;	     /* API keys; off until a keys file is loaded */
	struct rpc_tls *tls;	     /* NULL: plaintext */
	grpc_server *server;
	grpc_completion_queue *cq;
	void *methods[RPC_N_REGISTERED];
	pthread_t *threads;
	unsigned n_threads;
	struct timespec started;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC; shutdown_done, n_calls */
	bool shutting_down;  /* health NOT_SERVING, no new slots */
	bool shutdown_done;  /* the server shutdown tag fired */
	unsigned n_calls;    /* live struct rpc_call, slots included */
	struct rpc_call *watchers;
	struct rpc_tag shutdown_tag;

	/* Readers start batches; the writer shuts the queue down. Starting a
	 * batch after grpc_completion_queue_shutdown aborts the process. */
	pthread_rwlock_t cq_lock;
	bool cq_down;
};

static void execute_handle(struct rpc_call *c);
static void analyze_handle(struct rpc_call *c);
static void health_handle(struct rpc_call *c);
static void check_handle(struct rpc_call *c);
static void watch_handle(struct rpc_call *c);
static void reflect_handle(struct rpc_call *c);
static void create_session_handle(struct rpc_call *c);
static void close_session_handle(struct rpc_call *c);
static void list_sessions_handle(struct rpc_call *c);

/*
 * The method table. Both kinds read the request with the new-call event
 * (GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER); a streaming handler posts
 * RECV_CLOSE_ON_SERVER on its own and keeps the call open.
 */
static const struct {
	const char *path;
	bool server_streaming;
	bool open; /* answered without an API key (probes) */
	void (*handle)(struct rpc_call *c);
	bool bidi; /* client streaming too: GRPC_SRM_PAYLOAD_NONE, read by the handler */
} methods[RPC_N_REGISTERED] = {
	[RPC_EXECUTE] = {"/capibox.v1.SandboxService/Execute", true, false, execute_handle},
	[RPC_ANALYZE] = {"/capibox.v1.SandboxService/Analyze", false, false, analyze_handle},
	[RPC_HEALTH] = {"/capibox.v1.SandboxService/Health", false, false, health_handle},
	/* Kubernetes and load-balancer probes carry no secrets. */
	[RPC_CHECK] = {"/grpc.health.v1.Health/Check", false, true, check_handle},
	[RPC_WATCH] = {"/grpc.health.v1.Health/Watch", true, true, watch_handle},
	/* Reflection describes the API, which is public (docs/api.md), and
	 * lets tools without the .proto files find it. */
	[RPC_REFLECT_V1] = {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", true, true,
			    reflect_handle, true},
	[RPC_REFLECT_V1ALPHA] = {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
				 true, true, reflect_handle, true},
	[RPC_CREATE_SESSION] = {"/capibox.v1.SandboxService/CreateSession", false, false,
				create_session_handle},
	[RPC_CLOSE_SESSION] = {"/capibox.v1.SandboxService/CloseSession", false, false,
			       close_session_handle},
	[RPC_LIST_SESSIONS] = {"/capibox.v1.SandboxService/ListSessions", false, false,
			       list_sessions_handle},
};

static void slot_post(struct rpc_server *srv, enum rpc_kind kind);

static const char *kind_name(enum rpc_kind kind)
{
	return kind < RPC_N_REGISTERED ? methods[kind].path : "unknown method";
}

/* ------------------------------------------------------------------ */
/* call lifetime                                                        */

static struct rpc_call *call_new(struct rpc_server *srv, enum rpc_kind kind)
{
	struct rpc_call *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->srv = srv;
	c->kind = kind;
	c->refs = 1;
	pthread_mutex_init(&c->lock, NULL);
	grpc_metadata_array_init(&c->md);
	if (kind == RPC_UNKNOWN)
		grpc_call_details_init(&c->details);
	pthread_mutex_lock(&srv->lock);
	srv->n_calls++;
	pthread_mutex_unlock(&srv->lock);
	return c;
}

/* The call is over: notes when, and whether its deadline had passed. Caller holds c->lock. */
static void call_note_end_locked(struct rpc_call *c, bool cancelled)
{
	gpr_timespec dl = c->kind == RPC_UNKNOWN ? c->details.deadline : c->deadline;

	if (c->has_end || !c->served)
		return;
	c->has_end = true;
	clock_gettime(CLOCK_MONOTONIC, &c->t_end);
	c->end_cancelled = cancelled;
	/* The client's deadline is a moment ahead of ours (ours counts from
	 * when its headers arrived): its cancel may come just before ours
	 * expires. Within DEADLINE_SLACK_MS of it, the deadline ended it. */
	c->deadline_passed =
		cancelled &&
		gpr_time_cmp(gpr_time_add(gpr_now(dl.clock_type),
					  gpr_time_from_millis(DEADLINE_SLACK_MS, GPR_TIMESPAN)),
			     dl) >= 0;
}

static void json_set_string(json_object *o, const char *key, const char *value)
{
	if (value != NULL && value[0] != '\0')
		json_object_object_add(o, key, json_object_new_string(value));
}

static void json_set_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

/*
 * One JSON line per call: method, status, timing, caller and, for Execute,
 * how the run went. Strings that came from the client (request id, method
 * of an unknown call, names quoted in a status message) were cleaned to
 * UTF-8 and cut when stored.
 */
static void call_log_record(struct rpc_call *c, grpc_status_code code, uint64_t duration_us)
{
	json_object *o = json_object_new_object();
	const char *level = "info";
	char method[200];

	if (o == NULL)
		return;
	if (c->kind == RPC_UNKNOWN) {
		size_t len = GRPC_SLICE_LENGTH(c->details.method), n = 0;
		const uint8_t *p = GRPC_SLICE_START_PTR(c->details.method);

		for (size_t i = 0; i < len && n + 1 < sizeof(method); i++)
			method[n++] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
		method[n] = '\0';
	} else {
		snprintf(method, sizeof(method), "%s", methods[c->kind].path);
	}
	json_set_string(o, "msg", "rpc");
	json_set_string(o, "method", method);
	json_set_string(o, "status", metrics_code_name((unsigned)code));
	json_object_object_add(o, "status_code", json_object_new_int((int)code));
	json_set_u64(o, "duration_us", duration_us);
	json_set_string(o, "peer", c->peer);
	json_set_string(o, "client_cert", c->client_cert);
	if (c->key != NULL)
		json_set_string(o, "key", auth_key_id(c->key));
	json_set_string(o, "request_id", c->request_id);
	json_set_string(o, "session_id", c->session_id);
	json_set_string(o, "language", c->language);
	if (c->has_started) {
		json_set_string(o, "sandbox_id", c->sandbox_id);
		json_object_object_add(o, "warm", json_object_new_boolean(c->warm));
		json_set_u64(o, "queued_us", c->queued_us);
		json_set_u64(o, "start_us", c->start_us);
	}
	if (c->has_result) {
		json_set_string(o, "reason", exec_reason_name(c->result.reason));
		json_object_object_add(o, "exit_code", json_object_new_int(c->result.exit_code));
		if (c->result.signal)
			json_object_object_add(o, "signal", json_object_new_int(c->result.signal));
		json_set_u64(o, "wall_time_us", c->result.wall_time_us);
		json_set_u64(o, "cpu_time_us", c->result.cpu_time_us);
		json_set_u64(o, "peak_memory_bytes", c->result.peak_memory_bytes);
		json_set_u64(o, "stdout_bytes", c->result.stdout_bytes);
		json_set_u64(o, "stderr_bytes", c->result.stderr_bytes);
		if (c->result.reason == EXEC_REASON_SANDBOX_ERROR)
			level = "warn";
	}
	json_set_string(o, "error", c->status_msg);
	if (code == GRPC_STATUS_INTERNAL || code == GRPC_STATUS_UNKNOWN ||
	    code == GRPC_STATUS_DATA_LOSS)
		level = "warn";
	log_json_record(level, json_object_to_json_string_ext(
				       o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/* Counts a served call by method and the status the client saw. */
/* One audit record for an Execute or Analyze call that got past decoding. */
static void call_audit(struct rpc_call *c, grpc_status_code code)
{
	struct audit_entry e = {0};

	e.rpc = c->kind == RPC_ANALYZE	      ? "Analyze" :
		c->kind == RPC_CREATE_SESSION ? "CreateSession" :
		c->kind == RPC_CLOSE_SESSION  ? "CloseSession" :
						"Execute";
	e.request_id = c->request_id;
	e.key_id = c->key ? auth_key_id(c->key) : NULL;
	e.peer = c->peer;
	e.client_cert = c->client_cert;
	e.language = c->language;
	e.code = c->audit_code;
	e.code_len = c->code_len;
	e.code_sha256 = c->code_sha256;
	e.n_files = c->n_files;
	e.files_bytes = c->files_bytes;
	e.stdin_bytes = c->stdin_bytes;
	e.has_limits = true;
	e.limits = c->limits;
	e.status_code = (unsigned)code;
	e.error = c->status_msg[0] ? c->status_msg : NULL;
	e.started = c->has_started;
	e.sandbox_id = c->sandbox_id;
	e.warm = c->warm;
	e.queued_us = c->queued_us;
	e.start_us = c->start_us;
	if (c->has_result) {
		e.finished = true;
		e.reason = c->result.reason;
		e.exit_code = c->result.exit_code;
		e.signal = c->result.signal;
		e.wall_time_us = c->result.wall_time_us;
		e.cpu_time_us = c->result.cpu_time_us;
		e.peak_memory_bytes = c->result.peak_memory_bytes;
		e.stdout_bytes = c->result.stdout_bytes;
		e.stderr_bytes = c->result.stderr_bytes;
	}
	audit_record(c->srv->audit, &e);
}

/* Notes what the audit record says of a validated request. */
static void call_audit_request(struct rpc_call *c, const struct exec_request *req, const char *code,
			       size_t code_len)
{
	struct audit *a = c->srv->audit;

	if (!audit_enabled(a))
		return;
	c->audited = true;
	audit_hash_code(code, code_len, c->code_sha256);
	if (audit_wants_code(a))
		c->audit_code = strndup(code, code_len); /* NULL: the record goes without */
	c->code_len = code_len;
	c->n_files = req->n_files;
	for (size_t i = 0; i < req->n_files; i++)
		c->files_bytes += req->files[i].len;
	c->stdin_bytes = req->stdin_len;
	c->limits = req->limits;
}

static void call_record_end(struct rpc_call *c)
{
	struct timespec end;
	grpc_status_code code;
	int64_t us;

	if (!c->served)
		return;
	if (c->has_end)
		end = c->t_end;
	else
		clock_gettime(CLOCK_MONOTONIC, &end);
	if (c->has_end ? c->end_cancelled : c->cancelled != 0)
		code = c->deadline_passed ? GRPC_STATUS_DEADLINE_EXCEEDED : GRPC_STATUS_CANCELLED;
	else if (c->status_started)
		code = c->status_code;
	else
		code = GRPC_STATUS_UNKNOWN;
	us = (int64_t)(end.tv_sec - c->t_start.tv_sec) * 1000000 +
	     (end.tv_nsec - c->t_start.tv_nsec) / 1000;
	metrics_rpc_done((unsigned)c->kind, (unsigned)code, us > 0 ? (uint64_t)us : 0);
	if (log_is_json())
		call_log_record(c, code, us > 0 ? (uint64_t)us : 0);
	if (c->audited)
		call_audit(c, code);
}

static void call_free(struct rpc_call *c)
{
	struct rpc_server *srv = c->srv;

	call_record_end(c);
	if (c->call)
		grpc_call_unref(c->call);
	if (c->exec)
		backend_release(c->exec);
	if (c->key_entered)
		auth_key_leave(c->key);
	if (c->admitted)
		admission_leave(srv->admission);
	convert_exec_free(&c->cx);
	if (c->job) {
		analyze_job_free(c->job);
		free(c->job);
	}
	free(c->out_buf);
	free(c->audit_code);
	auth_key_release(c->key);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->recv_buf)
		grpc_byte_buffer_destroy(c->recv_buf);
	grpc_metadata_array_destroy(&c->md);
	if (c->kind == RPC_UNKNOWN)
		grpc_call_details_destroy(&c->details);
	pthread_mutex_destroy(&c->lock);
	free(c);

	pthread_mutex_lock(&srv->lock);
	if (--srv->n_calls == 0)
		pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
}

static void call_ref_locked(struct rpc_call *c) { c->refs++; }

static void call_unref(struct rpc_call *c)
{
	bool last;

	pthread_mutex_lock(&c->lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&c->lock);
	if (last)
		call_free(c);
}

/* Lets go of the grpc_call once it is over and no batch can still use it. */
static void call_drop_grpc_locked(struct rpc_call *c)
{
	if (c->closed && !c->send_busy && !c->recv_busy && c->call) {
		grpc_call_unref(c->call);
		c->call = NULL;
	}
}

/* Starts a batch unless the queue is shut down. Caller holds c->lock. */
static bool call_batch_locked(struct rpc_call *c, const grpc_op *ops, size_t n, struct rpc_tag *tag)
{
	struct rpc_server *srv = c->srv;
	grpc_call_error rc = GRPC_CALL_ERROR;

	if (c->call == NULL)
		return false;
	pthread_rwlock_rdlock(&srv->cq_lock);
	if (!srv->cq_down)
		rc = grpc_call_start_batch(c->call, ops, n, tag, NULL);
	pthread_rwlock_unlock(&srv->cq_lock);
	if (rc != GRPC_CALL_OK) {
		log_warnx("rpc: %s: cannot start batch: %s", kind_name(c->kind),
			  grpc_call_error_to_string(rc));
		return false;
	}
	return true;
}

/* Packs msg into a byte buffer without an intermediate copy. */
static grpc_byte_buffer *pack_message(const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	grpc_slice s = grpc_slice_malloc(len);
	grpc_byte_buffer *bb;

	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

static void call_send_done(struct rpc_server *srv, struct rpc_call *c, bool ok);
static void call_close_done(struct rpc_server *srv, struct rpc_call *c, bool ok);

/*
 * Starts the call's one send batch: initial metadata if not yet sent, msg
 * (may be NULL), and if final the status (code, details), with
 * RECV_CLOSE_ON_SERVER when it was not posted on its own. Caller holds
 * c->lock and has checked !send_busy. Returns false if nothing was started.
 */
static bool call_send_locked(struct rpc_call *c, const ProtobufCMessage *msg, bool final,
			     grpc_status_code code, const char *details)
{
	grpc_op ops[4];
	size_t n = 0;
	bool with_close = false;

	if (c->closed || c->status_started || c->send_busy)
		return false;
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		ops[n].data.send_initial_metadata.count = 0;
		n++;
	}
	if (msg) {
		c->send_buf = pack_message(msg);
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = c->send_buf;
		n++;
	}
	if (final) {
		/* a status message must be UTF-8; ours may quote the client's
		 * bytes (an env name, a language) */
		char clean[1024];
		c->status_details = grpc_slice_from_copied_string(
			convert_utf8_clean(details ? details : "", clean, sizeof(clean)));
		c->has_status_details = true;
		ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		ops[n].data.send_status_from_server.trailing_metadata_count = 0;
		ops[n].data.send_status_from_server.status = code;
		ops[n].data.send_status_from_server.status_details = &c->status_details;
		n++;
		if (!c->close_posted) {
			ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
			ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
			n++;
			with_close = true;
		}
	}
	c->send_tag.fn = call_send_done;
	c->send_tag.call = c;
	if (!call_batch_locked(c, ops, n, &c->send_tag)) {
		if (c->send_buf)
			grpc_byte_buffer_destroy(c->send_buf);
		c->send_buf = NULL;
		if (c->has_status_details)
			grpc_slice_unref(c->status_details);
		c->has_status_details = false;
		/* A call that takes no batch is as good as over. */
		c->closed = true;
		c->cancelled = 1;
		call_drop_grpc_locked(c);
		return false;
	}
	c->md_sent = true;
	c->send_busy = true;
	c->send_has_close = with_close;
	c->send_is_final = final;
	if (final) {
		c->status_started = true;
		c->status_code = code;
		if (code != GRPC_STATUS_OK)
			convert_utf8_clean(details ? details : "", c->status_msg,
					   sizeof(c->status_msg));
	}
	if (with_close)
		c->close_posted = true;
	call_ref_locked(c);
	return true;
}

/* Status with no message (errors, Analyze, unknown methods). */
static void call_fail(struct rpc_call *c, grpc_status_code code, const char *details)
{
	pthread_mutex_lock(&c->lock);
	call_send_locked(c, NULL, true, code, details);
	pthread_mutex_unlock(&c->lock);
}

/* Message plus OK status in one batch (unary replies). */
static void call_reply(struct rpc_call *c, const ProtobufCMessage *msg)
{
	pthread_mutex_lock(&c->lock);
	call_send_locked(c, msg, true, GRPC_STATUS_OK, NULL);
	pthread_mutex_unlock(&c->lock);
}

/*
 * Posts RECV_CLOSE_ON_SERVER on its own: it completes when the call ends,
 * which is how a client cancel or an expired deadline is seen at once.
 * Caller holds c->lock.
 */
static bool call_post_close_locked(struct rpc_call *c)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->cancelled;
	c->close_tag.fn = call_close_done;
	c->close_tag.call = c;
	if (!call_batch_locked(c, &op, 1, &c->close_tag)) {
		c->closed = true;
		c->cancelled = 1;
		call_drop_grpc_locked(c);
		return false;
	}
	c->close_posted = true;
	call_ref_locked(c);
	return true;
}

/* Reads a received payload into one contiguous slice. */
static bool payload_read(grpc_byte_buffer *bb, grpc_slice *out)
{
	grpc_byte_buffer_reader r;

	if (!grpc_byte_buffer_reader_init(&r, bb))
		return false;
	*out = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	return true;
}

/*
 * Unpacks the call's request message. Returns NULL with err set (missing or
 * malformed message); raw, if given, receives the bytes (caller unrefs).
 */
static ProtobufCMessage *request_unpack(struct rpc_call *c, const ProtobufCMessageDescriptor *desc,
					const char *what, grpc_slice *raw, char *err, size_t errlen)
{
	ProtobufCMessage *m;
	grpc_slice s;

	if (c->payload == NULL) {
		snprintf(err, errlen, "missing %s message", what);
		return NULL;
	}
	if (!payload_read(c->payload, &s)) {
		snprintf(err, errlen, "malformed %s (cannot decompress)", what);
		return NULL;
	}
	grpc_byte_buffer_destroy(c->payload);
	c->payload = NULL;
	m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	if (m == NULL)
		snprintf(err, errlen, "malformed %s", what);
	if (raw)
		*raw = s;
	else
		grpc_slice_unref(s);
	return m;
}

/* ------------------------------------------------------------------ */
/* Execute                                                              */

/* The backend may go on; now, or once backend_execute has returned. */
static struct exec *exec_resume_locked(struct rpc_call *c)
{
	if (c->exec_known)
		return c->exec;
	c->resume_pending = true;
	return NULL;
}

/* Sends one event (final: with status OK), or lets the backend go on. */
static void execute_deliver(struct rpc_call *c, const ProtobufCMessage *msg, bool final)
{
	struct exec *resume = NULL;
	bool leave = false, admitted = false;

	pthread_mutex_lock(&c->lock);
	if (final) {
		/* The sandbox is gone: free the key's and the server's slots
		 * before the client can see the end of the stream and start
		 * its next call. */
		leave = c->key_entered;
		c->key_entered = false;
		admitted = c->admitted;
		c->admitted = false;
	}
	pthread_mutex_unlock(&c->lock);
	if (leave)
		auth_key_leave(c->key);
	if (admitted)
		admission_leave(c->srv->admission);

	pthread_mutex_lock(&c->lock);
	if (final)
		c->finished = true;
	/* A cancelled call sends nothing more, but the backend must still be
	 * resumed to reach finished and clean up. */
	if (!call_send_locked(c, msg, final, GRPC_STATUS_OK, NULL) && !final)
		resume = exec_resume_locked(c);
	pthread_mutex_unlock(&c->lock);
	if (resume)
		backend_resume(resume);
	if (final)
		call_unref(c); /* the backend's reference */
}

static void execute_on_started(void *arg, const struct exec_started *st)
{
	struct rpc_call *c = arg;
	Capibox__V1__ExecuteResponse resp = CAPIBOX__V1__EXECUTE_RESPONSE__INIT;
	Capibox__V1__Started started;
	struct exec_started s = *st;

	/* the wait for a running slot is part of the queueing the client saw */
	s.queued_us += c->admit_wait_us;
	if (c->language[0] == '\0' && s.language != NULL) /* a session's cell */
		snprintf(c->language, sizeof(c->language), "%s", s.language);
	metrics_exec_started(c->language, s.queued_us, s.start_us, s.warm);
	c->has_started = true; /* read when the call is freed, after the last unref */
	snprintf(c->sandbox_id, sizeof(c->sandbox_id), "%s", s.sandbox_id ? s.sandbox_id : "");
	c->warm = s.warm;
	c->queued_us = s.queued_us;
	c->start_us = s.start_us;
	convert_started(&s, c->srv->backend->ops->name, &started);
	resp.event_case = CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_STARTED;
	resp.started = &started;
	execute_deliver(c, &resp.base, false);
}

static void execute_on_output(void *arg, enum exec_stream stream, const uint8_t *data, size_t len)
{
	struct rpc_call *c = arg;
	Capibox__V1__ExecuteResponse resp = CAPIBOX__V1__EXECUTE_RESPONSE__INIT;
	Capibox__V1__Output out = CAPIBOX__V1__OUTPUT__INIT;

	metrics_exec_output(stream, len);
	out.data.data = (uint8_t *)data;
	out.data.len = len;
	if (stream == EXEC_STDERR) {
		resp.event_case = CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_STDERR;
		resp.stderr = &out;
	} else {
		resp.event_case = CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_STDOUT;
		resp.stdout = &out;
	}
	execute_deliver(c, &resp.base, false);
}

static void execute_on_finished(void *arg, const struct exec_result *res)
{
	struct rpc_call *c = arg;
	Capibox__V1__ExecuteResponse resp = CAPIBOX__V1__EXECUTE_RESPONSE__INIT;
	Capibox__V1__Finished fin;
	char msg[sizeof(res->message) * 2];

	metrics_exec_finished(c->language, res->reason, res->wall_time_us);
	c->result = *res;
	c->result.message[0] = '\0';
	c->has_result = true;
	convert_finished(res, &fin, msg, sizeof(msg));
	resp.event_case = CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_FINISHED;
	resp.finished = &fin;
	execute_deliver(c, &resp.base, true);
}

static void execute_on_result(void *arg, const struct exec_result_value *r)
{
	struct rpc_call *c = arg;
	Capibox__V1__ExecuteResponse resp = CAPIBOX__V1__EXECUTE_RESPONSE__INIT;
	Capibox__V1__Result res = CAPIBOX__V1__RESULT__INIT;
	char mime[128];
	char *text = NULL, *json = NULL;

	/* the sandbox wrote these: valid UTF-8 or other languages' decoders
	 * reject the whole message */
	text = convert_utf8_dup(r->text);
	json = r->json != NULL ? convert_utf8_dup(r->json) : NULL;
	res.text = text != NULL ? text : (char *)"";
	res.json = json != NULL ? json : (char *)"";
	res.mime_type = convert_utf8_clean(r->mime_type, mime, sizeof(mime));
	resp.event_case = CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_RESULT;
	resp.result = &res;
	execute_deliver(c, &resp.base, false);
	free(text);
	free(json);
}

static void execute_on_artifact(void *arg, const struct exec_artifact *a)
{
	struct rpc_call *c = arg;
	Capibox__V1__ExecuteResponse resp = CAPIBOX__V1__EXECUTE_RESPONSE__INIT;
	Capibox__V1__Artifact art = CAPIBOX__V1__ARTIFACT__INIT;
	char path[4096 * 2];

	/* checked by the backend (request_path_ok); cleaned all the same */
	art.path = convert_utf8_clean(a->path, path, sizeof(path));
	art.mime_type = (char *)a->mime_type;
	art.content.data = (uint8_t *)a->data;
	art.content.len = a->len;
	art.size = a->size;
	art.truncated = a->truncated;
	art.offset = a->offset;
	art.eof = a->eof;
	resp.event_case = CAPIBOX__V1__EXECUTE_RESPONSE__EVENT_ARTIFACT;
	resp.artifact = &art;
	execute_deliver(c, &resp.base, false);
}

static const struct exec_sink execute_sink = {
	.started = execute_on_started,
	.output = execute_on_output,
	.finished = execute_on_finished,
	.result = execute_on_result,
	.artifact = execute_on_artifact,
};

static grpc_status_code status_of_request(enum request_rc rc)
{
	switch (rc) {
	case REQUEST_OK: return GRPC_STATUS_OK;
	case REQUEST_TOO_LARGE: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case REQUEST_UNIMPLEMENTED: return GRPC_STATUS_UNIMPLEMENTED;
	case REQUEST_INVALID:
	default: return GRPC_STATUS_INVALID_ARGUMENT;
	}
}

static grpc_status_code status_of_backend(enum backend_rc rc)
{
	switch (rc) {
	case BACKEND_OK: return GRPC_STATUS_OK;
	case BACKEND_FULL: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case BACKEND_DRAINING: return GRPC_STATUS_UNAVAILABLE;
	case BACKEND_INVALID: return GRPC_STATUS_INVALID_ARGUMENT;
	case BACKEND_NOT_FOUND: return GRPC_STATUS_NOT_FOUND;
	case BACKEND_INTERNAL:
	default: return GRPC_STATUS_INTERNAL;
	}
}

/*
 * The caller's key's own limits: allowed languages, maxima (a default is
 * lowered to them) and concurrent executions, whose slot the call then holds
 * until finished.
 */
static grpc_status_code execute_admit_key(struct rpc_call *c, struct convert_exec *cx, char *err,
					  size_t errlen)
{
	struct exec_limits asked;

	if (c->key == NULL)
		return GRPC_STATUS_OK;
	convert_limits(cx->msg ? cx->msg->limits : NULL, &asked);
	switch (auth_key_admit(c->key, &asked, &cx->req, err, errlen)) {
	case AUTH_OK: break;
	case AUTH_LANGUAGE: return GRPC_STATUS_PERMISSION_DENIED;
	default: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	}
	if (auth_key_enter(c->key, err, errlen) != AUTH_OK)
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	pthread_mutex_lock(&c->lock);
	c->key_entered = true;
	pthread_mutex_unlock(&c->lock);
	return GRPC_STATUS_OK;
}

/* Gives back the call's key slot and running slot, if it holds them. */
static void execute_leave(struct rpc_call *c)
{
	bool key, admitted;

	pthread_mutex_lock(&c->lock);
	key = c->key_entered;
	admitted = c->admitted;
	c->key_entered = c->admitted = false;
	pthread_mutex_unlock(&c->lock);
	if (key)
		auth_key_leave(c->key);
	if (admitted)
		admission_leave(c->srv->admission);
}

/*
 * Runs an admitted request (it holds a running slot and the backend's
 * reference to the call) on the backend. A call that ended while it waited
 * runs nothing.
 */
static void execute_start(struct rpc_call *c, const struct exec_request *req,
			  const struct exec_sink *sink)
{
	struct rpc_server *srv = c->srv;
	enum backend_rc brc;
	struct exec *e = NULL;
	char err[512] = "";
	bool resume, cancel, closed;

	pthread_mutex_lock(&c->lock);
	closed = c->closed;
	pthread_mutex_unlock(&c->lock);
	if (closed) {
		execute_leave(c);
		call_unref(c); /* the backend's reference: no finished will come */
		return;
	}
	brc = backend_execute(srv->backend, req, sink, c, &e, err, sizeof(err));
	if (brc != BACKEND_OK) {
		grpc_status_code code = status_of_backend(brc);

		execute_leave(c);
		if (err[0] == '\0')
			snprintf(err, sizeof(err), "backend refused the execution");
		if (code == GRPC_STATUS_INTERNAL)
			log_warnx("rpc: %s: %s", kind_name(c->kind), err);
		call_fail(c, code, err);
		call_unref(c); /* no finished will come */
		return;
	}
	pthread_mutex_lock(&c->lock);
	c->exec = e;
	c->exec_known = true;
	resume = c->resume_pending;
	cancel = c->cancel_pending && !c->finished;
	c->resume_pending = c->cancel_pending = false;
	pthread_mutex_unlock(&c->lock);
	if (cancel)
		backend_cancel(e, EXEC_REASON_CANCELLED);
	if (resume)
		backend_resume(e);
}

static const struct exec_sink analyze_sink;

/* Runs a request that waited for its slot (Execute or Analyze). */
static void call_start_admitted(struct rpc_call *c)
{
	if (c->kind == RPC_ANALYZE)
		execute_start(c, &c->job->req, &analyze_sink);
	else
		execute_start(c, &c->cx.req, &execute_sink);
}

/* Frees the decoded request a call kept while it waited. */
static void call_drop_request(struct rpc_call *c)
{
	convert_exec_free(&c->cx);
	memset(&c->cx, 0, sizeof(c->cx));
	if (c->job) {
		analyze_job_free(c->job);
		free(c->job);
		c->job = NULL;
	}
}

/* The admission thread: the waiting call got a slot, or waited too long. */
static void execute_admitted(struct admission_waiter *w, enum admit_rc rc, uint64_t waited_us)
{
	struct rpc_call *c = (struct rpc_call *)((char *)w - offsetof(struct rpc_call, waiter));
	struct admission_stats st;
	char figures[128], err[384];

	if (rc == ADMIT_NOW) {
		pthread_mutex_lock(&c->lock);
		c->admitted = true;
		c->admit_wait_us = waited_us;
		pthread_mutex_unlock(&c->lock);
		call_start_admitted(c);
		call_drop_request(c);
		return;
	}
	call_drop_request(c);
	execute_leave(c);
	if (rc == ADMIT_DRAINING) {
		metrics_admission_refused(METRICS_REFUSED_DRAINING);
		call_fail(c, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
	} else {
		metrics_admission_refused(METRICS_REFUSED_WAIT);
		admission_stats(c->srv->admission, &st);
		admission_describe(&st, figures, sizeof(figures));
		snprintf(err, sizeof(err),
			 "server is full: no running slot came free in %" PRIu64
			 " ms of waiting (%s); retry later",
			 waited_us / 1000, figures);
		call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, err);
	}
	call_unref(c); /* the backend's reference: nothing ran */
}

static void execute_handle(struct rpc_call *c)
{
	struct rpc_server *srv = c->srv;
	struct convert_exec cx = {0};
	grpc_slice raw = grpc_empty_slice();
	grpc_status_code code = GRPC_STATUS_OK;
	size_t raw_len = 0;
	char err[512] = "";
	enum admit_rc admit;
	bool posted;

	if (c->payload == NULL) {
		code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(err, sizeof(err), "missing ExecuteRequest message");
		goto out;
	}
	if (!payload_read(c->payload, &raw)) {
		code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(err, sizeof(err), "malformed ExecuteRequest (cannot decompress)");
		goto out;
	}
	grpc_byte_buffer_destroy(c->payload);
	c->payload = NULL;
	raw_len = GRPC_SLICE_LENGTH(raw);
	/* bytes -> validated request: the same function the fuzz target runs */
	code = status_of_request(convert_decode_execute(srv->cfg, GRPC_SLICE_START_PTR(raw),
							GRPC_SLICE_LENGTH(raw), &cx, err,
							sizeof(err)));
	grpc_slice_unref(raw); /* the decoded request is a copy */
	raw = grpc_empty_slice();
	/* for the log record, also of a request that is refused: it parsed */
	if (cx.msg != NULL && cx.req.request_id != NULL)
		convert_utf8_clean(cx.req.request_id, c->request_id, sizeof(c->request_id));
	if (code != GRPC_STATUS_OK)
		goto out;
	/* before the backend can call the sink, which reads it */
	snprintf(c->language, sizeof(c->language), "%s", cx.req.language);
	if (cx.req.session_id != NULL && cx.req.session_id[0] != '\0') {
		/* sessions belong to the key that made them */
		cx.req.session_owner = c->key ? auth_key_id(c->key) : "";
		snprintf(c->session_id, sizeof(c->session_id), "%s", cx.req.session_id);
	}
	code = execute_admit_key(c, &cx, err, sizeof(err));
	if (code != GRPC_STATUS_OK)
		goto out;
	/* the limits of record are the run's: the key's maxima applied */
	call_audit_request(c, &cx.req, cx.req.code, cx.req.code_len);

	/* The stream starts: watch for the call's end before anything else, and
	 * hold a reference for the backend until it delivers finished. */
	pthread_mutex_lock(&c->lock);
	posted = call_post_close_locked(c);
	if (posted)
		call_ref_locked(c);
	pthread_mutex_unlock(&c->lock);
	if (!posted) {
		execute_leave(c);
		goto out; /* the call is already gone: run nothing for it */
	}

	/* A running slot now, a place in the queue, or a refusal. The queued
	 * request keeps its decoded form (the wire bytes are gone). */
	c->cx = cx;
	c->waiter.done = execute_admitted;
	admit = admission_enter(srv->admission, &c->waiter, raw_len, err, sizeof(err));
	switch (admit) {
	case ADMIT_NOW:
		pthread_mutex_lock(&c->lock);
		c->admitted = true;
		pthread_mutex_unlock(&c->lock);
		memset(&c->cx, 0, sizeof(c->cx));
		execute_start(c, &cx.req, &execute_sink);
		break;
	case ADMIT_QUEUED:
		/* c->cx owns it now; execute_admitted or the cancel frees it */
		memset(&cx, 0, sizeof(cx));
		break;
	case ADMIT_DRAINING:
	case ADMIT_FULL:
	default:
		memset(&c->cx, 0, sizeof(c->cx));
		execute_leave(c);
		call_unref(c); /* the backend's reference: nothing runs */
		code = admit == ADMIT_FULL ? GRPC_STATUS_RESOURCE_EXHAUSTED :
					     GRPC_STATUS_UNAVAILABLE;
		metrics_admission_refused(admit == ADMIT_FULL ? METRICS_REFUSED_FULL :
								METRICS_REFUSED_DRAINING);
		break;
	}
out:
	if (code != GRPC_STATUS_OK) {
		if (code == GRPC_STATUS_INTERNAL)
			log_warnx("rpc: Execute: %s", err);
		call_fail(c, code, err);
	}
	convert_exec_free(&cx);
	grpc_slice_unref(raw);
}

/* ------------------------------------------------------------------ */
/* capibox.v1 Health                                                    */

static bool server_serving(struct rpc_server *srv)
{
	bool serving;

	pthread_mutex_lock(&srv->lock);
	serving = !srv->shutting_down;
	pthread_mutex_unlock(&srv->lock);
	return serving;
}

/*
 * Pool figures are taken when the request arrives, on the CQ thread: the
 * reply to a deep check is sent from a backend callback, where calling back
 * into the backend for its stats could deadlock on the backend's own lock.
 */
struct health_ctx {
	struct rpc_call *c;
	size_t n_stats;
	struct runtime_stats stats[MAX_POOLS];
	unsigned sessions_open;
};

static void health_stats(struct rpc_server *srv, struct health_ctx *h)
{
	h->n_stats = backend_stats(srv->backend, h->stats, MAX_POOLS);
	h->sessions_open = srv->backend->ops->sessions_open ?
				   srv->backend->ops->sessions_open(srv->backend) :
				   0;
	if (h->n_stats > MAX_POOLS)
		h->n_stats = MAX_POOLS;
}

/* Builds and sends the HealthResponse; rep is NULL for a shallow check. */
static void health_reply(struct health_ctx *h, const struct health_report *rep)
{
	struct rpc_call *c = h->c;
	struct rpc_server *srv = c->srv;
	Capibox__V1__HealthResponse resp = CAPIBOX__V1__HEALTH_RESPONSE__INIT;
	Capibox__V1__BackendHealth bh = CAPIBOX__V1__BACKEND_HEALTH__INIT;
	Capibox__V1__BackendHealth *bhs[1] = {&bh};
	Capibox__V1__RuntimePool pools[MAX_POOLS];
	Capibox__V1__RuntimePool *pool_ptrs[MAX_POOLS];
	struct timespec now;
	bool serving = server_serving(srv);
	struct admission_stats adm;
	char message[1100], bstatus[256];

	for (size_t i = 0; i < h->n_stats; i++) {
		const struct runtime_stats *st = &h->stats[i];

		capibox__v1__runtime_pool__init(&pools[i]);
		pools[i].language = (char *)(st->language ? st->language : "");
		pools[i].idle = st->idle;
		pools[i].busy = st->busy;
		pools[i].target = st->target;
		pools[i].runtime_version = (char *)(st->version ? st->version : "");
		pool_ptrs[i] = &pools[i];
	}

	bh.name = (char *)srv->backend->ops->name;
	bh.pools = pool_ptrs;
	bh.n_pools = h->n_stats;
	bh.status = CAPIBOX__V1__SERVING_STATUS__SERVING_STATUS_SERVING;
	resp.status = CAPIBOX__V1__SERVING_STATUS__SERVING_STATUS_SERVING;
	if (backend_status(srv->backend, bstatus, sizeof(bstatus)) == BACKEND_STATUS_DEGRADED) {
		bh.status = CAPIBOX__V1__SERVING_STATUS__SERVING_STATUS_DEGRADED;
		resp.status = CAPIBOX__V1__SERVING_STATUS__SERVING_STATUS_DEGRADED;
	}
	snprintf(message, sizeof(message), "%s", bstatus);
	if (rep) {
		snprintf(message, sizeof(message), "%.800s\n%.255s", rep->summary, bstatus);
		bh.canary_us = rep->slowest_us;
		if (rep->n_ok < rep->n) {
			bh.status = CAPIBOX__V1__SERVING_STATUS__SERVING_STATUS_NOT_SERVING;
			resp.status =
				rep->n_ok == 0 ?
					CAPIBOX__V1__SERVING_STATUS__SERVING_STATUS_NOT_SERVING :
					CAPIBOX__V1__SERVING_STATUS__SERVING_STATUS_DEGRADED;
		}
	}
	if (!serving) {
		bh.status = CAPIBOX__V1__SERVING_STATUS__SERVING_STATUS_NOT_SERVING;
		resp.status = CAPIBOX__V1__SERVING_STATUS__SERVING_STATUS_NOT_SERVING;
		if (message[0] == '\0')
			snprintf(message, sizeof(message), "draining: the server is shutting down");
	}
	bh.message = message;

	clock_gettime(CLOCK_MONOTONIC, &now);
	resp.version = (char *)CAPIBOX_VERSION;
	resp.uptime_s = (uint64_t)(now.tv_sec - srv->started.tv_sec);
	resp.backends = bhs;
	resp.n_backends = 1;
	admission_stats(srv->admission, &adm);
	resp.running = adm.running;
	resp.max_running = adm.max_running;
	resp.queued = adm.queued;
	resp.max_queued = adm.max_queued;
	resp.sessions_open = h->sessions_open;
	resp.max_sessions = srv->cfg->max_sessions;
	call_reply(c, &resp.base);
}

/* health_canary_start's completion: a backend thread, or the handler's. */
static void health_canary_done(void *arg, const struct health_report *rep)
{
	struct health_ctx *h = arg;
	struct rpc_call *c = h->c;

	health_reply(h, rep); /* sends nothing if the call already ended */
	free(h);
	call_unref(c); /* the canary's reference */
}

static void health_handle(struct rpc_call *c)
{
	struct rpc_server *srv = c->srv;
	Capibox__V1__HealthRequest *m;
	struct health_ctx *h;
	char err[256];
	bool deep, posted;

	m = (Capibox__V1__HealthRequest *)request_unpack(c,
							 &capibox__v1__health_request__descriptor,
							 "HealthRequest", NULL, err, sizeof(err));
	if (m == NULL) {
		call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, err);
		return;
	}
	deep = m->deep;
	capibox__v1__health_request__free_unpacked(m, NULL);
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	h->c = c;
	health_stats(srv, h);
	if (!deep) {
		health_reply(h, NULL);
		free(h);
		return;
	}
	/* The canary takes a while: notice a cancel meanwhile, and keep the
	 * call struct alive until the canary reports. */
	pthread_mutex_lock(&c->lock);
	posted = call_post_close_locked(c);
	if (posted)
		call_ref_locked(c);
	pthread_mutex_unlock(&c->lock);
	if (!posted) {
		free(h); /* the call is already gone */
		return;
	}
	if (health_canary_start(srv->cfg, srv->backend, health_canary_done, h) < 0) {
		free(h);
		call_unref(c);
		call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	}
}

/* ------------------------------------------------------------------ */
/* Sessions                                                             */

static void session_to_proto(const struct session_info *si, Capibox__V1__Session *out)
{
	capibox__v1__session__init(out);
	out->session_id = (char *)si->id;
	out->language = (char *)si->language;
	out->created_unix_ms = si->created_unix_ms;
	out->last_used_unix_ms = si->last_used_unix_ms;
	out->executions = si->executions;
	out->idle_timeout_s = si->idle_timeout_s;
}

/* The owner of the caller's sessions: its key's id, "" with keys off. */
static const char *session_owner(const struct rpc_call *c)
{
	return c->key ? auth_key_id(c->key) : "";
}

/* Notes a session call for its audit record. */
static void session_audit(struct rpc_call *c, const struct exec_request *req)
{
	if (!audit_enabled(c->srv->audit))
		return;
	c->audited = true;
	if (req != NULL) {
		c->n_files = req->n_files;
		for (size_t i = 0; i < req->n_files; i++)
			c->files_bytes += req->files[i].len;
		c->limits = req->limits;
	}
}

static void create_session_handle(struct rpc_call *c)
{
	struct rpc_server *srv = c->srv;
	Capibox__V1__CreateSessionRequest *m = NULL;
	Capibox__V1__Session out;
	struct convert_exec cx = {0};
	struct session_request sr = {0};
	struct session_info si;
	struct exec_limits asked = {0};
	grpc_slice raw = grpc_empty_slice();
	grpc_status_code code = GRPC_STATUS_OK;
	enum backend_rc brc;
	char err[512] = "";

	if (srv->backend->ops->session_create == NULL) {
		code = GRPC_STATUS_UNIMPLEMENTED;
		snprintf(err, sizeof(err), "the %s backend has no sessions",
			 srv->backend->ops->name);
		goto out;
	}
	m = (Capibox__V1__CreateSessionRequest *)request_unpack(
		c, &capibox__v1__create_session_request__descriptor, "CreateSessionRequest", &raw,
		err, sizeof(err));
	if (m == NULL) {
		code = GRPC_STATUS_INVALID_ARGUMENT;
		goto out;
	}
	if (convert_scan_create_session(GRPC_SLICE_START_PTR(raw), GRPC_SLICE_LENGTH(raw), err,
					sizeof(err)) < 0) {
		code = GRPC_STATUS_INVALID_ARGUMENT;
		goto out;
	}
	if (convert_create_session_request(m, &cx) < 0) {
		code = GRPC_STATUS_RESOURCE_EXHAUSTED;
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	snprintf(c->language, sizeof(c->language), "%s", m->language);
	/* the one-shot checks: language, files, environment, limits (code
	 * stands in: a session has none of its own) */
	code = GRPC_STATUS_OK;
	switch (request_validate_execute(srv->cfg, &cx.req, err, sizeof(err))) {
	case REQUEST_OK: break;
	case REQUEST_TOO_LARGE: code = GRPC_STATUS_RESOURCE_EXHAUSTED; break;
	default: code = GRPC_STATUS_INVALID_ARGUMENT; break;
	}
	if (code != GRPC_STATUS_OK)
		goto out;
	if (m->idle_timeout_s > srv->cfg->session_idle_max_s) {
		code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(err, sizeof(err), "idle_timeout_s: %u exceeds the server's maximum %u",
			 m->idle_timeout_s, srv->cfg->session_idle_max_s);
		goto out;
	}
	if (c->key != NULL) {
		convert_limits(m->limits, &asked);
		switch (auth_key_admit(c->key, &asked, &cx.req, err, sizeof(err))) {
		case AUTH_OK: break;
		case AUTH_LANGUAGE: code = GRPC_STATUS_PERMISSION_DENIED; goto out;
		default: code = GRPC_STATUS_RESOURCE_EXHAUSTED; goto out;
		}
		sr.max_per_owner = auth_key_limits(c->key)->max_sessions;
	}
	session_audit(c, &cx.req);
	sr.req = &cx.req;
	sr.owner = session_owner(c);
	sr.idle_timeout_s =
		m->idle_timeout_s ? m->idle_timeout_s : srv->cfg->session_idle_default_s;
	brc = srv->backend->ops->session_create(srv->backend, &sr, &si, err, sizeof(err));
	if (brc != BACKEND_OK) {
		code = status_of_backend(brc);
		if (code == GRPC_STATUS_INTERNAL)
			log_warnx("rpc: CreateSession: %s", err);
		goto out;
	}
	snprintf(c->session_id, sizeof(c->session_id), "%s", si.id);
	snprintf(c->sandbox_id, sizeof(c->sandbox_id), "%s", si.id);
	c->has_started = true;
	session_to_proto(&si, &out);
	call_reply(c, &out.base);
out:
	if (code != GRPC_STATUS_OK)
		call_fail(c, code, err);
	convert_exec_free(&cx);
	if (m != NULL)
		capibox__v1__create_session_request__free_unpacked(m, NULL);
	grpc_slice_unref(raw);
}

static void close_session_handle(struct rpc_call *c)
{
	struct rpc_server *srv = c->srv;
	Capibox__V1__CloseSessionRequest *m = NULL;
	Capibox__V1__CloseSessionResponse resp = CAPIBOX__V1__CLOSE_SESSION_RESPONSE__INIT;
	Capibox__V1__Session out;
	struct session_info si;
	grpc_status_code code = GRPC_STATUS_OK;
	enum backend_rc brc;
	char err[512] = "";

	if (srv->backend->ops->session_close == NULL) {
		code = GRPC_STATUS_UNIMPLEMENTED;
		snprintf(err, sizeof(err), "the %s backend has no sessions",
			 srv->backend->ops->name);
		goto out;
	}
	m = (Capibox__V1__CloseSessionRequest *)request_unpack(
		c, &capibox__v1__close_session_request__descriptor, "CloseSessionRequest", NULL,
		err, sizeof(err));
	if (m == NULL) {
		code = GRPC_STATUS_INVALID_ARGUMENT;
		goto out;
	}
	if (!request_session_id_ok(m->session_id)) {
		code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(err, sizeof(err), "session_id: not a session id (1-63 of [A-Za-z0-9_-])");
		goto out;
	}
	snprintf(c->session_id, sizeof(c->session_id), "%s", m->session_id);
	session_audit(c, NULL);
	brc = srv->backend->ops->session_close(srv->backend, m->session_id, session_owner(c), &si,
					       err, sizeof(err));
	if (brc != BACKEND_OK) {
		code = status_of_backend(brc);
		goto out;
	}
	snprintf(c->language, sizeof(c->language), "%s", si.language);
	snprintf(c->sandbox_id, sizeof(c->sandbox_id), "%s", si.id);
	c->has_started = true; /* the records name the session */
	session_to_proto(&si, &out);
	resp.session = &out;
	call_reply(c, &resp.base);
out:
	if (code != GRPC_STATUS_OK)
		call_fail(c, code, err);
	if (m != NULL)
		capibox__v1__close_session_request__free_unpacked(m, NULL);
}

#define LIST_MAX 4096

static void list_sessions_handle(struct rpc_call *c)
{
	struct rpc_server *srv = c->srv;
	Capibox__V1__ListSessionsRequest *m;
	Capibox__V1__ListSessionsResponse resp = CAPIBOX__V1__LIST_SESSIONS_RESPONSE__INIT;
	struct session_info *si = NULL;
	Capibox__V1__Session *ss = NULL, **ptrs = NULL;
	size_t n = 0;
	char err[256];

	m = (Capibox__V1__ListSessionsRequest *)request_unpack(
		c, &capibox__v1__list_sessions_request__descriptor, "ListSessionsRequest", NULL,
		err, sizeof(err));
	if (m == NULL) {
		call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, err);
		return;
	}
	capibox__v1__list_sessions_request__free_unpacked(m, NULL);
	if (srv->backend->ops->session_list != NULL) {
		size_t max = srv->cfg->max_sessions < LIST_MAX ? srv->cfg->max_sessions : LIST_MAX;
		si = calloc(max + 1, sizeof(*si));
		ss = calloc(max + 1, sizeof(*ss));
		ptrs = calloc(max + 1, sizeof(*ptrs));
		if (si == NULL || ss == NULL || ptrs == NULL) {
			call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		n = srv->backend->ops->session_list(srv->backend, session_owner(c), si, max);
	}
	for (size_t i = 0; i < n; i++) {
		session_to_proto(&si[i], &ss[i]);
		ptrs[i] = &ss[i];
	}
	resp.sessions = ptrs;
	resp.n_sessions = n;
	call_reply(c, &resp.base);
out:
	free(si);
	free(ss);
	free(ptrs);
}

/* ------------------------------------------------------------------ */
/* grpc.health.v1                                                       */

static bool service_known(const char *name)
{
	return name[0] == '\0' || strcmp(name, SANDBOX_SERVICE) == 0;
}

static Grpc__Health__V1__HealthCheckRequest *check_unpack(struct rpc_call *c)
{
	Grpc__Health__V1__HealthCheckRequest *m;
	char err[256];

	m = (Grpc__Health__V1__HealthCheckRequest *)request_unpack(
		c, &grpc__health__v1__health_check_request__descriptor, "HealthCheckRequest", NULL,
		err, sizeof(err));
	if (m == NULL)
		call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, err);
	return m;
}

static void check_handle(struct rpc_call *c)
{
	Grpc__Health__V1__HealthCheckRequest *m = check_unpack(c);
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	char err[300];

	if (m == NULL)
		return;
	if (!service_known(m->service)) {
		char name[160];

		snprintf(err, sizeof(err), "unknown service \"%s\"",
			 convert_utf8_clean(m->service, name, sizeof(name)));
		call_fail(c, GRPC_STATUS_NOT_FOUND, err);
	} else {
		resp.status =
			server_serving(c->srv) ?
				GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING :
				GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
		call_reply(c, &resp.base);
	}
	grpc__health__v1__health_check_request__free_unpacked(m, NULL);
}

/*
 * Sends the watcher's next message: at shutdown NOT_SERVING (SERVICE_UNKNOWN
 * stays as it is) together with status UNAVAILABLE, which ends the stream so
 * it does not hold up server shutdown. Caller holds c->lock.
 */
static void watch_send_locked(struct rpc_call *c, bool first)
{
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

	if (c->send_busy || c->closed || c->status_started)
		return;
	if (!c->watch_known)
		resp.status =
			GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
	else if (c->watch_end)
		resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
	else
		resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	if (c->watch_end)
		call_send_locked(c, (first || c->watch_known) ? &resp.base : NULL, true,
				 GRPC_STATUS_UNAVAILABLE, "the server is shutting down");
	else if (first)
		call_send_locked(c, &resp.base, false, GRPC_STATUS_OK, NULL);
}

static void watch_handle(struct rpc_call *c)
{
	struct rpc_server *srv = c->srv;
	Grpc__Health__V1__HealthCheckRequest *m = check_unpack(c);

	if (m == NULL)
		return;
	c->watch_known = service_known(m->service);
	grpc__health__v1__health_check_request__free_unpacked(m, NULL);

	pthread_mutex_lock(&srv->lock);
	pthread_mutex_lock(&c->lock);
	if (srv->shutting_down) {
		c->watch_end = true;
	} else {
		c->watch_next = srv->watchers;
		srv->watchers = c;
		c->watch_listed = true;
		call_ref_locked(c); /* the list's reference */
		call_post_close_locked(c);
	}
	watch_send_locked(c, true);
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&srv->lock);
}

/* Takes c off the watcher list, if it is on it. */
static void watch_unlist(struct rpc_call *c)
{
	struct rpc_server *srv = c->srv;
	bool was_listed = false;

	pthread_mutex_lock(&srv->lock);
	if (c->watch_listed) {
		for (struct rpc_call **pp = &srv->watchers; *pp; pp = &(*pp)->watch_next) {
			if (*pp == c) {
				*pp = c->watch_next;
				break;
			}
		}
		c->watch_listed = false;
		was_listed = true;
	}
	pthread_mutex_unlock(&srv->lock);
	if (was_listed)
		call_unref(c);
}

/* Shutdown: every watcher gets NOT_SERVING and its stream ends. */
static void watch_end_all(struct rpc_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	for (struct rpc_call *c = srv->watchers; c; c = c->watch_next) {
		pthread_mutex_lock(&c->lock);
		c->watch_end = true;
		watch_send_locked(c, false);
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&srv->lock);
}

/* ------------------------------------------------------------------ */
/* server reflection (v1 and v1alpha): one request, one answer, in turn  */

static void reflect_recv_done(struct rpc_server *srv, struct rpc_call *c, bool ok);

/* Starts {initial metadata the first time, RECV_MESSAGE}. Caller holds c->lock. */
static void reflect_recv_locked(struct rpc_call *c)
{
	grpc_op ops[2];
	size_t n = 0;

	if (c->closed || c->status_started || c->recv_busy)
		return;
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n].data.recv_message.recv_message = &c->recv_buf;
	n++;
	c->recv_tag.fn = reflect_recv_done;
	c->recv_tag.call = c;
	if (!call_batch_locked(c, ops, n, &c->recv_tag)) {
		c->closed = true;
		c->cancelled = 1;
		call_drop_grpc_locked(c);
		return;
	}
	c->md_sent = true;
	c->recv_busy = true;
	call_ref_locked(c);
}

static void reflect_handle(struct rpc_call *c)
{
	pthread_mutex_lock(&c->lock);
	reflect_recv_locked(c);
	pthread_mutex_unlock(&c->lock);
}

static void reflect_recv_done(struct rpc_server *srv, struct rpc_call *c, bool ok)
{
	Grpc__Reflection__V1__ServerReflectionResponse *resp;
	grpc_byte_buffer *bb;
	grpc_slice s;
	char err[128];

	(void)srv;
	pthread_mutex_lock(&c->lock);
	c->recv_busy = false;
	bb = c->recv_buf;
	c->recv_buf = NULL;
	if (!ok) {
		c->closed = true; /* the call is gone */
	} else if (bb == NULL) {
		/* The client half-closed: the stream ends well. */
		call_send_locked(c, NULL, true, GRPC_STATUS_OK, NULL);
	} else if (!payload_read(bb, &s)) {
		call_send_locked(c, NULL, true, GRPC_STATUS_INVALID_ARGUMENT,
				 "malformed ServerReflectionRequest (cannot decompress)");
	} else {
		resp = reflection_answer(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), err,
					 sizeof(err));
		if (resp == NULL) {
			call_send_locked(c, NULL, true, GRPC_STATUS_INVALID_ARGUMENT, err);
		} else {
			call_send_locked(c, &resp->base, false, GRPC_STATUS_OK, NULL);
			reflection_answer_free(resp); /* packed by now */
		}
		grpc_slice_unref(s);
	}
	if (bb)
		grpc_byte_buffer_destroy(bb);
	call_drop_grpc_locked(c);
	pthread_mutex_unlock(&c->lock);
	call_unref(c); /* the batch's reference */
}

/* ------------------------------------------------------------------ */
/* completion handlers                                                  */

static void call_send_done(struct rpc_server *srv, struct rpc_call *c, bool ok)
{
	struct exec *resume = NULL;
	bool unlist = false;

	(void)srv;
	pthread_mutex_lock(&c->lock);
	c->send_busy = false;
	if (c->send_buf)
		grpc_byte_buffer_destroy(c->send_buf);
	c->send_buf = NULL;
	if (c->has_status_details)
		grpc_slice_unref(c->status_details);
	c->has_status_details = false;
	if (c->send_has_close || (c->send_is_final && !ok))
		c->closed = true;
	if (c->send_has_close) /* the status and the call's end in one batch */
		call_note_end_locked(c, !ok || c->cancelled);
	/* A failed non-final send means the stream is gone; the RECV_CLOSE
	 * completion reports it and cancels the execution. */
	switch (c->kind) {
	case RPC_EXECUTE:
		if (!c->send_is_final)
			resume = exec_resume_locked(c);
		break;
	case RPC_WATCH:
		if (c->watch_end)
			watch_send_locked(c, false);
		unlist = c->closed;
		break;
	case RPC_REFLECT_V1:
	case RPC_REFLECT_V1ALPHA:
		if (!ok)
			c->closed = true;
		else if (!c->send_is_final)
			reflect_recv_locked(c); /* answered: read the next request */
		break;
	default: break;
	}
	call_drop_grpc_locked(c);
	pthread_mutex_unlock(&c->lock);
	if (resume)
		backend_resume(resume);
	if (unlist)
		watch_unlist(c);
	call_unref(c); /* the batch's reference */
}

static void call_close_done(struct rpc_server *srv, struct rpc_call *c, bool ok)
{
	struct exec *cancel = NULL;
	bool cancelled, waiting = false;

	pthread_mutex_lock(&c->lock);
	c->closed = true;
	cancelled = !ok || c->cancelled;
	call_note_end_locked(c, cancelled);
	if ((c->kind == RPC_EXECUTE || c->kind == RPC_ANALYZE) && cancelled && !c->finished) {
		/* Client cancel or deadline: end the run; finished still comes. */
		if (c->exec_known)
			cancel = c->exec;
		else
			c->cancel_pending = true;
		waiting = true;
	}
	call_drop_grpc_locked(c);
	pthread_mutex_unlock(&c->lock);
	if (cancel)
		backend_cancel(cancel, EXEC_REASON_CANCELLED);
	/* A call still waiting for a running slot leaves the queue at once. */
	if (waiting && cancel == NULL && admission_withdraw(srv->admission, &c->waiter)) {
		call_drop_request(c);
		execute_leave(c);
		call_unref(c); /* the backend's reference: nothing ran */
	}
	if (c->kind == RPC_WATCH)
		watch_unlist(c);
	call_unref(c); /* the close batch's reference */
}

/* ------------------------------------------------------------------ */
/* Analyze: one sandbox run of the statistics engine, output collected  */

static void analyze_on_started(void *arg, const struct exec_started *st)
{
	struct rpc_call *c = arg;
	struct exec *resume;

	c->has_started = true;
	snprintf(c->sandbox_id, sizeof(c->sandbox_id), "%s", st->sandbox_id ? st->sandbox_id : "");
	c->warm = st->warm;
	c->queued_us = st->queued_us + c->admit_wait_us;
	c->start_us = st->start_us;
	pthread_mutex_lock(&c->lock);
	resume = exec_resume_locked(c);
	pthread_mutex_unlock(&c->lock);
	if (resume)
		backend_resume(resume);
}

static void analyze_on_output(void *arg, enum exec_stream stream, const uint8_t *data, size_t len)
{
	struct rpc_call *c = arg;
	struct exec *resume;

	if (stream == EXEC_STDOUT) {
		/* bounded by the run's output limit, which the backend enforces */
		if (c->out_len + len > c->out_cap) {
			size_t cap = c->out_cap ? c->out_cap : 64 * 1024;
			uint8_t *p;

			while (cap < c->out_len + len)
				cap *= 2;
			p = realloc(c->out_buf, cap);
			if (p == NULL) {
				/* the result is lost: an empty stdout says so */
				c->out_lost = true;
				len = 0;
			} else {
				c->out_buf = p;
				c->out_cap = cap;
			}
		}
		if (len && !c->out_lost) {
			memcpy(c->out_buf + c->out_len, data, len);
			c->out_len += len;
		}
	} else {
		/* the engine's line, or code mode's tracebacks (up to 1 MiB) */
		analyze_stderr_add(c->job, data, len);
	}
	pthread_mutex_lock(&c->lock);
	resume = exec_resume_locked(c);
	pthread_mutex_unlock(&c->lock);
	if (resume)
		backend_resume(resume);
}

static void analyze_on_finished(void *arg, const struct exec_result *res)
{
	struct rpc_call *c = arg;
	Capibox__V1__AnalyzeResponse *resp = NULL;
	Capibox__V1__Finished fin;
	char fin_msg[sizeof(res->message) * 2], msg[512];
	enum request_rc rc;

	metrics_exec_finished("analyze", res->reason, res->wall_time_us);
	c->result = *res;
	c->result.message[0] = '\0';
	c->has_result = true;
	execute_leave(c); /* the sandbox is gone: free the slots first */
	rc = analyze_result(c->job, res, c->out_buf, c->out_lost ? 0 : c->out_len, &resp, &fin,
			    fin_msg, sizeof(fin_msg), msg, sizeof(msg));
	free(c->out_buf);
	c->out_buf = NULL;
	c->out_len = c->out_cap = 0;
	pthread_mutex_lock(&c->lock);
	c->finished = true;
	pthread_mutex_unlock(&c->lock);
	if (rc == REQUEST_OK)
		call_reply(c, &resp->base);
	else
		call_fail(c, status_of_request(rc), msg);
	analyze_response_free(resp);
	call_unref(c); /* the backend's reference */
}

static const struct exec_sink analyze_sink = {
	.started = analyze_on_started,
	.output = analyze_on_output,
	.finished = analyze_on_finished,
};

static void analyze_handle(struct rpc_call *c)
{
	struct rpc_server *srv = c->srv;
	struct analyze_job *job = NULL;
	grpc_slice raw = grpc_empty_slice();
	grpc_status_code code = GRPC_STATUS_OK;
	size_t raw_len = 0;
	char err[512] = "";
	enum admit_rc admit;
	bool posted;

	if (c->payload == NULL || !payload_read(c->payload, &raw)) {
		code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(err, sizeof(err), "%s AnalyzeRequest",
			 c->payload == NULL ? "missing" : "malformed (cannot decompress)");
		goto out;
	}
	grpc_byte_buffer_destroy(c->payload);
	c->payload = NULL;
	raw_len = GRPC_SLICE_LENGTH(raw);
	job = calloc(1, sizeof(*job));
	if (job == NULL) {
		code = GRPC_STATUS_RESOURCE_EXHAUSTED;
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	code = status_of_request(analyze_decode(srv->cfg, GRPC_SLICE_START_PTR(raw), raw_len, job,
						err, sizeof(err)));
	grpc_slice_unref(raw);
	raw = grpc_empty_slice();
	if (job->msg != NULL)
		convert_utf8_clean(job->msg->request_id, c->request_id, sizeof(c->request_id));
	if (code != GRPC_STATUS_OK)
		goto out;
	snprintf(c->language, sizeof(c->language), "analyze");
	{
		/* the key's limits and concurrency, as for Execute (its
		 * maxima lower the run's default limits) */
		struct convert_exec kx = {.req = job->req};

		kx.req.language = "python";
		code = execute_admit_key(c, &kx, err, sizeof(err));
		if (code != GRPC_STATUS_OK)
			goto out;
		job->req.limits = kx.req.limits;
	}
	/* the code of record is the caller's (pandas code, usually none), not
	 * the engine program; files and stdin are the dataset and options */
	call_audit_request(c, &job->req, job->msg->code, strlen(job->msg->code));

	pthread_mutex_lock(&c->lock);
	posted = call_post_close_locked(c);
	if (posted)
		call_ref_locked(c);
	pthread_mutex_unlock(&c->lock);
	if (!posted) {
		execute_leave(c);
		goto out;
	}
	c->job = job;
	job = NULL;
	c->waiter.done = execute_admitted;
	admit = admission_enter(srv->admission, &c->waiter, raw_len, err, sizeof(err));
	switch (admit) {
	case ADMIT_NOW:
		pthread_mutex_lock(&c->lock);
		c->admitted = true;
		pthread_mutex_unlock(&c->lock);
		/* c->job stays with the call until it is freed: the engine's
		 * request (options, dataset) is read by backend_execute only */
		execute_start(c, &c->job->req, &analyze_sink);
		break;
	case ADMIT_QUEUED: break;
	case ADMIT_DRAINING:
	case ADMIT_FULL:
	default:
		execute_leave(c);
		call_unref(c); /* the backend's reference: nothing runs */
		code = admit == ADMIT_FULL ? GRPC_STATUS_RESOURCE_EXHAUSTED :
					     GRPC_STATUS_UNAVAILABLE;
		metrics_admission_refused(admit == ADMIT_FULL ? METRICS_REFUSED_FULL :
								METRICS_REFUSED_DRAINING);
		break;
	}
out:
	if (code != GRPC_STATUS_OK) {
		if (code == GRPC_STATUS_INTERNAL)
			log_warnx("rpc: Analyze: %s", err);
		call_fail(c, code, err);
	}
	if (job) {
		analyze_job_free(job);
		free(job);
	}
	grpc_slice_unref(raw);
}

static void unknown_handle(struct rpc_call *c)
{
	char method[200], msg[260];
	size_t len = GRPC_SLICE_LENGTH(c->details.method);
	const uint8_t *p = GRPC_SLICE_START_PTR(c->details.method);
	size_t o = 0;

	/* The path is the client's: keep it short and printable. */
	for (size_t i = 0; i < len && o + 1 < sizeof(method); i++)
		method[o++] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	method[o] = '\0';
	snprintf(msg, sizeof(msg), "unknown method %s", o ? method : "(empty)");
	call_fail(c, GRPC_STATUS_UNIMPLEMENTED, msg);
}

static bool slice_is(grpc_slice s, const char *lit)
{
	size_t n = strlen(lit);

	return GRPC_SLICE_LENGTH(s) == n && memcmp(GRPC_SLICE_START_PTR(s), lit, n) == 0;
}

/*
 * Finds the secret in the call's metadata: "authorization: Bearer <secret>"
 * or "x-api-key: <secret>" (keys arrive lower-case). *secret points into the
 * metadata, which the call struct owns. False when a value is malformed.
 */
static bool call_secret(const struct rpc_call *c, const char **secret, size_t *len)
{
	*secret = NULL;
	*len = 0;
	for (size_t i = 0; i < c->md.count; i++) {
		const grpc_metadata *m = &c->md.metadata[i];
		const char *v = (const char *)GRPC_SLICE_START_PTR(m->value);
		size_t vl = GRPC_SLICE_LENGTH(m->value);

		if (slice_is(m->key, "authorization")) {
			if (vl < 7 || strncasecmp(v, "bearer ", 7) != 0)
				return false; /* another scheme: never a match */
			v += 7;
			vl -= 7;
			while (vl > 0 && *v == ' ') {
				v++;
				vl--;
			}
		} else if (!slice_is(m->key, "x-api-key")) {
			continue;
		}
		*secret = v;
		*len = vl;
		return true;
	}
	return true;
}

/*
 * Authenticates a call to a protected method; on success c->key holds the
 * caller's key (NULL when keys are off). On failure answers UNAUTHENTICATED
 * and logs who tried, never what they sent.
 */
static bool call_authenticate(struct rpc_server *srv, struct rpc_call *c)
{
	const char *secret, *why;
	size_t len;
	enum auth_rc rc;
	char *peer;

	if (c->kind >= RPC_N_REGISTERED || methods[c->kind].open)
		return true;
	if (!call_secret(c, &secret, &len))
		rc = AUTH_BAD;
	else
		rc = auth_check(srv->auth, secret, len, &c->key);
	if (rc == AUTH_OK)
		return true;
	why = rc == AUTH_MISSING ? "missing API key: send \"authorization: Bearer <secret>\" "
				   "or \"x-api-key: <secret>\" metadata" :
				   "invalid API key";
	metrics_auth_failed(rc == AUTH_MISSING);
	peer = c->call ? grpc_call_get_peer(c->call) : NULL;
	log_warnx("auth: %s from %s refused: %s", kind_name(c->kind), peer ? peer : "?",
		  rc == AUTH_MISSING ? "no key" : "unknown key");
	gpr_free(peer);
	call_fail(c, GRPC_STATUS_UNAUTHENTICATED, why);
	return false;
}

/* For the log record: the peer's address and, with mTLS, its certificate's subject. */
static void call_note_peer(struct rpc_call *c)
{
	char *peer = grpc_call_get_peer(c->call);
	grpc_auth_context *ctx;

	snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "");
	gpr_free(peer);
	if (c->srv->cfg->tls_client_ca_file == NULL)
		return;
	ctx = grpc_call_auth_context(c->call);
	if (ctx != NULL) {
		grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(
			ctx, GRPC_X509_SUBJECT_PROPERTY_NAME);
		const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
		char subject[256];

		if (p != NULL && p->value != NULL) {
			snprintf(subject, sizeof(subject), "%.*s",
				 (int)(p->value_length < sizeof(subject) ? p->value_length :
									   sizeof(subject) - 1),
				 p->value);
			convert_utf8_clean(subject, c->client_cert, sizeof(c->client_cert));
		}
		grpc_auth_context_release(ctx);
	}
}

static void call_new_done(struct rpc_server *srv, struct rpc_call *c, bool ok)
{
	if (!ok) {
		/* The server is shutting down: the slot was never filled. */
		call_unref(c);
		return;
	}
	/* Keep the method's slot posted before serving this call. */
	slot_post(srv, c->kind);
	c->served = true;
	clock_gettime(CLOCK_MONOTONIC, &c->t_start);
	if (log_is_json() || audit_enabled(srv->audit))
		call_note_peer(c); /* for the log record and the audit record */

	if (!call_authenticate(srv, c))
		; /* answered */
	else if (c->kind < RPC_N_REGISTERED)
		methods[c->kind].handle(c);
	else
		unknown_handle(c);
	call_unref(c); /* the handler's reference */
}

static void slot_post(struct rpc_server *srv, enum rpc_kind kind)
{
	struct rpc_call *c;
	grpc_call_error rc;

	c = call_new(srv, kind);
	if (c == NULL) {
		log_warnx("rpc: out of memory: a request slot for %s is lost", kind_name(kind));
		return;
	}
	c->new_tag.fn = call_new_done;
	c->new_tag.call = c;
	pthread_mutex_lock(&srv->lock);
	if (srv->shutting_down) {
		pthread_mutex_unlock(&srv->lock);
		call_unref(c);
		return;
	}
	if (kind == RPC_UNKNOWN)
		rc = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md, srv->cq,
					      srv->cq, &c->new_tag);
	else
		rc = grpc_server_request_registered_call(
			srv->server, srv->methods[kind], &c->call, &c->deadline, &c->md,
			methods[kind].bidi ? NULL : &c->payload, srv->cq, srv->cq, &c->new_tag);
	pthread_mutex_unlock(&srv->lock);
	if (rc != GRPC_CALL_OK) {
		log_warnx("rpc: cannot post a request slot: %s", grpc_call_error_to_string(rc));
		call_unref(c);
	}
}

static void server_shutdown_done(struct rpc_server *srv, struct rpc_call *c, bool ok)
{
	(void)c;
	(void)ok;
	pthread_mutex_lock(&srv->lock);
	srv->shutdown_done = true;
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
}

static void *worker_main(void *arg)
{
	struct rpc_server *srv = arg;

	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
			srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		struct rpc_tag *tag;

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		tag = ev.tag;
		tag->fn(srv, tag->call, ev.success != 0);
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* start and shutdown                                                   */

/* What clients should dial: the listen address with the bound port. */
static void bound_address(const char *listen, int port, char *buf, size_t len)
{
	const char *colon;

	if (strncmp(listen, "unix:", 5) == 0 || strncmp(listen, "unix-abstract:", 14) == 0) {
		snprintf(buf, len, "%s", listen);
		return;
	}
	colon = strrchr(listen, ':');
	if (colon == NULL || (strchr(listen, ']') && colon < strchr(listen, ']')))
		snprintf(buf, len, "%s:%d", listen, port);
	else
		snprintf(buf, len, "%.*s:%d", (int)(colon - listen), listen, port);
}

/* Writes the address to path atomically, so a reader never sees half of it. */
static void ready_file_write(const char *path, const char *addr)
{
	char tmp[PATH_MAX];
	size_t len = strlen(addr), off = 0;
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		fatalx("ready file path too long: %s", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		fatal("open %s", tmp);
	while (off < len) {
		ssize_t n = write(fd, addr + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fatal("write %s", tmp);
		off += (size_t)n;
	}
	if (write(fd, "\n", 1) != 1)
		fatal("write %s", tmp);
	if (close(fd) < 0)
		fatal("close %s", tmp);
	if (rename(tmp, path) < 0)
		fatal("rename %s to %s", tmp, path);
}

/* Metrics label calls by method: the table's paths, "unknown" for the rest. */
static void metrics_methods_init(void)
{
	const char *paths[RPC_N_KINDS];

	for (int i = 0; i < RPC_N_KINDS; i++)
		paths[i] = i < RPC_N_REGISTERED ? methods[i].path : "unknown";
	metrics_init(paths, RPC_N_KINDS);
}

struct rpc_server *rpc_server_start(const struct config *cfg, struct backend *backend,
				    struct admission *adm)
{
	struct rpc_server *srv;
	grpc_server_credentials *creds;
	grpc_arg args[2];
	grpc_channel_args chargs;
	pthread_condattr_t ca;
	char addr[512];
	int port;

	srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		fatal("calloc");
	srv->cfg = cfg;
	srv->backend = backend;
	clock_gettime(CLOCK_MONOTONIC, &srv->started);
	pthread_mutex_init(&srv->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_rwlock_init(&srv->cq_lock, NULL);
	srv->shutdown_tag.fn = server_shutdown_done;
	srv->admission = adm;
	{
		char err[512];

		srv->audit = audit_open(cfg, err, sizeof(err));
		if (srv->audit == NULL)
			fatalx("audit log: %s", err);
	}
	srv->auth = auth_new();
	if (cfg->keys_file) {
		char err[512];
		int n = auth_load(srv->auth, cfg->keys_file, err, sizeof(err));

		if (n < 0)
			fatalx("keys file: %s", err);
		log_info("API keys: %d loaded from %s; Execute, Analyze and Health need one", n,
			 cfg->keys_file);
	}

	if (cfg->supervisor_path != NULL) {
		/* Analyze's engine lives next to the supervisor (and capiboxd) */
		const char *slash = strrchr(cfg->supervisor_path, '/');
		char path[PATH_MAX], err[512];
		int dir = slash ? (int)(slash - cfg->supervisor_path) : 1;

		snprintf(path, sizeof(path), "%.*s/capibox-analyze", dir,
			 slash ? cfg->supervisor_path : ".");
		if (analyze_engine_load(path, err, sizeof(err)) < 0)
			log_warnx("Analyze: cannot load its engine: %s; Analyze answers "
				  "UNIMPLEMENTED",
				  err);
	}
	metrics_methods_init();
	reflection_init();
	grpc_init();
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[0].value.integer =
		cfg->max_message_bytes > INT_MAX ? INT_MAX : (int)cfg->max_message_bytes;
	/* gRPC sets SO_REUSEPORT by default: a second daemon would then share
	 * the port silently instead of failing to bind. */
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
	args[1].value.integer = 0;
	chargs.num_args = 2;
	chargs.args = args;

	srv->cq = grpc_completion_queue_create_for_next(NULL);
	srv->server = grpc_server_create(&chargs, NULL);
	grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
	for (int i = 0; i < RPC_N_REGISTERED; i++) {
		srv->methods[i] = grpc_server_register_method(
			srv->server, methods[i].path, NULL,
			methods[i].bidi ? GRPC_SRM_PAYLOAD_NONE :
					  GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
			0);
		if (srv->methods[i] == NULL)
			fatalx("cannot register %s", methods[i].path);
	}
	if (cfg->tls_cert_file) {
		char err[512];

		srv->tls = tls_new(cfg, err, sizeof(err));
		if (srv->tls == NULL)
			fatalx("TLS: %s", err);
		creds = tls_server_credentials(srv->tls);
	} else {
		creds = grpc_insecure_server_credentials_create();
	}
	port = grpc_server_add_http2_port(srv->server, cfg->listen, creds);
	grpc_server_credentials_release(creds);
	if (port == 0)
		fatalx("cannot listen on %s (address in use, invalid or not permitted)",
		       cfg->listen);
	grpc_server_start(srv->server);

	srv->n_threads = cfg->cq_threads ? cfg->cq_threads : 1;
	srv->threads = calloc(srv->n_threads, sizeof(srv->threads[0]));
	if (srv->threads == NULL)
		fatal("calloc");
	for (unsigned i = 0; i < srv->n_threads; i++) {
		int rc = pthread_create(&srv->threads[i], NULL, worker_main, srv);

		if (rc != 0) {
			errno = rc;
			fatal("pthread_create");
		}
	}
	for (int k = 0; k < RPC_N_KINDS; k++)
		for (int i = 0; i < SLOTS_PER_METHOD; i++)
			slot_post(srv, (enum rpc_kind)k);

	bound_address(cfg->listen, port, addr, sizeof(addr));
	if (cfg->ready_file)
		ready_file_write(cfg->ready_file, addr);
	log_info("listening on %s (%s, %u completion-queue threads)", addr,
		 !cfg->tls_cert_file	 ? "plaintext" :
		 cfg->tls_client_ca_file ? "TLS, client certificates required" :
					   "TLS",
		 srv->n_threads);
	return srv;
}

/* Waits up to ms (UINT_MAX: forever) for the shutdown tag; true if it fired. */
static bool shutdown_wait(struct rpc_server *srv, unsigned ms)
{
	struct timespec until;
	bool done;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&srv->lock);
	while (!srv->shutdown_done) {
		if (ms == UINT_MAX)
			pthread_cond_wait(&srv->cond, &srv->lock);
		else if (pthread_cond_timedwait(&srv->cond, &srv->lock, &until) == ETIMEDOUT)
			break;
	}
	done = srv->shutdown_done;
	pthread_mutex_unlock(&srv->lock);
	return done;
}

/* Waits up to ms for every call struct to be freed; true if none is left. */
static bool calls_wait(struct rpc_server *srv, unsigned ms)
{
	struct timespec until;
	bool none;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&srv->lock);
	while (srv->n_calls > 0)
		if (pthread_cond_timedwait(&srv->cond, &srv->lock, &until) == ETIMEDOUT)
			break;
	none = srv->n_calls == 0;
	pthread_mutex_unlock(&srv->lock);
	return none;
}

void rpc_server_shutdown(struct rpc_server *srv, unsigned grace_ms)
{
	bool leftovers = false;

	log_info("shutting down: %u executions running, grace %u ms", backend_live(srv->backend),
		 grace_ms);
	pthread_mutex_lock(&srv->lock);
	srv->shutting_down = true; /* health NOT_SERVING from here on */
	pthread_mutex_unlock(&srv->lock);
	watch_end_all(srv);
	admission_drain(srv->admission); /* waiting calls: UNAVAILABLE */
	backend_drain(srv->backend);
	grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->shutdown_tag);

	if (shutdown_wait(srv, grace_ms)) {
		log_info("all calls ended within the grace period");
	} else {
		log_info("grace period over: cancelling %u executions", backend_live(srv->backend));
		backend_cancel_all(srv->backend, EXEC_REASON_CANCELLED);
		if (!shutdown_wait(srv, CANCEL_WAIT_MS)) {
			log_info("calls still open after %u ms: cancelling them", CANCEL_WAIT_MS);
			grpc_server_cancel_all_calls(srv->server);
			shutdown_wait(srv, UINT_MAX);
		}
	}

	pthread_rwlock_wrlock(&srv->cq_lock);
	srv->cq_down = true;
	grpc_completion_queue_shutdown(srv->cq);
	pthread_rwlock_unlock(&srv->cq_lock);
	for (unsigned i = 0; i < srv->n_threads; i++)
		pthread_join(srv->threads[i], NULL);

	/* Calls that were cancelled may still wait for the backend's finished;
	 * their sink argument is ours, so srv must outlive them. */
	if (!calls_wait(srv, LEFTOVER_WAIT_MS)) {
		backend_cancel_all(srv->backend, EXEC_REASON_CANCELLED);
		if (!calls_wait(srv, LEFTOVER_WAIT_MS)) {
			log_warnx("%u calls still wait for their backend; leaving them",
				  srv->n_calls);
			leftovers = true;
		}
	}

	grpc_server_destroy(srv->server);
	grpc_completion_queue_destroy(srv->cq);
	grpc_shutdown_blocking();
	tls_free(srv->tls);
	srv->tls = NULL;
	free(srv->threads);
	srv->threads = NULL;
	if (leftovers)
		return; /* a late callback may still use srv: leak it */
	audit_close(srv->audit);
	auth_free(srv->auth);
	pthread_rwlock_destroy(&srv->cq_lock);
	pthread_cond_destroy(&srv->cond);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
	log_info("rpc server stopped");
}

void rpc_server_reload(struct rpc_server *srv)
{
	char err[512];
	int n;

	if (srv->tls) {
		if (tls_reload(srv->tls, err, sizeof(err)) < 0)
			log_warnx("reload: keeping the previous TLS certificate: %s", err);
		else
			log_info("reload: TLS certificate reloaded from %s",
				 srv->cfg->tls_cert_file);
	}
	audit_reopen(srv->audit); /* logrotate moved it away */
	if (srv->cfg->keys_file == NULL)
		return;
	n = auth_load(srv->auth, srv->cfg->keys_file, err, sizeof(err));
	if (n < 0)
		log_warnx("reload: keeping the previous API keys: %s", err);
	else
		log_info("reload: %d API keys loaded from %s", n, srv->cfg->keys_file);
}
