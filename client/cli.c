/*
 * capibox: command-line client for capiboxd, built on libcapibox.
 *
 *   capibox [--target ADDR] exec -l LANG [-c CODE | FILE] [options]
 *   capibox [--target ADDR] health [--deep] [--json]
 *   capibox [--target ADDR] analyze FILE [--columns ..] [--group-by ..] [--agg ..] [--json]
 *
 * exec streams the sandbox's stdout and stderr to our own as they arrive
 * (plain write(2), nothing buffered) and exits with a status derived from
 * the Finished event, so shell scripts can tell a program's own exit code
 * from a limit or an RPC error (see usage_main for the table).
 *
 * Signals: SIGINT, SIGTERM and SIGHUP are blocked before the client starts
 * gRPC (its threads inherit the mask) and a dedicated thread waits for
 * them with sigwait(); it cancels the call in flight, which tells the
 * server to kill the sandbox, and we exit 128+signal (130 for Ctrl-C).
 * A second signal exits at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "capibox.h"

#ifndef CAPIBOX_VERSION
#define CAPIBOX_VERSION "0.1.0"
#endif

#define DEFAULT_TARGET "127.0.0.1:50051"

/* capibox.v1.ServingStatus SERVING (see capibox_health). */
#define SERVING_STATUS_SERVING 1

/* Exit codes; sysexits.h values where one fits. */
enum {
	EXIT_TIMEOUT = 124, /* wall or CPU time limit, as timeout(1) */
	EXIT_LIMIT = 125,   /* memory or output limit */
	EXIT_SANDBOX_ERROR = 126,
	EXIT_SIGNAL_BASE = 128,
	EXIT_CANCELLED = 130,
	EXIT_USAGE = 64,   /* EX_USAGE */
	EXIT_DATAERR = 65, /* EX_DATAERR: analyze found the dataset malformed */
	EXIT_RPC = 69,	   /* EX_UNAVAILABLE */
	EXIT_IOERR = 74,   /* EX_IOERR: cannot write our own output */
};

/* Health deadlines: a deep check starts one sandbox per runtime. */
#define HEALTH_DEADLINE_MS 10000
#define HEALTH_DEEP_DEADLINE_MS 60000

static const char usage_main[] =
	"Usage: capibox [-a ADDR] [--wait-for-ready] COMMAND [OPTIONS]\n"
	"\n"
	"Client for capiboxd, the capibox code-execution server.\n"
	"\n"
	"Commands:\n"
	"  exec      run code in a fresh sandbox (or a session), streaming its output\n"
	"  session   create, list or close sessions (kept-alive interpreters)\n"
	"  health    show the server's status, backends and pools\n"
	"  analyze   summarise a dataset (CSV, TSV, JSON lines) in a sandbox\n"
	"\n"
	"Global options:\n"
	"  -a, --target ADDR     server address, host:port or unix:/path\n"
	"                        (default $CAPIBOX_TARGET, else " DEFAULT_TARGET ")\n"
	"      --wait-for-ready  wait for the server to come up instead of failing\n"
	"      --token SECRET    API key (default $CAPIBOX_TOKEN; prefer the variable:\n"
	"                        a flag is visible in ps)\n"
	"      --tls             connect with TLS (implied by --ca, --cert, --key)\n"
	"      --ca FILE         PEM roots that sign the server's certificate\n"
	"                        (default: the system's)\n"
	"      --cert FILE, --key FILE  client certificate and key (mTLS)\n"
	"      --server-name NAME  name expected in the server's certificate\n"
	"                        (when the address does not carry it, e.g. tests)\n"
	"  -h, --help            show this help; 'capibox COMMAND --help' for a command\n"
	"  -V, --version         print the version\n"
	"\n"
	"Exit status of exec:\n"
	"  N        the program exited with status N\n"
	"  128+N    the program was killed by signal N\n"
	"  124      wall-time or CPU-time limit reached\n"
	"  125      memory or output limit reached\n"
	"  126      the sandbox failed (see the message)\n"
	"  130      cancelled (Ctrl-C, or the server shut down)\n"
	"  69       RPC error (printed as 'capibox: CODE: message')\n"
	"  64       usage error\n"
	"  74       cannot write to stdout or stderr\n"
	"Exit status of health: 0 serving, 1 degraded or not serving, 69 RPC error.\n"
	"Exit status of analyze: 0 done, 65 malformed dataset, 69 RPC error (e.g. an\n"
	"unknown column), 124/125/126/130 as exec (see 'capibox analyze --help').\n";

static const char usage_exec[] =
	"Usage: capibox exec -l LANG [-c CODE | FILE] [OPTIONS]\n"
	"\n"
	"Runs code in a fresh sandbox and writes its stdout and stderr to ours as\n"
	"they arrive. The code comes from -c, from FILE, or from stdin; with FILE\n"
	"the language may be left out for .py, .js, .mjs, .sh and .bash files.\n"
	"\n"
	"  -l, --language LANG     python, javascript, bash (capibox health lists them)\n"
	"  -c, --code CODE         the code to run\n"
	"      --timeout MS        wall-time limit in milliseconds\n"
	"      --cpu MS            CPU-time limit in milliseconds\n"
	"      --memory BYTES      memory limit; K, M, G suffixes (powers of 1024)\n"
	"      --procs N           process and thread limit\n"
	"      --max-output BYTES  stdout+stderr limit; K, M, G suffixes\n"
	"      --max-file BYTES    largest file the code may write; K, M, G suffixes\n"
	"                          (limits left out take the server's defaults)\n"
	"  -e, --env NAME=VALUE    set an environment variable (repeatable); a bare\n"
	"                          NAME passes our own value\n"
	"      --stdin TEXT        give TEXT to the program on standard input\n"
	"      --stdin-file PATH   give the file's content on standard input ('-' =\n"
	"                          our stdin, when the code does not come from it)\n"
	"  -f, --file LOCAL[:REMOTE]  upload a file to /home/user/REMOTE (default the\n"
	"                          basename of LOCAL; repeatable)\n"
	"      --collect GLOB      return files matching GLOB as artifacts (repeatable)\n"
	"      --out DIR, --artifact-dir DIR  where artifacts (collected files, the\n"
	"                          figures Python code leaves open) are saved; without\n"
	"                          it: the current directory when --collect is given,\n"
	"                          else they are only listed (with --json: inline)\n"
	"      --request-id ID     identifier for the server's logs\n"
	"      --session ID        run in this session (capibox session create): its\n"
	"                          variables, files and working directory persist;\n"
	"                          -l may be left out, limits left out are the\n"
	"                          session's\n"
	"      --deadline MS       RPC deadline in milliseconds (default none)\n"
	"      --json              print one JSON object per event on stdout\n"
	"  -v, --verbose           print the Started and Finished details on stderr\n"
	"  -a, --target ADDR       server address (as the global option)\n"
	"      --token, --tls, --ca, --cert, --key, --server-name  as the global options\n"
	"  -h, --help              show this help\n"
	"\n"
	"Exit status: the program's own exit status when it exited; 128+N when it\n"
	"was killed by signal N; 124 time limit; 125 memory or output limit; 126\n"
	"sandbox error; 130 cancelled; 69 RPC error; 64 usage error.\n";

static const char usage_health[] =
	"Usage: capibox health [--deep] [--json] [--deadline MS]\n"
	"\n"
	"Shows the server's status, version, uptime and per backend its runtime\n"
	"pools.\n"
	"\n"
	"      --deep         also run a canary execution on every runtime\n"
	"      --json         print the reply as one JSON object\n"
	"      --deadline MS  RPC deadline (default 10000, 60000 with --deep)\n"
	"  -a, --target ADDR  server address (as the global option)\n"
	"      --token, --tls, --ca, --cert, --key, --server-name  as the global options\n"
	"  -h, --help         show this help\n"
	"\n"
	"Exit status: 0 serving, 1 degraded or not serving, 69 RPC error, 64 usage\n"
	"error.\n";

/* Global options, shared by the subcommands. */
static const char *opt_target;
static bool opt_wait_for_ready;
static const char *opt_token; /* API key secret */
static bool opt_tls;
static const char *opt_ca, *opt_cert, *opt_key, *opt_server_name;

__attribute__((format(printf, 2, 3), noreturn)) static void usage_fail(const char *cmd,
								       const char *fmt, ...)
{
	va_list ap;

	fputs("capibox: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'capibox%s%s --help'.\n", cmd != NULL ? " " : "",
		cmd != NULL ? cmd : "");
	exit(EXIT_USAGE);
}

/* Writes all of buf to fd; 0 or an errno value. */
static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Parses a decimal number (optionally with a K/M/G suffix) no larger than max. */
static bool parse_number(const char *s, bool suffixes, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	uint64_t mult = 1;
	char *end;

	/* strtoull accepts leading blanks and a minus sign: refuse both. */
	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	if (suffixes && *end != '\0') {
		switch (*end) {
		case 'k':
		case 'K': mult = 1ull << 10; break;
		case 'm':
		case 'M': mult = 1ull << 20; break;
		case 'g':
		case 'G': mult = 1ull << 30; break;
		default: return false;
		}
		end++;
		/* Accept "M", "MB" and "MiB" alike. */
		if (*end == 'i')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
	}
	if (*end != '\0')
		return false;
	if (v > max / mult)
		return false;
	*out = (uint64_t)v * mult;
	return true;
}

static uint32_t opt_u32(const char *cmd, const char *name, const char *arg)
{
	uint64_t v;

	if (!parse_number(arg, false, UINT32_MAX, &v))
		usage_fail(cmd, "%s: '%s' is not a number from 0 to %" PRIu32, name, arg,
			   UINT32_MAX);
	return (uint32_t)v;
}

static uint64_t opt_bytes(const char *cmd, const char *name, const char *arg)
{
	uint64_t v;

	if (!parse_number(arg, true, UINT64_MAX, &v))
		usage_fail(cmd, "%s: '%s' is not a size (e.g. 512M, 2G, 1048576)", name, arg);
	return v;
}

