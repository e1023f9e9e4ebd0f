/*
 * Making one sandbox (supervisor side) and setting it up (child side).
 *
 * The supervisor calls sandbox_spawn(): it clones a child into new user,
 * pid, mount, net, ipc, uts and cgroup namespaces, writes the child's uid
 * and gid maps (inside uid 1000 = one unprivileged host uid, nothing else),
 * then lets it go. The child becomes the sandbox's init (pid 1) and runs
 * the setup steps in order (sandbox.c, mounts.c); the first failing step is
 * reported over the report pipe, not on stderr. init then forks the runner,
 * which drops every capability and execs the runtime, and init reaps
 * everything until the runner exits, reports its status and exits: the
 * kernel then kills whatever the code left behind.
 */
#ifndef CAPIBOX_SANDBOX_H
#define CAPIBOX_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../exec.h"
#include "../runtime.h"

#define SANDBOX_UID 1000
#define SANDBOX_GID 1000
#define SANDBOX_HOME "/home/user"
#define SANDBOX_CODE_DIR "/.capibox"
/* in a take's environment: the runner becomes a session's (its value: the
 * cells' language); the front sets it, requests may not (request.c) */
#define SANDBOX_SESSION_ENV "CAPIBOX_SESSION"

#define SANDBOX_CGROUP_FDS 3

struct sandbox_spec {
	const struct runtime *rt;
	struct exec_limits limits;
	uint64_t tmpfs_bytes;
	uint32_t host_uid;    /* this sandbox's own unprivileged host uid (and gid) */
	const char *root_dir; /* empty root-owned dir the new root is mounted on */
	const char *env;      /* n_env "NAME=value\0" strings from the request */
	uint32_t n_env;
	int payload_fd; /* code and files (payload.h) */
	int stdin_fd;	/* becomes fd 0 */
	int stdout_fd;	/* becomes fd 1 */
	int stderr_fd;	/* becomes fd 2 */
	int events_fd;	/* write end of the events pipe: becomes fd 4 (-1: none) */
	/* called with the child's pid after its id maps are written and before
	 * it may run anything (the supervisor puts it in its cgroup here);
	 * returns 0, or -1 with a message in err */
	int (*before_release)(void *arg, pid_t pid, bool in_cgroup, char *err, size_t errlen);
	void *hook_arg;
	int cgroup_fd; /* cgroup v2 directory to clone into, or -1 */
	/* cgroup v1: the `tasks` files of the sandbox's groups, opened by the
	 * supervisor; init writes "0" to each when released, joining them
	 * before it runs anything (cgroup.h, cg_open_tasks) */
	int cgroup_tasks[SANDBOX_CGROUP_FDS];
	unsigned n_cgroup_tasks;
	bool warm; /* pooled: start the runtime's warm runner, wait for a take */
	/* the supervisor checks the CPU limit on the sandbox's cgroup (exact,
	 * every 100 ms): RLIMIT_CPU is then a backstop a second later, as the
	 * kernel's per-process count can run ahead of the cgroup's under load
	 * (it charges whole ticks) and would end a run early */
	bool cpu_backstop;
	int control_fd; /* warm: init's end of the take socket */
	/* mounts_setup: build the zygote's root (its proc stays unmasked, so
	 * that its children may mount theirs); in a sandbox: cloned by the
	 * zygote, whose runner returns into the zygote's Python, no exec */
	bool zygote;
	/* warm, but taken at once (a cold request made by the zygote): no
	 * waiting at the lowest priority */
	bool at_once;
};

enum sandbox_report_type {
	SANDBOX_REPORT_READY = 1, /* setup done, runner started */
	SANDBOX_REPORT_EXIT = 2,  /* runner ended: wstatus, rusage */
	SANDBOX_REPORT_ERROR = 3, /* a setup step failed: step, err, msg */
	SANDBOX_REPORT_WARM = 4,  /* pooled: runner starting, init waits for the take */
	/* the runner said it is exiting (wstatus) and init has killed every
	 * other process: no code of the sandbox runs any more, though its
	 * processes are still being torn down (rusage: CPU only) */
	SANDBOX_REPORT_DONE = 5,
};

/* One record on the report pipe, init -> supervisor. */
struct sandbox_report {
	uint32_t type;
	int32_t wstatus;
	int32_t err;
	uint32_t step;
	uint64_t utime_us;
	uint64_t stime_us;
	uint64_t maxrss_kb;
	char msg[160];
};

/*
 * Clones the sandbox. Returns the host pid of its init and sets *report_fd
 * to the read end of its report pipe (CLOEXEC, non-blocking) and
 * *into_cgroup to whether clone3 placed it in spec->cgroup_fd; returns -1
 * with a message in err on failure. The spec's fds stay open in the caller.
 */
__attribute__((warn_unused_result)) pid_t sandbox_spawn(const struct sandbox_spec *spec,
							int *report_fd, bool *into_cgroup,
							char *err, size_t errlen);

/*
 * Builds the sandbox's filesystem (mounts.c) and pivots into it. Runs in the
 * child. Returns 0, or -1 with a message in err.
 */
__attribute__((warn_unused_result)) int mounts_setup(const struct sandbox_spec *spec, char *err,
						     size_t errlen);

/* Makes the new root read-only after the payload was written. */
__attribute__((warn_unused_result)) int mounts_seal_root(char *err, size_t errlen);

/*
 * The python zygote (docs/ZYGOTE.md). The supervisor starts it with
 * sandbox_zygote_start() and asks it for warm sandboxes with
 * sandbox_zygote_send() and _recv(); the zygote (python3 with the _capibox_zygote
 * extension, server/zygote/) answers in sandbox_zygote_serve(). One packet
 * type each way, over a SOCK_SEQPACKET socket: requests carry only ids,
 * sizes, limits and descriptors, never request content.
 */
