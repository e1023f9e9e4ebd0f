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
	/* Run in this session (capibox_session_create), NULL = a fresh
	 * sandbox. language may then be "" (the session's); a limit left 0
	 * is the session's. */
	const char *session_id;
};

enum capibox_event_kind {
	CAPIBOX_EVENT_STARTED = 1,
	CAPIBOX_EVENT_STDOUT = 2,
	CAPIBOX_EVENT_STDERR = 3,
	CAPIBOX_EVENT_ARTIFACT = 4,
	CAPIBOX_EVENT_FINISHED = 5,
	CAPIBOX_EVENT_RESULT = 6, /* the value of the code's last expression */
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
		/* A file the run produced (a matplotlib figure: figure-1.png).
		 * A file larger than one message comes as several events of
		 * the same path: content is len bytes at offset, eof marks the
		 * last piece. path comes from the server: check it before
		 * using it as a local path (capibox_artifact_path_ok). */
		struct {
			const char *path;
			const char *mime_type;
			const uint8_t *content;
			size_t len;
			uint64_t size; /* of the whole file */
			bool truncated;
			uint64_t offset;
			bool eof;
		} artifact;
		struct {
			const char *text;      /* repr / inspect form */
			const char *json;      /* "" when not JSON-serialisable */
			const char *mime_type; /* "text/plain" */
		} result;
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

/*
 * True when an artifact's path (from the server, so untrusted) is safe to
 * join to a local directory: relative, no "." or ".." parts, no empty part,
 * no backslash or control character, at most 4095 bytes.
 */
bool capibox_artifact_path_ok(const char *path);

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
	uint32_t sessions_open, max_sessions;
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

/* --- Sessions ----------------------------------------------------------- */

/* An open session: a kept-alive interpreter. */
struct capibox_session {
	char id[64];
	char language[32];
	uint64_t created_unix_ms;
	uint64_t last_used_unix_ms;
	uint64_t executions;
	uint32_t idle_timeout_s;
};

struct capibox_session_request {
	const char *language;
	/* memory and processes for the whole session; the rest are each
	 * Execute's defaults; 0 = the server's */
	struct capibox_limits limits;
	uint32_t idle_timeout_s; /* 0 = the server's default */
	const struct capibox_env *env;
	size_t n_env;
	const struct capibox_file *files; /* written under /home/user at the start */
	size_t n_files;
	int64_t deadline_ms; /* 0 = none */
};

/* Calls CreateSession; on CAPIBOX_OK *out describes the new session. */
int capibox_session_create(struct capibox_client *c, const struct capibox_session_request *req,
			   struct capibox_session *out, struct capibox_status *st);

/* Calls CloseSession (NOT_FOUND when unknown); out (may be NULL) gets its last state. */
int capibox_session_close(struct capibox_client *c, const char *id, int64_t deadline_ms,
			  struct capibox_session *out, struct capibox_status *st);

/* Calls ListSessions; on CAPIBOX_OK *out (free() it) holds *n sessions. */
int capibox_session_list(struct capibox_client *c, int64_t deadline_ms,
			 struct capibox_session **out, size_t *n, struct capibox_status *st);

/* --- Analyze ------------------------------------------------------------ */

/* Values match capibox.v1.DatasetFormat. */
enum capibox_dataset_format {
	CAPIBOX_FORMAT_GUESS = 0, /* from the name's extension, then the content */
	CAPIBOX_FORMAT_CSV = 1,
	CAPIBOX_FORMAT_TSV = 2,
	CAPIBOX_FORMAT_JSONL = 3,
};

/* Values match capibox.v1.AggregateFunction. */
enum capibox_agg_function {
	CAPIBOX_AGG_UNSPECIFIED = 0,
	CAPIBOX_AGG_COUNT = 1,
	CAPIBOX_AGG_SUM = 2,
	CAPIBOX_AGG_MEAN = 3,
	CAPIBOX_AGG_MIN = 4,
	CAPIBOX_AGG_MAX = 5,
	CAPIBOX_AGG_STD = 6,
	CAPIBOX_AGG_MEDIAN = 7,
	CAPIBOX_AGG_NUNIQUE = 8,
};

/* "count", "sum", "mean", ... ("unspecified" for 0 or unknown); never NULL. */
const char *capibox_agg_function_name(int function);
/* The function named name ("mean", "nunique", ...), or CAPIBOX_AGG_UNSPECIFIED. */
int capibox_agg_function_parse(const char *name);

/* Values match capibox.v1.ColumnType. */
enum capibox_column_type {
	CAPIBOX_COLUMN_UNSPECIFIED = 0,
	CAPIBOX_COLUMN_INTEGER = 1,
	CAPIBOX_COLUMN_FLOAT = 2,
	CAPIBOX_COLUMN_BOOLEAN = 3,
	CAPIBOX_COLUMN_TEXT = 4,
};

/* "integer", "float", "boolean", "text", "unspecified"; never NULL. */
const char *capibox_column_type_name(int type);

struct capibox_aggregate {
	const char *column;
	int function; /* enum capibox_agg_function */
};

struct capibox_analyze_request {
	/* The dataset. content NULL sends no dataset at all (the server
	 * answers INVALID_ARGUMENT); an empty one is content != NULL, len 0. */
	const char *dataset_name; /* may be NULL; its extension guides guessing */
	int format;		  /* enum capibox_dataset_format */
	const uint8_t *content;
	size_t content_len;
	bool no_header;	       /* the first line is data: columns are named "0", "1", ... */
	const char *delimiter; /* one character; NULL or "" = the format's */
	const char *const *null_values; /* strings read as null; none = pandas' defaults */
	size_t n_null_values;

