/*
 * capibox-bench: a load generator over libcapibox.
 *
 *   capibox-bench [-a ADDR] [-l LANG] [-c CODE] [-n COUNT] [-j CONCURRENCY] [-w WARMUP]
 *   capibox-bench --bare [-n COUNT] [-w WARMUP] -- CMD [ARGS...]
 *
 * Runs COUNT executions (after WARMUP unmeasured ones) with CONCURRENCY
 * threads (each pausing --pause MS between its executions, unmeasured, as
 * an agent's think time) and prints latency percentiles (client-side round trip: call
 * start to end of stream), executions per second and errors by status.
 * --bare runs CMD directly with posix_spawn instead, measured the same way:
 * the floor an unisolated run costs on this machine; --clean-env gives it a
 * sandbox-like environment (PATH, HOME, LANG) instead of the caller's.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "capibox.h"

extern char **environ;

struct bench {
	const char *target;
	const char *lang;
	const char *code;
	long count, warmup, conc;
	long pause_ms;
	char **bare_argv;
	char **bare_envp;
	struct capibox_client *client;
	atomic_long next;
	double *lat_ms;
	atomic_long errors[17];
	atomic_long bad_reason;
	atomic_long warm; /* executions a pooled sandbox ran */
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct one {
	int reason;
	int exit_code;
	bool warm;
};

static int on_event(const struct capibox_event *ev, void *arg)
{
	struct one *o = arg;
	if (ev->kind == CAPIBOX_EVENT_STARTED)
		o->warm = ev->u.started.warm;
	if (ev->kind == CAPIBOX_EVENT_FINISHED) {
		o->reason = ev->u.finished.reason;
		o->exit_code = ev->u.finished.exit_code;
	}
	return 0;
}

/* One measured unit of work; returns 0 when it succeeded. */
static int run_one(struct bench *b)
{
	if (b->bare_argv) {
		posix_spawn_file_actions_t fa;
		pid_t pid;
		int status, rc;
		/* output goes nowhere, as the client's copy would */
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
		rc = posix_spawn(&pid, b->bare_argv[0], &fa, NULL, b->bare_argv,
				 b->bare_envp ? b->bare_envp : environ);
		posix_spawn_file_actions_destroy(&fa);
		if (rc != 0)
			return -1;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
	} else {
		struct capibox_exec_request req;
		struct capibox_status st;
		struct one o = {0, -1, false};
		memset(&req, 0, sizeof(req));
		req.language = b->lang;
		req.code = b->code;
		if (capibox_execute(b->client, &req, on_event, &o, &st) != CAPIBOX_OK) {
			if (st.code >= 0 && st.code < 17)
				atomic_fetch_add(&b->errors[st.code], 1);
			return -1;
		}
		if (o.warm)
			atomic_fetch_add(&b->warm, 1);
		if (o.reason != CAPIBOX_REASON_EXITED || o.exit_code != 0) {
			atomic_fetch_add(&b->bad_reason, 1);
			return -1;
		}
		return 0;
	}
}

