/*
 * The seccomp filter as sandboxes get it: built once (seccomp_prepare), then
 * only loaded in each child (seccomp_apply). What the kernel holds must give
 * the same answers, with the same flags, as libseccomp's own seccomp_load of
 * the policy (seccomp_install), and the loaded policy must refuse what it
 * refuses. Each check runs in a forked child: a filter cannot be removed.
 * Needs root (reading a loaded filter back takes CAP_SYS_ADMIN).
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <sched.h>
#include <seccomp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
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

/* Runs fn in a forked child as it is (nothing applied); asserts it exited 0. */
static void in_child_ok(int (*fn)(void))
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Applying before anything was prepared fails and says so. */
static int apply_unprepared(void)
{
	char err[160];

	return seccomp_apply(err, sizeof(err)) < 0 && strstr(err, "no filter") != NULL ? 0 : 1;
}

static void test_apply_needs_prepare(void **state)
{
	(void)state;
	/* runs first: nothing is prepared yet, so no child is left unfiltered
	 * silently */
	in_child_ok(apply_unprepared);
}

/* In a fresh process: prepare with SIGCHLD ignored (as in the zygote, whose
 * children the kernel reaps) and without touching the malloc heap the
 * sandboxes inherit (libseccomp runs in a builder child). */
static int fresh_prepare(void)
{
	struct mallinfo2 before, after;
	char err[160];

	signal(SIGCHLD, SIG_IGN);
	before = mallinfo2();
	if (seccomp_prepare(err, sizeof(err)) < 0)
		return 1;
	after = mallinfo2();
	if (before.arena != after.arena || before.ordblks != after.ordblks ||
	    before.smblks != after.smblks || before.uordblks != after.uordblks)
		return 2;
	if (seccomp_apply(err, sizeof(err)) < 0)
		return 3;
	if (syscall(SYS_unshare, (long)CLONE_NEWUSER) != -1 || errno != EPERM)
		return 4;
	return 0;
}

static void test_prepare_in_a_fresh_process(void **state)
{
	(void)state;
	/* before any prepare in this process, like test_apply_needs_prepare */
	in_child_ok(fresh_prepare);
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

/*
 * A classic BPF interpreter for seccomp programs, as the kernel runs them:
 * the two programs are compared by what they answer, not by their bytes
 * (seccomp_prepare lays the rules out as a binary tree, seccomp_install as
 * libseccomp's default list). bpf_bad notes an instruction it does not know.
 */
static bool bpf_bad;

static uint32_t bpf_run(const struct sock_filter *f, long n, const struct seccomp_data *d)
{
	uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {0};

	for (long pc = 0; pc < n; pc++) {
		const struct sock_filter *i = &f[pc];
		uint32_t src = BPF_SRC(i->code) == BPF_X ? x : i->k;
		bool taken;

		switch (BPF_CLASS(i->code)) {
		case BPF_LD:
		case BPF_LDX: {
			uint32_t v;
			if (BPF_MODE(i->code) == BPF_ABS && BPF_SIZE(i->code) == BPF_W &&
			    i->k % 4 == 0 && i->k + 4 <= sizeof(*d))
				memcpy(&v, (const char *)d + i->k, 4);
			else if (BPF_MODE(i->code) == BPF_IMM)
				v = i->k;
			else if (BPF_MODE(i->code) == BPF_MEM && i->k < BPF_MEMWORDS)
				v = mem[i->k];
			else if (BPF_MODE(i->code) == BPF_LEN)
				v = sizeof(*d);
			else
				goto bad;
			if (BPF_CLASS(i->code) == BPF_LD)
				a = v;
			else
				x = v;
			break;
		}
		case BPF_ST:
		case BPF_STX:
			if (i->k >= BPF_MEMWORDS)
				goto bad;
			mem[i->k] = BPF_CLASS(i->code) == BPF_ST ? a : x;
			break;
		case BPF_ALU:
			switch (BPF_OP(i->code)) {
			case BPF_ADD: a += src; break;
			case BPF_SUB: a -= src; break;
			case BPF_MUL: a *= src; break;
			case BPF_DIV:
				if (src == 0)
					return 0; /* the kernel's answer: kill */
				a /= src;
				break;
			case BPF_AND: a &= src; break;
			case BPF_OR: a |= src; break;
			case BPF_XOR: a ^= src; break;
			case BPF_LSH: a = src < 32 ? a << src : 0; break;
			case BPF_RSH: a = src < 32 ? a >> src : 0; break;
			case BPF_NEG: a = -a; break;
			default: goto bad;
			}
			break;
		case BPF_JMP:
			switch (BPF_OP(i->code)) {
			case BPF_JA: pc += i->k; continue;
			case BPF_JEQ: taken = a == src; break;
			case BPF_JGT: taken = a > src; break;
			case BPF_JGE: taken = a >= src; break;
			case BPF_JSET: taken = (a & src) != 0; break;
			default: goto bad;
			}
			pc += taken ? i->jt : i->jf;
			break;
		case BPF_RET: return BPF_RVAL(i->code) == BPF_A ? a : i->k;
		case BPF_MISC:
			if (BPF_MISCOP(i->code) == BPF_TAX)
				x = a;
			else
				a = x;
			break;
		default: goto bad;
		}
	}
bad:
	bpf_bad = true;
	return 0;
}

/* Every action the two programs give, compared over a grid of inputs: each
 * syscall number (and the x32 ones), native and foreign architectures, and
 * arguments around the flags the policy checks. */
static void same_answers(const struct sock_filter *p1, long n1, const struct sock_filter *p2,
			 long n2)
{
	static const uint32_t archs[] = {0 /* native, below */, AUDIT_ARCH_X86_64, AUDIT_ARCH_I386,
					 AUDIT_ARCH_AARCH64, 0};
	uint64_t vals[64];
	size_t nvals = 0, kills = 0, eperm = 0, enosys = 0, allow = 0;
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	uint32_t arch_list[sizeof(archs) / sizeof(archs[0])];
	struct seccomp_data d;

	memcpy(arch_list, archs, sizeof(archs));
	arch_list[0] = seccomp_arch_native();
	vals[nvals++] = 0;
	vals[nvals++] = PER_LINUX;
	vals[nvals++] = 0xffffffffULL;
	vals[nvals++] = ~0ULL;
	for (unsigned b = 0; b < 32; b++) /* every flag bit of the low word */
		vals[nvals++] = 1ULL << b;
	vals[nvals++] = CLONE_NEWNS | CLONE_NEWUSER | SIGCHLD;
	vals[nvals++] = ADDR_NO_RANDOMIZE | 0x80000000ULL;
	vals[nvals++] = (1ULL << 32) | CLONE_NEWNET;
	vals[nvals++] = (1ULL << 32) | READ_IMPLIES_EXEC;
	while (nvals < sizeof(vals) / sizeof(vals[0])) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		vals[nvals++] = seed;
	}
	bpf_bad = false;
	for (size_t ai = 0; ai < sizeof(arch_list) / sizeof(arch_list[0]); ai++)
		for (long nr = -1; nr < 1024 + 600; nr++)
			for (size_t vi = 0; vi < nvals; vi++) {
				uint32_t r1, r2;
				memset(&d, 0, sizeof(d));
				d.arch = arch_list[ai] != 0 ? arch_list[ai] : 0x12345678;
				/* past 1024: x32 numbers (bit 30 set) */
				d.nr = nr < 1024 ? (int)nr : (int)(0x40000000 | (nr - 1024));
				for (int k = 0; k < 6; k++)
					d.args[k] = vals[(vi + (size_t)k) % nvals];
				r1 = bpf_run(p1, n1, &d);
				r2 = bpf_run(p2, n2, &d);
				if (r1 != r2)
					fail_msg("arch %#x nr %#x arg0 %#llx: %#x vs %#x", d.arch,
						 (unsigned)d.nr, (unsigned long long)d.args[0], r1,
						 r2);
				if (r1 == SECCOMP_RET_KILL_PROCESS)
					kills++;
				else if (r1 == (SECCOMP_RET_ERRNO | EPERM))
					eperm++;
				else if (r1 == (SECCOMP_RET_ERRNO | ENOSYS))
					enosys++;
				else if (r1 == SECCOMP_RET_ALLOW)
					allow++;
			}
	printf("compared %zu inputs: %zu kill, %zu EPERM, %zu ENOSYS, %zu allow\n",
	       (sizeof(arch_list) / sizeof(arch_list[0])) * (1024 + 601) * nvals, kills, eperm,
	       enosys, allow);
	assert_false(bpf_bad);
	/* the grid reaches every kind of answer */
	assert_true(kills > 0 && eperm > 0 && enosys > 0 && allow > 0);
}

