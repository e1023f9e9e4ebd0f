/*
 * capibox-bench: a load generator over libcapibox.
 *
 *   capibox-bench [-a ADDR] [-l LANG] [-c CODE | -f FILE] [-n COUNT | -d SECONDS]
 *                 [-j CONCURRENCY] [-w WARMUP] [--pause MS] [--max-output BYTES] [--wall-ms MS]
 *                 [--session]
 *   capibox-bench --bare [--clean-env] [--read-output] [-n COUNT | -d SECONDS] [-j N] [-w N]
 *                 [--pause MS] -- CMD [ARGS...]
 *
 * Runs COUNT executions, or as many as fit in SECONDS, after WARMUP
 * unmeasured ones, with CONCURRENCY threads. --pause MS is think time
 * between a thread's executions (warm-up included), unmeasured, as in an
 * agent loop: it lets a warm pool refill. Prints latency percentiles
 * (client-side round trip: call start to end of stream), executions per
 * second, the share of runs a pooled sandbox served, the p50 time to each
 * event (Started, first stdout, Finished) with the server's start_us and
 * wall_time_us, stdout bytes and their rate, and errors by status.
 *
 * --bare runs CMD directly with posix_spawn instead, measured the same way:
 * the floor an unisolated run costs on this machine (or, with CMD bwrap ...,
 * a hand-made sandbox); --clean-env gives it a sandbox-like environment
 * (PATH, HOME, LANG) instead of the caller's, and --read-output reads its
 * stdout through a pipe (as a client would) instead of sending it to
 * /dev/null.
 *
 * --session runs every execution in one session of LANG (created before the
 * warm-up, closed at the end): the cost of a cell in a kept-alive
 * interpreter, e.g. -c 'x = 1'.
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
	double duration_ms; /* > 0: run for this long instead of count */
	double deadline;    /* now_ms() at which a duration run stops */
	long pause_ms;
	uint64_t max_output; /* limits.max_output_bytes; 0 = server default */
	uint32_t wall_ms;    /* limits.wall_time_ms; 0 = server default */
	char session[64];    /* --session: the session every run goes to */
	bool read_output;    /* bare: read stdout through a pipe */
	char **bare_argv;
	char **bare_envp;
	struct capibox_client *client;
	atomic_long next;
	atomic_long errors[17];
	atomic_long bad_reason;
	atomic_long spawn_failed;
	atomic_long warm;	 /* executions a pooled sandbox ran */
	atomic_ullong out_bytes; /* stdout bytes of measured runs */
};

/* What one worker thread measured: its own arrays, merged at the end. */
struct worker {
	struct bench *b;
	pthread_t th;
	double *rows; /* n rows of NCOL figures */
	long n, cap, attempts;
	int oom;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One run as the client saw it; times in ms from the call's start. */
struct one {
	double t0;
	int reason;
	int exit_code;
	bool warm;
	uint64_t out_bytes;
	double started, first_out, finished; /* < 0: not seen */
	double start_us, wall_us;	     /* Started.start_us, Finished.wall_time_us */
};

/* The figures kept of each successful run, one column per phase. */
enum { COL_LAT, COL_STARTED, COL_FIRST_OUT, COL_FINISHED, COL_START_US, COL_WALL_US, NCOL };

static int on_event(const struct capibox_event *ev, void *arg)
{
	struct one *o = arg;
	switch (ev->kind) {
	case CAPIBOX_EVENT_STARTED:
		o->started = now_ms() - o->t0;
		o->warm = ev->u.started.warm;
		o->start_us = (double)ev->u.started.start_us;
		break;
	case CAPIBOX_EVENT_STDOUT:
		if (o->first_out < 0)
			o->first_out = now_ms() - o->t0;
		o->out_bytes += ev->u.output.len;
		break;
	case CAPIBOX_EVENT_FINISHED:
		o->finished = now_ms() - o->t0;
		o->reason = ev->u.finished.reason;
		o->exit_code = ev->u.finished.exit_code;
		o->wall_us = (double)ev->u.finished.wall_time_us;
		break;
	default: break;
	}
	return 0;
}

/* Reads fd to its end, counting bytes; 0, or -1 on a read error. */
static int drain(int fd, uint64_t *bytes)
{
	static __thread char buf[1 << 16];
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		*bytes += (uint64_t)r;
	}
}

