/*
 * Plain C description of an execution: the request after decoding, the
 * events it produces and the result. gRPC and protobuf never appear here,
 * so everything below the rpc layer (and its tests) uses these.
 */
#ifndef CAPIBOX_EXEC_H
#define CAPIBOX_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values match capibox.v1.Reason. */
enum exec_reason {
	EXEC_REASON_UNSPECIFIED = 0,
	EXEC_REASON_EXITED = 1,
	EXEC_REASON_SIGNALED = 2,
	EXEC_REASON_WALL_TIMEOUT = 3,
	EXEC_REASON_CPU_TIMEOUT = 4,
	EXEC_REASON_MEMORY_LIMIT = 5,
	EXEC_REASON_OUTPUT_LIMIT = 6,
	EXEC_REASON_CANCELLED = 7,
	EXEC_REASON_SANDBOX_ERROR = 8,
};

/* Human name of a reason ("exited", "wall_timeout", ...); never NULL. */
const char *exec_reason_name(enum exec_reason r);

struct exec_limits {
	uint32_t wall_time_ms;
	uint32_t cpu_time_ms;
	uint64_t memory_bytes;
	uint32_t max_processes;
	uint64_t max_output_bytes;
	uint64_t max_file_bytes;
};

struct exec_file {
	const char *path; /* validated: relative, normalised */
	const uint8_t *data;
	size_t len;
	uint32_t mode; /* permission bits, 0 = 0644 */
};

struct exec_env {
	const char *name;
	const char *value;
};

/*
 * One execution request. All pointers are borrowed: they stay valid only
 * for the duration of the call they are passed to (backend_execute copies
 * what it keeps).
 */
struct exec_request {
	const char *language;
	const char *code;
	size_t code_len;
	const struct exec_file *files;
	size_t n_files;
	const struct exec_env *env;
	size_t n_env;
	const uint8_t *stdin_data;
	size_t stdin_len;
	struct exec_limits limits;  /* after validation: defaults filled in */
	const char *const *collect; /* globs of files to return as artifacts (relative
				     * to the working directory, "**" supported) */
	size_t n_collect;
	const char *session_id; /* "" or NULL: one-shot */
	const char *request_id;
	/* Sessions belong to whoever made them: the API key's id, or "" when
	 * keys are off (then to everyone). Set by the rpc layer. */
	const char *session_owner;
	/* In a session, a limit the request leaves unset is the session's:
	 * whether these were set by the client (before defaults). */
	bool wall_set, cpu_set, output_set;
};

#define SESSION_ID_MAX 64 /* bytes of a session id, NUL included */

/* An open session, as CreateSession / ListSessions report it. */
struct session_info {
	char id[SESSION_ID_MAX];
	char language[32];
	uint64_t created_unix_ms;
	uint64_t last_used_unix_ms;
	uint64_t executions;
	uint32_t idle_timeout_s;
};

/*
 * A session to create: req carries its language, limits (memory and
 * processes for the whole session, the rest as each cell's defaults),
 * environment and files; code is unused.
 */
struct session_request {
	const struct exec_request *req;
	const char *owner;	 /* see exec_request.session_owner */
	uint32_t idle_timeout_s; /* validated, default applied */
	unsigned max_per_owner;	 /* 0: no per-owner cap (the key's sessions=N) */
};

enum exec_stream {
	EXEC_STDOUT = 1,
	EXEC_STDERR = 2,
};

struct exec_started {
	const char *sandbox_id;
	const char *language;
	uint64_t queued_us;
	uint64_t start_us;
	const char *backend;
	bool warm; /* a pooled sandbox, started ahead (else made for this request) */
};

/*
 * The value of the code's last expression (a notebook's Out[]): text is its
 * repr / inspect form, json its JSON form or NULL when it has none. Strings
 * are NUL-terminated but not guaranteed valid UTF-8: the rpc layer cleans
 * them (they come from the sandbox).
 */
struct exec_result_value {
	const char *text;
	const char *json; /* NULL: not JSON-serialisable */
	const char *mime_type;
};

/*
 * A piece of a file the run produced (a matplotlib figure): len bytes at
 * offset of a file of size bytes. A file larger than one message arrives as
 * several pieces of the same path with growing offsets; eof marks the last.
 * truncated: the per-run artifact budget cut the file here (no more of it
 * follows). path is checked (request_path_ok).
 */
struct exec_artifact {
	const char *path;
	const char *mime_type;
	const uint8_t *data;
	size_t len;
	uint64_t offset;
	uint64_t size;
	bool eof;
	bool truncated;
};

struct exec_result {
	enum exec_reason reason;
	int32_t exit_code;
	int32_t signal;
	uint64_t wall_time_us;
	uint64_t cpu_time_us;
	uint64_t peak_memory_bytes;
	char message[256];
	uint64_t stdout_bytes;
	uint64_t stderr_bytes;
};

#endif
