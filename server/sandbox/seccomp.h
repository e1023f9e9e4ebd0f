/*
 * The sandbox's seccomp-bpf policy (libseccomp). Installed by the runner
 * last, after no_new_privs and the capability drop, right before exec.
 */
#ifndef CAPIBOX_SECCOMP_H
#define CAPIBOX_SECCOMP_H

#include <stddef.h>

/* Loads the filter into the calling thread. Returns 0, or -1 with a message. */
__attribute__((warn_unused_result)) int seccomp_install(char *err, size_t errlen);

/* Number of rules in the policy table (for docs and tests). */
size_t seccomp_rule_count(void);

#endif