/* Reads all of fd into a NUL-terminated heap buffer. 0 or an errno value. */
static int read_fd(int fd, uint8_t **out, size_t *outlen)
{
	size_t len = 0, cap = 65536;
	uint8_t *buf = malloc(cap + 1), *nbuf;

	if (buf == NULL)
		return ENOMEM;
	for (;;) {
		ssize_t n;

		if (len == cap) {
			if (cap > SIZE_MAX / 2 - 1) {
				free(buf);
				return EFBIG;
			}
			cap *= 2;
			nbuf = realloc(buf, cap + 1);
			if (nbuf == NULL) {
				free(buf);
				return ENOMEM;
			}
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			int e = errno;

			if (e == EINTR)
				continue;
			free(buf);
			return e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
}

/* Reads path ("-" = stdin) whole, or exits with a message. *mode gets its permission bits. */
static uint8_t *read_path(const char *cmd, const char *path, size_t *len, uint32_t *mode)
{
	uint8_t *buf;
	struct stat sb;
	int fd, e;

	if (strcmp(path, "-") == 0) {
		e = read_fd(STDIN_FILENO, &buf, len);
		if (e != 0)
			usage_fail(cmd, "reading stdin: %s", strerror(e));
		if (mode != NULL)
			*mode = 0;
		return buf;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		usage_fail(cmd, "%s: %s", path, strerror(errno));
	if (fstat(fd, &sb) != 0)
		usage_fail(cmd, "%s: %s", path, strerror(errno));
	if (S_ISDIR(sb.st_mode))
		usage_fail(cmd, "%s: is a directory", path);
	e = read_fd(fd, &buf, len);
	close(fd);
	if (e != 0)
		usage_fail(cmd, "%s: %s", path, strerror(e));
	if (mode != NULL)
		*mode = (uint32_t)(sb.st_mode & 0777);
	return buf;
}

static const char *language_from_name(const char *path)
{
	static const struct {
		const char *ext, *lang;
	} map[] = {
		{".py", "python"}, {".js", "javascript"}, {".mjs", "javascript"},
		{".sh", "bash"},   {".bash", "bash"},
	};
	const char *dot = strrchr(path, '.');
	size_t i;

	if (dot == NULL)
		return NULL;
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(dot, map[i].ext) == 0)
			return map[i].lang;
	return NULL;
}

/* --- signals ------------------------------------------------------------ */

static struct capibox_client *sig_client;
static atomic_int sig_received;
static atomic_bool sig_stopping;
static pthread_t sig_thread;
static bool sig_thread_running;
static sigset_t sig_set;

static void *signal_main(void *arg)
{
	(void)arg;
	for (;;) {
		int sig;

		if (sigwait(&sig_set, &sig) != 0)
			continue;
		if (sig == SIGUSR1) {
			/* Our own wake-up from signals_stop; a stray one is ignored. */
			if (atomic_load(&sig_stopping))
				return NULL;
			continue;
		}
		/* A second signal: the user insists, do not wait for the cancel. */
		if (atomic_exchange(&sig_received, sig) != 0)
			_exit(EXIT_SIGNAL_BASE + sig);
		capibox_cancel_all(sig_client);
	}
}

/*
 * Blocks the signals we handle; must run before capibox_connect, whose
 * gRPC threads inherit the mask (a signal delivered to one of them would
 * otherwise kill us without a cancel).
 */
static void signals_block(void)
{
	sigemptyset(&sig_set);
	sigaddset(&sig_set, SIGINT);
	sigaddset(&sig_set, SIGTERM);
	sigaddset(&sig_set, SIGHUP);
	sigaddset(&sig_set, SIGUSR1); /* stops the signal thread */
	if (pthread_sigmask(SIG_BLOCK, &sig_set, NULL) != 0) {
		fprintf(stderr, "capibox: pthread_sigmask failed\n");
		exit(EXIT_FAILURE);
	}
}

static void signals_start(struct capibox_client *c)
{
	int e;

	sig_client = c;
	e = pthread_create(&sig_thread, NULL, signal_main, NULL);
	if (e != 0) {
		fprintf(stderr, "capibox: pthread_create: %s\n", strerror(e));
		exit(EXIT_FAILURE);
	}
	sig_thread_running = true;
}

static void signals_stop(void)
{
	int e;

	if (!sig_thread_running)
		return;
	/*
	 * Woken with a signal rather than pthread_cancel: cancelling a thread
	 * inside sigwait leaves ASan's stack poisoning behind (a false report
	 * when the thread exits), and would need care around the client's lock.
	 */
	atomic_store(&sig_stopping, true);
	e = pthread_kill(sig_thread, SIGUSR1);
	if (e != 0) {
		fprintf(stderr, "capibox: pthread_kill: %s\n", strerror(e));
		exit(EXIT_FAILURE);
	}
	pthread_join(sig_thread, NULL);
	sig_thread_running = false;
}

static struct capibox_client *client_open(void)
{
	struct capibox_connect_opts opts = {
		.wait_for_ready = opt_wait_for_ready,
		.token = opt_token,
		.tls = opt_tls,
		.ca_file = opt_ca,
		.cert_file = opt_cert,
		.key_file = opt_key,
		.server_name = opt_server_name,
	};
	struct capibox_client *c;
	char err[256];

	signals_block();
	c = capibox_connect(opt_target, &opts, err, sizeof(err));
	if (c == NULL) {
		fprintf(stderr, "capibox: %s: %s\n", opt_target, err);
		exit(EXIT_RPC);
	}
	signals_start(c);
	return c;
}

static void client_close(struct capibox_client *c)
{
	signals_stop();
	capibox_close(c);
}

/* --- JSON output -------------------------------------------------------- */

/*
 * Length of the longest prefix of p[0..n) that is valid UTF-8 when an
 * incomplete but so far valid sequence at the very end is set aside (it
 * may be completed by the next chunk). Returns false if p is not UTF-8.
 */
static bool utf8_prefix(const uint8_t *p, size_t n, size_t *valid)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = p[i], lo = 0x80, hi = 0xbf;
		size_t need, k;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			if (c == 0xe0)
				lo = 0xa0; /* overlong */
			else if (c == 0xed)
				hi = 0x9f; /* UTF-16 surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			if (c == 0xf0)
				lo = 0x90; /* overlong */
			else if (c == 0xf4)
				hi = 0x8f; /* above U+10FFFF */
		} else {
			return false;
		}
		for (k = 1; k <= need; k++) {
			if (i + k >= n) {
				*valid = i;
				return true;
			}
			if (p[i + k] < (k == 1 ? lo : 0x80) || p[i + k] > (k == 1 ? hi : 0xbf))
				return false;
		}
		i += need + 1;
	}
	*valid = n;
	return true;
}

/* Standard base64 with padding; the caller frees. */
static char *base64_encode(const uint8_t *p, size_t n)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	if (out == NULL)
		return NULL;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = tab[(v >> 6) & 63];
		*o++ = tab[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);

		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

/* Adds key (text) or key_b64 (otherwise) holding p[0..n) to obj. */
static void json_add_bytes(struct json_object *obj, const char *key, const uint8_t *p, size_t n,
			   bool text)
{
	char b64key[64];
	char *b64;

	if (text && n <= INT_MAX) {
		json_object_object_add(obj, key,
				       json_object_new_string_len((const char *)p, (int)n));
		return;
	}
	snprintf(b64key, sizeof(b64key), "%s_b64", key);
	b64 = base64_encode(p, n);
	json_object_object_add(obj, b64key, json_object_new_string(b64 != NULL ? b64 : ""));
	free(b64);
}

/* Prints obj as one line on stdout and releases it; 0 or an errno value. */
static int json_emit(struct json_object *obj)
{
	const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
								    JSON_C_TO_STRING_NOSLASHESCAPE);
	int e = write_all(STDOUT_FILENO, s, strlen(s));

	if (e == 0)
		e = write_all(STDOUT_FILENO, "\n", 1);
	json_object_put(obj);
	return e;
}

/* --- exec ----------------------------------------------------------------- */

/* Bytes of a multi-byte character split across two chunks, held back. */
struct utf8_carry {
	uint8_t buf[4];
	size_t n;
};

struct exec_ctx {
	bool json;
	bool verbose;
	const char *artifact_dir;   /* NULL: do not save artifacts */
	struct utf8_carry carry[2]; /* stdout, stderr (JSON mode) */
	bool finished;
	int reason;
	int32_t exit_code;
	int32_t signal;
	int write_error;     /* errno of a failed write of ours */
	char *piece_path;    /* --out: the file whose next piece is expected */
	bool piece_failed;   /* ...whose saving failed: its pieces are dropped */
	uint64_t piece_next; /* ...at this offset */
	char *result_text;   /* plain output: the result, printed after the output */
};

static double us_to_ms(uint64_t us) { return (double)us / 1000.0; }

static void format_bytes(char *buf, size_t len, uint64_t v)
{
	if (v >= (1ull << 30))
		snprintf(buf, len, "%.1f GiB", (double)v / (double)(1ull << 30));
	else if (v >= (1ull << 20))
		snprintf(buf, len, "%.1f MiB", (double)v / (double)(1ull << 20));
	else if (v >= (1ull << 10))
		snprintf(buf, len, "%.1f KiB", (double)v / (double)(1ull << 10));
	else
		snprintf(buf, len, "%" PRIu64 " B", v);
}

/* Emits a stream chunk as JSON, holding back a trailing partial character. */
static int json_output(struct exec_ctx *x, int idx, const uint8_t *data, size_t len)
{
	static const char *const keys[] = {"stdout", "stderr"};
	struct utf8_carry *cy = &x->carry[idx];
	struct json_object *obj;
	uint8_t *all = NULL;
	const uint8_t *p = data;
	size_t n = len, valid;
	int e = 0;

	if (cy->n > 0) {
		all = malloc(cy->n + len);
		if (all == NULL)
			return ENOMEM;
		memcpy(all, cy->buf, cy->n);
		memcpy(all + cy->n, data, len);
		p = all;
		n = cy->n + len;
		cy->n = 0;
	}
	if (!utf8_prefix(p, n, &valid)) {
		obj = json_object_new_object();
		json_add_bytes(obj, keys[idx], p, n, false);
		e = json_emit(obj);
	} else {
		if (valid > 0) {
			obj = json_object_new_object();
			json_add_bytes(obj, keys[idx], p, valid, true);
			e = json_emit(obj);
		}
		/* At most 3 bytes: the start of one character. */
		memcpy(cy->buf, p + valid, n - valid);
		cy->n = n - valid;
	}
	free(all);
	return e;
}

/* Emits held-back bytes of both streams: the stream is over. */
static int json_flush_carry(struct exec_ctx *x)
{
	static const char *const keys[] = {"stdout", "stderr"};
	int idx, e = 0;

	for (idx = 0; idx < 2 && e == 0; idx++) {
		struct json_object *obj;

		if (x->carry[idx].n == 0)
			continue;
		obj = json_object_new_object();
		json_add_bytes(obj, keys[idx], x->carry[idx].buf, x->carry[idx].n, false);
		x->carry[idx].n = 0;
		e = json_emit(obj);
	}
	return e;
}

/*
 * Saves an artifact under x->artifact_dir. The path comes from the server
 * and so, indirectly, from untrusted code: it is checked to stay inside
 * the directory and no symlink on the way is followed.
 */
