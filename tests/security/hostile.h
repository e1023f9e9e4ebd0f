/*
 * Helpers of the hostile-code suite (tests/security), on top of the
 * integration harness (tests/integration/harness.h):
 *
 *   - hostile programs live as real files in tests/security/programs/ and
 *     run with hostile_run_program();
 *   - a "case" is one hostile program in one language; a verdict collects
 *     every way it was not contained, and hostile_case_end() adds the
 *     server's health and the host's cleanliness afterwards, prints the
 *     verdict and counts it for its family;
 *   - host_snapshot()/host_leftovers() compare what a daemon may leave on
 *     the host: processes in its sandbox uid range, cgroups of its
 *     supervisor, mounts, temp entries and state-dir entries.
 *
 * Everything is for tests: internal errors abort, like the harness.
 */
#ifndef CAPIBOX_TEST_HOSTILE_H
#define CAPIBOX_TEST_HOSTILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

/* --- programs --------------------------------------------------------------- */

/* The text of tests/security/programs/<name> (malloc'd, NUL-terminated). */
char *hostile_program(const char *name);

/*
 * Runs program <name> in language with the given limits and env (n_env
 * entries, may be 0), recording into r (see harness_run).
 */
int hostile_run_program(struct daemon *d, const char *language, const char *name,
			const struct capibox_limits *limits, const struct capibox_env *env,
			size_t n_env, struct run *r);

/* --- verdicts ----------------------------------------------------------------- */

struct verdict {
	bool ok;
	size_t off;
	char text[8192]; /* one line per problem */
};

void verdict_init(struct verdict *v);
/* Records one way the case was not contained (or misbehaved). */
void verdict_fail(struct verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fails v unless the run ended with status OK and exactly one Finished, in order. */
void verdict_one_finished(struct verdict *v, const struct run *r);
/* Fails v unless the run ended with status OK, one Finished and reason. */
void verdict_reason(struct verdict *v, const struct run *r, int reason);
/* Fails v unless stdout contains needle. */
void verdict_stdout_has(struct verdict *v, const struct run *r, const char *needle);
/* Fails v if stdout or stderr contains needle. */
void verdict_output_lacks(struct verdict *v, const struct run *r, const char *needle);
/* Fails v unless stdout is exactly s. */
void verdict_stdout_is(struct verdict *v, const struct run *r, const char *s);
/*
 * Fails v unless a gRPC status message is valid UTF-8: grpc-message is
 * percent-encoded UTF-8 by the spec, and clients in other languages decode
 * it as such (a message that echoes request bytes must clean them first).
 */
void verdict_status_utf8(struct verdict *v, const char *message);

/*
 * Ends a case: checks that the daemon still runs, that a normal run
 * succeeds and that the host is clean (hostile_wait_clean), prints
 * "case FAMILY/NAME: contained" or every problem (with the run, when r is
 * not NULL), and counts the case for family. Returns v->ok afterwards.
 */
bool hostile_case_end(struct daemon *d, const char *family, const char *name, const struct run *r,
		      struct verdict *v);

/* Fails the current cmocka test unless every case of family was contained. */
void hostile_family_require(const char *family);

/* Prints "family X: N cases, N contained" for every family, and the total. */
void hostile_print_summary(void);

/* --- host state ----------------------------------------------------------------- */

/* Pid of the daemon's supervisor (child of d named "capiboxd: supervisor"), or 0. */
pid_t hostile_supervisor_pid(const struct daemon *d);

/*
 * Cgroup directories /sys/fs/cgroup/[<ctrl>/]capibox/sb-<pid>-* of every
 * supervisor of d seen so far (up to max, 256 bytes each). Returns the
 * total count.
 */
size_t hostile_cgroups(const struct daemon *d, char (*dirs)[256], size_t max);

/*
 * What a daemon has on the host. A warm pool (sandboxes started ahead of
 * requests) is no leftover: an idle warm sandbox is a uid of the range whose
 * only processes are its capibox-init and the runner it started
 * (/.capibox/runner.*), and its cgroups hold nothing else. Nor is an empty
 * sandbox cgroup: the supervisor keeps a slot's groups for its next
 * sandbox, and removes them when it stops. Everything else of the range
 * after a run is.
 */
struct host_state {
	char *mounts;	    /* harness_mounts() */
	struct names temp;  /* entries of /tmp, /var/tmp, /dev/shm, /run */
	struct names state; /* every path under the daemon's state dir */
	size_t procs;	    /* processes in the sandbox uid range, idle warm sandboxes' excepted */
	size_t warm;	    /* idle warm sandboxes */
	size_t cgroups; /* sandbox cgroup dirs holding a process, idle warm sandboxes' excepted */
	size_t warm_target; /* warm sandboxes the pools aim to keep (Health) */
};

void host_snapshot(const struct daemon *d, struct host_state *s);
/*
 * Remembers the daemon-specific part of a sandbox id ("local-<tag>-N"), so
 * temp entries named after its sandboxes count as the daemon's.
 */
void hostile_note_sandbox_id(const char *id);
/*
 * host_snapshot once the previous runs are gone: retries for up to
 * timeout_ms until no process or cgroup but idle warm sandboxes' is left
 * (and says so when some still are).
 */
void host_snapshot_settled(const struct daemon *d, struct host_state *s, int timeout_ms);
void host_state_free(struct host_state *s);

/*
 * What the host has now that base had not, as text ("" when clean; the
 * caller frees): new mounts, new temp entries that are the daemon's
 * (owned by a sandbox uid or named after the daemon, its supervisor or its
 * sandboxes: see temp_is_daemons in hostile.c), new state-dir
 * entries, more processes in the sandbox uid range or more sandbox cgroups
 * (idle warm sandboxes excepted), more idle warm sandboxes than the pools
 * aim to keep.
 */
char *host_leftovers(const struct daemon *d, const struct host_state *base);

/*
 * Waits up to timeout_ms for host_leftovers to be empty; returns NULL when
 * clean, else the last difference (caller frees).
 */
char *host_wait_clean(const struct daemon *d, const struct host_state *base, int timeout_ms);

/*
 * The baseline every case is compared with: taken once after the daemon
 * started and ran a first program (so lazily created state exists).
 */
void hostile_set_baseline(const struct daemon *d);
const struct host_state *hostile_baseline(void);

/* --- processes ------------------------------------------------------------------ */

/* Resident memory of pid in KiB (VmRSS), or -1. */
long hostile_rss_kib(pid_t pid);

/*
 * Samples d's sandbox uid range every 10 ms in a thread, from
 * hostile_sampler_start until hostile_sampler_stop, which returns the
 * largest number of processes seen at once with one uid (one sandbox).
 */
struct sampler;
struct sampler *hostile_sampler_start(const struct daemon *d);
size_t hostile_sampler_stop(struct sampler *s);

/* --- raw protobuf ------------------------------------------------------------------ */

/* A growable buffer for hand-built protobuf messages. */
struct pb {
	uint8_t *b;
	size_t n, cap;
};

void pb_varint(struct pb *p, uint64_t v);
/* Appends a length-delimited field (string, bytes or submessage). */
void pb_bytes(struct pb *p, unsigned field, const void *data, size_t len);
/* Appends an ExecuteRequest.env map entry (field 4). */
void pb_env(struct pb *p, const void *name, size_t nlen, const void *value, size_t vlen);
/* Appends an ExecuteRequest.files entry (field 3). */
void pb_file(struct pb *p, const void *path, size_t plen, const void *data, size_t dlen);
void pb_free(struct pb *p);

#endif
