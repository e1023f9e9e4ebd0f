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
	int cgroup_fd;	/* cgroup v2 directory to clone into, or -1 */
	bool warm;	/* pooled: start the runtime's warm runner, wait for a take */
	int control_fd; /* warm: init's end of the take socket */
};

enum sandbox_report_type {
	SANDBOX_REPORT_READY = 1, /* setup done, runner started */
	SANDBOX_REPORT_EXIT = 2,  /* runner ended: wstatus, rusage */
	SANDBOX_REPORT_ERROR = 3, /* a setup step failed: step, err, msg */
	SANDBOX_REPORT_WARM = 4,  /* pooled: runner starting, init waits for the take */
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

#endif
