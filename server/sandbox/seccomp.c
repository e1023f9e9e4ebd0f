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
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* The policy as a libseccomp context (tree: the binary-tree layout), or
 * NULL with errno set and a message. */
static scmp_filter_ctx policy_build(bool tree, char *err, size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int rc;

	if (ctx == NULL) {
		snprintf(err, errlen, "seccomp_init failed");
		errno = ENOMEM;
		return NULL;
	}
	/* only the native table: other ABIs' entry points kill */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0)
		goto fail;
	/* the same rules, tested as a binary search over the syscall number
	 * instead of one comparison after the other: the kernel runs the
	 * program over every syscall number when it loads it (to cache the
	 * always-allowed ones), which costs each sandbox ~90 us with the
	 * linear layout and ~35 us with the tree */
	if (tree && (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0)
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
	return ctx;
fail:
	snprintf(err, errlen, "seccomp: %s", strerror(-rc));
	seccomp_release(ctx);
	errno = -rc;
	return NULL;
}

int seccomp_install(char *err, size_t errlen)
{
	scmp_filter_ctx ctx = policy_build(false, err, errlen);
	int rc;

	if (ctx == NULL)
		return -1;
	rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0) {
		snprintf(err, errlen, "seccomp: load: %s", strerror(-rc));
		return -1;
	}
	return 0;
}

/*
 * The program seccomp_prepare built, for this process and the sandboxes it
 * clones (they inherit it with the rest of our memory). Static: it lives as
 * long as the process and there is nothing to free; BPF_MAXINSNS is the
 * kernel's own limit, and only the pages the program fills are ever touched.
 * No lock: the processes that clone sandboxes (the supervisor, the zygote)
 * are single-threaded.
 */
static struct sock_filter prog_insns[BPF_MAXINSNS];
static struct sock_fprog prog;

/* What the builder child hands back, in memory shared with it. */
struct built {
	int done; /* set last, once the rest is written */
	int err;  /* 0, or an errno value (msg says more) */
	unsigned short len;
	char msg[160];
	struct sock_filter insns[BPF_MAXINSNS];
};

/* In the builder child: the policy's program, exported by libseccomp, into *b. */
static void build_into(struct built *b)
{
	scmp_filter_ctx ctx;
	struct stat st;
	ssize_t n;
	int fd, rc;

	if ((ctx = policy_build(true, b->msg, sizeof(b->msg))) == NULL) {
		b->err = errno;
		return;
	}
	/* libseccomp 2.5 exports only to a file descriptor; a memfd, not a
	 * pipe, so a program larger than a pipe's buffer cannot block us */
	fd = memfd_create("capibox-seccomp", MFD_CLOEXEC);
	if (fd < 0) {
		b->err = errno;
		snprintf(b->msg, sizeof(b->msg), "seccomp: memfd_create: %s", strerror(b->err));
		goto out;
	}
	if ((rc = seccomp_export_bpf(ctx, fd)) < 0) {
		b->err = -rc;
		snprintf(b->msg, sizeof(b->msg), "seccomp: export: %s", strerror(b->err));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		b->err = errno;
		snprintf(b->msg, sizeof(b->msg), "seccomp: fstat: %s", strerror(b->err));
		goto out;
	}
	if (st.st_size <= 0 || st.st_size % (off_t)sizeof(struct sock_filter) != 0 ||
	    st.st_size > (off_t)sizeof(b->insns)) {
		b->err = EINVAL;
		snprintf(b->msg, sizeof(b->msg), "seccomp: exported program of %lld bytes",
			 (long long)st.st_size);
		goto out;
	}
	do {
		n = pread(fd, b->insns, (size_t)st.st_size, 0);
	} while (n < 0 && errno == EINTR);
	if (n != st.st_size) {
		b->err = n < 0 ? errno : EIO;
		snprintf(b->msg, sizeof(b->msg), "seccomp: read back the program: %s",
			 strerror(b->err));
		goto out;
	}
	b->len = (unsigned short)(st.st_size / (off_t)sizeof(struct sock_filter));
out:
	if (fd >= 0)
		close(fd);
	seccomp_release(ctx);
}

int seccomp_prepare(char *err, size_t errlen)
{
	struct built *b;
	pid_t pid;
	int e = 0;

	if (prog.len > 0)
		return 0;
	/*
	 * libseccomp runs in a short-lived child, not here: its build leaves
	 * hundreds of small freed blocks in our malloc heap, and every sandbox
	 * we clone would then, at its first larger allocation, sort them into
	 * bins, writing to (so copying) those heap pages: measured, ~300 page
	 * faults and ~1 ms CPU per zygote sandbox. The child writes the
	 * program into shared memory outside the heap. A raw clone: no atfork
	 * handlers (the zygote's BLAS); we are single-threaded.
	 */
	b = mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (b == MAP_FAILED) {
		e = errno;
		snprintf(err, errlen, "seccomp: mmap: %s", strerror(e));
		errno = e;
		return -1;
	}
	pid = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
	if (pid == 0) {
		build_into(b);
		__atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
		_exit(0);
	}
	if (pid < 0) {
		e = errno;
		snprintf(err, errlen, "seccomp: clone the builder: %s", strerror(e));
		goto out;
	}
	/* ECHILD: SIGCHLD is ignored (the zygote), the kernel reaped it once
	 * it ended */
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (!__atomic_load_n(&b->done, __ATOMIC_ACQUIRE)) {
		e = ECHILD;
		snprintf(err, errlen, "seccomp: the builder died");
	} else if (b->err != 0) {
		e = b->err;
		snprintf(err, errlen, "%s", b->msg);
	} else if (b->len == 0) {
		e = EINVAL;
		snprintf(err, errlen, "seccomp: empty program");
	} else {
		memcpy(prog_insns, b->insns, b->len * sizeof(b->insns[0]));
		prog.filter = prog_insns;
		prog.len = b->len;
	}
out:
	munmap(b, sizeof(*b));
	if (e != 0) {
		errno = e;
		return -1;
	}
	return 0;
}

int seccomp_apply(char *err, size_t errlen)
{
	if (prog.len == 0) {
		snprintf(err, errlen, "seccomp: no filter prepared");
		return -1;
	}
	/* what seccomp_load does with libseccomp's defaults: no_new_privs
	 * (SCMP_FLTATR_CTL_NNP is on), then the filter with no flags (TSYNC,
	 * LOG and SPEC_ALLOW are off; 2.5.4's seccomp_load passes 0, checked
	 * with strace); the prctl is the fallback for kernels without the
	 * seccomp call, as libseccomp's */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "seccomp: no_new_privs: %s", strerror(errno));
		return -1;
	}
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0 &&
	    (errno != ENOSYS || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)) {
		snprintf(err, errlen, "seccomp: load: %s", strerror(errno));
		return -1;
	}
	return 0;
}