static void artifact_save(struct exec_ctx *x, const struct capibox_event *ev)
{
	const char *path = ev->u.artifact.path;
	char *copy = NULL, *comp, *slash;
	int dfd = -1, fd = -1, e;

	if (!capibox_artifact_path_ok(path)) {
		fprintf(stderr, "capibox: artifact '%s': unsafe path, not saved\n", path);
		return;
	}
	/* a file in pieces: each continues the one before, at its end; the
	 * first (offset 0) creates or truncates it */
	if (ev->u.artifact.offset != 0 && x->piece_failed && x->piece_path != NULL &&
	    strcmp(x->piece_path, path) == 0)
		return; /* its first piece could not be saved: said once */
	if (ev->u.artifact.offset != 0 &&
	    (x->piece_path == NULL || strcmp(x->piece_path, path) != 0 ||
	     x->piece_next != ev->u.artifact.offset)) {
		fprintf(stderr,
			"capibox: artifact %s: piece at offset %" PRIu64
			" out of order, not saved\n",
			path, ev->u.artifact.offset);
		return;
	}
	copy = strdup(path);
	if (copy == NULL)
		goto fail;
	/* --out DIR: made if missing (its parent must exist) */
	if (mkdir(x->artifact_dir, 0755) != 0 && errno != EEXIST)
		goto fail;
	dfd = open(x->artifact_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		goto fail;
	comp = copy;
	while ((slash = strchr(comp, '/')) != NULL) {
		int nfd;

		*slash = '\0';
		if (mkdirat(dfd, comp, 0755) != 0 && errno != EEXIST)
			goto fail;
		nfd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0)
			goto fail;
		close(dfd);
		dfd = nfd;
		comp = slash + 1;
	}
	fd = openat(dfd, comp,
		    O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
			    (ev->u.artifact.offset == 0 ? O_TRUNC : O_APPEND),
		    0644);
	if (fd < 0)
		goto fail;
	e = write_all(fd, ev->u.artifact.content, ev->u.artifact.len);
	if (e != 0) {
		errno = e;
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	free(x->piece_path);
	x->piece_path = NULL;
	x->piece_failed = false;
	if (!ev->u.artifact.eof && !ev->u.artifact.truncated) {
		x->piece_path = strdup(path);
		x->piece_next = ev->u.artifact.offset + ev->u.artifact.len;
	}
	if (ev->u.artifact.truncated)
		fprintf(stderr,
			"capibox: artifact %s: truncated to %" PRIu64 " of %" PRIu64 " bytes\n",
			path, ev->u.artifact.offset + ev->u.artifact.len, ev->u.artifact.size);
	if (x->verbose && (ev->u.artifact.eof || ev->u.artifact.truncated))
		fprintf(stderr, "capibox: artifact %s (%s, %" PRIu64 " bytes) saved in %s\n", path,
			ev->u.artifact.mime_type, ev->u.artifact.offset + ev->u.artifact.len,
			x->artifact_dir);
	goto out;
fail:
	e = errno;
	fprintf(stderr, "capibox: artifact %s: cannot save in %s: %s\n", path, x->artifact_dir,
		strerror(e));
	/* the rest of this file is dropped quietly */
	free(x->piece_path);
	x->piece_path = ev->u.artifact.eof ? NULL : strdup(path);
	x->piece_failed = true;
out:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	free(copy);
}

/* One line for a run that did not simply exit. */
static void print_finish_line(const struct capibox_event *ev)
{
	int reason = ev->u.finished.reason;
	const char *msg = ev->u.finished.message;
	char dflt[128];

	if (msg == NULL || *msg == '\0') {
		switch (reason) {
		case CAPIBOX_REASON_SIGNALED: {
			const char *abbrev = sigabbrev_np(ev->u.finished.signal);

			snprintf(dflt, sizeof(dflt), "killed by signal %d%s%s%s",
				 ev->u.finished.signal, abbrev != NULL ? " (SIG" : "",
				 abbrev != NULL ? abbrev : "", abbrev != NULL ? ")" : "");
			break;
		}
		case CAPIBOX_REASON_WALL_TIMEOUT:
			snprintf(dflt, sizeof(dflt), "wall time limit reached");
			break;
		case CAPIBOX_REASON_CPU_TIMEOUT:
			snprintf(dflt, sizeof(dflt), "CPU time limit reached");
			break;
		case CAPIBOX_REASON_MEMORY_LIMIT:
			snprintf(dflt, sizeof(dflt), "memory limit reached");
			break;
		case CAPIBOX_REASON_OUTPUT_LIMIT:
			snprintf(dflt, sizeof(dflt), "output limit reached");
			break;
		case CAPIBOX_REASON_CANCELLED: snprintf(dflt, sizeof(dflt), "cancelled"); break;
		default:
			snprintf(dflt, sizeof(dflt), "the run ended abnormally (reason %d)",
				 reason);
			break;
		}
		msg = dflt;
	}
	fprintf(stderr, "capibox: %s: %s\n", capibox_reason_name(reason), msg);
}

static int exec_event_json(struct exec_ctx *x, const struct capibox_event *ev)
{
	struct json_object *obj, *in;
	int e;

	switch (ev->kind) {
	case CAPIBOX_EVENT_STARTED:
		in = json_object_new_object();
		json_object_object_add(in, "sandbox_id",
				       json_object_new_string(ev->u.started.sandbox_id));
		json_object_object_add(in, "language",
				       json_object_new_string(ev->u.started.language));
		json_object_object_add(in, "backend",
				       json_object_new_string(ev->u.started.backend));
		json_object_object_add(in, "queued_us",
				       json_object_new_uint64(ev->u.started.queued_us));
		json_object_object_add(in, "start_us",
				       json_object_new_uint64(ev->u.started.start_us));
		json_object_object_add(in, "warm", json_object_new_boolean(ev->u.started.warm));
		obj = json_object_new_object();
		json_object_object_add(obj, "started", in);
		return json_emit(obj);
	case CAPIBOX_EVENT_STDOUT: return json_output(x, 0, ev->u.output.data, ev->u.output.len);
	case CAPIBOX_EVENT_STDERR: return json_output(x, 1, ev->u.output.data, ev->u.output.len);
	case CAPIBOX_EVENT_ARTIFACT: {
		size_t valid;
		bool text;

		/* Text when it is valid UTF-8 and not cut inside a character. */
		text = utf8_prefix(ev->u.artifact.content, ev->u.artifact.len, &valid) &&
		       valid == ev->u.artifact.len;
		in = json_object_new_object();
		json_object_object_add(in, "path", json_object_new_string(ev->u.artifact.path));
		json_object_object_add(in, "mime_type",
				       json_object_new_string(ev->u.artifact.mime_type));
		json_object_object_add(in, "size", json_object_new_uint64(ev->u.artifact.size));
		json_object_object_add(in, "truncated",
				       json_object_new_boolean(ev->u.artifact.truncated));
		json_object_object_add(in, "offset", json_object_new_uint64(ev->u.artifact.offset));
		json_object_object_add(in, "eof", json_object_new_boolean(ev->u.artifact.eof));
		json_add_bytes(in, "content", ev->u.artifact.content, ev->u.artifact.len, text);
		obj = json_object_new_object();
		json_object_object_add(obj, "artifact", in);
		return json_emit(obj);
	}
	case CAPIBOX_EVENT_RESULT:
		in = json_object_new_object();
		json_object_object_add(in, "text", json_object_new_string(ev->u.result.text));
		if (ev->u.result.json[0] != '\0')
			json_object_object_add(in, "json",
					       json_object_new_string(ev->u.result.json));
		else
			json_object_object_add(in, "json", NULL);
		json_object_object_add(in, "mime_type",
				       json_object_new_string(ev->u.result.mime_type));
		obj = json_object_new_object();
		json_object_object_add(obj, "result", in);
		return json_emit(obj);
	case CAPIBOX_EVENT_FINISHED:
		e = json_flush_carry(x);
		if (e != 0)
			return e;
		in = json_object_new_object();
		json_object_object_add(
			in, "reason",
			json_object_new_string(capibox_reason_name(ev->u.finished.reason)));
		json_object_object_add(in, "exit_code",
				       json_object_new_int(ev->u.finished.exit_code));
		json_object_object_add(in, "signal", json_object_new_int(ev->u.finished.signal));
		json_object_object_add(in, "wall_time_us",
				       json_object_new_uint64(ev->u.finished.wall_time_us));
		json_object_object_add(in, "cpu_time_us",
				       json_object_new_uint64(ev->u.finished.cpu_time_us));
		json_object_object_add(in, "peak_memory_bytes",
				       json_object_new_uint64(ev->u.finished.peak_memory_bytes));
		json_object_object_add(in, "stdout_bytes",
				       json_object_new_uint64(ev->u.finished.stdout_bytes));
		json_object_object_add(in, "stderr_bytes",
				       json_object_new_uint64(ev->u.finished.stderr_bytes));
		json_object_object_add(in, "message",
				       json_object_new_string(ev->u.finished.message));
		obj = json_object_new_object();
		json_object_object_add(obj, "finished", in);
		return json_emit(obj);
	}
	return 0;
}

static int exec_event_plain(struct exec_ctx *x, const struct capibox_event *ev)
{
	char mem[32];

	switch (ev->kind) {
	case CAPIBOX_EVENT_STARTED:
		if (x->verbose)
			fprintf(stderr,
				"capibox: started %s (%s) on %s: queued %.1f ms, %s sandbox ready in "
				"%.1f ms\n",
				ev->u.started.sandbox_id, ev->u.started.language,
				ev->u.started.backend, us_to_ms(ev->u.started.queued_us),
				ev->u.started.warm ? "warm" : "cold",
				us_to_ms(ev->u.started.start_us));
		return 0;
	case CAPIBOX_EVENT_STDOUT:
		return write_all(STDOUT_FILENO, ev->u.output.data, ev->u.output.len);
	case CAPIBOX_EVENT_STDERR:
		return write_all(STDERR_FILENO, ev->u.output.data, ev->u.output.len);
	case CAPIBOX_EVENT_ARTIFACT:
		/* saved by the caller when there is a directory; else listed */
		if (x->artifact_dir == NULL && (ev->u.artifact.eof || ev->u.artifact.truncated))
			fprintf(stderr,
				"capibox: artifact %s (%s, %" PRIu64
				" bytes): use --out DIR to save it\n",
				ev->u.artifact.path, ev->u.artifact.mime_type, ev->u.artifact.size);
		return 0;
	case CAPIBOX_EVENT_RESULT:
		/* shown after all the output, as a notebook's Out[] (stdout
		 * may still have bytes in flight on the other pipe) */
		free(x->result_text);
		x->result_text = strdup(ev->u.result.text);
		return 0;
	case CAPIBOX_EVENT_FINISHED:
		if (x->result_text != NULL) {
			size_t n = strlen(x->result_text);
			int e = write_all(STDOUT_FILENO, x->result_text, n);
			if (e == 0 && (n == 0 || x->result_text[n - 1] != '\n'))
				e = write_all(STDOUT_FILENO, "\n", 1);
			if (e != 0)
				return e;
		}
		if (x->verbose) {
			format_bytes(mem, sizeof(mem), ev->u.finished.peak_memory_bytes);
			fprintf(stderr,
				"capibox: finished: %s, exit code %d, signal %d, wall %.1f ms, cpu %.1f ms, "
				"peak memory %s, stdout %" PRIu64 " B, stderr %" PRIu64 " B\n",
				capibox_reason_name(ev->u.finished.reason),
				ev->u.finished.exit_code, ev->u.finished.signal,
				us_to_ms(ev->u.finished.wall_time_us),
				us_to_ms(ev->u.finished.cpu_time_us), mem,
				ev->u.finished.stdout_bytes, ev->u.finished.stderr_bytes);
		}
		if (ev->u.finished.reason != CAPIBOX_REASON_EXITED)
			print_finish_line(ev);
		return 0;
	}
	return 0;
}

static int exec_on_event(const struct capibox_event *ev, void *arg)
{
	struct exec_ctx *x = arg;
	int e;

	if (ev->kind == CAPIBOX_EVENT_FINISHED) {
		x->finished = true;
		x->reason = ev->u.finished.reason;
		x->exit_code = ev->u.finished.exit_code;
		x->signal = ev->u.finished.signal;
	}
	if (ev->kind == CAPIBOX_EVENT_ARTIFACT && x->artifact_dir != NULL)
		artifact_save(x, ev);
	e = x->json ? exec_event_json(x, ev) : exec_event_plain(x, ev);
	if (e != 0) {
		/* Nobody reads our output any more: stop the run. */
		x->write_error = e;
		return 1;
	}
	return 0;
}

static int exit_code_for_finish(const struct exec_ctx *x)
{
	switch (x->reason) {
	case CAPIBOX_REASON_EXITED: return x->exit_code & 0xff;
	case CAPIBOX_REASON_SIGNALED: return EXIT_SIGNAL_BASE + (x->signal & 0x7f);
	case CAPIBOX_REASON_WALL_TIMEOUT:
	case CAPIBOX_REASON_CPU_TIMEOUT: return EXIT_TIMEOUT;
	case CAPIBOX_REASON_MEMORY_LIMIT:
	case CAPIBOX_REASON_OUTPUT_LIMIT: return EXIT_LIMIT;
	case CAPIBOX_REASON_CANCELLED: return EXIT_CANCELLED;
	default: return EXIT_SANDBOX_ERROR;
	}
}

/* Reports an RPC failure on stderr, or as a JSON error object. */
static void report_rpc_error(bool json, const struct capibox_status *st)
{
	if (json) {
		struct json_object *in = json_object_new_object(), *obj = json_object_new_object();

		json_object_object_add(in, "code", json_object_new_int(st->code));
		json_object_object_add(in, "name",
				       json_object_new_string(capibox_code_name(st->code)));
		json_object_object_add(in, "message", json_object_new_string(st->message));
		json_object_object_add(obj, "error", in);
		json_emit(obj);
		return;
	}
	fprintf(stderr, "capibox: %s: %s\n", capibox_code_name(st->code), st->message);
}

/* Request pieces owned by cmd_exec: argument strings are used in place. */
struct exec_args {
	struct capibox_exec_request req;
	struct capibox_file *files;
	size_t n_files;
	struct capibox_env *env;
	size_t n_env;
	const char **collect;
	size_t n_collect;
	char **owned; /* strings and buffers freed at the end */
	size_t n_owned;
};

static void *xgrow(void *p, size_t n, size_t size)
{
	void *q;

	if (n > SIZE_MAX / size) {
		fprintf(stderr, "capibox: out of memory\n");
		exit(EXIT_FAILURE);
	}
	q = realloc(p, n * size);
	if (q == NULL) {
		fprintf(stderr, "capibox: out of memory\n");
		exit(EXIT_FAILURE);
	}
	return q;
}

static void *own(struct exec_args *a, void *p)
{
	if (p == NULL) {
		fprintf(stderr, "capibox: out of memory\n");
		exit(EXIT_FAILURE);
	}
	a->owned = xgrow(a->owned, a->n_owned + 1, sizeof(*a->owned));
	a->owned[a->n_owned++] = p;
	return p;
}

static void exec_add_env(struct exec_args *a, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char *name;
	const char *value;

	if (eq != NULL) {
		name = own(a, strndup(arg, (size_t)(eq - arg)));
		value = eq + 1;
	} else {
		name = own(a, strdup(arg));
		value = getenv(arg);
		if (value == NULL)
			usage_fail("exec", "--env %s: not set here; use NAME=VALUE", arg);
	}
	if (*name == '\0')
		usage_fail("exec", "--env '%s': empty name", arg);
	a->env = xgrow(a->env, a->n_env + 1, sizeof(*a->env));
	a->env[a->n_env].name = name;
	a->env[a->n_env].value = value;
	a->n_env++;
}

static void exec_add_file(struct exec_args *a, const char *arg)
{
	const char *local = arg, *remote = NULL, *colon;
	struct capibox_file *f;
	struct stat sb;
	size_t len;
	uint32_t mode;
	uint8_t *data;

	/* LOCAL:REMOTE, unless the whole argument names a file (a colon in its name). */
	colon = strrchr(arg, ':');
	if (colon != NULL && stat(arg, &sb) != 0) {
		local = own(a, strndup(arg, (size_t)(colon - arg)));
		remote = colon + 1;
	}
	if (remote == NULL || *remote == '\0') {
		const char *slash = strrchr(local, '/');

		remote = slash != NULL ? slash + 1 : local;
	}
	if (*remote == '\0' || strcmp(local, "-") == 0)
		usage_fail("exec", "--file %s: give a file name (LOCAL[:REMOTE])", arg);
	data = own(a, read_path("exec", local, &len, &mode));
	a->files = xgrow(a->files, a->n_files + 1, sizeof(*a->files));
	f = &a->files[a->n_files++];
	f->path = remote;
	f->data = data;
	f->len = len;
	f->mode = mode;
}

enum {
	OPT_TIMEOUT = 256,
	OPT_CPU,
	OPT_MEMORY,
	OPT_PROCS,
	OPT_MAX_OUTPUT,
	OPT_MAX_FILE,
	OPT_STDIN,
	OPT_STDIN_FILE,
	OPT_COLLECT,
	OPT_ARTIFACT_DIR,
	OPT_REQUEST_ID,
	OPT_DEADLINE,
	OPT_JSON,
	OPT_WAIT,
	OPT_DEEP,
	OPT_TOKEN,
	OPT_TLS,
	OPT_CA,
	OPT_CERT,
	OPT_KEY,
	OPT_SERVER_NAME,
	OPT_COLUMNS,
	OPT_GROUP_BY,
	OPT_AGG,
	OPT_FORMAT,
	OPT_DELIMITER,
	OPT_NO_HEADER,
	OPT_NULL_VALUES,
	OPT_CODE_FILE,
	OPT_SESSION,
	OPT_IDLE,
};

/* Connection options every command takes, as the global ones. */
/* clang-format off */
#define CONN_LONGOPTS                                          \
	{"token", required_argument, NULL, OPT_TOKEN},         \
	{"tls", no_argument, NULL, OPT_TLS},                   \
	{"ca", required_argument, NULL, OPT_CA},               \
	{"cert", required_argument, NULL, OPT_CERT},           \
	{"key", required_argument, NULL, OPT_KEY},             \
	{"server-name", required_argument, NULL, OPT_SERVER_NAME}
/* clang-format on */

/* The resource limits exec and session take. */
/* clang-format off */
#define LIMIT_LONGOPTS                                             \
	{"timeout", required_argument, NULL, OPT_TIMEOUT},         \
	{"cpu", required_argument, NULL, OPT_CPU},                 \
	{"memory", required_argument, NULL, OPT_MEMORY},           \
	{"procs", required_argument, NULL, OPT_PROCS},             \
	{"max-output", required_argument, NULL, OPT_MAX_OUTPUT}
/* clang-format on */

/* Handles a limit option of command cmd into l; false when c is not one. */
static bool limit_option(const char *cmd, int c, const char *arg, struct capibox_limits *l)
{
	switch (c) {
	case OPT_TIMEOUT: l->wall_time_ms = opt_u32(cmd, "--timeout", arg); return true;
	case OPT_CPU: l->cpu_time_ms = opt_u32(cmd, "--cpu", arg); return true;
	case OPT_MEMORY: l->memory_bytes = opt_bytes(cmd, "--memory", arg); return true;
	case OPT_PROCS: l->max_processes = opt_u32(cmd, "--procs", arg); return true;
	case OPT_MAX_OUTPUT: l->max_output_bytes = opt_bytes(cmd, "--max-output", arg); return true;
	case OPT_MAX_FILE: l->max_file_bytes = opt_bytes(cmd, "--max-file", arg); return true;
	default: return false;
	}
}

/* Handles a connection option; false when c is not one. */
static bool conn_option(int c, const char *arg)
{
	switch (c) {
	case OPT_TOKEN: opt_token = arg; return true;
	case OPT_TLS: opt_tls = true; return true;
	case OPT_CA: opt_ca = arg; return true;
	case OPT_CERT: opt_cert = arg; return true;
	case OPT_KEY: opt_key = arg; return true;
	case OPT_SERVER_NAME: opt_server_name = arg; return true;
	default: return false;
	}
}

/* Reports an unknown option or a missing argument the getopt way. */
static void __attribute__((noreturn)) bad_option(const char *cmd, char *const argv[], int c)
{
	if (c == ':')
		usage_fail(cmd, "option '%s' needs an argument", argv[optind - 1]);
	if (optopt != 0)
		usage_fail(cmd, "unknown option '-%c'", optopt);
	usage_fail(cmd, "unknown option '%s'", argv[optind - 1]);
}

static int cmd_exec(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{"language", required_argument, NULL, 'l'},
		{"code", required_argument, NULL, 'c'},
		LIMIT_LONGOPTS,
		{"max-file", required_argument, NULL, OPT_MAX_FILE},
		{"env", required_argument, NULL, 'e'},
		{"stdin", required_argument, NULL, OPT_STDIN},
		{"stdin-file", required_argument, NULL, OPT_STDIN_FILE},
		{"file", required_argument, NULL, 'f'},
		{"collect", required_argument, NULL, OPT_COLLECT},
		{"artifact-dir", required_argument, NULL, OPT_ARTIFACT_DIR},
		{"out", required_argument, NULL, OPT_ARTIFACT_DIR},
		{"request-id", required_argument, NULL, OPT_REQUEST_ID},
		{"session", required_argument, NULL, OPT_SESSION},
		{"deadline", required_argument, NULL, OPT_DEADLINE},
		{"json", no_argument, NULL, OPT_JSON},
		{"verbose", no_argument, NULL, 'v'},
		{"target", required_argument, NULL, 'a'},
		{"wait-for-ready", no_argument, NULL, OPT_WAIT},
		CONN_LONGOPTS,
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct exec_args a;
	struct exec_ctx x;
	struct capibox_status st;
	struct capibox_client *client;
	const char *code_arg = NULL, *file_arg = NULL, *stdin_text = NULL, *stdin_file = NULL;
	const char *artifact_dir = NULL;
	uint64_t v;
	size_t code_len, i;
	uint8_t *code;
	int c, rc, sig;

	memset(&a, 0, sizeof(a));
	memset(&x, 0, sizeof(x));
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":l:c:e:f:va:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': a.req.language = optarg; break;
		case 'c': code_arg = optarg; break;
		case 'e': exec_add_env(&a, optarg); break;
		case OPT_STDIN: stdin_text = optarg; break;
		case OPT_STDIN_FILE: stdin_file = optarg; break;
		case 'f': exec_add_file(&a, optarg); break;
		case OPT_COLLECT:
			a.collect = xgrow(a.collect, a.n_collect + 1, sizeof(*a.collect));
			a.collect[a.n_collect++] = optarg;
			break;
		case OPT_ARTIFACT_DIR: artifact_dir = optarg; break;
		case OPT_REQUEST_ID: a.req.request_id = optarg; break;
		case OPT_SESSION: a.req.session_id = optarg; break;
		case OPT_DEADLINE:
			if (!parse_number(optarg, false, INT64_MAX / 1000, &v) || v == 0)
				usage_fail(
					"exec",
					"--deadline: '%s' is not a positive number of milliseconds",
					optarg);
			a.req.deadline_ms = (int64_t)v;
			break;
		case OPT_JSON: x.json = true; break;
		case 'v': x.verbose = true; break;
		case 'a': opt_target = optarg; break;
		case OPT_WAIT: opt_wait_for_ready = true; break;
		case 'h': fputs(usage_exec, stdout); return 0;
		default:
			if (!conn_option(c, optarg) &&
			    !limit_option("exec", c, optarg, &a.req.limits))
				bad_option("exec", argv, c);
		}
	}
	if (optind < argc)
		file_arg = argv[optind++];
	if (optind < argc)
		usage_fail("exec",
			   "unexpected argument '%s' (arguments for the program are not supported)",
			   argv[optind]);
	if (code_arg != NULL && file_arg != NULL)
		usage_fail("exec", "give the code with -c or as FILE, not both");
	if (stdin_text != NULL && stdin_file != NULL)
		usage_fail("exec", "give --stdin or --stdin-file, not both");
	if (a.req.language == NULL && file_arg != NULL)
		a.req.language = language_from_name(file_arg);
	if (a.req.language == NULL && a.req.session_id != NULL)
		a.req.language = ""; /* the session's */
	if (a.req.language == NULL)
		usage_fail("exec", "which language? (-l python, javascript or bash)");
	if (stdin_file != NULL && strcmp(stdin_file, "-") == 0 && code_arg == NULL &&
	    (file_arg == NULL || strcmp(file_arg, "-") == 0))
		usage_fail("exec", "--stdin-file -: stdin already holds the code");

	if (code_arg != NULL) {
		code = (uint8_t *)code_arg;
		code_len = strlen(code_arg);
	} else {
		code = own(&a,
			   read_path("exec", file_arg != NULL ? file_arg : "-", &code_len, NULL));
		if (memchr(code, '\0', code_len) != NULL)
			usage_fail("exec", "%s: the code contains a NUL byte",
				   file_arg != NULL ? file_arg : "stdin");
	}
	if (code_len == 0)
		usage_fail("exec", "no code to run");
	a.req.code = (const char *)code;
	a.req.code_len = code_len;
	if (stdin_text != NULL) {
		a.req.stdin_data = (const uint8_t *)stdin_text;
		a.req.stdin_len = strlen(stdin_text);
	} else if (stdin_file != NULL) {
		a.req.stdin_data = own(&a, read_path("exec", stdin_file, &a.req.stdin_len, NULL));
	}
	a.req.files = a.files;
	a.req.n_files = a.n_files;
	a.req.env = a.env;
	a.req.n_env = a.n_env;
	a.req.collect = a.collect;
	a.req.n_collect = a.n_collect;
	/* JSON carries artifacts inline: save them only when asked to. Files
	 * asked for with --collect land in the current directory by default;
	 * figures nobody asked for are only listed. */
	x.artifact_dir = artifact_dir != NULL	    ? artifact_dir :
			 !x.json && a.n_collect > 0 ? "." :
						      NULL;

	client = client_open();
	rc = capibox_execute(client, &a.req, exec_on_event, &x, &st);
	client_close(client);
	sig = atomic_load(&sig_received);

	if (x.json && x.write_error == 0)
		x.write_error = json_flush_carry(&x);
	if (sig != 0) {
		rc = EXIT_SIGNAL_BASE + sig;
	} else if (x.write_error != 0) {
		if (x.write_error != EPIPE)
			fprintf(stderr, "capibox: writing output: %s\n", strerror(x.write_error));
		/* EPIPE: the reader left (e.g. | head); like a shell pipeline, say nothing. */
		rc = x.write_error == EPIPE ? EXIT_SIGNAL_BASE + SIGPIPE : EXIT_IOERR;
	} else if (rc != CAPIBOX_OK) {
		report_rpc_error(x.json, &st);
		rc = EXIT_RPC;
	} else if (!x.finished) {
		st.code = CAPIBOX_INTERNAL;
		snprintf(st.message, sizeof(st.message),
			 "the stream ended without a finished event");
		report_rpc_error(x.json, &st);
		rc = EXIT_RPC;
	} else {
		rc = exit_code_for_finish(&x);
	}

	for (i = 0; i < a.n_owned; i++)
		free(a.owned[i]);
	free(a.owned);
	free(a.files);
	free(a.env);
	free(a.collect);
	free(x.piece_path);
	free(x.result_text);
	return rc;
}

