/*
 * Integration test harness: starts the real capiboxd as a child, connects
 * libcapibox to it, runs executions and records every event with the time
 * it arrived, and makes raw gRPC calls (for what libcapibox cannot send).
 *
 * Typical use in a cmocka group:
 *
 *   static struct daemon d;
 *   group setup:    harness_init(); harness_daemon_start(&d, NULL);
 *   each test:      HARNESS_REQUIRE(&d); harness_run(&d, &req, &run); ...
 *   last test:      harness_daemon_stop(&d) must return exit status 0
 *   main:           rc = cmocka_run_group_tests(...); return harness_finish(rc);
 *
 * Everything is for tests: on an internal error (out of memory, no tmpdir)
 * the harness prints and aborts; a daemon that misbehaves is reported to the
 * caller so the test fails with a message.
 */
#ifndef CAPIBOX_TEST_HARNESS_H
#define CAPIBOX_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "capibox.h"

/* Name and value of the variable put into the daemon's own environment. */
#define HARNESS_SECRET_NAME "CAPIBOX_TEST_SECRET"

/* Size of a daemon's sandbox host uid range (the server's default uid count). */
#define HARNESS_UID_COUNT 65536u
/* between two test daemons' ranges: the uids just past a range are its
 * zygotes' (one per kind, docs/ZYGOTE.md), never another daemon's sandboxes */
#define HARNESS_UID_GAP 16u

struct daemon_opts {
	unsigned grace_s;  /* --grace; 0 = 2 */
	unsigned uid_slot; /* 0..7: the --uid-base range differs per test binary (and per pid) */
	const char *const *extra; /* more flags, NULL-terminated, or NULL */
	/* how the harness's client connects (token, TLS), or NULL: plaintext, no key */
	const struct capibox_connect_opts *client;
	const char *listen; /* --listen; NULL = 127.0.0.1:0 */
};

struct daemon {
	pid_t pid;	     /* 0 when not running */
	char tmpdir[64];     /* /tmp/capibox-integ-XXXXXX, owned by the harness */
	char state_dir[96];  /* <tmpdir>/state, passed as --state-dir */
	char ready_file[96]; /* <tmpdir>/addr */
	char log_file[96];   /* <tmpdir>/capiboxd.log: the daemon's stdout and stderr */
	char addr[128];	     /* what the daemon wrote to the ready file */
	unsigned port;	     /* TCP port of addr */
	uint32_t uid_base;   /* sandbox host uid range [uid_base, uid_base + HARNESS_UID_COUNT) */
	char secret[64];     /* value of HARNESS_SECRET_NAME in the daemon's env */
	struct capibox_client *client;
	bool exited; /* reaped: see status */
	int status;  /* waitpid status once exited */
};

/*
 * Checks once whether this machine can run capiboxd (root, user/pid/mount/net
 * namespaces). Call at the start of main, before any gRPC use (it forks).
 * Returns true when it can; harness_skip_reason() says why not.
 */
bool harness_init(void);
const char *harness_skip_reason(void);

/* In a test: skip with the printed reason when the machine cannot run capiboxd. */
#define HARNESS_REQUIRE(d)                                                       \
	do {                                                                     \
		if (!harness_init()) {                                           \
			print_message("SKIP: %s\n", harness_skip_reason());      \
			skip();                                                  \
		}                                                                \
		if ((d)->pid == 0 || (d)->client == NULL)                        \
			fail_msg("capiboxd is not running (see its log above)"); \
	} while (0)

/*
 * Starts capiboxd (CAPIBOXD_PATH) with --listen 127.0.0.1:0, --ready-file,
 * --grace, --state-dir, --uid-base and opts->extra, waits up to 20 s for the
 * ready file and connects. Returns 0, or -1 with the reason and the daemon's
 * log printed.
 */
int harness_daemon_start(struct daemon *d, const struct daemon_opts *opts);

/* Sends sig to the daemon. */
void harness_daemon_signal(struct daemon *d, int sig);

/*
 * Waits up to timeout_ms for the daemon to exit. Returns 0 when it exited
 * (d->status holds the waitpid status), -1 on timeout.
 */
int harness_daemon_wait(struct daemon *d, int timeout_ms);

/*
 * Closes the client, sends SIGTERM and waits up to 20 s. Returns the exit
 * status (0 on a clean exit), 128+signal if killed by one, -1 if it had to be
 * killed by the harness after the timeout.
 */
int harness_daemon_stop(struct daemon *d);

/* Kills the daemon if it still runs (group teardown after a failed test). */
void harness_daemon_kill(struct daemon *d);