static void test_same_policy_as_seccomp_load(void **state)
{
	static struct sock_filter ref[BPF_MAXINSNS], got[BPF_MAXINSNS];
	uint64_t ref_flags = ~0ULL, got_flags = ~0ULL;
	long nref, ngot;

	(void)state;
	nref = loaded_filter(seccomp_install, ref, BPF_MAXINSNS, &ref_flags);
	ngot = loaded_filter(prepare_and_apply, got, BPF_MAXINSNS, &got_flags);
	printf("loaded program: %ld instructions (seccomp_load, list), %ld (prepared, tree)\n",
	       nref, ngot);
	assert_int_equal(got_flags, ref_flags);
	same_answers(ref, nref, got, ngot);
}

/* The interpreter itself: a program that must differ is told apart. */
static void test_same_answers_notices_a_difference(void **state)
{
	static struct sock_filter ref[BPF_MAXINSNS];
	uint64_t flags;
	long n;
	struct seccomp_data d;

	(void)state;
	n = loaded_filter(seccomp_install, ref, BPF_MAXINSNS, &flags);
	memset(&d, 0, sizeof(d));
	d.arch = seccomp_arch_native();
	d.nr = SYS_mount;
	bpf_bad = false;
	assert_int_equal(bpf_run(ref, n, &d), SECCOMP_RET_ERRNO | EPERM);
	d.nr = SYS_getpid;
	assert_int_equal(bpf_run(ref, n, &d), SECCOMP_RET_ALLOW);
	d.nr = SYS_clone3;
	assert_int_equal(bpf_run(ref, n, &d), SECCOMP_RET_ERRNO | ENOSYS);
	d.arch = 0x12345678;
	assert_int_equal(bpf_run(ref, n, &d), SECCOMP_RET_KILL_PROCESS);
	assert_false(bpf_bad);
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
		cmocka_unit_test(test_prepare_in_a_fresh_process),
		cmocka_unit_test(test_prepare_once),
		cmocka_unit_test(test_same_policy_as_seccomp_load),
		cmocka_unit_test(test_same_answers_notices_a_difference),
		cmocka_unit_test(test_policy_refuses),
		cmocka_unit_test(test_foreign_arch_kills),
	};

	if (geteuid() != 0) {
		printf("test_seccomp: needs root (reads loaded filters back); skipped\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