/* --- health -------------------------------------------------------------- */

static void format_uptime(char *buf, size_t len, uint64_t s)
{
	if (s < 120)
		snprintf(buf, len, "%" PRIu64 " s", s);
	else if (s < 2 * 3600)
		snprintf(buf, len, "%" PRIu64 " min", s / 60);
	else if (s < 2 * 86400)
		snprintf(buf, len, "%" PRIu64 " h %" PRIu64 " min", s / 3600, s / 60 % 60);
	else
		snprintf(buf, len, "%" PRIu64 " d %" PRIu64 " h", s / 86400, s / 3600 % 24);
}

static void health_print(const struct capibox_health *h)
{
	char up[64];
	size_t i, j;

	format_uptime(up, sizeof(up), h->uptime_s);
	printf("capiboxd %s: %s, up %s\n", h->version, capibox_serving_status_name(h->status), up);
	if (h->max_sessions > 0)
		printf("sessions: %" PRIu32 " of %" PRIu32 " open\n", h->sessions_open,
		       h->max_sessions);
	for (i = 0; i < h->n_backends; i++) {
		const struct capibox_backend_health *b = &h->backends[i];
		const char *m = b->message;

		printf("backend %s: %s", b->name, capibox_serving_status_name(b->status));
		if (b->canary_us > 0)
			printf(" (slowest canary %.0f ms)", us_to_ms(b->canary_us));
		putchar('\n');
		/* The message may span lines: indent each. */
		while (m != NULL && *m != '\0') {
			const char *nl = strchr(m, '\n');
			int n = nl != NULL ? (int)(nl - m) : (int)strlen(m);

			if (n > 0)
				printf("  %.*s\n", n, m);
			m = nl != NULL ? nl + 1 : NULL;
		}
		for (j = 0; j < b->n_pools; j++) {
			const struct capibox_runtime_pool *p = &b->pools[j];

			printf("  %-12s idle %" PRIu32 "  busy %" PRIu32 "  target %" PRIu32
			       "  %s\n",
			       p->language, p->idle, p->busy, p->target, p->runtime_version);
		}
	}
}