static void *worker(void *arg)
{
	struct bench *b = arg;
	for (;;) {
		long i = atomic_fetch_add(&b->next, 1);
		double t0;
		if (i >= b->count)
			break;
		if (b->pause_ms > 0 && i >= b->conc) {
			/* think time, as in an agent loop: not measured */
			struct timespec ts = {b->pause_ms / 1000, (b->pause_ms % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		}
		t0 = now_ms();
		if (run_one(b) == 0)
			b->lat_ms[i] = now_ms() - t0;
		else
			b->lat_ms[i] = -1;
	}
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *v, long n, double p)
{
	long i = (long)(p / 100.0 * (double)(n - 1) + 0.5);
	return n > 0 ? v[i] : 0;
}

static void machine_facts(void)
{
	struct utsname u;
	char line[256], model[160] = "unknown";
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (strncmp(line, "model name", 10) == 0) {
				char *c = strchr(line, ':');
				if (c) {
					snprintf(model, sizeof(model), "%s", c + 2);
					model[strcspn(model, "\n")] = '\0';
				}
				break;
			}
		fclose(f);
	}
	uname(&u);
	printf("machine: %ld cpus (%s), kernel %s\n", sysconf(_SC_NPROCESSORS_ONLN), model,
	       u.release);
}

static long parse_long(const char *s, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 0) {
		fprintf(stderr, "capibox-bench: %s: bad number \"%s\"\n", what, s);
		exit(64);
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"target", required_argument, NULL, 'a'},
		{"language", required_argument, NULL, 'l'},
		{"code", required_argument, NULL, 'c'},
		{"count", required_argument, NULL, 'n'},
		{"concurrency", required_argument, NULL, 'j'},
		{"warmup", required_argument, NULL, 'w'},
		{"pause", required_argument, NULL, 'p'},
		{"bare", no_argument, NULL, 'b'},
		{"clean-env", no_argument, NULL, 'e'},
		{"token", required_argument, NULL, 'T'},
		{"tls", no_argument, NULL, 'S'},
		{"ca", required_argument, NULL, 'C'},
		{"server-name", required_argument, NULL, 'N'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct bench b = {.target = "127.0.0.1:50051",
			  .lang = "python",
			  .code = "print(1)",
			  .count = 100,
			  .warmup = 5,
			  .conc = 1};
	struct capibox_connect_opts copts = {0};
	int bare = 0, c;
	double t0, elapsed, *ok;
	long nok = 0;
	pthread_t *th;
	char err[256];

	if (getenv("CAPIBOX_TARGET"))
		b.target = getenv("CAPIBOX_TARGET");
	/* what a sandbox's program gets: the host's own environment (e.g.
	 * NODE_EXTRA_CA_CERTS, ~40 ms for node) would not be a fair floor */
	static char *clean_env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp",
				    "LANG=C.UTF-8", NULL};

	while ((c = getopt_long(argc, argv, "+a:l:c:n:j:w:p:beh", opts, NULL)) != -1) {
		switch (c) {
		case 'a': b.target = optarg; break;
		case 'l': b.lang = optarg; break;
		case 'c': b.code = optarg; break;
		case 'n': b.count = parse_long(optarg, "--count"); break;
		case 'j': b.conc = parse_long(optarg, "--concurrency"); break;
		case 'w': b.warmup = parse_long(optarg, "--warmup"); break;
		case 'p': b.pause_ms = parse_long(optarg, "--pause"); break;
		case 'b': bare = 1; break;
		case 'e': b.bare_envp = clean_env; break;
		case 'T': copts.token = optarg; break;
		case 'S': copts.tls = true; break;
		case 'C': copts.ca_file = optarg; break;
		case 'N': copts.server_name = optarg; break;
		case 'h':
			printf("usage: capibox-bench [-a ADDR] [-l LANG] [-c CODE] [-n COUNT] "
			       "[-j CONCURRENCY] [-w WARMUP] [--pause MS]\n"
			       "                     [--token SECRET] [--tls] [--ca FILE] "
			       "[--server-name NAME]\n"
			       "       capibox-bench --bare [--clean-env] [-n COUNT] [-w WARMUP] -- CMD "
			       "[ARGS...]\n");
			return 0;
		default: return 64;
		}
	}
	if (b.count <= 0 || b.conc <= 0) {
		fprintf(stderr, "capibox-bench: count and concurrency must be positive\n");
		return 64;
	}
	if (bare) {
		if (optind >= argc) {
			fprintf(stderr, "capibox-bench: --bare needs a command after --\n");
			return 64;
		}
		b.bare_argv = argv + optind;
	} else {
		if (copts.token == NULL)
			copts.token = getenv("CAPIBOX_TOKEN");
		b.client = capibox_connect(b.target, &copts, err, sizeof(err));
		if (b.client == NULL) {
			fprintf(stderr, "capibox-bench: %s\n", err);
			return 69;
		}
	}
	b.lat_ms = calloc((size_t)(b.count > b.warmup ? b.count : b.warmup), sizeof(double));
	ok = calloc((size_t)b.count, sizeof(double));
	th = calloc((size_t)b.conc, sizeof(pthread_t));
	if (b.lat_ms == NULL || ok == NULL || th == NULL)
		return 70;

	for (long i = 0; i < b.warmup; i++)
		(void)run_one(&b);
	memset(b.errors, 0, sizeof(b.errors));
	atomic_store(&b.warm, 0);
	atomic_store(&b.bad_reason, 0);

	t0 = now_ms();
	for (long i = 0; i < b.conc; i++)
		pthread_create(&th[i], NULL, worker, &b);
	for (long i = 0; i < b.conc; i++)
		pthread_join(th[i], NULL);
	elapsed = now_ms() - t0;

	for (long i = 0; i < b.count; i++)
		if (b.lat_ms[i] >= 0)
			ok[nok++] = b.lat_ms[i];
	qsort(ok, (size_t)nok, sizeof(double), cmp_double);

	machine_facts();
	if (bare)
		printf("workload: bare %s (no isolation), count %ld, concurrency %ld, warm-up %ld\n",
		       b.bare_argv[0], b.count, b.conc, b.warmup);
	else
		printf("workload: capibox %s on %s, code %s, count %ld, concurrency %ld, warm-up %ld\n",
		       b.lang, b.target, b.code, b.count, b.conc, b.warmup);
	printf("latency ms: p50 %.2f  p90 %.2f  p99 %.2f  min %.2f  max %.2f\n", pct(ok, nok, 50),
	       pct(ok, nok, 90), pct(ok, nok, 99), nok ? ok[0] : 0, nok ? ok[nok - 1] : 0);
	printf("throughput: %.1f executions/s (%ld ok in %.0f ms)\n",
	       elapsed > 0 ? (double)nok * 1000.0 / elapsed : 0, nok, elapsed);
	if (!bare)
		printf("warm sandboxes: %ld of %ld\n", (long)b.warm, b.count);
	printf("errors:");
	{
		int any = 0;
		for (int i = 0; i < 17; i++)
			if (b.errors[i]) {
				printf(" status %d: %ld", i, (long)b.errors[i]);
				any = 1;
			}
		if (b.bad_reason) {
			printf(" unexpected finish: %ld", (long)b.bad_reason);
			any = 1;
		}
		printf("%s\n", any ? "" : " none");
	}
	if (b.client)
		capibox_close(b.client);
	free(b.lat_ms);
	free(ok);
	free(th);
	return nok == b.count ? 0 : 1;
}
