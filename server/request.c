/*
 * Request validation. Every message names the field it refers to, so a
 * client (often an AI agent) can fix its request without reading our code.
 */
#include "request.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "runtime.h"
#include "sandbox/collect.h"

#define PATH_MAX_LEN 1024

int request_env_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > 255)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		/* '=' would split the entry; control bytes and spaces break shells */
		if (c == '=' || c <= ' ' || c >= 0x7f)
			return 0;
	}
	return 1;
}

int request_path_ok(const char *path, size_t len)
{
	size_t seg = 0;

	if (len == 0 || len > PATH_MAX_LEN || path[0] == '/')
		return 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && path[i] == '\0')
			return 0;
		if (i == len || path[i] == '/') {
			const char *s = path + i - seg;
			/* empty ("a//b", trailing "/"), "." and ".." parts are refused:
			 * a normalised relative path cannot leave the working dir */
			if (seg == 0 || (seg == 1 && s[0] == '.') ||
			    (seg == 2 && s[0] == '.' && s[1] == '.'))
				return 0;
			if (seg > 255)
				return 0;
			seg = 0;
		} else {
			seg++;
		}
	}
	return 1;
}

static int check_u64(const char *field, uint64_t *value, uint64_t def, uint64_t max, char *err,
		     size_t errlen)
{
	if (*value == 0) {
		*value = def;
		return 1;
	}
	if (*value > max) {
		snprintf(err, errlen, "limits.%s: %" PRIu64 " exceeds the maximum %" PRIu64, field,
			 *value, max);
		return 0;
	}
	return 1;
}

static int check_limits(const struct config *cfg, struct exec_limits *l, char *err, size_t errlen)
{
	uint64_t v;

	v = l->wall_time_ms;
	if (!check_u64("wall_time_ms", &v, cfg->defaults.wall_time_ms, cfg->maxima.wall_time_ms,
		       err, errlen))
		return 0;
	l->wall_time_ms = (uint32_t)v;
	v = l->cpu_time_ms;
	if (!check_u64("cpu_time_ms", &v, cfg->defaults.cpu_time_ms, cfg->maxima.cpu_time_ms, err,
		       errlen))
		return 0;
	l->cpu_time_ms = (uint32_t)v;
	if (!check_u64("memory_bytes", &l->memory_bytes, cfg->defaults.memory_bytes,
		       cfg->maxima.memory_bytes, err, errlen))
		return 0;
	v = l->max_processes;
	if (!check_u64("max_processes", &v, cfg->defaults.max_processes, cfg->maxima.max_processes,
		       err, errlen))
		return 0;
	l->max_processes = (uint32_t)v;
	if (!check_u64("max_output_bytes", &l->max_output_bytes, cfg->defaults.max_output_bytes,
		       cfg->maxima.max_output_bytes, err, errlen))
		return 0;
	if (!check_u64("max_file_bytes", &l->max_file_bytes, cfg->defaults.max_file_bytes,
		       cfg->maxima.max_file_bytes, err, errlen))
		return 0;
	/* a memory limit below what an interpreter needs to start is absurd */
	if (l->memory_bytes < 16ULL * 1024 * 1024) {
		snprintf(err, errlen, "limits.memory_bytes: %" PRIu64 " is below the minimum %llu",
			 l->memory_bytes, 16ULL * 1024 * 1024);
		return 0;
	}
	if (l->max_processes < 2) {
		snprintf(err, errlen, "limits.max_processes: %" PRIu32 " is below the minimum 2",
			 l->max_processes);
		return 0;
	}
	return 1;
}

int request_session_id_ok(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n >= SESSION_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') ||
		      (id[i] >= 'A' && id[i] <= 'Z') || id[i] == '-' || id[i] == '_'))
			return 0;
	return 1;
}

