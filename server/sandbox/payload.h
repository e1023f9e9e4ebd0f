/*
 * The payload: the code and input files of one execution, written by the
 * front into a sealed memfd and unpacked by the sandbox's init, inside the
 * sandbox, as the sandbox user. Layout (host byte order, same machine):
 *   u32 magic, u32 n_files, u64 code_len, code,
 *   n_files x { u32 path_len, u32 mode, u64 len, path, data },
 *   u32 n_collect, n_collect x { u32 glob_len, glob }
 * The collect globs travel with the code, so a pooled sandbox gets them
 * with its take like everything else of the request.
 */
#ifndef CAPIBOX_PAYLOAD_H
#define CAPIBOX_PAYLOAD_H

#include "../exec.h"

/* Returns a CLOEXEC, sealed memfd holding req's code and files, or -1 (errno). */
__attribute__((warn_unused_result)) int payload_create(const struct exec_request *req);

/* Returns a CLOEXEC, sealed memfd holding data (may be empty), or -1 (errno). */
__attribute__((warn_unused_result)) int payload_blob(const char *name, const void *data,
						     size_t len);

/*
 * Writes the code to code_path and the files under dirfd. Checks every
 * length and path (the payload is not trusted to be well formed). Returns 0,
 * or -1 with a message in err.
 */
__attribute__((warn_unused_result)) int payload_extract(int fd, const char *code_path, int dirfd,
							char *err, size_t errlen);

/*
 * payload_extract, and the collect globs: *collect is set to a
 * NULL-terminated array (one allocation: free() it) when the payload has
 * globs, else to NULL. Each glob passed collect_glob_check.
 */
__attribute__((warn_unused_result)) int payload_unpack(int fd, const char *code_path, int dirfd,
						       char ***collect, char *err, size_t errlen);

#endif
