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
 *
 * Code mode (AnalyzeRequest.code set): the request becomes an ordinary
 * python execution (warm pools apply) whose code is the runner
 * server/runners/analyze.py, whose files are the caller's plus the code
 * and the options (JSON), and whose stdin is the dataset. The runner reads
 * the dataset with pandas into `df`, runs the code and writes one framed
 * JSON document (stdout, result, figures, error) to stdout; the code's own
 * stderr is the run's (docs/ANALYZE.md, "Code mode").
 */
#ifndef CAPIBOX_RPC_ANALYZE_H
#define CAPIBOX_RPC_ANALYZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capibox/v1/sandbox.pb-c.h"

#include "../config.h"
#include "../exec.h"
#include "../request.h"

#define ANALYZE_OPTIONS_PATH ".capibox-analyze.pb" /* under /home/user */
/* code mode, under /home/user (the runner reads them there) */
#define ANALYZE_CODE_PATH ".capibox-analyze-code.py"
#define ANALYZE_CODE_OPTIONS_PATH ".capibox-analyze.json"

/* The start of stderr kept: the engine's one line; in code mode the
 * code's tracebacks and prints, returned in AnalyzeResponse.stderr. */
#define ANALYZE_STDERR_MAX 1024
#define ANALYZE_CODE_STDERR_MAX (1u << 20)
/* The largest runner document read back (stdout, result, figures). */
#define ANALYZE_CODE_DOC_MAX (64u << 20)

struct analyze_job {
	struct exec_request req; /* what the backend runs */
	Capibox__V1__AnalyzeRequest *msg;
	struct exec_file *files; /* the caller's files, then the options file(s) */
	uint8_t *options;	 /* the packed options (msg without the content),
				    or in code mode the JSON options */
	size_t options_len;
	bool code_mode; /* msg->code is set: the pandas runner, not the engine */
	/* the start of the run's stderr (analyze_stderr_add) */
	uint8_t *err;
	size_t err_len, err_cap;
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
 * Keeps the start of the run's stderr in job (up to ANALYZE_STDERR_MAX, or
 * ANALYZE_CODE_STDERR_MAX in code mode); the rest, or what memory refuses,
 * is dropped. Called from the backend's thread, one event at a time.
 */
void analyze_stderr_add(struct analyze_job *job, const uint8_t *data, size_t len);

/*
 * The response for job's finished run: out/out_len is what the engine (or
 * the code mode runner) wrote to stdout; the stderr kept is job's. Returns
 * REQUEST_OK with *resp set (free with analyze_response_free; its finished
 * is fin, whose message is stored in fin_msg), or REQUEST_INVALID with msg
 * (an unknown column or an aggregate that does not apply:
 * INVALID_ARGUMENT), or REQUEST_TOO_LARGE when out of memory.
 */
__attribute__((warn_unused_result)) enum request_rc
analyze_result(const struct analyze_job *job, const struct exec_result *res, const uint8_t *out,
	       size_t out_len, Capibox__V1__AnalyzeResponse **resp, Capibox__V1__Finished *fin,
	       char *fin_msg, size_t fin_len, char *msg, size_t msglen);

/* Frees a response from analyze_result (not its finished); NULL is fine. */
void analyze_response_free(Capibox__V1__AnalyzeResponse *resp);

#endif