/* The daemon's log so far (malloc'd, NUL-terminated; "" when unreadable). */
char *harness_daemon_log(const struct daemon *d);

/* Prints the daemon's log to stdout. */
void harness_daemon_dump_log(const struct daemon *d);

/* Makes harness_finish remove path (a directory a test made) too. */
void harness_remove_at_finish(const char *path);

/*
 * End of main: prints every daemon log if rc != 0, removes the tmpdirs and
 * returns the exit code for ctest (77 = skipped when the machine cannot run
 * capiboxd).
 */
int harness_finish(int rc);

/*
 * Shared cmocka pieces. harness_group_setup starts the daemon of a test
 * binary (its state is the struct daemon); the group teardown kills it if a
 * test left it running. harness_test_daemon_stops is the last test of each
 * binary: SIGTERM must end the daemon with exit status 0, leaving no
 * process in its sandbox uid range and no mount under its directories.
 */
int harness_group_setup(void **state, struct daemon *d, const struct daemon_opts *opts);
int harness_group_teardown(void **state);
void harness_test_daemon_stops(void **state);

/* --- executions ----------------------------------------------------------- */

struct run_chunk {
	int kind;   /* CAPIBOX_EVENT_STDOUT or _STDERR */
	size_t off; /* offset in its stream */
	size_t len;
	double t; /* arrival, seconds since the call started */
};

struct run;
/* What one artifact event said (not its bytes). */
struct harness_piece {
	char path[256];
	char mime[64];
	uint64_t offset, size;
	size_t len;
	bool eof, truncated;
};

/* Fills p from artifact event ev. */
void harness_piece_set(struct harness_piece *p, const struct capibox_event *ev);

/* Called for each event after it is recorded; non-zero cancels the call. */
typedef int (*run_hook)(const struct capibox_event *ev, struct run *r, void *arg);

struct run {
	/* set by the caller, optional */
	run_hook hook;
	void *hook_arg;

	/* results */
	double t0; /* monotonic start of the call (harness_now) */
	int rc;	   /* capibox_execute's return */
	struct capibox_status st;
	double t_end; /* seconds from call start until it returned */

	int n_events;
	int n_started;
	int n_finished;
	bool order_ok; /* started first, finished last, nothing after finished */
	char sandbox_id[128];
	char language[64];
	char backend[64];
	uint64_t queued_us, start_us;
	double t_started;

	uint8_t *out; /* stdout bytes, NUL-terminated */
	size_t out_len, out_cap;
	uint8_t *err; /* stderr bytes, NUL-terminated */
	size_t err_len, err_cap;
	size_t max_chunk; /* largest stdout/stderr message */
	struct run_chunk *chunks;
	size_t n_chunks, cap_chunks;

	int reason;
	int32_t exit_code;
	int32_t signal;
	uint64_t wall_time_us, cpu_time_us, peak_memory_bytes;
	uint64_t stdout_bytes, stderr_bytes;
	char message[512];
	double t_finished;
};

/* Runs req on d's client, recording into r (zeroed first, hook kept). Returns r->rc. */
int harness_run(struct daemon *d, const struct capibox_exec_request *req, struct run *r);
/* Shorthand: language and code, no other fields. */
int harness_run_code(struct daemon *d, const char *language, const char *code, struct run *r);
void harness_run_free(struct run *r);
/* Prints what a run produced (status, events, output heads, finished). */
void harness_run_print(const struct run *r);

/*
 * Arrival time of the chunk that completed the first occurrence of needle in
 * the stream (CAPIBOX_EVENT_STDOUT/_STDERR), or -1 when it never appeared.
 */
double harness_run_time_of(const struct run *r, int kind, const char *needle);

/* Fails the test (printing the run) unless it ended OK with REASON_EXITED and code. */
#define assert_run_exited(r, code)                                                                \
	do {                                                                                      \
		if ((r)->rc != 0 || (r)->n_finished != 1 ||                                       \
		    (r)->reason != CAPIBOX_REASON_EXITED || (r)->exit_code != (code)) {           \
			harness_run_print(r);                                                     \
			fail_msg("expected status OK, one Finished, REASON_EXITED, exit_code %d", \
				 (int)(code));                                                    \
		}                                                                                 \
	} while (0)

/* Fails (printing the run) unless stdout is exactly s. */
#define assert_run_stdout(r, s)                                                              \
	do {                                                                                 \
		if ((r)->out_len != strlen(s) || memcmp((r)->out, (s), (r)->out_len) != 0) { \
			harness_run_print(r);                                                \
			fail_msg("expected stdout \"%s\"", (s));                             \
		}                                                                            \
	} while (0)

