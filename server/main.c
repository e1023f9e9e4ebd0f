/*
 * capiboxd: runs untrusted code in sandboxes and streams its output over gRPC.
 *
 * Theory of operation
 *
 * Two long-lived processes and one short-lived one per execution:
 *
 *   front (this process, multi-threaded once grpc_init has run)
 *     The gRPC server (rpc/), the local backend's io thread (backend/local.c),
 *     the Prometheus listener's thread (metrics.c, read-only figures) and
 *     the main thread, which only waits for signals (SIGTERM/SIGINT
 *     stop, SIGHUP reloads the keys). It validates requests, writes the
 *     code, files and stdin into sealed memfds, makes the output pipes
 *     and sends SPAWN with those descriptors to the supervisor. It reads
 *     the pipes itself and streams them: output never passes through the
 *     supervisor. It never forks.
 *
 *   supervisor (capibox-supervisor, supervisor/supervisor.c)
 *     Forked and exec'd before grpc_init, so it shares nothing with the
 *     front: no threads, no gRPC state, a small address space that makes
 *     each sandbox clone cheap. Single-threaded, root. Clones sandboxes into fresh namespaces, writes
 *     their id maps, enforces wall time, kills on request, reaps, and reports
 *     STARTED/EXITED. It trusts nothing it receives: every IPC packet is
 *     checked, a malformed one is fatal to it.
 *
 *   sandbox (sandbox/, cloned by the supervisor)
 *     pid 1 of its own pid namespace (init): builds the filesystem, unpacks
 *     the payload, starts the runner (the user's program, uid 1000, no
 *     capabilities, no_new_privs), reaps, reports the runner's status and
 *     exits, which makes the kernel kill anything left behind.
 *
 * Signals are blocked before the supervisor is forked and before grpc_init,
 * so every thread inherits the mask; the main thread takes them with
 * sigwaitinfo. The sandbox's runner resets mask and dispositions.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admission.h"
#include "auth.h"
#include "backend/local.h"
#include "config.h"
#include "config_file.h"
#include "log.h"
#include "metrics.h"
#include "proctitle.h"
#include "rpc/rpc.h"
#include "runtime.h"
#include "supervisor/supervisor.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: capiboxd [--config FILE] [options]\n"
		"      --config FILE      read options from this INI file first; flags given here\n"
		"                         override it (every key is also a flag, see below)\n"
		"      --check-config     validate the options and the files they name, print the\n"
		"                         effective configuration with each value's origin, exit\n"
		"  -l, --listen ADDR      gRPC address (default 127.0.0.1:50051; unix:/path works)\n"
		"      --keys FILE        API keys file: Execute, Analyze and Health need a key\n"
		"                         (SIGHUP reloads it); see `capiboxd keygen ID`\n"
		"      --tls-cert FILE    serve TLS with this PEM certificate chain ...\n"
		"      --tls-key FILE     ... and its PEM private key (SIGHUP reloads both)\n"
		"      --tls-client-ca FILE  mTLS: require a client certificate signed by this CA\n"
		"      --insecure-no-auth allow a non-loopback address without --keys: anyone\n"
		"                         who reaches the port can run code (old name --allow-remote)\n"
		"      --grace SECONDS    on SIGTERM/SIGINT, time running executions get (default 10)\n"
		"      --max-live N       cap on running executions (default 32)\n"
		"      --max-queue N      executions that may wait for a slot; more are\n"
		"                         RESOURCE_EXHAUSTED (default 128; 0 = no waiting)\n"
		"      --max-queue-wait-ms N  longest wait for a slot (default 10000)\n"
		"      --max-queue-mb N   request bytes waiting executions may hold (default 256)\n"
		"      --threads N        gRPC completion-queue threads (default 2)\n"
		"      --tmpfs-mb N       size of /home/user and of /tmp in each sandbox (default 128)\n"
		"      --pool LANG=N      keep N warm sandboxes of LANG ready (default python=2,\n"
		"                         javascript=1; 0 turns the pool off); repeatable\n"
		"      --zygote on|off    python refills are forks of a zygote interpreter that\n"
		"                         has imported --zygote-preload (default on)\n"
		"      --zygote-preload LIST  modules the zygote imports (default numpy,pandas)\n"
		"      --zygote-recycle N  spawns per zygote generation (default 1000)\n"
		"      --metrics-listen ADDR  Prometheus metrics over HTTP at ADDR/metrics\n"
		"                         (default 127.0.0.1:9464; port 0 = a free port)\n"
		"      --no-metrics       no metrics listener\n"
		"      --log-format FMT   text (default) or json: one JSON object per line,\n"
		"                         with a record of each call\n"
		"      --audit-log FILE   append one JSON line per execution to FILE\n"
		"      --audit-max-mb N   rotate the audit log at N MiB (default 64)\n"
		"      --audit-keep N     rotated audit files kept (default 5)\n"
		"      --audit-code       include the code text in audit records\n"
		"      --ready-file PATH  write the bound address to PATH once serving\n"
		"      --state-dir DIR    root-owned scratch directory (default /run/capibox)\n"
		"      --uid-base N       first host uid for sandboxes (default 2000000)\n"
		"      --cgroup-root DIR  cgroup file system (default /sys/fs/cgroup)\n"
		"      --allow-rlimit-only  start without usable cgroups: memory and process\n"
		"                         limits fall back to rlimits, Health reports DEGRADED\n"
		"  Request sizes, in bytes: --max-code-bytes N (1 MiB), --max-stdin-bytes N (16 MiB),\n"
		"      --max-files N (1000), --max-files-bytes N (64 MiB), --max-env N (256),\n"
		"      --max-env-bytes N (64 KiB), --max-dataset-bytes N (64 MiB, Analyze),\n"
		"      --max-message-bytes N (96 MiB)\n"
		"  Per-request limits: --default-LIMIT N (a request that asks for none) and\n"
		"      --max-LIMIT N (the most it may ask for), LIMIT one of wall-time-ms,\n"
		"      cpu-time-ms, memory-mb, processes, output-mb, file-mb\n"
		"      --uid-count N      size of the sandbox uid range (default 65536)\n"
		"  A boolean flag also takes =false (--audit-code=false) to override the file.\n"
		"  -h, --help             this text\n"
		"  -V, --version          print the version\n"
		"\n"
		"       capiboxd keygen ID\n"
		"  prints a new API key's secret (once) and the line to add to the keys file\n");
}

/* capibox-supervisor lives next to capiboxd. */
static void supervisor_path(struct config *cfg)
{
	static char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	char *slash;

	if (n <= 0)
		fatal("readlink /proc/self/exe");
	path[n] = '\0';
	slash = strrchr(path, '/');
	if (slash == NULL || (size_t)(slash - path) + sizeof("/capibox-supervisor") > sizeof(path))
		fatalx("cannot place capibox-supervisor next to %s", path);
	memcpy(slash, "/capibox-supervisor", sizeof("/capibox-supervisor"));
	if (access(path, X_OK) != 0)
		fatal("%s", path);
	cfg->supervisor_path = path;
}

