/*
 * libcapibox: the C client library for capiboxd.
 *
 *   struct capibox_client *c = capibox_connect("127.0.0.1:50051", NULL, err, sizeof(err));
 *   struct capibox_exec_request req = { .language = "python", .code = "print(1)" };
 *   struct capibox_status st;
 *   capibox_execute(c, &req, on_event, arg, &st);
 *   capibox_close(c);
 *
 * Calls are synchronous and may be made from several threads at once on one
 * client. Strings and buffers passed in are borrowed for the call only; data
 * handed to callbacks is valid only during the callback.
 */
#ifndef CAPIBOX_CLIENT_H
#define CAPIBOX_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* gRPC status codes (values as in grpc/status.h). */
enum capibox_code {
	CAPIBOX_OK = 0,
	CAPIBOX_CANCELLED = 1,
	CAPIBOX_UNKNOWN = 2,
	CAPIBOX_INVALID_ARGUMENT = 3,
	CAPIBOX_DEADLINE_EXCEEDED = 4,
	CAPIBOX_NOT_FOUND = 5,
	CAPIBOX_PERMISSION_DENIED = 7,
	CAPIBOX_RESOURCE_EXHAUSTED = 8,
	CAPIBOX_UNIMPLEMENTED = 12,
	CAPIBOX_INTERNAL = 13,
	CAPIBOX_UNAVAILABLE = 14,
	CAPIBOX_UNAUTHENTICATED = 16,
};

/* Outcome of an RPC: the gRPC status code and its message. */
struct capibox_status {
	int code; /* enum capibox_code */
	char message[512];
};

/* "INVALID_ARGUMENT", "UNAVAILABLE", ... for any gRPC code; never NULL. */
const char *capibox_code_name(int code);

/* Values match capibox.v1.Reason. */
enum capibox_reason {
	CAPIBOX_REASON_UNSPECIFIED = 0,
	CAPIBOX_REASON_EXITED = 1,
	CAPIBOX_REASON_SIGNALED = 2,
	CAPIBOX_REASON_WALL_TIMEOUT = 3,
	CAPIBOX_REASON_CPU_TIMEOUT = 4,
	CAPIBOX_REASON_MEMORY_LIMIT = 5,
	CAPIBOX_REASON_OUTPUT_LIMIT = 6,
	CAPIBOX_REASON_CANCELLED = 7,
	CAPIBOX_REASON_SANDBOX_ERROR = 8,
};

/* "exited", "wall_timeout", ...; never NULL. */
const char *capibox_reason_name(int reason);

struct capibox_limits {
	uint32_t wall_time_ms; /* 0 = server default */
	uint32_t cpu_time_ms;
	uint64_t memory_bytes;
	uint32_t max_processes;
	uint64_t max_output_bytes;
	uint64_t max_file_bytes;
};

struct capibox_file {
	const char *path; /* relative to /home/user */
	const uint8_t *data;
	size_t len;
	uint32_t mode; /* 0 = 0644 */
};

struct capibox_env {
	const char *name;
	const char *value;
};

struct capibox_exec_request {
	const char *language;
	const char *code;
	size_t code_len; /* 0 = strlen(code) */
	const struct capibox_file *files;
	size_t n_files;
	const struct capibox_env *env;
	size_t n_env;
	const uint8_t *stdin_data;
	size_t stdin_len;
	struct capibox_limits limits;
	const char *request_id;	    /* may be NULL */
	int64_t deadline_ms;	    /* 0 = none; else RPC deadline from now */
	const char *const *collect; /* globs of files to return as artifacts */
	size_t n_collect;
};

enum capibox_event_kind {
	CAPIBOX_EVENT_STARTED = 1,
	CAPIBOX_EVENT_STDOUT = 2,
	CAPIBOX_EVENT_STDERR = 3,
	CAPIBOX_EVENT_ARTIFACT = 4,
	CAPIBOX_EVENT_FINISHED = 5,
};

