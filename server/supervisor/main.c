/*
 * capibox-supervisor: the privileged half of capiboxd, started by it (never
 * by hand) with the IPC socket on descriptor 3. See supervisor.c.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../config.h"
#include "../log.h"
#include "../proctitle.h"
#include "supervisor.h"

static unsigned long number(const char *opt, const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '\0' || *end != '\0')
		fatalx("%s: bad number \"%s\"", opt, s);
	return v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"state-dir", required_argument, NULL, 's'},
		{"max-live", required_argument, NULL, 'm'},
		{"uid-base", required_argument, NULL, 'u'},
		{"uid-count", required_argument, NULL, 'c'},
		{"cgroup-root", required_argument, NULL, 'g'},
		{"parent", required_argument, NULL, 'p'},
		{"zygote-preload", required_argument, NULL, 'z'},
		{"zygote-recycle", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0},
	};
	struct config cfg;
	pid_t parent = 0;
	sigset_t mask;
	int c;

	proctitle_init(argc, argv);
	log_init("supervisor");
	/* each sandbox slot holds several descriptors (reports, timer, pidfd,
	 * control socket, cgroup figures): the soft limit is raised to the
	 * hard one */
	{
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			(void)setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	config_defaults(&cfg);
	/* capiboxd says so when the zygote is on (supervisor_start) */
	cfg.zygote = false;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': cfg.state_dir = optarg; break;
		case 'm': cfg.max_live = (unsigned)number("--max-live", optarg); break;
		case 'u': cfg.uid_base = (uint32_t)number("--uid-base", optarg); break;
		case 'c': cfg.uid_count = (uint32_t)number("--uid-count", optarg); break;
		case 'g': cfg.cgroup_root = optarg; break;
		case 'p': parent = (pid_t)number("--parent", optarg); break;
		case 'z':
			cfg.zygote = true;
			/* a copy: proctitle_set() wipes the argument strings */
			cfg.zygote_preload = strdup(optarg);
			if (cfg.zygote_preload == NULL)
				fatalx("out of memory");
			break;
		case 'r': cfg.zygote_recycle = (unsigned)number("--zygote-recycle", optarg); break;
		default: fatalx("capibox-supervisor is started by capiboxd, not by hand");
		}
	}
	if (cfg.max_live == 0 || cfg.uid_count == 0 || parent <= 0)
		fatalx("bad arguments");
	/* we die with capiboxd (and our sandboxes with us, see sandbox.c) */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		fatal("prctl");
	if (getppid() != parent)
		fatalx("capiboxd is gone");
	/* Ctrl-C to the terminal's process group must not cut running
	 * executions short: capiboxd decides when we stop (socket EOF);
	 * SIGCHLD is taken with a signalfd */
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		fatal("sigprocmask");
	signal(SIGPIPE, SIG_IGN);
	supervisor_main(&cfg, SUPERVISOR_FD);
}