/* A bare run of the command: 0 when it exited 0. */
static int run_bare(struct bench *b, struct one *o)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int status, rc, p[2] = {-1, -1}, ret = -1;

	posix_spawn_file_actions_init(&fa);
	if (b->read_output) {
		/* CLOEXEC: another thread's child must not hold our write end */
		if (pipe2(p, O_CLOEXEC) < 0)
			goto out;
		posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	} else {
		/* output goes nowhere, as the client's copy would */
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	}
	rc = posix_spawn(&pid, b->bare_argv[0], &fa, NULL, b->bare_argv,
			 b->bare_envp ? b->bare_envp : environ);
	if (p[1] >= 0) {
		close(p[1]);
		p[1] = -1;
	}
	if (rc != 0) {
		atomic_fetch_add(&b->spawn_failed, 1);
		goto out;
	}
	if (p[0] >= 0)
		(void)drain(p[0], &o->out_bytes);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			goto out;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		ret = 0;
	else
		atomic_fetch_add(&b->bad_reason, 1);
out:
	posix_spawn_file_actions_destroy(&fa);
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	return ret;
}

/* One measured unit of work; returns 0 when it succeeded. */
static int run_one(struct bench *b, struct one *o)
{
	struct capibox_exec_request req;
	struct capibox_status st;

	memset(o, 0, sizeof(*o));
	o->exit_code = -1;
	o->started = o->first_out = o->finished = -1;
	o->t0 = now_ms();
	if (b->bare_argv)
		return run_bare(b, o);
	memset(&req, 0, sizeof(req));
	req.language = b->lang;
	req.code = b->code;
	req.limits.max_output_bytes = b->max_output;
	req.limits.wall_time_ms = b->wall_ms;
	if (b->session[0] != '\0')
		req.session_id = b->session;
	if (capibox_execute(b->client, &req, on_event, o, &st) != CAPIBOX_OK) {
		if (st.code >= 0 && st.code < 17)
			atomic_fetch_add(&b->errors[st.code], 1);
		return -1;
	}
	if (o->warm)
		atomic_fetch_add(&b->warm, 1);
	if (o->reason != CAPIBOX_REASON_EXITED || o->exit_code != 0) {
		atomic_fetch_add(&b->bad_reason, 1);
		return -1;
	}
	return 0;
}

/* Appends one successful run's figures; counts it lost if memory runs out. */
static void record(struct worker *w, const struct one *o, double lat)
{
	double *row;
	if (w->n == w->cap) {
		long cap = w->cap ? w->cap * 2 : 256;
		double *r = realloc(w->rows, (size_t)cap * NCOL * sizeof(double));
		if (r == NULL) {
			w->oom = 1;
			return;
		}
		w->rows = r;
		w->cap = cap;
	}
	row = w->rows + w->n * NCOL;
	row[COL_LAT] = lat;
	row[COL_STARTED] = o->started;
	row[COL_FIRST_OUT] = o->first_out;
	row[COL_FINISHED] = o->finished;
	row[COL_START_US] = o->start_us;
	row[COL_WALL_US] = o->wall_us;
	w->n++;
}

