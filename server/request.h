/*
 * Validation of decoded requests against the configuration. Plain C, no
 * gRPC: the rpc layer decodes, calls this, and maps the result to a status.
 */
#ifndef CAPIBOX_REQUEST_H
#define CAPIBOX_REQUEST_H

#include <stddef.h>

#include "config.h"
#include "exec.h"

enum request_rc {
	REQUEST_OK = 0,
	REQUEST_INVALID,       /* INVALID_ARGUMENT */
	REQUEST_TOO_LARGE,     /* RESOURCE_EXHAUSTED (sizes and counts of files) */
	REQUEST_UNIMPLEMENTED, /* UNIMPLEMENTED (a field this server does not serve yet) */
};

/*
 * Checks req against cfg and fills zero limits with the defaults. On error
 * writes a message naming the field (e.g. "limits.wall_time_ms: 900000
 * exceeds the maximum 600000") into err.
 */
__attribute__((warn_unused_result)) enum request_rc
request_validate_execute(const struct config *cfg, struct exec_request *req, char *err,
			 size_t errlen);

/* True when name is a usable environment variable name. */
int request_env_name_ok(const char *name);

/* True when id has the form of a session id: 1-63 of [A-Za-z0-9_-]. */
int request_session_id_ok(const char *id);

/* True when path is relative, normalised, without "..", NUL or empty parts. */
int request_path_ok(const char *path, size_t len);

#endif