struct capibox_event {
	enum capibox_event_kind kind;
	union {
		struct {
			const char *sandbox_id;
			const char *language;
			uint64_t queued_us;
			uint64_t start_us;
			const char *backend;
			bool warm; /* a pooled sandbox started ahead ran it */
		} started;
		struct { /* STDOUT and STDERR */
			const uint8_t *data;
			size_t len;
		} output;
		struct {
			const char *path;
			const char *mime_type;
			const uint8_t *content;
			size_t len;
			uint64_t size;
			bool truncated;
		} artifact;
		struct {
			int reason; /* enum capibox_reason */
			int32_t exit_code;
			int32_t signal;
			uint64_t wall_time_us;
			uint64_t cpu_time_us;
			uint64_t peak_memory_bytes;
			const char *message;
			uint64_t stdout_bytes;
			uint64_t stderr_bytes;
		} finished;
	} u;
};

/*
 * Called once per event, in order. Return 0 to continue, non-zero to cancel
 * the call (capibox_execute then returns with CAPIBOX_CANCELLED).
 */
typedef int (*capibox_event_cb)(const struct capibox_event *ev, void *arg);

struct capibox_connect_opts {
	bool wait_for_ready;	  /* wait for the server instead of failing fast */
	size_t max_message_bytes; /* receive limit; 0 = 64 MiB */
	/* API key secret, sent as "authorization: Bearer <token>" on every
	 * call (plaintext too: loopback and unix sockets); NULL = none. */
	const char *token;
	/* TLS: on when tls is set or any file below is given. */
	bool tls;
	const char *ca_file;	 /* PEM roots to verify the server; NULL = system roots */
	const char *cert_file;	 /* PEM client certificate (mTLS), with key_file */
	const char *key_file;	 /* PEM private key of cert_file */
	const char *server_name; /* expected name in the server certificate (tests) */
};

struct capibox_client;

/*
 * Opens a channel to target ("host:port" or "unix:/path"). Returns NULL
 * and a message in err on failure. The caller owns the client.
 */
struct capibox_client *capibox_connect(const char *target, const struct capibox_connect_opts *opts,
				       char *err, size_t errlen);

/*
 * Runs req and calls cb for every event. Returns st->code (0 when the
 * stream ended with OK, which includes runs that ended by a limit: see
 * the finished event).
 */
int capibox_execute(struct capibox_client *c, const struct capibox_exec_request *req,
		    capibox_event_cb cb, void *arg, struct capibox_status *st);

struct capibox_runtime_pool {
	char *language;
	uint32_t idle, busy, target;
	char *runtime_version;
};

struct capibox_backend_health {
	char *name;
	int status; /* 1 serving, 2 degraded, 3 not serving */
	char *message;
	uint64_t canary_us;
	struct capibox_runtime_pool *pools;
	size_t n_pools;
};

struct capibox_health {
	int status;
	char *version;
	uint64_t uptime_s;
	struct capibox_backend_health *backends;
	size_t n_backends;
};

/* "serving", "degraded", "not_serving", "unspecified". */
const char *capibox_serving_status_name(int status);

/*
 * Calls Health. On success *out is owned by the caller (free it with
 * capibox_health_free). deadline_ms 0 = none.
 */
int capibox_health(struct capibox_client *c, bool deep, int64_t deadline_ms,
		   struct capibox_health **out, struct capibox_status *st);
void capibox_health_free(struct capibox_health *h);

/*
 * Calls grpc.health.v1.Health/Check for service ("" = whole server).
 * *serving_status gets the standard enum (1 SERVING, 2 NOT_SERVING).
 */
int capibox_health_check(struct capibox_client *c, const char *service, int64_t deadline_ms,
			 int *serving_status, struct capibox_status *st);

/*
 * Cancels every call in flight on c (they return CAPIBOX_CANCELLED) and makes
 * every later call on c fail at once the same way: meant for shutting a
 * program down, e.g. from a thread that waits for SIGINT. Thread-safe; not
 * async-signal-safe (do not call it from a signal handler).
 */
void capibox_cancel_all(struct capibox_client *c);

/* Closes the channel; in-flight calls must have returned. */
void capibox_close(struct capibox_client *c);

#ifdef __cplusplus
}
#endif

#endif