enum zygote_msg_type {
	ZYGOTE_READY = 1, /* zygote -> supervisor: serving (once, at start) */
	ZYGOTE_SPAWN,	  /* supervisor -> zygote: one warm sandbox, ZYGOTE_SPAWN_FDS fds */
	ZYGOTE_SPAWNED,	  /* zygote -> supervisor: made it; its pidfd travels along */
	ZYGOTE_FAILED,	  /* zygote -> supervisor: could not (err, msg) */
};

/* stdin, stdout, stderr, events (w), report (w), control (init's end), go (r);
 * then n_cgroup cgroup `tasks` files */
#define ZYGOTE_SPAWN_FDS 7
#define ZYGOTE_SPAWN_MAX_FDS (ZYGOTE_SPAWN_FDS + SANDBOX_CGROUP_FDS)

struct zygote_msg {
	uint32_t type;
	uint32_t runtime;   /* index into the runtime table */
	uint32_t uid_index; /* the child's uid in the zygote's user namespace (>= 1) */
	int32_t err;	    /* ZYGOTE_FAILED: errno */
	uint32_t at_once;   /* ZYGOTE_SPAWN: spec.at_once */
	uint32_t n_cgroup;  /* ZYGOTE_SPAWN: spec.cgroup_tasks, after the others */
	uint64_t id;
	uint64_t tmpfs_bytes;
	struct exec_limits limits;
	char msg[128];
};

/*
 * Starts a zygote for spec->rt (its warm runner, flags and environment) on
 * a root built like a sandbox's (spec->root_dir, spec->tmpfs_bytes). Its
 * user namespace maps uid 0 to zygote_uid and uids 1..n_uids to uid_base..
 * (so a child given uid index k is host uid uid_base + k - 1). so_fd is the
 * _capibox_zygote extension, copied into its /.capibox; preload the modules
 * to import ("" none). Returns its pid (our child) and sets *sock to our end
 * of its socket (CLOEXEC); -1 with err.
 */
__attribute__((warn_unused_result)) pid_t sandbox_zygote_start(const struct sandbox_spec *spec,
							       uint32_t zygote_uid,
							       uint32_t uid_base, uint32_t n_uids,
							       int so_fd, const char *preload,
							       int *sock, char *err, size_t errlen);

/* how long a zygote may take to answer a spawn request */
#define ZYGOTE_ANSWER_MS 2000

/*
 * A spawn request sent to a zygote whose answer was not handled yet: what
 * letting its sandbox go needs.
 */
struct zygote_pending {
	uint64_t id;
	int report_r; /* init's report pipe, read end */
	int sync_w;   /* init waits for a byte on it before its first step */
};

/*
 * Asks the zygote on zsock for a sandbox of spec (warm; its stdio, events
 * and control descriptors) with uid index uid_index and id. Does not wait:
 * the answer (sandbox_zygote_recv) carries id. Returns 0 and fills *zp; -1
 * with err when this sandbox failed; -2 when the zygote's socket failed (it
 * must be replaced).
 */
__attribute__((warn_unused_result)) int
sandbox_zygote_send(int zsock, const struct sandbox_spec *spec, uint32_t uid_index, uint64_t id,
		    struct zygote_pending *zp, char *err, size_t errlen);

/*
 * Reads one packet from a zygote, waiting up to wait_ms (0: only one that is
 * there). Returns its type with *id: ZYGOTE_SPAWNED with the new sandbox's
 * *pidfd (CLOEXEC), ZYGOTE_FAILED (that sandbox failed; err says why; the
 * zygote is fine), ZYGOTE_READY; 0 when none came; -1 with err on EOF or a
 * malformed packet (the zygote must be replaced: answers pair with requests
 * by id, and a broken stream pairs nothing).
 */
__attribute__((warn_unused_result)) int sandbox_zygote_recv(int zsock, int wait_ms, uint64_t *id,
							    int *pidfd, char *err, size_t errlen);

/* The host pid of pidfd's process (its fdinfo), or -1. */
pid_t sandbox_pidfd_pid(int pidfd);

/*
 * Lets the zygote's new sandbox of zp go (once the caller has put it in its
 * cgroup where that needs its pid: v2). Returns 0 and sets *report_fd (as
 * sandbox_spawn); -1 with err (the caller kills it).
 */
__attribute__((warn_unused_result)) int sandbox_zygote_go(struct zygote_pending *zp, int *report_fd,
							  char *err, size_t errlen);

/* Closes what zp still holds (its sandbox failed, or never came). */
void sandbox_zygote_drop(struct zygote_pending *zp);

/*
 * The zygote's loop over its socket: announces ZYGOTE_READY, then clones
 * one sandbox per request. Returns 0 when the supervisor closed the socket,
 * -1 (errno) on a failure of the socket, and 1 in a new sandbox's runner,
 * which has then done everything a runner does before exec (descriptors,
 * limits, capabilities, no_new_privs, seccomp) and must become the warm
 * runner. before_fork and after_fork_parent wrap each clone (the
 * interpreter's fork hooks).
 */
int sandbox_zygote_serve(int sock, void (*before_fork)(void), void (*after_fork_parent)(void));

/* Builds the zygote child's own filesystem parts over the zygote's root. */
__attribute__((warn_unused_result)) int mounts_zygote_child(const struct sandbox_spec *spec,
							    char *err, size_t errlen);

#endif