static void health_print_json(const struct capibox_health *h)
{
	struct json_object *obj = json_object_new_object(), *backends = json_object_new_array();
	size_t i, j;

	json_object_object_add(obj, "status",
			       json_object_new_string(capibox_serving_status_name(h->status)));
	json_object_object_add(obj, "version", json_object_new_string(h->version));
	json_object_object_add(obj, "uptime_s", json_object_new_uint64(h->uptime_s));
	json_object_object_add(obj, "sessions_open", json_object_new_uint64(h->sessions_open));
	json_object_object_add(obj, "max_sessions", json_object_new_uint64(h->max_sessions));
	for (i = 0; i < h->n_backends; i++) {
		const struct capibox_backend_health *b = &h->backends[i];
		struct json_object *bo = json_object_new_object(), *pools = json_object_new_array();

		json_object_object_add(bo, "name", json_object_new_string(b->name));
		json_object_object_add(
			bo, "status",
			json_object_new_string(capibox_serving_status_name(b->status)));
		json_object_object_add(bo, "message", json_object_new_string(b->message));
		json_object_object_add(bo, "canary_us", json_object_new_uint64(b->canary_us));
		for (j = 0; j < b->n_pools; j++) {
			const struct capibox_runtime_pool *p = &b->pools[j];
			struct json_object *po = json_object_new_object();

			json_object_object_add(po, "language", json_object_new_string(p->language));
			json_object_object_add(po, "idle", json_object_new_int64(p->idle));
			json_object_object_add(po, "busy", json_object_new_int64(p->busy));
			json_object_object_add(po, "target", json_object_new_int64(p->target));
			json_object_object_add(po, "runtime_version",
					       json_object_new_string(p->runtime_version));
			json_object_array_add(pools, po);
		}
		json_object_object_add(bo, "pools", pools);
		json_object_array_add(backends, bo);
	}
	json_object_object_add(obj, "backends", backends);
	json_emit(obj);
}

static int cmd_health(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{"deep", no_argument, NULL, OPT_DEEP},
		{"json", no_argument, NULL, OPT_JSON},
		{"deadline", required_argument, NULL, OPT_DEADLINE},
		{"target", required_argument, NULL, 'a'},
		{"wait-for-ready", no_argument, NULL, OPT_WAIT},
		CONN_LONGOPTS,
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct capibox_client *client;
	struct capibox_health *h = NULL;
	struct capibox_status st;
	bool deep = false, json = false;
	int64_t deadline_ms = 0;
	uint64_t v;
	int c, rc, sig;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":a:h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_DEEP: deep = true; break;
		case OPT_JSON: json = true; break;
		case OPT_DEADLINE:
			if (!parse_number(optarg, false, INT64_MAX / 1000, &v) || v == 0)
				usage_fail(
					"health",
					"--deadline: '%s' is not a positive number of milliseconds",
					optarg);
			deadline_ms = (int64_t)v;
			break;
		case 'a': opt_target = optarg; break;
		case OPT_WAIT: opt_wait_for_ready = true; break;
		case 'h': fputs(usage_health, stdout); return 0;
		default:
			if (!conn_option(c, optarg))
				bad_option("health", argv, c);
		}
	}
	if (optind < argc)
		usage_fail("health", "unexpected argument '%s'", argv[optind]);
	if (deadline_ms == 0)
		deadline_ms = deep ? HEALTH_DEEP_DEADLINE_MS : HEALTH_DEADLINE_MS;

	client = client_open();
	rc = capibox_health(client, deep, deadline_ms, &h, &st);
	client_close(client);
	sig = atomic_load(&sig_received);
	if (sig != 0) {
		rc = EXIT_SIGNAL_BASE + sig;
	} else if (rc != CAPIBOX_OK) {
		report_rpc_error(json, &st);
		rc = EXIT_RPC;
	} else {
		if (json)
			health_print_json(h);
		else
			health_print(h);
		rc = h->status == SERVING_STATUS_SERVING ? 0 : 1;
	}
	capibox_health_free(h);
	if (fflush(stdout) != 0 && rc == 0)
		rc = EXIT_IOERR;
	return rc;
}

/* --- session ------------------------------------------------------------- */

static const char usage_session[] =
	"Usage: capibox session create -l LANG [--idle S] [--file LOCAL[:REMOTE]] [OPTIONS]\n"
	"       capibox session list [--json]\n"
	"       capibox session close ID [--json]\n"
	"\n"
	"A session is a kept-alive interpreter in a sandbox of its own: run code in\n"
	"it with 'capibox exec --session ID'; variables, imports, files and the\n"
	"working directory persist between runs. It closes after --idle seconds\n"
	"without a run (default: the server's, 600).\n"
	"\n"
	"  -l, --language LANG     python, javascript or bash\n"
	"      --idle S            idle timeout in seconds\n"
	"  -f, --file LOCAL[:REMOTE]  write a file to /home/user/REMOTE at the start\n"
	"  -e, --env NAME=VALUE    environment of the session (repeatable)\n"
	"      --timeout MS, --cpu MS, --max-output BYTES  each run's defaults\n"
	"      --memory BYTES, --procs N  for the whole session\n"
	"      --json              print the reply as JSON\n"
	"      --deadline MS       RPC deadline in milliseconds (default 30000)\n"
	"  -a, --target ADDR       server address (as the global option)\n"
	"      --token, --tls, --ca, --cert, --key, --server-name  as the global options\n"
	"  -h, --help              show this help\n"
	"\n"
	"create prints the new session's id (with --json the whole session).\n"
	"Exit status: 0 done, 69 RPC error (NOT_FOUND: no such session), 64 usage error.\n";

static struct json_object *session_json(const struct capibox_session *s)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "session_id", json_object_new_string(s->id));
	json_object_object_add(o, "language", json_object_new_string(s->language));
	json_object_object_add(o, "created_unix_ms", json_object_new_uint64(s->created_unix_ms));
	json_object_object_add(o, "last_used_unix_ms",
			       json_object_new_uint64(s->last_used_unix_ms));
	json_object_object_add(o, "executions", json_object_new_uint64(s->executions));
	json_object_object_add(o, "idle_timeout_s", json_object_new_uint64(s->idle_timeout_s));
	return o;
}