static void warn_log(const char *msg) { log_warnx("%s", msg); }

static void warn_stderr(const char *msg) { fprintf(stderr, "capiboxd: %s\n", msg); }

/*
 * capiboxd --check-config: the options are valid and the files load, or
 * the first error. Prints the effective configuration; no root, no socket,
 * no supervisor.
 */
static int check_config_main(const struct config *cfg, const struct config_origins *origins)
{
	char err[1024];

	if (config_check(cfg, warn_stderr, err, sizeof(err)) < 0) {
		fprintf(stderr, "capiboxd: %s\n", err);
		return 1;
	}
	config_print(stdout, cfg, origins);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* capiboxd keygen ID: the secret goes to the operator once; only its hash is kept. */
static int keygen_main(int argc, char **argv)
{
	char secret[AUTH_SECRET_LEN + 1], line[AUTH_ID_MAX + 80], err[256];

	if (argc != 3) {
		fprintf(stderr, "usage: capiboxd keygen ID\n");
		return 64;
	}
	if (auth_keygen(argv[2], secret, sizeof(secret), line, sizeof(line), err, sizeof(err)) <
	    0) {
		fprintf(stderr, "capiboxd keygen: %s\n", err);
		return 1;
	}
	printf("# secret of key \"%s\": give it to the client (CAPIBOX_TOKEN); it is shown only "
	       "now\n%s\n# line for the keys file (append options such as concurrent=4 "
	       "languages=python):\n%s",
	       argv[2], secret, line);
	explicit_bzero(secret, sizeof(secret));
	return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct ipc_hello hello;
	struct backend *backend;
	struct rpc_server *srv;
	struct admission *admission;
	struct metrics_http *metrics = NULL;
	struct config_origins *origins;
	enum config_action action;
	char cfg_err[1024];
	sigset_t mask, stop;
	pid_t sup_pid;
	int sock;

	proctitle_init(argc, argv);
	log_init("capiboxd");
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
		return keygen_main(argc, argv);
	config_defaults(&cfg);
	if (config_from_args(&cfg, argc, argv, &action, &origins, cfg_err, sizeof(cfg_err)) < 0) {
		if (action == CONFIG_CHECK) {
			fprintf(stderr, "capiboxd: %s\n", cfg_err);
			return 1;
		}
		fatalx("%s", cfg_err);
	}
	switch (action) {
	case CONFIG_HELP: usage(stdout); return 0;
	case CONFIG_VERSION: printf("capiboxd %s\n", CAPIBOX_VERSION); return 0;
	case CONFIG_USAGE: usage(stderr); return 64;
	case CONFIG_CHECK: return check_config_main(&cfg, origins);
	case CONFIG_RUN: break;
	}
	/* the same checks as --check-config, with the refusal of an
	 * unauthenticated non-loopback address among them */
	if (config_check(&cfg, warn_log, cfg_err, sizeof(cfg_err)) < 0)
		fatalx("%s", cfg_err);
	supervisor_path(&cfg);
	if (geteuid() != 0)
		fatalx("capiboxd must run as root: it creates namespaces and maps sandbox uids");

	/* before any thread and before the supervisor: everyone inherits this */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		fatal("sigprocmask");
	signal(SIGPIPE, SIG_IGN);

	sock = supervisor_start(&cfg, &sup_pid, &hello);
	if (sock < 0)
		fatalx("the supervisor did not start (see above)");
	if (hello.cgroup_mode == 0 && !cfg.allow_rlimit_only)
		/* exiting closes the socket: the supervisor follows */
		fatalx("%s; refusing to start: memory and process limits could not be enforced "
		       "(pass --allow-rlimit-only to run with rlimits only, reported as DEGRADED)",
		       hello.cgroup);
	backend = local_backend_create(&cfg, sock, sup_pid, &hello);
	/* Before the gRPC port: a listener that cannot start must stop
	 * capiboxd before anyone is told it serves (--ready-file). */
	if (cfg.metrics_listen) {
		char err[512];

		metrics = metrics_http_start(cfg.metrics_listen, backend, err, sizeof(err));
		/* The default address is best effort: a second capiboxd on the
		 * machine (tests, an A/B benchmark) must still start. */
		if (metrics == NULL && cfg.metrics_required)
			fatalx("--metrics-listen: %s", err);
		if (metrics == NULL)
			log_warnx("metrics: %s; serving without metrics (--metrics-listen ADDR "
				  "picks another address, --no-metrics turns them off)",
				  err);
	}
	admission = admission_new(cfg.max_live, cfg.max_queue, cfg.max_queue_wait_ms,
				  cfg.max_queue_bytes);
	if (admission == NULL)
		fatalx("cannot start the admission thread");
	metrics_set_admission(admission);
	srv = rpc_server_start(&cfg, backend, admission);

	/* SIGCHLD stays blocked: the backend's io thread reaps and restarts the
	 * supervisor; this thread only waits for the request to stop */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGHUP);
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&stop, &si);
		if (sig < 0 && errno == EINTR)
			continue;
		if (sig < 0)
			fatal("sigwaitinfo");
		if (sig == SIGHUP) {
			rpc_server_reload(srv);
			continue;
		}
		log_info("%s: shutting down (grace %u ms)", strsignal(sig), cfg.grace_ms);
		break;
	}
	rpc_server_shutdown(srv, cfg.grace_ms);
	metrics_http_stop(metrics); /* it reads the backend and the admission */
	admission_destroy(admission);
	backend_destroy(backend);
	log_info("stopped");
	return 0;
}