	const char *const *columns; /* columns to summarise; none = all */
	size_t n_columns;
	const char *const *group_by; /* group keys (needs aggregates) */
	size_t n_group_by;
	const struct capibox_aggregate *aggregates;
	size_t n_aggregates;

	const char *code;		  /* pandas code with `df` preloaded; NULL = none */
	const struct capibox_file *files; /* extra inputs for code */
	size_t n_files;

	struct capibox_limits limits;
	const char *request_id; /* may be NULL */
	int64_t deadline_ms;	/* 0 = none; else RPC deadline from now */
};

struct capibox_value_count {
	const char *value;
	uint64_t count;
};

/* describe() of one column. The numeric fields are for INTEGER and FLOAT
 * columns (NaN where pandas says NaN, e.g. std of one value); top is for
 * BOOLEAN and TEXT columns, most frequent first. */
struct capibox_column_summary {
	const char *name;
	int type;	/* enum capibox_column_type */
	uint64_t count; /* non-null values */
	uint64_t nulls;
	uint64_t distinct;
	double mean, std, min, p25, median, p75, max, sum;
	const struct capibox_value_count *top;
	size_t n_top;
};

enum capibox_cell_kind {
	CAPIBOX_CELL_NULL = 0,
	CAPIBOX_CELL_NUMBER = 1,
	CAPIBOX_CELL_TEXT = 2,
};

struct capibox_cell {
	int kind; /* enum capibox_cell_kind */
	double number;
	const char *text;
};

/* A small table; cells are row-major: row r, column k is cells[r * n_columns + k]. */
struct capibox_table {
	const char *const *columns;
	size_t n_columns;
	size_t n_rows;
	const struct capibox_cell *cells;
};

struct capibox_analysis_artifact {
	const char *path;
	const char *mime_type;
	const uint8_t *content;
	size_t len;
	uint64_t size;
	bool truncated;
};

/*
 * What Analyze answered. Strings and buffers point into memory the analysis
 * owns; all of it is released by capibox_analysis_free.
 */
struct capibox_analysis {
	uint64_t rows; /* data rows read */
	const struct capibox_column_summary *columns;
	size_t n_columns;
	struct capibox_table groups; /* group_by/aggregates result; n_columns 0 when none */
	struct capibox_table result; /* code mode: the `result` variable */
	const uint8_t *stdout_data;  /* code mode */
	size_t stdout_len;
	const uint8_t *stderr_data;
	size_t stderr_len;
	const struct capibox_analysis_artifact *artifacts;
	size_t n_artifacts;
	struct {
		int reason;	   /* enum capibox_reason */
		int32_t exit_code; /* 2 with reason EXITED: the dataset is malformed, see message */
		int32_t signal;
		uint64_t wall_time_us;
		uint64_t cpu_time_us;
		uint64_t peak_memory_bytes;
		const char *message;
	} finished;
	void *priv_; /* the decoded reply the pointers above point into */
};

/*
 * Calls Analyze. On CAPIBOX_OK *out is the caller's (free it with
 * capibox_analysis_free); check out->finished: a malformed dataset is not
 * an RPC error but a finished run with exit_code 2 and a message. On an
 * error *out is NULL and st says why (an unknown column: INVALID_ARGUMENT).
 */
int capibox_analyze(struct capibox_client *c, const struct capibox_analyze_request *req,
		    struct capibox_analysis **out, struct capibox_status *st);
void capibox_analysis_free(struct capibox_analysis *a);

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