static int cmd_session(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{"language", required_argument, NULL, 'l'},
		{"idle", required_argument, NULL, OPT_IDLE},
		{"file", required_argument, NULL, 'f'},
		{"env", required_argument, NULL, 'e'},
		LIMIT_LONGOPTS,
		{"json", no_argument, NULL, OPT_JSON},
		{"deadline", required_argument, NULL, OPT_DEADLINE},
		{"target", required_argument, NULL, 'a'},
		{"wait-for-ready", no_argument, NULL, OPT_WAIT},
		CONN_LONGOPTS,
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct capibox_session_request sr;
	struct capibox_session one, *list = NULL;
	struct capibox_client *client;
	struct capibox_status st;
	struct exec_args a;
	const char *sub, *id = NULL;
	bool json = false;
	size_t n = 0, i;
	uint64_t v;
	int c, rc, sig;

	memset(&sr, 0, sizeof(sr));
	memset(&a, 0, sizeof(a));
	sr.deadline_ms = 30000;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		if (argc < 2)
			usage_fail("session", "create, list or close?");
		fputs(usage_session, stdout);
		return 0;
	}
	sub = argv[1];
	if (strcmp(sub, "create") != 0 && strcmp(sub, "list") != 0 && strcmp(sub, "close") != 0)
		usage_fail("session", "unknown subcommand '%s' (create, list or close)", sub);
	argc--;
	argv++;
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":l:f:e:a:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': sr.language = optarg; break;
		case OPT_IDLE: sr.idle_timeout_s = opt_u32("session", "--idle", optarg); break;
		case 'f': exec_add_file(&a, optarg); break;
		case 'e': exec_add_env(&a, optarg); break;
		case OPT_JSON: json = true; break;
		case OPT_DEADLINE:
			if (!parse_number(optarg, false, INT64_MAX / 1000, &v) || v == 0)
				usage_fail(
					"session",
					"--deadline: '%s' is not a positive number of milliseconds",
					optarg);
			sr.deadline_ms = (int64_t)v;
			break;
		case 'a': opt_target = optarg; break;
		case OPT_WAIT: opt_wait_for_ready = true; break;
		case 'h': fputs(usage_session, stdout); return 0;
		default:
			if (!conn_option(c, optarg) &&
			    !limit_option("session", c, optarg, &sr.limits))
				bad_option("session", argv, c);
		}
	}
	if (strcmp(sub, "close") == 0) {
		if (optind >= argc)
			usage_fail("session", "close: which session? (capibox session close ID)");
		id = argv[optind++];
	}
	if (optind < argc)
		usage_fail("session", "unexpected argument '%s'", argv[optind]);
	if (strcmp(sub, "create") == 0 && sr.language == NULL)
		usage_fail("session", "create: which language? (-l python, javascript or bash)");
	sr.files = a.files;
	sr.n_files = a.n_files;
	sr.env = a.env;
	sr.n_env = a.n_env;

	client = client_open();
	if (strcmp(sub, "create") == 0)
		rc = capibox_session_create(client, &sr, &one, &st);
	else if (strcmp(sub, "close") == 0)
		rc = capibox_session_close(client, id, sr.deadline_ms, &one, &st);
	else
		rc = capibox_session_list(client, sr.deadline_ms, &list, &n, &st);
	client_close(client);
	sig = atomic_load(&sig_received);
	if (sig != 0) {
		rc = EXIT_SIGNAL_BASE + sig;
	} else if (rc != CAPIBOX_OK) {
		report_rpc_error(json, &st);
		rc = EXIT_RPC;
	} else if (strcmp(sub, "list") == 0) {
		if (json) {
			struct json_object *o = json_object_new_object();
			struct json_object *arr = json_object_new_array();
			for (i = 0; i < n; i++)
				json_object_array_add(arr, session_json(&list[i]));
			json_object_object_add(o, "sessions", arr);
			json_emit(o);
		} else {
			time_t now = time(NULL);
			for (i = 0; i < n; i++)
				printf("%s  %-10s  %" PRIu64 " runs  idle %llds of %" PRIu32 "s\n",
				       list[i].id, list[i].language, list[i].executions,
				       (long long)(now -
						   (time_t)(list[i].last_used_unix_ms / 1000)),
				       list[i].idle_timeout_s);
		}
		rc = 0;
	} else {
		if (json)
			json_emit(session_json(&one));
		else if (strcmp(sub, "create") == 0)
			printf("%s\n", one.id);
		else
			printf("closed %s (%" PRIu64 " runs)\n", one.id, one.executions);
		rc = 0;
	}
	free(list);
	for (i = 0; i < a.n_owned; i++)
		free(a.owned[i]);
	free(a.owned);
	free(a.files);
	free(a.env);
	if (fflush(stdout) != 0 && rc == 0)
		rc = EXIT_IOERR;
	return rc;
}

/* --- analyze ------------------------------------------------------------- */

static const char usage_analyze[] =
	"Usage: capibox analyze FILE [OPTIONS]\n"
	"\n"
	"Sends a dataset (CSV, TSV or JSON lines; FILE '-' = stdin) to the server,\n"
	"which parses it in a sandbox and answers with typed statistics: per column\n"
	"what pandas' describe() says (count, nulls, distinct, mean, std, min,\n"
	"quartiles, max; the most frequent values of text columns), and with\n"
	"--group-by/--agg one row per group. See docs/ANALYZE.md for the semantics.\n"
	"\n"
	"      --columns A,B       summarise only these columns (repeatable)\n"
	"      --group-by K1,K2    group keys (needs --agg; repeatable)\n"
	"      --agg COL:FN,...    aggregates, FN one of count, sum, mean, min, max,\n"
	"                          std, median, nunique (repeatable); without\n"
	"                          --group-by over the whole dataset\n"
	"      --format FMT        csv, tsv or jsonl (default: from FILE's extension,\n"
	"                          then the content)\n"
	"      --delimiter C       CSV field delimiter, one character ('\\t' or 'tab'\n"
	"                          for a tab)\n"
	"      --no-header         the first line is data; columns are named 0, 1, ...\n"
	"      --null-values A,B   strings read as null instead of pandas' defaults\n"
	"      --code FILE         pandas code to run with `df` holding the dataset;\n"
	"                          prints its stdout, stderr and the `result` table\n"
	"      --artifact-dir DIR  with --code: save the figures (figure-1.png, ...)\n"
	"                          in DIR (also --out DIR)\n"
	"      --timeout MS, --cpu MS, --memory BYTES  sandbox limits (as exec)\n"
	"      --request-id ID     identifier for the server's logs\n"
	"      --deadline MS       RPC deadline in milliseconds (default none)\n"
	"      --json              print the whole reply as one JSON object\n"
	"  -a, --target ADDR       server address (as the global option)\n"
	"      --token, --tls, --ca, --cert, --key, --server-name  as the global options\n"
	"  -h, --help              show this help\n"
	"\n"
	"Column names in lists cannot contain a comma.\n"
	"\n"
	"Exit status: 0 done; 65 the dataset is malformed (the message says what and\n"
	"where); 69 RPC error, e.g. INVALID_ARGUMENT for an unknown column or an\n"
	"aggregate that does not apply; 124 time limit; 125 memory or output limit;\n"
	"126 the sandbox or the engine failed; 130 cancelled; 64 usage error; 74\n"
	"cannot write the output. With --code, the code's own exit status N.\n";

/* Request pieces owned by cmd_analyze: argument strings are used in place. */
struct analyze_args {
	struct capibox_analyze_request req;
	const char **columns;
	size_t n_columns;
	const char **group_by;
	size_t n_group_by;
	struct capibox_aggregate *aggs;
	size_t n_aggs;
	const char **nulls;
	size_t n_nulls;
	char **owned; /* strings and buffers freed at the end */
	size_t n_owned;
};

static void *analyze_own(struct analyze_args *a, void *p)
{
	if (p == NULL) {
		fprintf(stderr, "capibox: out of memory\n");
		exit(EXIT_FAILURE);
	}
	a->owned = xgrow(a->owned, a->n_owned + 1, sizeof(*a->owned));
	a->owned[a->n_owned++] = p;
	return p;
}

/*
 * Appends the comma-separated items of arg (split in a copy) to *v. An
 * empty item is kept only for --null-values, where "" is a real choice.
 */
static void list_add(struct analyze_args *a, const char *opt, const char *arg, const char ***v,
		     size_t *n, bool keep_empty)
{
	char *p = analyze_own(a, strdup(arg));

	for (;;) {
		char *comma = strchr(p, ',');

		if (comma != NULL)
			*comma = '\0';
		if (*p == '\0' && !keep_empty)
			usage_fail("analyze", "%s '%s': an empty name", opt, arg);
		*v = xgrow(*v, *n + 1, sizeof(**v));
		(*v)[(*n)++] = p;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
}

/* Appends the COL:FN items of arg; the column is what precedes the last colon. */
static void agg_add(struct analyze_args *a, const char *arg)
{
	const char **items = NULL;
	size_t n = 0, i;

	list_add(a, "--agg", arg, &items, &n, false);
	for (i = 0; i < n; i++) {
		char *item = (char *)items[i], *colon = strrchr(item, ':');
		int fn;

		if (colon == NULL || colon == item)
			usage_fail("analyze", "--agg '%s': give COLUMN:FUNCTION, e.g. sales:mean",
				   items[i]);
		*colon = '\0';
		fn = capibox_agg_function_parse(colon + 1);
		if (fn == CAPIBOX_AGG_UNSPECIFIED)
			usage_fail("analyze",
				   "--agg %s:%s: unknown function (count, sum, mean, min, max, "
				   "std, median, nunique)",
				   item, colon + 1);
		a->aggs = xgrow(a->aggs, a->n_aggs + 1, sizeof(*a->aggs));
		a->aggs[a->n_aggs].column = item;
		a->aggs[a->n_aggs].function = fn;
		a->n_aggs++;
	}
	free(items);
}

/* A number as describe() shows it: whole numbers in full, others to 6 digits. */
static void format_number(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "NaN");
	else if (isinf(v))
		snprintf(buf, len, "%sinf", v < 0 ? "-" : "");
	else if (v > -1e15 && v < 1e15 && v == (double)(int64_t)v)
		snprintf(buf, len, "%" PRId64, (int64_t)v);
	else
		snprintf(buf, len, "%.6g", v);
}

/*
 * A printable copy of untrusted text (column names and values come from
 * the dataset): control characters, which could drive the terminal,
 * become '?', and the copy is cut to max characters with "...".
 */