/* Think time between runs, as in an agent loop: not measured. */
static void think(const struct bench *b)
{
	struct timespec ts = {b->pause_ms / 1000, (b->pause_ms % 1000) * 1000000L};
	if (b->pause_ms > 0)
		nanosleep(&ts, NULL);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	struct one o;
	for (;;) {
		if (b->duration_ms > 0) {
			if (now_ms() >= b->deadline)
				break;
		} else if (atomic_fetch_add(&b->next, 1) >= b->count) {
			break;
		}
		if (w->attempts > 0 || b->warmup > 0)
			think(b);
		w->attempts++;
		if (run_one(b, &o) == 0) {
			record(w, &o, now_ms() - o.t0);
			atomic_fetch_add(&b->out_bytes, o.out_bytes);
		}
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
	double load[3] = {0, 0, 0};
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
	/* the machine is shared: the load says how much to trust a figure */
	if (getloadavg(load, 3) < 0)
		load[0] = load[1] = load[2] = -1;
	printf("machine: %ld cpus (%s), kernel %s, load %.2f %.2f %.2f\n",
	       sysconf(_SC_NPROCESSORS_ONLN), model, u.release, load[0], load[1], load[2]);
}

static long parse_long(const char *s, const char *what)
{
	char *end;
	long v;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < 0) {
		fprintf(stderr, "capibox-bench: %s: bad number \"%s\"\n", what, s);
		exit(64);
	}
	return v;
}

static uint64_t parse_u64(const char *s, const char *what)
{
	char *end;
	unsigned long long v;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *s == '\0' || *s == '-' || *end != '\0') {
		fprintf(stderr, "capibox-bench: %s: bad number \"%s\"\n", what, s);
		exit(64);
	}
	return (uint64_t)v;
}

/* Reads a whole file into a NUL-terminated string the caller owns; NULL on error. */
static char *read_code_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	if (f == NULL)
		return NULL;
	for (;;) {
		size_t r;
		if (cap - len < 4096) {
			char *nb = realloc(buf, cap + 65536);
			if (nb == NULL)
				goto fail;
			buf = nb;
			cap += 65536;
		}
		r = fread(buf + len, 1, cap - len - 1, f);
		len += r;
		if (r == 0)
			break;
	}
	if (ferror(f))
		goto fail;
	buf[len] = '\0';
	fclose(f);
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}

/* The code on one line, shortened: newlines shown as "; " */
static void print_code(const char *code)
{
	size_t i;
	for (i = 0; code[i] != '\0' && i < 60; i++)
		if (code[i] == '\n')
			fputs("; ", stdout);
		else
			putchar(code[i]);
	if (code[i] != '\0')
		fputs("...", stdout);
}

