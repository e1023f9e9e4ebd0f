/*
 * The sandbox's seccomp-bpf policy (libseccomp). Built once, in the process
 * that clones sandboxes (the supervisor, the zygote), before its first
 * clone; each sandbox's runner only loads the inherited program, last,
 * after no_new_privs and the capability drop, right before exec.
 */
#ifndef CAPIBOX_SECCOMP_H
#define CAPIBOX_SECCOMP_H

#include <stddef.h>

/* Builds the policy's BPF program (libseccomp's binary-tree layout) into
 * this process's memory, once (later calls return 0 at once);
 * single-threaded callers. Returns 0, or -1 with errno set and a message. */
__attribute__((warn_unused_result)) int seccomp_prepare(char *err, size_t errlen);

/* Loads the program seccomp_prepare built (in this process or a parent it
 * was cloned from) into the calling thread, as seccomp_load would. Returns
 * 0, or -1 with a message (also when none was built). */
__attribute__((warn_unused_result)) int seccomp_apply(char *err, size_t errlen);

/* Builds and loads the policy with libseccomp's own seccomp_load and its
 * default (linear) layout, all in the caller: the reference seccomp_apply's
 * program (the same rules as a binary tree) is tested and measured against.
 * Returns 0, or -1 with a message. */
__attribute__((warn_unused_result)) int seccomp_install(char *err, size_t errlen);

/* Number of rules in the policy table (for docs and tests). */
size_t seccomp_rule_count(void);

#endif