static char *text_clean(const char *s, size_t max)
{
	size_t len = strlen(s), chars = 0, i, o = 0;
	char *out = malloc(len + 4);

	if (out == NULL) {
		fprintf(stderr, "capibox: out of memory\n");
		exit(EXIT_FAILURE);
	}
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if ((ch & 0xc0) != 0x80 && chars++ == max) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		out[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	out[o] = '\0';
	return out;
}

/* Characters (not bytes) of UTF-8 text, for alignment. */
static size_t text_width(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* A text table: a header row and rows of malloc'd cells, printed aligned. */
struct grid {
	size_t ncol, nrow; /* nrow counts the header */
	char **cells;	   /* row-major */
	bool *right;	   /* per column: align right (numbers) */
};

static void grid_init(struct grid *g, size_t ncol)
{
	g->ncol = ncol;
	g->nrow = 0;
	g->cells = NULL;
	g->right = xgrow(NULL, ncol > 0 ? ncol : 1, sizeof(*g->right));
	memset(g->right, 0, (ncol > 0 ? ncol : 1) * sizeof(*g->right));
}

/* Adds a row of empty cells and returns it. */
static char **grid_row(struct grid *g)
{
	char **row;
	size_t k;

	g->cells = xgrow(g->cells, (g->nrow + 1) * g->ncol, sizeof(*g->cells));
	row = &g->cells[g->nrow * g->ncol];
	for (k = 0; k < g->ncol; k++)
		row[k] = NULL;
	g->nrow++;
	return row;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL) {
		fprintf(stderr, "capibox: out of memory\n");
		exit(EXIT_FAILURE);
	}
	return p;
}

static void grid_print(const struct grid *g, FILE *f)
{
	size_t *w = xgrow(NULL, g->ncol > 0 ? g->ncol : 1, sizeof(*w));
	size_t r, k;

	for (k = 0; k < g->ncol; k++) {
		w[k] = 0;
		for (r = 0; r < g->nrow; r++) {
			const char *c = g->cells[r * g->ncol + k];
			size_t cw = c != NULL ? text_width(c) : 0;

			if (cw > w[k])
				w[k] = cw;
		}
	}
	for (r = 0; r < g->nrow; r++) {
		size_t last = 0; /* cells after the last non-empty one are left out */

		for (k = 0; k < g->ncol; k++)
			if (g->cells[r * g->ncol + k] != NULL && g->cells[r * g->ncol + k][0])
				last = k;
		for (k = 0; k <= last; k++) {
			const char *c = g->cells[r * g->ncol + k];
			size_t pad;

			if (c == NULL)
				c = "";
			pad = w[k] - text_width(c);
			if (k > 0)
				fputs("  ", f);
			if (g->right[k])
				fprintf(f, "%*s%s", (int)pad, "", c);
			else if (k < last)
				fprintf(f, "%s%*s", c, (int)pad, "");
			else
				fputs(c, f); /* no trailing blanks */
		}
		fputc('\n', f);
	}
	free(w);
}

static void grid_free(struct grid *g)
{
	size_t i;

	for (i = 0; i < g->nrow * g->ncol; i++)
		free(g->cells[i]);
	free(g->cells);
	free(g->right);
}

static bool column_numeric(const struct capibox_column_summary *c)
{
	return c->type == CAPIBOX_COLUMN_INTEGER || c->type == CAPIBOX_COLUMN_FLOAT;
}

/* describe() transposed: one line per column. */
static void describe_print(const struct capibox_analysis *an)
{
	static const char *const stat_names[] = {"mean", "std", "min", "25%", "50%", "75%", "max"};
	bool any_numeric = false, any_top = false;
	struct grid g;
	size_t i, k, ncol;
	char **row;

	for (i = 0; i < an->n_columns; i++) {
		any_numeric |= column_numeric(&an->columns[i]);
		any_top |= an->columns[i].n_top > 0;
	}
	ncol = 5 + (any_numeric ? 7 : 0) + (any_top ? 1 : 0);
	grid_init(&g, ncol);
	for (k = 2; k < 12 && k < ncol; k++)
		g.right[k] = true;
	row = grid_row(&g);
	row[0] = xstrdup("column");
	row[1] = xstrdup("type");
	row[2] = xstrdup("count");
	row[3] = xstrdup("nulls");
	row[4] = xstrdup("distinct");
	for (k = 0; any_numeric && k < 7; k++)
		row[5 + k] = xstrdup(stat_names[k]);
	if (any_top)
		row[ncol - 1] = xstrdup("top");
	for (i = 0; i < an->n_columns; i++) {
		const struct capibox_column_summary *c = &an->columns[i];
		char buf[64];

		row = grid_row(&g);
		row[0] = text_clean(c->name, 32);
		row[1] = xstrdup(capibox_column_type_name(c->type));
		snprintf(buf, sizeof(buf), "%" PRIu64, c->count);
		row[2] = xstrdup(buf);
		snprintf(buf, sizeof(buf), "%" PRIu64, c->nulls);
		row[3] = xstrdup(buf);
		snprintf(buf, sizeof(buf), "%" PRIu64, c->distinct);
		row[4] = xstrdup(buf);
		if (any_numeric && column_numeric(c)) {
			const double v[7] = {c->mean,	c->std, c->min, c->p25,
					     c->median, c->p75, c->max};

			for (k = 0; k < 7; k++) {
				format_number(buf, sizeof(buf), v[k]);
				row[5 + k] = xstrdup(buf);
			}
		}
		if (any_top && c->n_top > 0) {
			char *top = NULL;
			size_t len = 0;

			for (k = 0; k < c->n_top; k++) {
				char *v = text_clean(c->top[k].value, 24);
				size_t need = strlen(v) + 32;

				top = xgrow(top, len + need + 1, 1);
				len += (size_t)snprintf(top + len, need + 1, "%s%s (%" PRIu64 ")",
							k > 0 ? ", " : "", v, c->top[k].count);
				free(v);
			}
			row[ncol - 1] = top;
		}
	}
	grid_print(&g, stdout);
	grid_free(&g);
}

/* A Table from the server as an aligned text table. */
static void table_print(const struct capibox_table *t)
{
	struct grid g;
	size_t r, k;
	char **row;

	if (t->n_columns == 0)
		return;
	grid_init(&g, t->n_columns);
	row = grid_row(&g);
	for (k = 0; k < t->n_columns; k++)
		row[k] = text_clean(t->columns[k], 32);
	/* numbers align right: a column is numeric when no cell is text */
	for (k = 0; k < t->n_columns; k++) {
		g.right[k] = true;
		for (r = 0; r < t->n_rows; r++)
			if (t->cells[r * t->n_columns + k].kind == CAPIBOX_CELL_TEXT)
				g.right[k] = false;
	}
	for (r = 0; r < t->n_rows; r++) {
		row = grid_row(&g);
		for (k = 0; k < t->n_columns; k++) {
			const struct capibox_cell *c = &t->cells[r * t->n_columns + k];
			char buf[64];

			if (c->kind == CAPIBOX_CELL_TEXT) {
				row[k] = text_clean(c->text, 40);
				continue;
			}
			if (c->kind == CAPIBOX_CELL_NUMBER)
				format_number(buf, sizeof(buf), c->number);
			else
				snprintf(buf, sizeof(buf), "NaN");
			row[k] = xstrdup(buf);
		}
	}
	grid_print(&g, stdout);
	grid_free(&g);
}

static void analysis_print(const struct capibox_analysis *an, const char *artifact_dir)
{
	char mem[32];
	size_t i;

	if (an->stdout_len > 0)
		fwrite(an->stdout_data, 1, an->stdout_len, stdout);
	if (an->stderr_len > 0)
		fwrite(an->stderr_data, 1, an->stderr_len, stderr);
	if (an->n_columns > 0)
		describe_print(an);
	if (an->groups.n_columns > 0) {
		if (an->n_columns > 0)
			putchar('\n');
		table_print(&an->groups);
	}
	if (an->result.n_columns > 0) {
		printf("\nresult:\n");
		table_print(&an->result);
	}
	for (i = 0; i < an->n_artifacts && artifact_dir == NULL; i++) {
		char *p = text_clean(an->artifacts[i].path, 64);

		printf("artifact %s (%s, %zu bytes): use --artifact-dir DIR to save it\n", p,
		       an->artifacts[i].mime_type, an->artifacts[i].len);
		free(p);
	}
	format_bytes(mem, sizeof(mem), an->finished.peak_memory_bytes);
	printf("%" PRIu64 " row%s; %.1f ms, peak memory %s\n", an->rows, an->rows == 1 ? "" : "s",
	       us_to_ms(an->finished.wall_time_us), mem);
}

/* Saves the figures code mode returned under dir, as exec saves artifacts. */
static void analysis_save_artifacts(const struct capibox_analysis *an, const char *dir)
{
	struct exec_ctx x = {.artifact_dir = dir, .verbose = true};
	struct capibox_event ev;
	size_t i;

	for (i = 0; i < an->n_artifacts; i++) {
		memset(&ev, 0, sizeof(ev));
		ev.kind = CAPIBOX_EVENT_ARTIFACT;
		ev.u.artifact.path = an->artifacts[i].path;
		ev.u.artifact.mime_type = an->artifacts[i].mime_type;
		ev.u.artifact.content = an->artifacts[i].content;
		ev.u.artifact.len = an->artifacts[i].len;
		ev.u.artifact.size = an->artifacts[i].size;
		ev.u.artifact.truncated = an->artifacts[i].truncated;
		ev.u.artifact.eof = true; /* whole files */
		artifact_save(&x, &ev);
	}
}

/* A double for JSON: NaN and infinities are not JSON numbers, so null. */
static struct json_object *json_double(double v)
{
	if (isnan(v) || isinf(v))
		return NULL;
	return json_object_new_double(v);
}

static struct json_object *table_json(const struct capibox_table *t)
{
	struct json_object *obj = json_object_new_object(), *cols = json_object_new_array(),
			   *rows = json_object_new_array();
	size_t r, k;

	for (k = 0; k < t->n_columns; k++)
		json_object_array_add(cols, json_object_new_string(t->columns[k]));
	for (r = 0; r < t->n_rows; r++) {
		struct json_object *row = json_object_new_array();

		for (k = 0; k < t->n_columns; k++) {
			const struct capibox_cell *c = &t->cells[r * t->n_columns + k];

			if (c->kind == CAPIBOX_CELL_TEXT)
				json_object_array_add(row, json_object_new_string(c->text));
			else if (c->kind == CAPIBOX_CELL_NUMBER)
				json_object_array_add(row, json_double(c->number));
			else
				json_object_array_add(row, NULL);
		}
		json_object_array_add(rows, row);
	}
	json_object_object_add(obj, "columns", cols);
	json_object_object_add(obj, "rows", rows);
	return obj;
}

/* The whole reply as one JSON object on stdout; 0 or an errno value. */
static int analysis_print_json(const struct capibox_analysis *an)
{
	struct json_object *obj = json_object_new_object(), *cols = json_object_new_array(),
			   *arts = json_object_new_array(), *fin = json_object_new_object();
	size_t i, k, valid;

	json_object_object_add(obj, "rows", json_object_new_uint64(an->rows));
	for (i = 0; i < an->n_columns; i++) {
		const struct capibox_column_summary *c = &an->columns[i];
		struct json_object *co = json_object_new_object(), *top = json_object_new_array();
		bool num = column_numeric(c);

		json_object_object_add(co, "name", json_object_new_string(c->name));
		json_object_object_add(co, "type",
				       json_object_new_string(capibox_column_type_name(c->type)));
		json_object_object_add(co, "count", json_object_new_uint64(c->count));
		json_object_object_add(co, "nulls", json_object_new_uint64(c->nulls));
		json_object_object_add(co, "distinct", json_object_new_uint64(c->distinct));
		/* null where a statistic does not apply, as pandas' NaN */
		json_object_object_add(co, "mean", num ? json_double(c->mean) : NULL);
		json_object_object_add(co, "std", num ? json_double(c->std) : NULL);
		json_object_object_add(co, "min", num ? json_double(c->min) : NULL);
		json_object_object_add(co, "p25", num ? json_double(c->p25) : NULL);
		json_object_object_add(co, "median", num ? json_double(c->median) : NULL);
		json_object_object_add(co, "p75", num ? json_double(c->p75) : NULL);
		json_object_object_add(co, "max", num ? json_double(c->max) : NULL);
		json_object_object_add(co, "sum", num ? json_double(c->sum) : NULL);
		for (k = 0; k < c->n_top; k++) {
			struct json_object *vc = json_object_new_object();

			json_object_object_add(vc, "value",
					       json_object_new_string(c->top[k].value));
			json_object_object_add(vc, "count",
					       json_object_new_uint64(c->top[k].count));
			json_object_array_add(top, vc);
		}
		json_object_object_add(co, "top", top);
		json_object_array_add(cols, co);
	}
	json_object_object_add(obj, "columns", cols);
	json_object_object_add(obj, "groups",
			       an->groups.n_columns > 0 ? table_json(&an->groups) : NULL);
	if (an->result.n_columns > 0)
		json_object_object_add(obj, "result", table_json(&an->result));
	if (an->stdout_len > 0)
		json_add_bytes(obj, "stdout", an->stdout_data, an->stdout_len,
			       utf8_prefix(an->stdout_data, an->stdout_len, &valid) &&
				       valid == an->stdout_len);
	if (an->stderr_len > 0)
		json_add_bytes(obj, "stderr", an->stderr_data, an->stderr_len,
			       utf8_prefix(an->stderr_data, an->stderr_len, &valid) &&
				       valid == an->stderr_len);
	for (i = 0; i < an->n_artifacts; i++) {
		const struct capibox_analysis_artifact *ar = &an->artifacts[i];
		struct json_object *ao = json_object_new_object();
		bool text = utf8_prefix(ar->content, ar->len, &valid) && valid == ar->len;

		json_object_object_add(ao, "path", json_object_new_string(ar->path));
		json_object_object_add(ao, "mime_type", json_object_new_string(ar->mime_type));
		json_object_object_add(ao, "size", json_object_new_uint64(ar->size));
		json_object_object_add(ao, "truncated", json_object_new_boolean(ar->truncated));
		json_add_bytes(ao, "content", ar->content, ar->len, text);
		json_object_array_add(arts, ao);
	}
	if (an->n_artifacts > 0)
		json_object_object_add(obj, "artifacts", arts);
	else
		json_object_put(arts);
	json_object_object_add(fin, "reason",
			       json_object_new_string(capibox_reason_name(an->finished.reason)));
	json_object_object_add(fin, "exit_code", json_object_new_int(an->finished.exit_code));
	json_object_object_add(fin, "signal", json_object_new_int(an->finished.signal));
	json_object_object_add(fin, "wall_time_us",
			       json_object_new_uint64(an->finished.wall_time_us));
	json_object_object_add(fin, "cpu_time_us",
			       json_object_new_uint64(an->finished.cpu_time_us));
	json_object_object_add(fin, "peak_memory_bytes",
			       json_object_new_uint64(an->finished.peak_memory_bytes));
	json_object_object_add(fin, "message", json_object_new_string(an->finished.message));
	json_object_object_add(obj, "finished", fin);
	return json_emit(obj);
}

/* The exit status for a reply (see usage_analyze); prints why when it is not 0. */
static int analyze_exit_code(const struct capibox_analysis *an, bool code_mode)
{
	struct capibox_event ev;

	if (an->finished.reason == CAPIBOX_REASON_EXITED && an->finished.exit_code == 0)
		return 0;
	if (an->finished.reason == CAPIBOX_REASON_EXITED && an->finished.exit_code == 2) {
		const char *m = an->finished.message;

		/* the engine's line names the field itself ("dataset: line 3: ...") */
		fprintf(stderr, "capibox: %s%s\n",
			strncmp(m, "dataset", 7) == 0 ? "" : "malformed dataset: ",
			m[0] != '\0' ? m : "(no detail from the server)");
		return EXIT_DATAERR;
	}
	memset(&ev, 0, sizeof(ev));
	ev.kind = CAPIBOX_EVENT_FINISHED;
	ev.u.finished.reason = an->finished.reason;
	ev.u.finished.exit_code = an->finished.exit_code;
	ev.u.finished.signal = an->finished.signal;
	ev.u.finished.message = an->finished.message;
	if (an->finished.reason == CAPIBOX_REASON_EXITED && code_mode)
		return an->finished.exit_code & 0xff; /* the code's own status */
	print_finish_line(&ev);
	switch (an->finished.reason) {
	case CAPIBOX_REASON_SIGNALED:
		return code_mode ? EXIT_SIGNAL_BASE + (an->finished.signal & 0x7f) :
				   EXIT_SANDBOX_ERROR;
	case CAPIBOX_REASON_WALL_TIMEOUT:
	case CAPIBOX_REASON_CPU_TIMEOUT: return EXIT_TIMEOUT;
	case CAPIBOX_REASON_MEMORY_LIMIT:
	case CAPIBOX_REASON_OUTPUT_LIMIT: return EXIT_LIMIT;
	case CAPIBOX_REASON_CANCELLED: return EXIT_CANCELLED;
	default: return EXIT_SANDBOX_ERROR;
	}
}

static int cmd_analyze(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{"columns", required_argument, NULL, OPT_COLUMNS},
		{"group-by", required_argument, NULL, OPT_GROUP_BY},
		{"agg", required_argument, NULL, OPT_AGG},
		{"format", required_argument, NULL, OPT_FORMAT},
		{"delimiter", required_argument, NULL, OPT_DELIMITER},
		{"no-header", no_argument, NULL, OPT_NO_HEADER},
		{"null-values", required_argument, NULL, OPT_NULL_VALUES},
		{"code", required_argument, NULL, OPT_CODE_FILE},
		{"artifact-dir", required_argument, NULL, OPT_ARTIFACT_DIR},
		{"out", required_argument, NULL, OPT_ARTIFACT_DIR},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"cpu", required_argument, NULL, OPT_CPU},
		{"memory", required_argument, NULL, OPT_MEMORY},
		{"request-id", required_argument, NULL, OPT_REQUEST_ID},
		{"deadline", required_argument, NULL, OPT_DEADLINE},
		{"json", no_argument, NULL, OPT_JSON},
		{"target", required_argument, NULL, 'a'},
		{"wait-for-ready", no_argument, NULL, OPT_WAIT},
		CONN_LONGOPTS,
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct analyze_args a;
	struct capibox_status st;
	struct capibox_client *client;
	struct capibox_analysis *an = NULL;
	const char *file_arg, *code_file = NULL, *artifact_dir = NULL, *slash;
	bool json = false;
	uint64_t v;
	size_t code_len, i;
	uint8_t *code;
	int c, rc, sig;

	memset(&a, 0, sizeof(a));
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":a:h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_COLUMNS:
			list_add(&a, "--columns", optarg, &a.columns, &a.n_columns, false);
			break;
		case OPT_GROUP_BY:
			list_add(&a, "--group-by", optarg, &a.group_by, &a.n_group_by, false);
			break;
		case OPT_AGG: agg_add(&a, optarg); break;
		case OPT_FORMAT:
			if (strcmp(optarg, "csv") == 0)
				a.req.format = CAPIBOX_FORMAT_CSV;
			else if (strcmp(optarg, "tsv") == 0)
				a.req.format = CAPIBOX_FORMAT_TSV;
			else if (strcmp(optarg, "jsonl") == 0 || strcmp(optarg, "ndjson") == 0)
				a.req.format = CAPIBOX_FORMAT_JSONL;
			else
				usage_fail("analyze", "--format '%s': csv, tsv or jsonl", optarg);
			break;
		case OPT_DELIMITER:
			if (strcmp(optarg, "\\t") == 0 || strcmp(optarg, "tab") == 0)
				a.req.delimiter = "\t";
			else if (strlen(optarg) == 1)
				a.req.delimiter = optarg;
			else
				usage_fail("analyze", "--delimiter '%s': one character", optarg);
			break;
		case OPT_NO_HEADER: a.req.no_header = true; break;
		case OPT_NULL_VALUES:
			list_add(&a, "--null-values", optarg, &a.nulls, &a.n_nulls, true);
			break;
		case OPT_CODE_FILE: code_file = optarg; break;
		case OPT_ARTIFACT_DIR: artifact_dir = optarg; break;
		case OPT_REQUEST_ID: a.req.request_id = optarg; break;
		case OPT_DEADLINE:
			if (!parse_number(optarg, false, INT64_MAX / 1000, &v) || v == 0)
				usage_fail(
					"analyze",
					"--deadline: '%s' is not a positive number of milliseconds",
					optarg);
			a.req.deadline_ms = (int64_t)v;
			break;
		case OPT_JSON: json = true; break;
		case 'a': opt_target = optarg; break;
		case OPT_WAIT: opt_wait_for_ready = true; break;
		case 'h': fputs(usage_analyze, stdout); return 0;
		default:
			if (!conn_option(c, optarg) &&
			    !limit_option("analyze", c, optarg, &a.req.limits))
				bad_option("analyze", argv, c);
		}
	}
	if (optind >= argc)
		usage_fail("analyze", "which dataset? (a FILE, or - for stdin)");
	file_arg = argv[optind++];
	if (optind < argc)
		usage_fail("analyze", "unexpected argument '%s'", argv[optind]);
	if (a.n_group_by > 0 && a.n_aggs == 0)
		usage_fail("analyze", "--group-by needs --agg (e.g. --agg sales:mean)");
	if (code_file != NULL && strcmp(code_file, "-") == 0 && strcmp(file_arg, "-") == 0)
		usage_fail("analyze", "--code -: stdin already holds the dataset");

	a.req.content = analyze_own(&a, read_path("analyze", file_arg, &a.req.content_len, NULL));
	if (strcmp(file_arg, "-") != 0) {
		/* the name's extension guides the server's format guess */
		slash = strrchr(file_arg, '/');
		a.req.dataset_name = slash != NULL ? slash + 1 : file_arg;
	}
	if (code_file != NULL) {
		code = analyze_own(&a, read_path("analyze", code_file, &code_len, NULL));
		if (memchr(code, '\0', code_len) != NULL)
			usage_fail("analyze", "%s: the code contains a NUL byte", code_file);
		a.req.code = (const char *)code;
	}
	a.req.columns = a.columns;
	a.req.n_columns = a.n_columns;
	a.req.group_by = a.group_by;
	a.req.n_group_by = a.n_group_by;
	a.req.aggregates = a.aggs;
	a.req.n_aggregates = a.n_aggs;
	a.req.null_values = a.nulls;
	a.req.n_null_values = a.n_nulls;

	client = client_open();
	rc = capibox_analyze(client, &a.req, &an, &st);
	client_close(client);
	sig = atomic_load(&sig_received);
	if (sig != 0) {
		rc = EXIT_SIGNAL_BASE + sig;
	} else if (rc != CAPIBOX_OK) {
		report_rpc_error(json, &st);
		rc = EXIT_RPC;
	} else {
		int e = 0;

		if (json)
			e = analysis_print_json(an);
		else if ((an->finished.reason == CAPIBOX_REASON_EXITED &&
			  an->finished.exit_code == 0) ||
			 code_file != NULL)
			/* code mode: what the code printed matters most when it failed */
			analysis_print(an, artifact_dir);
		if (artifact_dir != NULL)
			analysis_save_artifacts(an, artifact_dir);
		rc = analyze_exit_code(an, code_file != NULL);
		if (e == 0 && fflush(stdout) != 0)
			e = errno;
		if (e == EPIPE) {
			rc = EXIT_SIGNAL_BASE + SIGPIPE;
		} else if (e != 0 || ferror(stdout)) {
			fprintf(stderr, "capibox: writing output: %s\n",
				strerror(e != 0 ? e : EIO));
			rc = EXIT_IOERR;
		}
	}
	capibox_analysis_free(an);
	for (i = 0; i < a.n_owned; i++)
		free(a.owned[i]);
	free(a.owned);
	free(a.columns);
	free(a.group_by);
	free(a.aggs);
	free(a.nulls);
	return rc;
}