static void usage(void)
{
	printf("usage: capibox-bench [-a ADDR] [-l LANG] [-c CODE | -f FILE] [-n COUNT | -d SECONDS]\n"
	       "                     [-j CONCURRENCY] [-w WARMUP] [--pause MS]\n"
	       "                     [--max-output BYTES] [--wall-ms MS]\n"
	       "                     [--token SECRET] [--tls] [--ca FILE] [--server-name NAME]\n"
	       "       capibox-bench --bare [--clean-env] [--read-output] [-n COUNT | -d SECONDS]\n"
	       "                     [-j CONCURRENCY] [-w WARMUP] [--pause MS] -- CMD [ARGS...]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"target", required_argument, NULL, 'a'},
		{"language", required_argument, NULL, 'l'},
		{"code", required_argument, NULL, 'c'},
		{"code-file", required_argument, NULL, 'f'},
		{"count", required_argument, NULL, 'n'},
		{"duration", required_argument, NULL, 'd'},
		{"concurrency", required_argument, NULL, 'j'},
		{"warmup", required_argument, NULL, 'w'},
		{"pause", required_argument, NULL, 'p'},
		{"max-output", required_argument, NULL, 'O'},
		{"wall-ms", required_argument, NULL, 'W'},
		{"session", no_argument, NULL, 's'},
		{"bare", no_argument, NULL, 'b'},
		{"clean-env", no_argument, NULL, 'e'},
		{"read-output", no_argument, NULL, 'r'},
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
	int bare = 0, c, oom = 0;
	bool use_session = false;
	double t0, elapsed, *lat, *col[NCOL] = {NULL}, secs;
	long nok = 0, attempts = 0, failed;
	struct worker *w;
	char err[256], *code_buf = NULL;
	uint64_t out;

	if (getenv("CAPIBOX_TARGET"))
		b.target = getenv("CAPIBOX_TARGET");
	/* what a sandbox's program gets: the host's own environment (e.g.
	 * NODE_EXTRA_CA_CERTS, ~40 ms for node) would not be a fair floor */
	static char *clean_env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp",
				    "LANG=C.UTF-8", NULL};

	while ((c = getopt_long(argc, argv, "+a:l:c:f:n:d:j:w:p:beh", opts, NULL)) != -1) {
		switch (c) {
		case 'a': b.target = optarg; break;
		case 'l': b.lang = optarg; break;
		case 'c': b.code = optarg; break;
		case 'f':
			free(code_buf);
			code_buf = read_code_file(optarg);
			if (code_buf == NULL) {
				fprintf(stderr, "capibox-bench: %s: %s\n", optarg, strerror(errno));
				return 66;
			}
			b.code = code_buf;
			break;
		case 'n': b.count = parse_long(optarg, "--count"); break;
		case 'd': b.duration_ms = (double)parse_long(optarg, "--duration") * 1000.0; break;
		case 'j': b.conc = parse_long(optarg, "--concurrency"); break;
		case 'w': b.warmup = parse_long(optarg, "--warmup"); break;
		case 'p': b.pause_ms = parse_long(optarg, "--pause"); break;
		case 'O': b.max_output = parse_u64(optarg, "--max-output"); break;
		case 'W': b.wall_ms = (uint32_t)parse_long(optarg, "--wall-ms"); break;
		case 's': use_session = true; break;
		case 'b': bare = 1; break;
		case 'e': b.bare_envp = clean_env; break;
		case 'r': b.read_output = true; break;
		case 'T': copts.token = optarg; break;
		case 'S': copts.tls = true; break;
		case 'C': copts.ca_file = optarg; break;
		case 'N': copts.server_name = optarg; break;
		case 'h': usage(); return 0;
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
		if (use_session) {
			struct capibox_session_request sr = {.language = b.lang};
			struct capibox_session sess;
			struct capibox_status st;
			if (capibox_session_create(b.client, &sr, &sess, &st) != CAPIBOX_OK) {
				fprintf(stderr, "capibox-bench: CreateSession: %s: %s\n",
					capibox_code_name(st.code), st.message);
				return 69;
			}
			snprintf(b.session, sizeof(b.session), "%s", sess.id);
		}
	}
	w = calloc((size_t)b.conc, sizeof(*w));
	if (w == NULL)
		return 70;

	for (long i = 0; i < b.warmup; i++) {
		struct one o;
		if (i > 0)
			think(&b);
		(void)run_one(&b, &o);
	}
	memset(b.errors, 0, sizeof(b.errors));
	atomic_store(&b.warm, 0);
	atomic_store(&b.bad_reason, 0);
	atomic_store(&b.spawn_failed, 0);
	atomic_store(&b.out_bytes, 0);

	t0 = now_ms();
	b.deadline = t0 + b.duration_ms;
	for (long i = 0; i < b.conc; i++) {
		w[i].b = &b;
		if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0) {
			fprintf(stderr, "capibox-bench: cannot start thread %ld\n", i);
			return 71;
		}
	}
	for (long i = 0; i < b.conc; i++)
		pthread_join(w[i].th, NULL);
	elapsed = now_ms() - t0;

	for (long i = 0; i < b.conc; i++) {
		nok += w[i].n;
		attempts += w[i].attempts;
		oom |= w[i].oom;
	}
	/* one sorted array per column: percentiles of each phase on its own */
	for (int j = 0; j < NCOL; j++) {
		col[j] = calloc((size_t)nok + 1, sizeof(double));
		if (col[j] == NULL)
			oom = 1;
	}
	if (oom) {
		fprintf(stderr, "capibox-bench: out of memory\n");
		return 70;
	}
	for (long i = 0, k = 0; i < b.conc; i++)
		for (long r = 0; r < w[i].n; r++, k++)
			for (int j = 0; j < NCOL; j++)
				col[j][k] = w[i].rows[r * NCOL + j];
	for (int j = 0; j < NCOL; j++)
		qsort(col[j], (size_t)nok, sizeof(double), cmp_double);
	lat = col[COL_LAT];
	failed = attempts - nok;

	machine_facts();
	if (bare) {
		printf("workload: --bare %s (spawned directly, not through capibox%s), ",
		       b.bare_argv[0], b.read_output ? "; stdout read through a pipe" : "");
	} else {
		printf("workload: capibox %s on %s, code ", b.lang, b.target);
		print_code(b.code);
		printf(", ");
	}
	if (b.duration_ms > 0)
		printf("duration %.0f s", b.duration_ms / 1000.0);
	else
		printf("count %ld", b.count);
	printf(", concurrency %ld, warm-up %ld, pause %ld ms\n", b.conc, b.warmup, b.pause_ms);
	printf("latency ms: p50 %.2f  p90 %.2f  p99 %.2f  min %.2f  max %.2f\n", pct(lat, nok, 50),
	       pct(lat, nok, 90), pct(lat, nok, 99), nok ? lat[0] : 0, nok ? lat[nok - 1] : 0);
	printf("throughput: %.1f executions/s (%ld ok in %.0f ms)\n",
	       elapsed > 0 ? (double)nok * 1000.0 / elapsed : 0, nok, elapsed);
	if (!bare) {
		printf("warm sandboxes: %ld of %ld\n", (long)b.warm, attempts);
		/* where a run's time goes: client clock from the call's start to
		 * each event (a phase with no event, e.g. no output, shows -1) */
		printf("phases ms p50: Started %.2f  first stdout %.2f  Finished %.2f  "
		       "end of call %.2f\n",
		       pct(col[COL_STARTED], nok, 50), pct(col[COL_FIRST_OUT], nok, 50),
		       pct(col[COL_FINISHED], nok, 50), pct(lat, nok, 50));
		printf("server us: start_us p50 %.0f  p90 %.0f  p99 %.0f;  wall_time_us p50 %.0f  "
		       "p99 %.0f\n",
		       pct(col[COL_START_US], nok, 50), pct(col[COL_START_US], nok, 90),
		       pct(col[COL_START_US], nok, 99), pct(col[COL_WALL_US], nok, 50),
		       pct(col[COL_WALL_US], nok, 99));
	}
	out = atomic_load(&b.out_bytes);
	secs = elapsed / 1000.0;
	if (out >= 1024 * 1024)
		printf("stdout: %.1f MiB in total, %.1f MiB/s over the measured time\n",
		       (double)out / 1048576.0, secs > 0 ? (double)out / 1048576.0 / secs : 0);
	printf("errors:");
	{
		int any = 0;
		for (int i = 0; i < 17; i++)
			if (b.errors[i]) {
				printf(" %s: %ld", capibox_code_name(i), (long)b.errors[i]);
				any = 1;
			}
		if (b.bad_reason) {
			printf(" unexpected finish: %ld", (long)b.bad_reason);
			any = 1;
		}
		if (b.spawn_failed) {
			printf(" spawn failed: %ld", (long)b.spawn_failed);
			any = 1;
		}
		printf("%s\n", any ? "" : " none");
	}
	if (b.client && b.session[0] != '\0')
		(void)capibox_session_close(b.client, b.session, 10000, NULL, NULL);
	if (b.client)
		capibox_close(b.client);
	for (long i = 0; i < b.conc; i++)
		free(w[i].rows);
	free(w);
	for (int j = 0; j < NCOL; j++)
		free(col[j]);
	free(code_buf);
	return failed == 0 && nok > 0 ? 0 : 1;
}
