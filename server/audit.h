/*
 * The audit log: one JSON object per line for every execution (Execute,
 * Analyze), appended to cfg->audit_file and rotated by size. It is the raw
 * material for learning from executions: who ran what (the code's SHA-256,
 * its text only with cfg->audit_code), under which limits, how it ended and
 * what it cost. Never a secret, stdin, file contents, env values or output.
 *
 * audit_record() formats the line on the caller's thread and hands it to a
 * writer thread of the module's own, so a slow or full disk never stalls a
 * completion-queue or backend thread: when the queue is full, records are
 * dropped and counted (logged once a minute), the server carries on.
 * Rotation, reopening and every write happen on that one thread, so lines
 * never interleave.
 */
#ifndef CAPIBOX_AUDIT_H
#define CAPIBOX_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "exec.h"

struct audit;

/*
 * One execution, in plain C. Strings are borrowed for the call only; NULL
 * or "" leaves a field out. Strings that came from the client (request_id,
 * code) need not be valid UTF-8: invalid bytes are written as U+FFFD, the
 * hash is over the raw bytes.
 */
struct audit_entry {
	uint64_t time_ms;	 /* Unix time in ms; 0: now */
	const char *rpc;	 /* "Execute", "Analyze" */
	const char *request_id;	 /* the caller's request_id */
	const char *key_id;	 /* the API key's id (never its secret) */
	const char *peer;	 /* "ipv4:10.0.0.7:41312" */
	const char *client_cert; /* mTLS: the client certificate's subject */
	const char *language;

	const char *code;	 /* hashed, unless code_sha256; written only with audit_code */
	size_t code_len;	 /* its length (also when code is NULL) */
	const char *code_sha256; /* audit_hash_code() done earlier, or NULL */
	size_t n_files;		 /* input files ... */
	uint64_t files_bytes;	 /* ... and their total size */
	uint64_t stdin_bytes;
	bool has_limits; /* the request was validated: limits hold its limits */
	struct exec_limits limits;

	unsigned status_code; /* gRPC status the call ended with (0..16) */
	const char *error;    /* its message when not OK (names fields, never values) */

	bool started; /* the sandbox started: the next four are set */
	const char *sandbox_id;
	bool warm;
	uint64_t queued_us, start_us;

	bool finished; /* the run ended: the rest is set */
	enum exec_reason reason;
	int32_t exit_code;
	int32_t signal;
	uint64_t wall_time_us, cpu_time_us, peak_memory_bytes;
	uint64_t stdout_bytes, stderr_bytes;
};

/*
 * Opens (creates, mode 0600) cfg->audit_file for appending and starts the
 * writer thread. With cfg->audit_file NULL it returns a disabled handle on
 * which every call does nothing, so callers never test for NULL. Returns
 * NULL with err set when the file cannot be opened (the caller decides:
 * capiboxd stops, an operator who asked for an audit trail gets one).
 */
struct audit *audit_open(const struct config *cfg, char *err, size_t errlen);

/* True when records are written (a file is configured); a NULL a is off. */
bool audit_enabled(const struct audit *a);

/*
 * True when records include the code text (cfg->audit_code): only then
 * must a caller keep the code until audit_record().
 */
bool audit_wants_code(const struct audit *a);

#define AUDIT_SHA256_HEX 65 /* 64 hex digits and the NUL */

/*
 * SHA-256 of code[0..len) as lowercase hex, for callers that drop the code
 * before the call ends: hash it when the request arrives, pass the hex as
 * audit_entry.code_sha256.
 */
void audit_hash_code(const char *code, size_t len, char hex[AUDIT_SHA256_HEX]);

/*
 * Queues one record. Thread-safe; never waits for the disk (the work on
 * the caller's thread is hashing the code and formatting one line). A
 * NULL or disabled a does nothing.
 */
void audit_record(struct audit *a, const struct audit_entry *e);

/*
 * SIGHUP: closes and reopens the file by name, after every record queued
 * before it, so logrotate may move the file away and signal. Thread-safe.
 */
void audit_reopen(struct audit *a);

/* Waits until every record queued so far is written (tests, shutdown). */
void audit_flush(struct audit *a);

/* Writes what is queued, stops the writer thread, closes the file, frees a. */
void audit_close(struct audit *a);

/* "REASON_EXITED" ...: the proto enum name of r, as the audit log writes it. */
const char *audit_reason_name(enum exec_reason r);

#endif