enum request_rc request_validate_execute(const struct config *cfg, struct exec_request *req,
					 char *err, size_t errlen)
{
	size_t total = 0;
	int in_session = req->session_id != NULL && req->session_id[0] != '\0';

	if (in_session && !request_session_id_ok(req->session_id)) {
		snprintf(err, errlen, "session_id: not a session id (1-63 of [A-Za-z0-9_-])");
		return REQUEST_INVALID;
	}
	/* a session's cell may leave the language out: the session has one */
	if (in_session && (req->language == NULL || req->language[0] == '\0'))
		;
	else if (req->language == NULL || req->language[0] == '\0' ||
		 runtime_find_public(req->language) < 0) {
		char names[256];
		runtime_names(names, sizeof(names));
		snprintf(err, errlen, "language: %s%.64s%s is not known; known languages: %s",
			 req->language && req->language[0] ? "\"" : "",
			 req->language && req->language[0] ? req->language : "empty",
			 req->language && req->language[0] ? "\"" : "", names);
		return REQUEST_INVALID;
	}
	if (req->code == NULL || req->code_len == 0) {
		snprintf(err, errlen, "code: must not be empty");
		return REQUEST_INVALID;
	}
	if (req->code_len > cfg->max_code_bytes) {
		snprintf(err, errlen, "code: %zu bytes exceeds the maximum %zu", req->code_len,
			 cfg->max_code_bytes);
		return REQUEST_INVALID;
	}
	if (memchr(req->code, '\0', req->code_len) != NULL) {
		snprintf(err, errlen, "code: contains a NUL byte");
		return REQUEST_INVALID;
	}
	if (req->stdin_len > cfg->max_stdin_bytes) {
		snprintf(err, errlen, "stdin: %zu bytes exceeds the maximum %zu", req->stdin_len,
			 cfg->max_stdin_bytes);
		return REQUEST_INVALID;
	}
	if (req->n_env > cfg->max_env) {
		snprintf(err, errlen, "env: %zu entries exceeds the maximum %zu", req->n_env,
			 cfg->max_env);
		return REQUEST_INVALID;
	}
	for (size_t i = 0; i < req->n_env; i++) {
		const struct exec_env *e = &req->env[i];
		if (e->name == NULL || !request_env_name_ok(e->name)) {
			snprintf(err, errlen,
				 "env: name \"%.64s\" is not valid (non-empty, at most 255 "
				 "printable bytes, no '=', space or control characters)",
				 e->name ? e->name : "");
			return REQUEST_INVALID;
		}
		if (strncmp(e->name, "CAPIBOX_", 8) == 0) {
			/* the runners take their own settings from such names */
			snprintf(err, errlen,
				 "env: name \"%.64s\" is reserved (names starting with CAPIBOX_ "
				 "are capibox's own)",
				 e->name);
			return REQUEST_INVALID;
		}
		total += strlen(e->name) + (e->value ? strlen(e->value) : 0) + 2;
	}
	if (total > cfg->max_env_bytes) {
		snprintf(err, errlen, "env: %zu bytes exceeds the maximum %zu", total,
			 cfg->max_env_bytes);
		return REQUEST_INVALID;
	}
	if (req->n_files > cfg->max_files) {
		snprintf(err, errlen, "files: %zu files exceeds the maximum %zu", req->n_files,
			 cfg->max_files);
		return REQUEST_TOO_LARGE;
	}
	total = 0;
	for (size_t i = 0; i < req->n_files; i++) {
		const struct exec_file *f = &req->files[i];
		if (f->path == NULL || !request_path_ok(f->path, strlen(f->path))) {
			snprintf(err, errlen,
				 "files[%zu].path: \"%.128s\" is not a normalised relative path "
				 "(no leading '/', no '.' or '..' parts, at most %d bytes)",
				 i, f->path ? f->path : "", PATH_MAX_LEN);
			return REQUEST_INVALID;
		}
		if (f->mode & ~07777U) {
			snprintf(err, errlen, "files[%zu].mode: %#o is not a permission mode", i,
				 f->mode);
			return REQUEST_INVALID;
		}
		total += f->len;
		if (total > cfg->max_files_bytes) {
			snprintf(err, errlen,
				 "files[%zu]: total size of files exceeds the maximum %zu bytes", i,
				 cfg->max_files_bytes);
			return REQUEST_TOO_LARGE;
		}
	}
	if (!check_limits(cfg, &req->limits, err, errlen))
		return REQUEST_INVALID;
	if (req->n_collect > COLLECT_MAX_GLOBS) {
		snprintf(err, errlen, "collect: %zu globs exceeds the maximum %d", req->n_collect,
			 COLLECT_MAX_GLOBS);
		return REQUEST_INVALID;
	}
	for (size_t i = 0; i < req->n_collect; i++) {
		const char *g = req->collect != NULL ? req->collect[i] : NULL;
		const char *why = g != NULL ? collect_glob_check(g, strlen(g)) : "is missing";
		if (why != NULL) {
			snprintf(err, errlen,
				 "collect[%zu]: \"%.128s\" %s (a glob relative to the working "
				 "directory: no leading '/', no empty, '.' or '..' parts, at most "
				 "%d bytes)",
				 i, g != NULL ? g : "", why, COLLECT_MAX_GLOB_LEN);
			return REQUEST_INVALID;
		}
	}
	return REQUEST_OK;
}