int main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{"target", required_argument, NULL, 'a'},
		{"wait-for-ready", no_argument, NULL, OPT_WAIT},
		CONN_LONGOPTS,
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *cmd;
	int c;

	opt_target = getenv("CAPIBOX_TARGET");
	if (opt_target == NULL || *opt_target == '\0')
		opt_target = DEFAULT_TARGET;
	opt_token = getenv("CAPIBOX_TOKEN");

	/* '+': stop at the command; its options are parsed by the command. */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:a:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'a': opt_target = optarg; break;
		case OPT_WAIT: opt_wait_for_ready = true; break;
		case 'h': fputs(usage_main, stdout); return 0;
		case 'V': printf("capibox %s\n", CAPIBOX_VERSION); return 0;
		default:
			if (!conn_option(c, optarg))
				bad_option(NULL, argv, c);
		}
	}
	if (optind >= argc)
		usage_fail(NULL, "no command (exec, analyze or health)");
	cmd = argv[optind];
	if (strcmp(cmd, "exec") == 0)
		return cmd_exec(argc - optind, argv + optind);
	if (strcmp(cmd, "health") == 0)
		return cmd_health(argc - optind, argv + optind);
	if (strcmp(cmd, "session") == 0)
		return cmd_session(argc - optind, argv + optind);
	if (strcmp(cmd, "analyze") == 0)
		return cmd_analyze(argc - optind, argv + optind);
	if (strcmp(cmd, "help") == 0) {
		fputs(usage_main, stdout);
		return 0;
	}
	usage_fail(NULL, "unknown command '%s'", cmd);
}
