/*
 * Seccomp policy: allow by default, refuse the calls that only serve to
 * reach the kernel's attack surface or the host. A refused call fails with
 * EPERM (ENOSYS for clone3, see below): programs that probe for a feature
 * get an error they handle, not a dead process. Calls of a foreign
 * architecture (i386 or x32 entry points on x86_64) kill the process:
 * they exist only to dodge a filter written for the native table.
 */
#include "seccomp.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>

struct rule {
	const char *name; /* syscall name; missing ones on this arch are skipped */
	int err;	  /* errno returned */
};

/*
 * The table. Each group says why it is refused.
 */
static const struct rule deny[] = {
	/* filesystems: the sandbox's mounts are final; remounting or new
	 * mounts could expose or hide paths */
	{"mount", EPERM},
	{"umount2", EPERM},
	{"pivot_root", EPERM},
	{"chroot", EPERM},
	{"move_mount", EPERM},
	{"open_tree", EPERM},
	{"fsopen", EPERM},
	{"fsconfig", EPERM},
	{"fsmount", EPERM},
	{"fspick", EPERM},
	{"mount_setattr", EPERM},
	/* other processes' memory: tracing and cross-process reads */
	{"ptrace", EPERM},
	{"process_vm_readv", EPERM},
	{"process_vm_writev", EPERM},
	{"kcmp", EPERM},
	{"pidfd_getfd", EPERM},
	/* large, often-exploited kernel subsystems untrusted code never needs */
	{"bpf", EPERM},
	{"perf_event_open", EPERM},
	{"userfaultfd", EPERM},
	{"io_uring_setup", EPERM},
	{"io_uring_enter", EPERM},
	{"io_uring_register", EPERM},
	/* the kernel keyring is not namespaced */
	{"keyctl", EPERM},
	{"add_key", EPERM},
	{"request_key", EPERM},
	/* loading code into the kernel or replacing it */
	{"kexec_load", EPERM},
	{"kexec_file_load", EPERM},
	{"init_module", EPERM},
	{"finit_module", EPERM},
	{"delete_module", EPERM},
	/* machine state */
	{"reboot", EPERM},
	{"swapon", EPERM},
	{"swapoff", EPERM},
	{"acct", EPERM},
	{"quotactl", EPERM},
	{"quotactl_fd", EPERM},
	{"syslog", EPERM},
	{"vhangup", EPERM},
	{"iopl", EPERM},
	{"ioperm", EPERM},
	{"lookup_dcookie", EPERM},
	{"nfsservctl", EPERM},
	/* new namespaces would give the code capabilities over fresh ones
	 * (more kernel surface); clone with namespace flags is refused below */
	{"setns", EPERM},
	{"unshare", EPERM},
	/* file handles bypass path-based confinement */
	{"open_by_handle_at", EPERM},
	{"name_to_handle_at", EPERM},
	/* clocks are global */
	{"clock_settime", EPERM},
	{"clock_adjtime", EPERM},
	{"settimeofday", EPERM},
	{"adjtimex", EPERM},
	/* names of the (own) uts namespace stay as set up */
	{"sethostname", EPERM},
	{"setdomainname", EPERM},
	/* clone3 passes its flags in memory a filter cannot read: ENOSYS makes
	 * libc fall back to clone, whose flags are checked */
	{"clone3", ENOSYS},
};

static const unsigned long ns_flags[] = {
	CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,    CLONE_NEWUSER,
	CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP,
};

/* ADDR_NO_RANDOMIZE, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT, READ_IMPLIES_EXEC */
static const unsigned long persona_flags[] = {0x0040000, 0x0100000, 0x0200000, 0x0400000};

size_t seccomp_rule_count(void)
{
	return sizeof(deny) / sizeof(deny[0]) + sizeof(ns_flags) / sizeof(ns_flags[0]) +
	       sizeof(persona_flags) / sizeof(persona_flags[0]);
}

int seccomp_install(char *err, size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int rc;

	if (ctx == NULL) {
		snprintf(err, errlen, "seccomp_init failed");
		return -1;
	}
	/* only the native table: other ABIs' entry points kill */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0)
		goto fail;
	for (size_t i = 0; i < sizeof(deny) / sizeof(deny[0]); i++) {
		int nr = seccomp_syscall_resolve_name(deny[i].name);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(deny[i].err), nr, 0)) < 0)
			goto fail;
	}
	/* clone with any namespace flag */
	for (size_t i = 0; i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++)
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
					   SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]))) <
		    0)
			goto fail;
	/* personality: the query (0xffffffff) and plain PER_LINUX stay; flags
	 * that weaken exploit mitigations (no ASLR, executable data, page 0)
	 * are refused */
	for (size_t i = 0; i < sizeof(persona_flags) / sizeof(persona_flags[0]); i++)
		/* one comparison per argument: "flag set and bit 31 clear" keeps
		 * the query (all bits set) allowed */
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
					   SCMP_A0(SCMP_CMP_MASKED_EQ,
						   persona_flags[i] | 0x80000000UL,
						   persona_flags[i]))) < 0)
			goto fail;
	if ((rc = seccomp_load(ctx)) < 0)
		goto fail;
	seccomp_release(ctx);
	return 0;
fail:
	snprintf(err, errlen, "seccomp: %s", strerror(-rc));
	seccomp_release(ctx);
	return -1;
}
