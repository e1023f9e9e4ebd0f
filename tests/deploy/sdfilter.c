/*
 * The seccomp part of deploy/capiboxd.service, without systemd: installs the
 * filters the unit asks systemd for, then execs a program (capiboxd), which
 * its supervisor and every sandbox inherit, as under the unit.
 *
 *   SystemCallFilter=~<groups>        the calls named on the command line: EPERM
 *                                     (SystemCallErrorNumber=EPERM)
 *   RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
 *                                     socket() of any other family: EAFNOSUPPORT
 *   RestrictRealtime=yes              sched_setscheduler(SCHED_FIFO/RR): EPERM
 *   NoNewPrivileges=yes               PR_SET_NO_NEW_PRIVS
 *
 * Usage: deploy_sdfilter [-d name,name,...] -- PROGRAM [ARGS...]
 * (test_hardening.sh passes the calls `systemd-analyze syscall-filter`
 * lists for the unit's groups). Names this libseccomp does not know on
 * this architecture are skipped, as systemd skips them.
 */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* list: "name,name,..."; it is cut into names in place. */
static int deny_calls(scmp_filter_ctx ctx, char *list)
{
	int n = 0;

	while (list != NULL && *list != '\0') {
		char *comma = strchr(list, ',');
		int nr;

		if (comma != NULL)
			*comma = '\0';
		nr = seccomp_syscall_resolve_name(list);
		list = comma ? comma + 1 : NULL;
		if (nr == __NR_SCMP_ERROR)
			continue;
		/* a negative number is a call this architecture lacks */
		if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0) == 0)
			n++;
	}
	return n;
}

static int restrict_families(scmp_filter_ctx ctx)
{
	static const int allowed[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
	int rc = 0;

	/* every family below the largest allowed one that is not allowed ... */
	for (int f = 0; f < AF_NETLINK; f++) {
		bool ok = false;

		for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
			ok = ok || allowed[i] == f;
		if (!ok)
			rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket),
					       1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)f));
	}
	/* ... and every one above it */
	rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
			       SCMP_A0(SCMP_CMP_GT, (scmp_datum_t)AF_NETLINK));
	return rc;
}

int main(int argc, char **argv)
{
	scmp_filter_ctx ctx;
	char *list = NULL;
	int opt, n = 0;

	while ((opt = getopt(argc, argv, "d:")) != -1) {
		if (opt != 'd') {
			fprintf(stderr, "usage: %s [-d call,call,...] -- PROGRAM [ARGS...]\n",
				argv[0]);
			return 64;
		}
		list = optarg;
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: %s [-d call,call,...] -- PROGRAM [ARGS...]\n", argv[0]);
		return 64;
	}
	ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (ctx == NULL) {
		fprintf(stderr, "sdfilter: seccomp_init failed\n");
		return 1;
	}
	if (list != NULL)
		n = deny_calls(ctx, list);
	if (restrict_families(ctx) != 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(sched_setscheduler), 1,
			     SCMP_A1(SCMP_CMP_EQ, SCHED_FIFO)) != 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(sched_setscheduler), 1,
			     SCMP_A1(SCMP_CMP_EQ, SCHED_RR)) != 0) {
		fprintf(stderr, "sdfilter: seccomp_rule_add failed\n");
		return 1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		perror("sdfilter: PR_SET_NO_NEW_PRIVS");
		return 1;
	}
	if (seccomp_load(ctx) != 0) {
		fprintf(stderr, "sdfilter: seccomp_load failed\n");
		return 1;
	}
	seccomp_release(ctx);
	fprintf(stderr, "sdfilter: %d system calls denied (EPERM), socket families restricted\n",
		n);
	execv(argv[optind], argv + optind);
	perror("sdfilter: execv");
	return 127;
}