/* --- host inspection --------------------------------------------------------- */

/* Pids (up to max) of host processes whose argv joined with spaces contains needle. */
size_t harness_find_procs(const char *needle, pid_t *pids, size_t max);
/* Real uid of pid, or (uid_t)-1 when it is gone. */
uid_t harness_proc_uid(pid_t pid);
/* Pids (up to max) of host processes with real uid in [lo, hi). Returns the total count. */
size_t harness_procs_in_uid_range(uid_t lo, uid_t hi, pid_t *pids, size_t max);
/*
 * Directories of the cgroups pid is in that differ from the test process's
 * own (the sandbox's cgroups), at most max, each up to 256 bytes.
 */
size_t harness_proc_cgroups(pid_t pid, char (*dirs)[256], size_t max);
/*
 * The processes cgroup directory dir holds (its cgroup.procs; none when it
 * is gone): the first max in pids, the count returned.
 */
size_t harness_cgroup_pids(const char *dir, pid_t *pids, size_t max);
/*
 * Waits up to timeout_ms until none of the n cgroup directories holds any
 * of the npids processes (the supervisor keeps a slot's groups for its
 * next sandbox, which may be in them already); true when none does.
 */
bool harness_wait_groups_without(char (*dirs)[256], size_t n, const pid_t *pids, size_t npids,
				 int timeout_ms);

/* Resident memory of pid in KiB (VmRSS), or -1 when it is gone. */
long harness_proc_rss_kib(pid_t pid);
/* True when pid still exists (and is not a zombie reaped by now). */
bool harness_proc_alive(pid_t pid);
/*
 * Waits up to timeout_ms until no host process matches needle. Returns true
 * when none is left.
 */
bool harness_wait_no_procs(const char *needle, int timeout_ms);

/* The host's mount table as one malloc'd string (mount points and sources only). */
char *harness_mounts(void);

/* Monotonic seconds. */
double harness_now(void);
/* Sleeps ms milliseconds. */
void harness_sleep_ms(int ms);

/* --- raw gRPC calls -------------------------------------------------------- */

struct raw_result {
	int code; /* grpc_status_code */
	char message[512];
	int n_messages; /* response messages received */
	uint8_t *first; /* the first response message (malloc'd) or NULL */
	size_t first_len;
};

/*
 * Calls method ("/pkg.Service/Method") on target with req as the only
 * request message (NULL = send no message, only half-close), reading every
 * response until the status. deadline_ms bounds the whole call. Fills out
 * (free with harness_raw_free) and returns out->code.
 */
int harness_raw_call(const char *target, const char *method, const void *req, size_t len,
		     int64_t deadline_ms, struct raw_result *out);

/* What harness_raw_call_opts adds to a raw call. */
struct raw_opts {
	const char *md_key, *md_value; /* one metadata entry ("x-api-key", secret), or NULL */
	bool tls;		       /* TLS channel; roots from ca_file */
	const char *ca_file, *cert_file, *key_file, *server_name;
};

/* harness_raw_call with metadata and/or TLS (o may be NULL). */
int harness_raw_call_opts(const char *target, const char *method, const void *req, size_t len,
			  int64_t deadline_ms, const struct raw_opts *o, struct raw_result *out);

/*
 * Runs argv (argv[0] a path) with stdout captured, stderr to ours, and
 * returns its exit status (-1 when it did not exit). *out is malloc'd and
 * NUL-terminated. For commands run by tests: keygen, openssl, node.
 */
int harness_command(const char *const *argv, char **out);

/* A growable set of strings (host snapshots: paths, names). */
struct names {
	char **v;
	size_t n;
};

/* Adds a copy of s (aborts when out of memory). */
void harness_names_add(struct names *ns, const char *s);
/* True when s is in ns. */
bool harness_names_has(const struct names *ns, const char *s);
/* Frees the strings and empties ns. */
void harness_names_free(struct names *ns);
/* Adds every path under dir (not crossing mounts) to ns. */
void harness_walk(const char *dir, struct names *ns);
/* Adds the top-level entries of the host's temp directories to ns. */
void harness_temp_entries(struct names *ns);

/*
 * Runs `capiboxd keygen id` and copies the new key's secret and its
 * keys-file line ("id hash", no newline). Returns false, printing why, when
 * keygen fails or its output is not the expected four lines.
 */
bool harness_keygen(const char *id, char *secret, size_t secret_len, char *line, size_t line_len);
void harness_raw_free(struct raw_result *out);

#endif
