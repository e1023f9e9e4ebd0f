/*
 * protobuf-c <-> plain C conversion for the rpc layer (internal to
 * server/rpc/). Decoded strings are borrowed from the unpacked message.
 */
#ifndef CAPIBOX_RPC_CONVERT_H
#define CAPIBOX_RPC_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capibox/v1/sandbox.pb-c.h"

#include "../config.h"
#include "../exec.h"
#include "../request.h"

/*
 * An exec_request plus what was allocated for it: the arrays
 * convert_execute_request made and, after convert_decode_execute, the
 * unpacked message whose strings req borrows.
 */
struct convert_exec {
	struct exec_request req;
	struct exec_file *files;
	struct exec_env *env;
	Capibox__V1__ExecuteRequest *msg;
};

/*
 * Scans the wire bytes of an ExecuteRequest for NUL bytes in the string
 * fields that reach the sandbox (protobuf-c would silently cut them there).
 * Returns 0 when clean; -1 with err naming the field ("code: contains a NUL
 * byte", "files[0].path: ...", "env: name ...") or "malformed
 * ExecuteRequest" when the wire format itself is broken.
 */
__attribute__((warn_unused_result)) int convert_scan_execute(const uint8_t *buf, size_t len,
							     char *err, size_t errlen);

/*
 * Fills out->req from m; strings and bytes are borrowed from m, which must
 * outlive out. Returns 0, or -1 when out of memory. Free with
 * convert_exec_free().
 */
__attribute__((warn_unused_result)) int
convert_execute_request(const Capibox__V1__ExecuteRequest *m, struct convert_exec *out);

/*
 * The server's whole path from the wire bytes of an ExecuteRequest to a
 * validated request, without gRPC: convert_scan_execute, unpack,
 * convert_execute_request, request_validate_execute. Returns REQUEST_OK
 * with out->req ready, or the failure with err naming the field; out of
 * memory is REQUEST_TOO_LARGE ("out of memory"). buf may be freed on
 * return (the message is a copy). Free out with convert_exec_free()
 * whatever the result.
 */
__attribute__((warn_unused_result)) enum request_rc
convert_decode_execute(const struct config *cfg, const uint8_t *buf, size_t len,
		       struct convert_exec *out, char *err, size_t errlen);

/* Like convert_scan_execute, for a CreateSessionRequest's wire bytes. */
__attribute__((warn_unused_result)) int convert_scan_create_session(const uint8_t *buf, size_t len,
								    char *err, size_t errlen);

/*
 * Fills out->req from a CreateSessionRequest (borrowing from m, which must
 * outlive out; out->msg stays NULL): language, files, env, limits, and a
 * placeholder code. Returns 0, or -1 when out of memory.
 */
__attribute__((warn_unused_result)) int
convert_create_session_request(const Capibox__V1__CreateSessionRequest *m,
			       struct convert_exec *out);

/* Frees what convert_execute_request or convert_decode_execute allocated (not m). */
void convert_exec_free(struct convert_exec *cx);

/* The request's limits (m NULL: all zero, which validation turns into the defaults). */
void convert_limits(const Capibox__V1__Limits *m, struct exec_limits *out);

/* One input file; path and bytes are borrowed from m. */
void convert_file(const Capibox__V1__File *m, struct exec_file *out);

/* Fills out from st; strings are borrowed. backend names the backend if st does not. */
void convert_started(const struct exec_started *st, const char *backend, Capibox__V1__Started *out);

/* Fills out from res; the message is copied into buf, made valid UTF-8. */
void convert_finished(const struct exec_result *res, Capibox__V1__Finished *out, char *buf,
		      size_t buflen);

/* Copies s into buf with invalid UTF-8 and control bytes replaced by '?'. Returns buf. */
char *convert_utf8_clean(const char *s, char *buf, size_t buflen);

/*
 * A copy of s (the caller frees it) with invalid UTF-8 replaced by '?';
 * unlike convert_utf8_clean every valid character, control ones included,
 * is kept. NULL when out of memory.
 */
char *convert_utf8_dup(const char *s);

#endif
