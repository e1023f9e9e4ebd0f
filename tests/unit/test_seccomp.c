/*
 * The seccomp filter as sandboxes get it: built once (seccomp_prepare), then
 * only loaded in each child (seccomp_apply). The kernel must hold the same
 * program, with the same flags, as libseccomp's own seccomp_load of the
 * policy (seccomp_install), and the loaded policy must refuse what it
 * refuses. Each check runs in a forked child: a filter cannot be removed.
 * Needs root (reading a loaded filter back takes CAP_SYS_ADMIN).
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox/seccomp.h"

/* glibc's <sys/ptrace.h> has these since 2.27; the kernel's numbers */
#ifndef PTRACE_SECCOMP_GET_FILTER
#define PTRACE_SECCOMP_GET_FILTER 0x420c
#endif
#ifndef PTRACE_SECCOMP_GET_METADATA
#define PTRACE_SECCOMP_GET_METADATA 0x420d
#endif

struct filter_meta {
	uint64_t filter_off;
	uint64_t flags;
};

/* The filter a child loaded with load(): its instructions (returns how many),
 * its flags and its no_new_privs, read back from the kernel. */
static long loaded_filter(int (*load)(char *, size_t), struct sock_filter *out, size_t max,
			  uint64_t *flags)
{
	struct filter_meta meta = {0};
	char err[160];
	long n;
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		/* traced before the filter: it refuses ptrace */
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0 || load(err, sizeof(err)) < 0)
			_exit(1);
		raise(SIGSTOP);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSTOPPED(status));
	n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, NULL); /* the count */
	assert_true(n > 0 && (size_t)n <= max);
	assert_int_equal(ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, out), n);
	/* only one filter: index 1 does not exist */
	assert_true(ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 1, NULL) < 0);
	assert_int_equal(ptrace(PTRACE_SECCOMP_GET_METADATA, pid, sizeof(meta), &meta),
			 sizeof(meta));
	*flags = meta.flags;
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return n;
}

/* Runs fn in a forked child after seccomp_apply; returns its wait status. */
static int in_filtered_child(int (*fn)(void))
{
	char err[160];
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		if (seccomp_apply(err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			_exit(100);
		}
		_exit(fn());
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static int apply_only(void) { return 0; }

static void test_apply_needs_prepare(void **state)
{
	char err[160];
	int status;
	pid_t pid;

	(void)state;
	/* runs first: nothing is prepared yet, so no child is left unfiltered
	 * silently */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(seccomp_apply(err, sizeof(err)) < 0 && strstr(err, "no filter") != NULL ? 0 :
												1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_prepare_once(void **state)
{
	char err[160];
	int status;

	(void)state;
	assert_int_equal(seccomp_prepare(err, sizeof(err)), 0);
	assert_int_equal(seccomp_prepare(err, sizeof(err)), 0);
	status = in_filtered_child(apply_only);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static int prepare_and_apply(char *err, size_t errlen)
{
	return seccomp_prepare(err, errlen) < 0 ? -1 : seccomp_apply(err, errlen);
}

static void test_same_program_as_seccomp_load(void **state)
{
	static struct sock_filter ref[BPF_MAXINSNS], got[BPF_MAXINSNS];
	uint64_t ref_flags = ~0ULL, got_flags = ~0ULL;
	long nref, ngot;

	(void)state;
	nref = loaded_filter(seccomp_install, ref, BPF_MAXINSNS, &ref_flags);
	ngot = loaded_filter(prepare_and_apply, got, BPF_MAXINSNS, &got_flags);
	printf("loaded program: %ld instructions (seccomp_load), %ld (prepared)\n", nref, ngot);
	assert_int_equal(ngot, nref);
	assert_memory_equal(got, ref, (size_t)nref * sizeof(ref[0]));
	assert_int_equal(got_flags, ref_flags);
}

/* The policy's answers, checked in the filtered child; returns the number of
 * the first wrong one (0: all as expected). Arguments are ones that fail
 * harmlessly even unfiltered (as root), so a missing filter shows as a
 * different errno, never as a change to the host. */
static int expect_errno(long rc, int want) { return rc == -1 && errno == want; }

static int policy_checks(void)
{
	unsigned char args[88];
	long rc;

	memset(args, 0, sizeof(args));
	if (!expect_errno(syscall(SYS_mount, "none", "/nonexistent-capibox", "tmpfs", 0L, NULL),
			  EPERM))
		return 1;
	if (!expect_errno(syscall(SYS_umount2, "/nonexistent-capibox", 0L), EPERM))
		return 2;
	if (!expect_errno(syscall(SYS_unshare, (long)CLONE_NEWUSER), EPERM))
		return 3;
	if (!expect_errno(syscall(SYS_setns, -1L, 0L), EPERM))
		return 4;
	if (!expect_errno(syscall(SYS_ptrace, (long)PTRACE_TRACEME, 0L, 0L, 0L), EPERM))
		return 5;
	if (!expect_errno(syscall(SYS_bpf, 0L, NULL, 0L), EPERM))
		return 6;
	/* clone with a namespace flag: refused; without: allowed */
	rc = syscall(SYS_clone, (long)(CLONE_NEWNS | SIGCHLD), 0L, 0L, 0L, 0L);
	if (rc == 0)
		_exit(0);
	if (!expect_errno(rc, EPERM))
		return 7;
	rc = syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
	if (rc == 0)
		_exit(0);
	if (rc < 0 || waitpid((pid_t)rc, NULL, 0) != (pid_t)rc)
		return 8;
	/* clone3: ENOSYS, whatever its arguments say */
	if (!expect_errno(syscall(SYS_clone3, args, sizeof(args)), ENOSYS))
		return 9;
	/* personality: the query and plain PER_LINUX pass, weakening flags not */
	if (syscall(SYS_personality, 0xffffffffL) < 0)
		return 10;
	if (syscall(SYS_personality, (long)PER_LINUX) < 0)
		return 11;
	if (!expect_errno(syscall(SYS_personality, (long)ADDR_NO_RANDOMIZE), EPERM))
		return 12;
	if (!expect_errno(syscall(SYS_personality, (long)READ_IMPLIES_EXEC), EPERM))
		return 13;
	/* ordinary calls are untouched */
	if (syscall(SYS_getpid) != getpid() || syscall(SYS_getppid) <= 0)
		return 14;
	return 0;
}

static void test_policy_refuses(void **state)
{
	char err[160];
	int status;

	(void)state;
	assert_int_equal(seccomp_prepare(err, sizeof(err)), 0);
	status = in_filtered_child(policy_checks);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

#if defined(__x86_64__)
/* getpid through the i386 entry point: a foreign architecture */
static int foreign_arch(void)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory", "r8", "r9", "r10", "r11");
	return ret > 0 ? 42 : 43; /* not reached with the filter */
}
#endif

static void test_foreign_arch_kills(void **state)
{
	(void)state;
#if defined(__x86_64__)
	char err[160];
	int status;

	assert_int_equal(seccomp_prepare(err, sizeof(err)), 0);
	status = in_filtered_child(foreign_arch);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSYS);
#else
	skip();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_apply_needs_prepare),
		cmocka_unit_test(test_prepare_once),
		cmocka_unit_test(test_same_program_as_seccomp_load),
		cmocka_unit_test(test_policy_refuses),
		cmocka_unit_test(test_foreign_arch_kills),
	};

	if (geteuid() != 0) {
		printf("test_seccomp: needs root (reads loaded filters back); skipped\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
