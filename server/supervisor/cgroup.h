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
 * Groups are per supervisor slot (0 .. n-1), made on a slot's first
 * sandbox and kept for its next ones (cgroup.c says why). cg_setup sizes
 * the table after cg_init; returns -1 if out of memory.
 */
int cg_setup(unsigned n);

/*
 * Slot g's group for a new sandbox, with these limits: the kept one, empty
 * and reset (limits, peak memory; CPU time and OOM kills counted from
 * here), or a new one. Returns 0, or -1 with a message in err. A no-op
 * returning 0 without cgroups.
 */
__attribute__((warn_unused_result)) int cg_begin(unsigned g, uint64_t memory_bytes,
						 uint32_t max_processes, char *err, size_t errlen);

/* Slot g's sandbox is gone (every process): its group is kept or removed. */
void cg_end(unsigned g);

/* Removes every group (the supervisor's exit; their processes must be gone). */
void cg_remove_all(void);

/*
 * Changes slot g's memory and process limits (a pooled sandbox taking a
 * request), writing only what differs. Returns 0 or -1 with a message.
 */
__attribute__((warn_unused_result)) int
cg_set_limits(unsigned g, uint64_t memory_bytes, uint32_t max_processes, char *err, size_t errlen);

/*
 * cgroup v2: moves pid into slot g's group. Returns 0 or -1 with a
 * message. Nothing to do on v1, where a sandbox's init joins its groups
 * itself (cg_open_tasks), nor without cgroups.
 */
__attribute__((warn_unused_result)) int cg_attach(unsigned g, pid_t pid, char *err, size_t errlen);

/*
 * cgroup v2: an O_PATH descriptor of slot g's group, for clone3's
 * CLONE_INTO_CGROUP; -1 on v1 (or without cgroups).
 */
int cg_open(unsigned g);

/*
 * cgroup v1: copies of the `tasks` files of each of slot g's groups
 * (O_WRONLY, CLOEXEC) into fds. A process that writes "0" to them moves
 * itself, which the kernel does without the global lock a write of a pid
 * takes (that lock waits for an RCU grace period, milliseconds); the open
 * by root is what permits the write. Returns how many (0 on v2 or without
 * cgroups), or -1 with errno.
 */
#define CG_TASK_FDS 3
int cg_open_tasks(unsigned g, int fds[CG_TASK_FDS]);

/* cgroup v2: kills every process in slot g's group (cgroup.kill); no-op on v1. */
void cg_kill(unsigned g);

/*
 * The files a group's figures are read from are opened once (an open of a
 * cgroup file costs tens of microseconds; a read of an open one, a few):
 * CPU time, peak memory, OOM kills.
 */
enum { CG_STAT_CPU, CG_STAT_PEAK, CG_STAT_OOM, CG_STAT_FDS };

/* Reads what slot g's sandbox used since cg_begin (zeros where unknown). */
void cg_read_usage(unsigned g, struct cg_usage *u);

/* CPU time slot g's sandbox used so far, in microseconds (0 if unknown). */
uint64_t cg_cpu_us(unsigned g);

/* Whether cg_cpu_us reads anything: then the CPU limit is checked on it. */
bool cg_cpu_accounted(void);

#endif
