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
#include <getopt.h>
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
#include "log.h"
#include "metrics.h"
#include "proctitle.h"
#include "rpc/rpc.h"
#include "runtime.h"
#include "supervisor/supervisor.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: capiboxd [options]\n"
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
		"  -h, --help             this text\n"
		"  -V, --version          print the version\n"
		"\n"
		"       capiboxd keygen ID\n"
		"  prints a new API key's secret (once) and the line to add to the keys file\n");
}

static unsigned long parse_ulong(const char *opt, const char *s, unsigned long min,
				 unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		fatalx("%s: \"%s\" is not a number between %lu and %lu", opt, s, min, max);
	return v;
}

static int is_loopback(const char *addr)
{
	if (strncmp(addr, "unix:", 5) == 0 || strncmp(addr, "unix-abstract:", 14) == 0)
		return 1;
	if (strncmp(addr, "127.", 4) == 0 || strncmp(addr, "localhost:", 10) == 0 ||
	    strncmp(addr, "[::1]:", 6) == 0 || strncmp(addr, "ipv4:127.", 9) == 0)
		return 1;
	return 0;
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

/* --pool LANG=N */
static void parse_pool(struct config *cfg, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char lang[32];
	int rt;

	if (eq == NULL || (size_t)(eq - arg) >= sizeof(lang))
		fatalx("--pool: \"%s\" is not LANG=N", arg);
	memcpy(lang, arg, (size_t)(eq - arg));
	lang[eq - arg] = '\0';
	rt = runtime_find(lang);
	if (rt < 0 || rt >= CONFIG_MAX_RUNTIMES)
		fatalx("--pool: unknown language \"%s\"", lang);
	if (runtime_at((size_t)rt)->runner == NULL && strcmp(eq + 1, "0") != 0)
		fatalx("--pool: %s has no warm runner (it always runs cold)", lang);
	cfg->pool_target[rt] = (unsigned)parse_ulong("--pool", eq + 1, 0, 64);
}

static void parse_args(struct config *cfg, int argc, char **argv)
{
	enum {
		O_ALLOW = 256,
		O_GRACE,
		O_MAXLIVE,
		O_THREADS,
		O_READY,
		O_STATE,
		O_UID,
		O_TMPFS,
		O_CGROOT,
		O_RLIMIT_ONLY,
		O_KEYS,
		O_TLS_CERT,
		O_TLS_KEY,
		O_TLS_CA,
		O_POOL,
		O_METRICS,
		O_NO_METRICS,
		O_LOG_FORMAT,
		O_MAXQUEUE,
		O_QUEUE_WAIT,
		O_QUEUE_MB,
		O_AUDIT,
		O_AUDIT_MB,
		O_AUDIT_KEEP,
		O_AUDIT_CODE,
	};
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"allow-remote", no_argument, NULL, O_ALLOW},
		{"insecure-no-auth", no_argument, NULL, O_ALLOW},
		{"keys", required_argument, NULL, O_KEYS},
		{"tls-cert", required_argument, NULL, O_TLS_CERT},
		{"tls-key", required_argument, NULL, O_TLS_KEY},
		{"tls-client-ca", required_argument, NULL, O_TLS_CA},
		{"grace", required_argument, NULL, O_GRACE},
		{"max-live", required_argument, NULL, O_MAXLIVE},
		{"max-queue", required_argument, NULL, O_MAXQUEUE},
		{"max-queue-wait-ms", required_argument, NULL, O_QUEUE_WAIT},
		{"max-queue-mb", required_argument, NULL, O_QUEUE_MB},
		{"audit-log", required_argument, NULL, O_AUDIT},
		{"audit-max-mb", required_argument, NULL, O_AUDIT_MB},
		{"audit-keep", required_argument, NULL, O_AUDIT_KEEP},
		{"audit-code", no_argument, NULL, O_AUDIT_CODE},
		{"threads", required_argument, NULL, O_THREADS},
		{"tmpfs-mb", required_argument, NULL, O_TMPFS},
		{"pool", required_argument, NULL, O_POOL},
		{"metrics-listen", required_argument, NULL, O_METRICS},
		{"no-metrics", no_argument, NULL, O_NO_METRICS},
		{"log-format", required_argument, NULL, O_LOG_FORMAT},
		{"ready-file", required_argument, NULL, O_READY},
		{"state-dir", required_argument, NULL, O_STATE},
		{"uid-base", required_argument, NULL, O_UID},
		{"cgroup-root", required_argument, NULL, O_CGROOT},
		{"allow-rlimit-only", no_argument, NULL, O_RLIMIT_ONLY},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "l:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'l': cfg->listen = optarg; break;
		case O_ALLOW: cfg->allow_remote = true; break;
		case O_GRACE:
			cfg->grace_ms = (unsigned)parse_ulong("--grace", optarg, 0, 3600) * 1000;
			break;
		case O_MAXLIVE:
			cfg->max_live = (unsigned)parse_ulong("--max-live", optarg, 1, 4096);
			break;
		case O_MAXQUEUE:
			cfg->max_queue = (unsigned)parse_ulong("--max-queue", optarg, 0, 100000);
			break;
		case O_QUEUE_WAIT:
			cfg->max_queue_wait_ms =
				(unsigned)parse_ulong("--max-queue-wait-ms", optarg, 1, 3600000);
			break;
		case O_QUEUE_MB:
			cfg->max_queue_bytes = parse_ulong("--max-queue-mb", optarg, 1, 1 << 20)
					       << 20;
			break;
		case O_AUDIT: cfg->audit_file = optarg; break;
		case O_AUDIT_MB:
			cfg->audit_max_bytes = parse_ulong("--audit-max-mb", optarg, 1, 1 << 20)
					       << 20;
			break;
		case O_AUDIT_KEEP:
			cfg->audit_keep = (unsigned)parse_ulong("--audit-keep", optarg, 0, 100);
			break;
		case O_AUDIT_CODE: cfg->audit_code = true; break;
		case O_THREADS:
			cfg->cq_threads = (unsigned)parse_ulong("--threads", optarg, 1, 64);
			break;
		case O_TMPFS:
			cfg->tmpfs_bytes = parse_ulong("--tmpfs-mb", optarg, 1, 1 << 20) << 20;
			break;
		case O_READY: cfg->ready_file = optarg; break;
		case O_STATE: cfg->state_dir = optarg; break;
		case O_UID:
			/* never below 65536: keep clear of real system and user ids */
			cfg->uid_base =
				(uint32_t)parse_ulong("--uid-base", optarg, 65536, 4000000000UL);
			break;
		case O_CGROOT: cfg->cgroup_root = optarg; break;
		case O_RLIMIT_ONLY: cfg->allow_rlimit_only = true; break;
		case O_KEYS: cfg->keys_file = optarg; break;
		case O_TLS_CERT: cfg->tls_cert_file = optarg; break;
		case O_TLS_KEY: cfg->tls_key_file = optarg; break;
		case O_TLS_CA: cfg->tls_client_ca_file = optarg; break;
		case O_POOL: parse_pool(cfg, optarg); break;
		case O_METRICS:
			cfg->metrics_listen = optarg;
			cfg->metrics_required = true;
			break;
		case O_NO_METRICS:
			cfg->metrics_listen = NULL;
			cfg->metrics_required = false;
			break;
		case O_LOG_FORMAT:
			if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0)
				fatalx("--log-format: \"%s\" is neither text nor json", optarg);
			cfg->log_json = strcmp(optarg, "json") == 0;
			/* at once: errors in the flags that follow come out as JSON too */
			log_set_json(cfg->log_json);
			break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("capiboxd %s\n", CAPIBOX_VERSION); exit(0);
		default: usage(stderr); exit(64);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(64);
	}
	if ((cfg->tls_cert_file == NULL) != (cfg->tls_key_file == NULL))
		fatalx("--tls-cert and --tls-key go together");
	if (cfg->tls_client_ca_file && cfg->tls_cert_file == NULL)
		fatalx("--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS first)");
	if (cfg->max_live > cfg->uid_count)
		fatalx("--max-live %u exceeds the sandbox uid range (%u)", cfg->max_live,
		       cfg->uid_count);
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
	sigset_t mask, stop;
	pid_t sup_pid;
	int sock;

	proctitle_init(argc, argv);
	log_init("capiboxd");
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
		return keygen_main(argc, argv);
	config_defaults(&cfg);
	parse_args(&cfg, argc, argv);

	/* A code-execution port reachable without a key is remote code
	 * execution for anyone who finds it: only on an explicit request. */
	if (!is_loopback(cfg.listen) && cfg.keys_file == NULL && cfg.tls_client_ca_file == NULL) {
		if (!cfg.allow_remote)
			fatalx("refusing to listen on %s: it is not a loopback address and no "
			       "--keys file or --tls-client-ca is configured; pass one, or --insecure-no-auth "
			       "(old name --allow-remote) to serve unauthenticated anyway",
			       cfg.listen);
		log_warnx("WARNING: listening on %s, a non-loopback address: requests are NOT "
			  "authenticated, anyone who reaches this port can run code here",
			  cfg.listen);
	}
	if (!is_loopback(cfg.listen) && cfg.keys_file && cfg.tls_cert_file == NULL)
		log_warnx("WARNING: listening on %s without TLS: API keys cross the network in "
			  "clear text (--tls-cert, --tls-key)",
			  cfg.listen);
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
