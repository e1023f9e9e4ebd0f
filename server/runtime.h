/*
 * The runtime table: how each language is run. Adding a language is a new
 * row here, not new code.
 */
#ifndef CAPIBOX_RUNTIME_H
#define CAPIBOX_RUNTIME_H

#include <stddef.h>

#define RUNTIME_MAX_ARGS 8
#define RUNTIME_MAX_ENV 12

struct runtime {
	const char *name;			    /* "python" */
	const char *file_name;			    /* code is written to /.capibox/<file_name> */
	const char *argv[RUNTIME_MAX_ARGS];	    /* "{file}" is replaced by the code path */
	const char *env[RUNTIME_MAX_ENV];	    /* NAME=value, before the request's env */
	const char *version_argv[RUNTIME_MAX_ARGS]; /* prints the version (host, at start) */
	const char *canary_code;		    /* deep health check program */
	const char *canary_expect;		    /* its exact stdout */
	/* warm pools (runner NULL: this runtime always runs cold) */
	const char *runner;			 /* the warm runner's source (server/runners/) */
	const char *runner_file;		 /* written as /.capibox/<runner_file> */
	const char *warm_argv[RUNTIME_MAX_ARGS]; /* "{runner}": the runner's path */
	/* request variables with these prefixes change how the interpreter
	 * starts, so such a request gets a cold sandbox */
	const char *startup_env[4];
	/* internal: run by the server for its own RPCs (Analyze), never a
	 * language of Execute; its code is a program (code_mode 0555) */
	int internal;
	unsigned code_mode; /* of the code file; 0: 0444 */
};

/* True when rt can run req's environment in a warm sandbox. */
int runtime_warm_env_ok(const struct runtime *rt, const char *const *names, size_t n);

/* Number of rows in the table. */
size_t runtime_count(void);
/* Row i (i < runtime_count()). */
const struct runtime *runtime_at(size_t i);
/* Row index for a name, or -1 if unknown (internal rows included). */
int runtime_find(const char *name);
/* Row index of a language Execute accepts, or -1. */
int runtime_find_public(const char *name);
/* Writes "python, javascript, bash" (the public rows) into buf (always NUL-terminated). */
void runtime_names(char *buf, size_t len);

#endif
