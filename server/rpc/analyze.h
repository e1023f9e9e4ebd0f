/*
 * Analyze on top of executions: an AnalyzeRequest becomes an execution of
 * the statistics engine (capibox-analyze, server/analyze/) in an ordinary
 * sandbox, and the engine's output becomes the AnalyzeResponse. The
 * dataset is parsed only inside the sandbox; this side checks the request,
 * and reads back what the engine wrote as untrusted bytes.
 *
 * The engine's contract (docs/ANALYZE.md): argv[1] names a file holding the
 * AnalyzeRequest without the dataset's content, which arrives on stdin; on
 * success it writes one AnalyzeResponse (rows, columns, groups) to stdout
 * and exits 0; exit 2 means a malformed dataset, exit 3 an unknown column,
 * exit 4 an aggregate that does not apply, each with one line on stderr.
 */
#ifndef CAPIBOX_RPC_ANALYZE_H
#define CAPIBOX_RPC_ANALYZE_H

#include <stddef.h>
#include <stdint.h>

#include "capibox/v1/sandbox.pb-c.h"

#include "../config.h"
#include "../exec.h"
#include "../request.h"

#define ANALYZE_OPTIONS_PATH ".capibox-analyze.pb" /* under /home/user */

struct analyze_job {
	struct exec_request req; /* what the backend runs */
	Capibox__V1__AnalyzeRequest *msg;
	struct exec_file *files; /* the caller's files, then the options file */
	uint8_t *options;	 /* the packed options (msg without the content) */
	size_t options_len;
};

/*
 * Reads the engine program from path into memory, once, before serving.
 * Returns 0, or -1 with err set (Analyze then answers UNAVAILABLE).
 */
int analyze_engine_load(const char *path, char *err, size_t errlen);

/*
 * From the wire bytes of an AnalyzeRequest to a job ready for the backend.
 * REQUEST_OK, or the failure with err naming the field. Free job with
 * analyze_job_free() whatever the result. REQUEST_UNIMPLEMENTED: no engine.
 */
__attribute__((warn_unused_result)) enum request_rc analyze_decode(const struct config *cfg,
								   const uint8_t *buf, size_t len,
								   struct analyze_job *job,
								   char *err, size_t errlen);

void analyze_job_free(struct analyze_job *job);

/*
 * The response for a finished run: out/out_len is what the engine wrote to
 * stdout, errb/err_len the start of its stderr. Returns REQUEST_OK with
 * *resp set (free with analyze_response_free; its finished is fin, whose
 * message is stored in fin_msg), or REQUEST_INVALID with msg (an unknown
 * column or an aggregate that does not apply: INVALID_ARGUMENT), or
 * REQUEST_TOO_LARGE when out of memory.
 */
__attribute__((warn_unused_result)) enum request_rc
analyze_result(const struct exec_result *res, const uint8_t *out, size_t out_len,
	       const uint8_t *errb, size_t err_len, Capibox__V1__AnalyzeResponse **resp,
	       Capibox__V1__Finished *fin, char *fin_msg, size_t fin_len, char *msg, size_t msglen);

/* Frees a response from analyze_result (not its finished); NULL is fine. */
void analyze_response_free(Capibox__V1__AnalyzeResponse *resp);

#endif
