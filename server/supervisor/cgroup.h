/*
 * Per-sandbox control groups: memory (swap off), process count and CPU
 * accounting. cgroup v2 (unified hierarchy at /sys/fs/cgroup) is used when
 * it is mounted there; otherwise cgroup v1 with the memory, pids and
 * cpuacct controllers (as on the dev and CI machines). Supervisor only.
 */
#ifndef CAPIBOX_CGROUP_H
#define CAPIBOX_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum cg_mode { CG_NONE = 0, CG_V1, CG_V2 };

/*
 * Detects the hierarchy under root (NULL: /sys/fs/cgroup), creates capibox's
 * parent group(s) and removes groups of dead supervisors. Returns the mode;
 * describes it (and any missing controller) in desc.
 */
enum cg_mode cg_init(const char *root, char *desc, size_t desclen);

struct cg_usage {
	uint64_t cpu_us;
	uint64_t peak_memory_bytes;
	bool oom_killed;
};

/*
 * Creates the group for sandbox id with its limits. Returns 0, or -1 with
 * a message in err. A no-op returning 0 in CG_NONE mode.
 */
__attribute__((warn_unused_result)) int cg_create(uint64_t id, uint64_t memory_bytes,
						  uint32_t max_processes, char *err, size_t errlen);

/*
 * Changes sandbox id's memory and process limits (a pooled sandbox taking
 * a request). Returns 0 or -1 with a message.
 */
__attribute__((warn_unused_result)) int
cg_set_limits(uint64_t id, uint64_t memory_bytes, uint32_t max_processes, char *err, size_t errlen);

/*
 * cgroup v2: moves pid into sandbox id's group. Returns 0 or -1 with a
 * message. Nothing to do on v1, where a sandbox's init joins its groups
 * itself (cg_open_tasks), nor without cgroups.
 */
__attribute__((warn_unused_result)) int cg_attach(uint64_t id, pid_t pid, char *err, size_t errlen);

/*
 * cgroup v2: an O_PATH descriptor of sandbox id's group, for clone3's
 * CLONE_INTO_CGROUP; -1 on v1 (or without cgroups).
 */
int cg_open(uint64_t id);

/*
 * cgroup v1: opens the `tasks` file of each of sandbox id's groups
 * (O_WRONLY, CLOEXEC) into fds. A process that writes "0" to them moves
 * itself, which the kernel does without the global lock a write of a pid
 * takes (that lock waits for an RCU grace period, milliseconds); the open
 * by root is what permits the write. Returns how many (0 on v2 or without
 * cgroups), or -1 with errno.
 */
#define CG_TASK_FDS 3
int cg_open_tasks(uint64_t id, int fds[CG_TASK_FDS]);

/* cgroup v2: kills every process in sandbox id's group (cgroup.kill); no-op on v1. */
void cg_kill(uint64_t id);

/*
 * The files a run's figures are read from, opened once per sandbox (an
 * open of a cgroup file costs tens of microseconds; a read of an open one,
 * a few): CPU time, peak memory, OOM kills. An entry that could not be
 * opened is -1, and the figure is then read by path.
 */
enum { CG_STAT_CPU, CG_STAT_PEAK, CG_STAT_OOM, CG_STAT_FDS };
void cg_open_stats(uint64_t id, int fds[CG_STAT_FDS]);
void cg_close_stats(int fds[CG_STAT_FDS]);

/* Reads what sandbox id used (zeros where unknown). */
void cg_read_usage(uint64_t id, const int fds[CG_STAT_FDS], struct cg_usage *u);

/* CPU time used so far by sandbox id's group, in microseconds (0 if unknown). */
uint64_t cg_cpu_us(uint64_t id, const int fds[CG_STAT_FDS]);

/* Whether cg_cpu_us reads anything: then the CPU limit is checked on it. */
bool cg_cpu_accounted(void);

/* Removes sandbox id's group; its processes must be gone. */
void cg_destroy(uint64_t id);

#endif
