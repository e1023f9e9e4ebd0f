/*
 * The configuration file and the command line (config_file.h).
 *
 * One table, opts[], names every option once: its INI section and key, its
 * flag, its type and bounds, and the struct config field it fills. The
 * getopt table, the INI handler, the checks and --check-config's output are
 * all made from it, so a key and its flag cannot drift apart.
 *
 * Order of application: built-in defaults, then the file named by
 * --config, then every other flag. The flags are read twice to get there:
 * a first pass only finds --config, --check-config, --help and --version
 * (and --log-format, so that errors come out in the chosen format); the
 * second applies the rest after the file.
 *
 * The file is strict: an unknown section or key, a key given twice or a
 * line that is not "[section]" or "key = value" is an error naming the
 * file and line. A typo in a security setting must not be ignored.
 */
#include "config_file.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "log.h"
#include "rpc/tls.h"
#include "runtime.h"

#define KIB (1024ULL)
#define MIB (1024ULL * 1024)

enum opt_type {
	T_STR,		/* const char *, never empty */
	T_PATH,		/* const char *, "" or absent = none (NULL) */
	T_BOOL,		/* bool; the bare flag means true, --flag=false works too */
	T_NUM,		/* unsigned field = value * scale, value in [min, max] */
	T_LOG_FORMAT,	/* "text" or "json" into log_json */
	T_METRICS_ON,	/* [metrics] enabled; its flag is --no-metrics */
	T_METRICS_ADDR, /* [metrics] listen */
	T_POOL,		/* [pool] LANG = N, one key per runtime; flag --pool LANG=N */
	T_ONOFF,	/* bool written on/off (true/false too); its flag needs the value */
};

struct opt {
	const char *section;
	const char *key;   /* NULL for T_POOL: the runtime names are the keys */
	const char *flag;  /* long flag without "--" */
	const char *alias; /* an older name of the flag, or NULL */
	enum opt_type type;
	size_t off;	   /* the field in struct config */
	size_t width;	   /* its size in bytes */
	uint64_t min, max; /* T_NUM and T_POOL: bounds in the key's unit */
	uint64_t scale;	   /* T_NUM: field = value * scale */
};

#define FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define NUM(s, k, fl, f, lo, hi, sc)                        \
	{                                                   \
		s, k, fl, NULL, T_NUM, FIELD(f), lo, hi, sc \
	}
#define STR(s, k, fl, f)                                 \
	{                                                \
		s, k, fl, NULL, T_STR, FIELD(f), 0, 0, 0 \
	}
#define PATH(s, k, fl, f)                                 \
	{                                                 \
		s, k, fl, NULL, T_PATH, FIELD(f), 0, 0, 0 \
	}
#define BOOL(s, k, fl, al, f)                           \
	{                                               \
		s, k, fl, al, T_BOOL, FIELD(f), 0, 0, 0 \
	}

/*
 * Flag names follow the key: [server], [limits], [auth] and [sandbox] keys
 * are flags as they are (max_queue_wait_ms: --max-queue-wait-ms); the
 * other sections prefix theirs ([tls] cert: --tls-cert, [default_limits]
 * memory_mb: --default-memory-mb, [max_limits] memory_mb: --max-memory-mb).
 * Bounds are those the flags always had; new ones keep a value inside what
 * the field and the kernel take.
 */
static const struct opt opts[] = {
	STR("server", "listen", "listen", listen),
	NUM("server", "threads", "threads", cq_threads, 1, 64, 1),
	NUM("server", "grace", "grace", grace_ms, 0, 3600, 1000),
	PATH("server", "ready_file", "ready-file", ready_file),
	STR("server", "state_dir", "state-dir", state_dir),

	NUM("limits", "max_live", "max-live", max_live, 1, 4096, 1),
	NUM("limits", "max_queue", "max-queue", max_queue, 0, 100000, 1),
	NUM("limits", "max_queue_wait_ms", "max-queue-wait-ms", max_queue_wait_ms, 1, 3600000, 1),
	NUM("limits", "max_queue_mb", "max-queue-mb", max_queue_bytes, 1, 1 << 20, MIB),
	NUM("limits", "tmpfs_mb", "tmpfs-mb", tmpfs_bytes, 1, 1 << 20, MIB),
	/* a pool grown by a burst shrinks back after this long without one */
	NUM("limits", "pool_idle_ms", "pool-idle-ms", pool_idle_ms, 1000, 86400000, 1),
	/* sessions: each open one holds a sandbox of its own */
	NUM("limits", "max_sessions", "max-sessions", max_sessions, 0, 4096, 1),
	NUM("limits", "session_idle_default_s", "session-idle-default-s", session_idle_default_s, 1,
	    604800, 1),
	NUM("limits", "session_idle_max_s", "session-idle-max-s", session_idle_max_s, 1, 604800, 1),
	/* request sizes: a gRPC message is at most INT_MAX bytes */
	NUM("limits", "max_code_bytes", "max-code-bytes", max_code_bytes, 1, INT_MAX, 1),
	NUM("limits", "max_stdin_bytes", "max-stdin-bytes", max_stdin_bytes, 0, INT_MAX, 1),
	NUM("limits", "max_files", "max-files", max_files, 0, 1000000, 1),
	NUM("limits", "max_files_bytes", "max-files-bytes", max_files_bytes, 0, INT_MAX, 1),
	NUM("limits", "max_env", "max-env", max_env, 0, 65536, 1),
	NUM("limits", "max_env_bytes", "max-env-bytes", max_env_bytes, 0, 64 * MIB, 1),
	NUM("limits", "max_dataset_bytes", "max-dataset-bytes", max_dataset_bytes, 0, INT_MAX, 1),
	NUM("limits", "max_message_bytes", "max-message-bytes", max_message_bytes, 64 * KIB,
	    INT_MAX, 1),

	/* what a request that leaves a limit at 0 gets ... */
	NUM("default_limits", "wall_time_ms", "default-wall-time-ms", defaults.wall_time_ms, 1,
	    86400000, 1),
	NUM("default_limits", "cpu_time_ms", "default-cpu-time-ms", defaults.cpu_time_ms, 1,
	    86400000, 1),
	NUM("default_limits", "memory_mb", "default-memory-mb", defaults.memory_bytes, 1, 1 << 22,
	    MIB),
	NUM("default_limits", "processes", "default-processes", defaults.max_processes, 1, 65536,
	    1),
	NUM("default_limits", "output_mb", "default-output-mb", defaults.max_output_bytes, 1,
	    1 << 24, MIB),
	NUM("default_limits", "file_mb", "default-file-mb", defaults.max_file_bytes, 1, 1 << 24,
	    MIB),
	/* ... and the most it may ask for */
	NUM("max_limits", "wall_time_ms", "max-wall-time-ms", maxima.wall_time_ms, 1, 86400000, 1),
	NUM("max_limits", "cpu_time_ms", "max-cpu-time-ms", maxima.cpu_time_ms, 1, 86400000, 1),
	NUM("max_limits", "memory_mb", "max-memory-mb", maxima.memory_bytes, 1, 1 << 22, MIB),
	NUM("max_limits", "processes", "max-processes", maxima.max_processes, 1, 65536, 1),
	NUM("max_limits", "output_mb", "max-output-mb", maxima.max_output_bytes, 1, 1 << 24, MIB),
	NUM("max_limits", "file_mb", "max-file-mb", maxima.max_file_bytes, 1, 1 << 24, MIB),

	/* before the LANG = N row: opt_find takes the first row that matches */
	{"pool", "zygote", "zygote", NULL, T_ONOFF, FIELD(zygote), 0, 0, 0},
	PATH("pool", "zygote_preload", "zygote-preload", zygote_preload),
	NUM("pool", "zygote_recycle", "zygote-recycle", zygote_recycle, 1, 1000000000, 1),
	{"pool", NULL, "pool", NULL, T_POOL, FIELD(pool_target), 0, 64, 1},

	PATH("auth", "keys", "keys", keys_file),
	BOOL("auth", "insecure_no_auth", "insecure-no-auth", "allow-remote", allow_remote),

	PATH("tls", "cert", "tls-cert", tls_cert_file),
	PATH("tls", "key", "tls-key", tls_key_file),
	PATH("tls", "client_ca", "tls-client-ca", tls_client_ca_file),

	{"metrics", "enabled", "no-metrics", NULL, T_METRICS_ON, 0, 0, 0, 0, 0},
	{"metrics", "listen", "metrics-listen", NULL, T_METRICS_ADDR, 0, 0, 0, 0, 0},

	{"log", "format", "log-format", NULL, T_LOG_FORMAT, FIELD(log_json), 0, 0, 0},

	PATH("audit", "file", "audit-log", audit_file),
	NUM("audit", "max_mb", "audit-max-mb", audit_max_bytes, 1, 1 << 20, MIB),
	NUM("audit", "keep", "audit-keep", audit_keep, 0, 100, 1),
	BOOL("audit", "code", "audit-code", NULL, audit_code),

	/* never below 65536: keep clear of real system and user ids */
	NUM("sandbox", "uid_base", "uid-base", uid_base, 65536, 4000000000ULL, 1),
	NUM("sandbox", "uid_count", "uid-count", uid_count, 1, 1 << 24, 1),
	STR("sandbox", "cgroup_root", "cgroup-root", cgroup_root),
	BOOL("sandbox", "allow_rlimit_only", "allow-rlimit-only", NULL, allow_rlimit_only),
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))
/* origins: one per option, then one per runtime of [pool] */
#define N_SLOTS (N_OPTS + CONFIG_MAX_RUNTIMES)

enum origin_kind { FROM_DEFAULT, FROM_FILE, FROM_FLAG };

struct origin {
	enum origin_kind kind;
	unsigned line;	  /* FROM_FILE */
	const char *flag; /* FROM_FLAG: the name used, without "--" */
};

struct config_origins {
	const char *file; /* --config FILE, or NULL */
	struct origin slot[N_SLOTS];
	/* [metrics]: enabled and listen are separate keys, one field in cfg */
	bool metrics_on;
	const char *metrics_addr;
	bool log_flag;	       /* --log-format given: the file's [log] format loses */
	char *copies[N_SLOTS]; /* the file's strings (keep) */
	size_t n_copies;
};

/* getopt codes of the options that are not in opts[] */
enum { O_CONFIG = 900, O_CHECK, O_TABLE = 1000 };

/*
 * A value that must outlive the parse: a flag's is argv's own; a file's is
 * copied, and the copy stays reachable from og (which is static) for the
 * life of the process. Each slot takes at most one value from the file.
 */
static const char *keep(struct config_origins *og, const char *s, bool from_flag)
{
	char *c;

	if (from_flag)
		return s;
	if (og->n_copies >= sizeof(og->copies) / sizeof(og->copies[0]))
		fatalx("config: too many values");
	c = strdup(s);
	if (c == NULL)
		fatalx("out of memory");
	og->copies[og->n_copies++] = c;
	return c;
}

static bool parse_bool(const char *s, bool *v)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*v = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*v = false;
			return true;
		}
	}
	return false;
}

/* A plain decimal number in [min, max]: no sign, no spaces, no suffix. */
static bool parse_num(const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
	unsigned long long n;
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || n < min || n > max)
		return false;
	*v = n;
	return true;
}

static void field_put(struct config *cfg, const struct opt *o, uint64_t v)
{
	char *p = (char *)cfg + o->off;

	switch (o->width) {
	case 1: *(bool *)p = v != 0; break;
	case 4: *(uint32_t *)p = (uint32_t)v; break;
	case 8: *(uint64_t *)p = v; break;
	default: fatalx("config: field of %zu bytes for %s", o->width, o->flag);
	}
}

static uint64_t field_get(const struct config *cfg, const struct opt *o)
{
	const char *p = (const char *)cfg + o->off;

	switch (o->width) {
	case 1: return *(const bool *)p;
	case 4: return *(const uint32_t *)p;
	case 8: return *(const uint64_t *)p;
	default: fatalx("config: field of %zu bytes for %s", o->width, o->flag);
	}
}

static const char **field_str(struct config *cfg, const struct opt *o)
{
	return (const char **)(void *)((char *)cfg + o->off);
}

/*
 * Sets option o (for T_POOL, the runtime key) to val. from_flag: val came
 * from the command line (a flag's own rules: --metrics-listen turns metrics
 * on). Returns the origin slot it filled, or -1 with why ("\"abc\" is not a
 * number between 1 and 4096"), which the caller prefixes with where.
 */
static int opt_set(struct config *cfg, struct config_origins *og, const struct opt *o,
		   const char *key, const char *val, bool from_flag, char *why, size_t len)
{
	size_t idx = (size_t)(o - opts);
	uint64_t n, nmax = 0;
	bool b;
	int rt;

	switch (o->type) {
	case T_STR:
		if (val[0] == '\0') {
			snprintf(why, len, "must not be empty");
			return -1;
		}
		*field_str(cfg, o) = keep(og, val, from_flag);
		break;
	case T_PATH: *field_str(cfg, o) = val[0] == '\0' ? NULL : keep(og, val, from_flag); break;
	case T_BOOL:
		if (!parse_bool(val, &b)) {
			snprintf(why, len, "\"%s\" is not true or false", val);
			return -1;
		}
		field_put(cfg, o, b);
		break;
	case T_ONOFF:
		if (!parse_bool(val, &b)) {
			snprintf(why, len, "\"%s\" is not on or off", val);
			return -1;
		}
		field_put(cfg, o, b);
		break;
	case T_NUM:
		if (!parse_num(val, o->min, o->max, &n)) {
			snprintf(why, len, "\"%s\" is not a number between %llu and %llu", val,
				 (unsigned long long)o->min, (unsigned long long)o->max);
			return -1;
		}
		field_put(cfg, o, n * o->scale);
		break;
	case T_LOG_FORMAT:
		if (strcmp(val, "json") != 0 && strcmp(val, "text") != 0) {
			snprintf(why, len, "\"%s\" is neither text nor json", val);
			return -1;
		}
		cfg->log_json = strcmp(val, "json") == 0;
		break;
	case T_METRICS_ON:
		if (!parse_bool(val, &b)) {
			snprintf(why, len, "\"%s\" is not true or false", val);
			return -1;
		}
		og->metrics_on = b;
		break;
	case T_METRICS_ADDR:
		if (val[0] == '\0') {
			snprintf(why, len, "must not be empty (enabled = false turns metrics off)");
			return -1;
		}
		og->metrics_addr = keep(og, val, from_flag);
		/* an address someone chose must be served, or capiboxd stops;
		 * the default one is best effort (see main.c) */
		cfg->metrics_required = true;
		if (from_flag)
			og->metrics_on = true;
		break;
	case T_POOL:
		rt = runtime_find(key);
		if (rt < 0 || rt >= CONFIG_MAX_RUNTIMES) {
			char names[128];

			runtime_names(names, sizeof(names));
			snprintf(why, len, "unknown language \"%s\" (known: %s)", key, names);
			return -1;
		}
		{
			/* N, or N:MAX (the most a burst grows it to) */
			char num[32];
			const char *colon = strchr(val, ':');
			size_t nl = colon ? (size_t)(colon - val) : strlen(val);
			bool ok = nl < sizeof(num);

			if (ok) {
				memcpy(num, val, nl);
				num[nl] = '\0';
				ok = parse_num(num, o->min, o->max, &n) &&
				     (!colon || parse_num(colon + 1, o->min, o->max, &nmax));
			}
			if (!ok) {
				snprintf(why, len,
					 "\"%s\" is not N or N:MAX (numbers between %llu and %llu)",
					 val, (unsigned long long)o->min,
					 (unsigned long long)o->max);
				return -1;
			}
			if (!colon)
				nmax = n > cfg->pool_max[rt] ? n : cfg->pool_max[rt];
			if (nmax < n) {
				snprintf(why, len, "\"%s\": the maximum is below the target", val);
				return -1;
			}
		}
		if (runtime_at((size_t)rt)->runner == NULL && n != 0) {
			snprintf(why, len, "%s has no warm runner (it always runs cold): only 0",
				 key);
			return -1;
		}
		cfg->pool_target[rt] = (unsigned)n;
		cfg->pool_max[rt] = (unsigned)nmax;
		return (int)(N_OPTS + (size_t)rt);
	}
	return (int)idx;
}

/* --- the file ------------------------------------------------------------ */

struct file_ctx {
	struct config *cfg;
	struct config_origins *og;
	const char *path;
	FILE *f;
	unsigned line; /* of the line inih is working on */
	bool failed;
	char *err;
	size_t errlen;
};

static bool section_known(const char *s)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (strcmp(opts[i].section, s) == 0)
			return true;
	return false;
}

static void section_list(char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < N_OPTS; i++) {
		if (i > 0 && strcmp(opts[i].section, opts[i - 1].section) == 0)
			continue;
		int n = snprintf(buf + o, len - o, "%s[%s]", o ? ", " : "", opts[i].section);
		if (n < 0 || (size_t)n >= len - o)
			return;
		o += (size_t)n;
	}
}

/* Edit distance of a and b, capped: enough to suggest a key for a typo. */
static unsigned distance(const char *a, const char *b)
{
	unsigned row[64], la = (unsigned)strlen(a), lb = (unsigned)strlen(b);

	if (la >= 64 || lb >= 64)
		return 99;
	for (unsigned j = 0; j <= lb; j++)
		row[j] = j;
	for (unsigned i = 1; i <= la; i++) {
		unsigned diag = row[0], tmp;

		row[0] = i;
		for (unsigned j = 1; j <= lb; j++) {
			unsigned best = diag + (a[i - 1] != b[j - 1]);

			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			tmp = row[j];
			row[j] = best;
			diag = tmp;
		}
	}
	return row[lb];
}

static void file_fail(struct file_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void file_fail(struct file_ctx *c, const char *fmt, ...)
{
	int n;
	va_list ap;

	if (c->failed)
		return;
	c->failed = true;
	n = snprintf(c->err, c->errlen, "%s:%u: ", c->path, c->line);
	if (n < 0 || (size_t)n >= c->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/*
 * inih's line source. Counting lines here gives the handler its line
 * number (Debian's inih is built without INI_HANDLER_LINENO). Leading
 * blanks are dropped so that an indented line is an ordinary line, never
 * the continuation of the previous value (inih's multi-line values would
 * otherwise call the handler for the same key twice). Section headers are
 * checked here, because inih tells the handler nothing about a section
 * without keys.
 */
static char *file_read_line(char *buf, int size, void *stream)
{
	struct file_ctx *c = stream;
	size_t len, skip = 0;

	if (c->failed || fgets(buf, size, c->f) == NULL)
		return NULL;
	c->line++;
	len = strlen(buf);
	if (len + 1 == (size_t)size && buf[len - 1] != '\n' && !feof(c->f)) {
		file_fail(c, "line longer than %d characters", size - 3);
		return NULL;
	}
	while (buf[skip] == ' ' || buf[skip] == '\t')
		skip++;
	memmove(buf, buf + skip, len - skip + 1);
	if (buf[0] == '[') {
		char *end = strchr(buf, ']');
		char names[256];

		if (end == NULL)
			return buf; /* inih reports it */
		*end = '\0';
		if (!section_known(buf + 1)) {
			section_list(names, sizeof(names));
			file_fail(c, "unknown section [%s] (sections: %s)", buf + 1, names);
			return NULL;
		}
		*end = ']';
	}
	return buf;
}

static const struct opt *opt_find(const char *section, const char *key)
{
	for (size_t i = 0; i < N_OPTS; i++) {
		if (strcmp(opts[i].section, section) != 0)
			continue;
		if (opts[i].type == T_POOL || strcmp(opts[i].key, key) == 0)
			return &opts[i];
	}
	return NULL;
}

static int file_handler(void *user, const char *section, const char *key, const char *val)
{
	struct file_ctx *c = user;
	const struct opt *o;
	char why[256];
	int slot;

	if (c->failed)
		return 0;
	if (section[0] == '\0') {
		file_fail(c, "%s: a key before any [section]", key);
		return 0;
	}
	o = opt_find(section, key);
	if (o == NULL) {
		const char *best = NULL;
		unsigned bestd = 3;

		for (size_t i = 0; i < N_OPTS; i++)
			if (strcmp(opts[i].section, section) == 0 && opts[i].key &&
			    distance(key, opts[i].key) < bestd) {
				bestd = distance(key, opts[i].key);
				best = opts[i].key;
			}
		file_fail(c, "[%s] %s: unknown key%s%s%s", section, key,
			  best ? " (did you mean " : "", best ? best : "", best ? "?)" : "");
		return 0;
	}
	slot = opt_set(c->cfg, c->og, o, key, val, false, why, sizeof(why));
	if (slot < 0) {
		file_fail(c, "[%s] %s: %s", section, key, why);
		return 0;
	}
	if (c->og->slot[slot].kind == FROM_FILE) {
		file_fail(c, "[%s] %s: given twice (first on line %u)", section, key,
			  c->og->slot[slot].line);
		return 0;
	}
	c->og->slot[slot].kind = FROM_FILE;
	c->og->slot[slot].line = c->line;
	return 1;
}

static int file_load(struct config *cfg, struct config_origins *og, const char *path, char *err,
		     size_t errlen)
{
	struct file_ctx c = {.cfg = cfg, .og = og, .path = path, .err = err, .errlen = errlen};
	struct stat st;
	int rc;

	c.f = fopen(path, "re");
	if (c.f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(c.f), &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		fclose(c.f);
		return -1;
	}
	/* Whoever may write the file may turn authentication off: the same
	 * rule as for the keys file (auth.c). */
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "%s: writable by group or others (mode %04o); chmod go-w it",
			 path, (unsigned)(st.st_mode & 07777));
		fclose(c.f);
		return -1;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		snprintf(err, errlen, "%s: owned by uid %u, neither root nor this user", path,
			 (unsigned)st.st_uid);
		fclose(c.f);
		return -1;
	}
	rc = ini_parse_stream(file_read_line, &c, file_handler, &c);
	if (!c.failed && ferror(c.f)) {
		snprintf(err, errlen, "%s: read error", path);
		c.failed = true;
	}
	fclose(c.f);
	if (c.failed)
		return -1;
	if (rc > 0) {
		snprintf(err, errlen, "%s:%d: not a \"[section]\" or \"key = value\" line", path,
			 rc);
		return -1;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot parse (inih error %d)", path, rc);
		return -1;
	}
	return 0;
}

/* --- the command line ------------------------------------------------------ */

/* getopt's table from opts[]: each option under its flag and its alias. */
static struct option *longopts_build(void)
{
	static struct option lo[2 * N_OPTS + 5];
	size_t n = 0;

	for (size_t i = 0; i < N_OPTS; i++) {
		int has = opts[i].type == T_BOOL       ? optional_argument :
			  opts[i].type == T_METRICS_ON ? no_argument :
							 required_argument;

		lo[n++] = (struct option){opts[i].flag, has, NULL, O_TABLE + (int)i};
		if (opts[i].alias)
			lo[n++] = (struct option){opts[i].alias, has, NULL, O_TABLE + (int)i};
	}
	lo[n++] = (struct option){"config", required_argument, NULL, O_CONFIG};
	lo[n++] = (struct option){"check-config", no_argument, NULL, O_CHECK};
	lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
	lo[n++] = (struct option){"version", no_argument, NULL, 'V'};
	lo[n] = (struct option){NULL, 0, NULL, 0};
	return lo;
}

static const struct opt *opt_by_flag(const char *flag)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (strcmp(opts[i].flag, flag) == 0)
			return &opts[i];
	return NULL;
}

/* One flag of the second pass; -1 with err. */
static int flag_apply(struct config *cfg, struct config_origins *og, const struct opt *o,
		      const char *name, const char *arg, char *err, size_t errlen)
{
	char why[256], lang[32];
	const char *key = NULL, *val = arg;
	int slot;

	if (o->type == T_BOOL && arg == NULL)
		val = "true";
	if (o->type == T_METRICS_ON)
		val = "false"; /* --no-metrics */
	if (o->type == T_POOL) {
		const char *eq = strchr(arg, '=');

		if (eq == NULL || (size_t)(eq - arg) >= sizeof(lang)) {
			snprintf(err, errlen, "--%s: \"%s\" is not LANG=N", name, arg);
			return -1;
		}
		memcpy(lang, arg, (size_t)(eq - arg));
		lang[eq - arg] = '\0';
		key = lang;
		val = eq + 1;
	}
	slot = opt_set(cfg, og, o, key, val, true, why, sizeof(why));
	if (slot < 0) {
		snprintf(err, errlen, "--%s: %s", name, why);
		return -1;
	}
	og->slot[slot].kind = FROM_FLAG;
	og->slot[slot].flag = name;
	/* --metrics-listen also turns metrics on (the flag always did) */
	if (o->type == T_METRICS_ADDR) {
		const struct opt *on = opt_by_flag("no-metrics");
		size_t s = (size_t)(on - opts);

		og->slot[s].kind = FROM_FLAG;
		og->slot[s].flag = name;
	}
	return 0;
}

/* The flag name as typed (--allow-remote or --insecure-no-auth). */
static const char *flag_name(const struct option *lo, int idx, const struct opt *o)
{
	return idx >= 0 && lo[idx].name ? lo[idx].name : o->flag;
}

int config_from_args(struct config *cfg, int argc, char **argv, enum config_action *action,
		     struct config_origins **origins, char *err, size_t errlen)
{
	struct option *lo = longopts_build();
	/* static: one configuration per process, and what it holds stays
	 * reachable (leak checkers) for as long as the process runs */
	static struct config_origins origins_store;
	struct config_origins *og = &origins_store;
	const char *file = NULL;
	int c, idx;

	memset(og, 0, sizeof(*og));
	*origins = og;
	*action = CONFIG_RUN;
	og->metrics_on = cfg->metrics_listen != NULL;
	og->metrics_addr = cfg->metrics_listen ? cfg->metrics_listen : "127.0.0.1:9464";

	/* pass 1: what to do, which file, and the log format */
	optind = 0;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "l:hV", lo, &idx)) != -1) {
		switch (c) {
		case O_CONFIG: file = optarg; break;
		case O_CHECK: *action = CONFIG_CHECK; break;
		case 'h': *action = CONFIG_HELP; return 0;
		case 'V': *action = CONFIG_VERSION; return 0;
		case 'l': break;
		case '?': *action = CONFIG_USAGE; return 0;
		default:
			/* at once: errors from here on come out as JSON too */
			if (opts[c - O_TABLE].type == T_LOG_FORMAT &&
			    (strcmp(optarg, "json") == 0 || strcmp(optarg, "text") == 0)) {
				og->log_flag = true;
				log_set_json(strcmp(optarg, "json") == 0);
			}
			break;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "capiboxd: unexpected argument \"%s\"\n", argv[optind]);
		*action = CONFIG_USAGE;
		return 0;
	}

	if (file) {
		og->file = file;
		if (file_load(cfg, og, og->file, err, errlen) < 0) {
			if (!og->log_flag)
				log_set_json(cfg->log_json);
			return -1;
		}
		if (!og->log_flag)
			log_set_json(cfg->log_json);
	}

	/* pass 2: the flags, over the file */
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "l:hV", lo, &idx)) != -1) {
		const struct opt *o;

		if (c == O_CONFIG || c == O_CHECK || c == 'h' || c == 'V' || c == '?')
			continue;
		if (c == 'l') {
			o = opt_by_flag("listen");
			idx = -1;
		} else {
			o = &opts[c - O_TABLE];
		}
		if (flag_apply(cfg, og, o, flag_name(lo, idx, o), optarg, err, errlen) < 0)
			return -1;
		idx = -1;
	}
	cfg->metrics_listen = og->metrics_on ? og->metrics_addr : NULL;
	if (!og->metrics_on)
		cfg->metrics_required = false;
	log_set_json(cfg->log_json);
	return 0;
}

/* --- checks ---------------------------------------------------------------- */

bool config_listen_is_loopback(const char *addr)
{
	if (strncmp(addr, "unix:", 5) == 0 || strncmp(addr, "unix-abstract:", 14) == 0)
		return true;
	if (strncmp(addr, "127.", 4) == 0 || strncmp(addr, "localhost:", 10) == 0 ||
	    strncmp(addr, "[::1]:", 6) == 0 || strncmp(addr, "ipv4:127.", 9) == 0)
		return true;
	return false;
}

int config_check(const struct config *cfg, void (*warn)(const char *msg), char *err, size_t errlen)
{
	const struct exec_limits *d = &cfg->defaults, *m = &cfg->maxima;
	const struct {
		const char *key;
		uint64_t def, max, unit;
	} lim[] = {
		{"wall_time_ms", d->wall_time_ms, m->wall_time_ms, 1},
		{"cpu_time_ms", d->cpu_time_ms, m->cpu_time_ms, 1},
		{"memory_mb", d->memory_bytes, m->memory_bytes, MIB},
		{"processes", d->max_processes, m->max_processes, 1},
		{"output_mb", d->max_output_bytes, m->max_output_bytes, MIB},
		{"file_mb", d->max_file_bytes, m->max_file_bytes, MIB},
	};
	bool loopback = config_listen_is_loopback(cfg->listen);
	uint64_t request;
	char msg[512];

	if ((cfg->tls_cert_file == NULL) != (cfg->tls_key_file == NULL)) {
		snprintf(err, errlen, "[tls] cert and key (--tls-cert and --tls-key) go together");
		return -1;
	}
	if (cfg->tls_client_ca_file && cfg->tls_cert_file == NULL) {
		snprintf(err, errlen,
			 "[tls] client_ca (--tls-client-ca) needs cert and key (--tls-cert and "
			 "--tls-key): mTLS is TLS first");
		return -1;
	}
	if (cfg->max_live > cfg->uid_count) {
		snprintf(err, errlen,
			 "[limits] max_live %u exceeds the sandbox uid range ([sandbox] uid_count "
			 "%u)",
			 cfg->max_live, cfg->uid_count);
		return -1;
	}
	if (cfg->session_idle_default_s > cfg->session_idle_max_s) {
		snprintf(err, errlen,
			 "[limits] session_idle_default_s %u exceeds session_idle_max_s %u",
			 cfg->session_idle_default_s, cfg->session_idle_max_s);
		return -1;
	}
	/* uid 4294967295 is (uid_t)-1, "no uid" to the kernel */
	if ((uint64_t)cfg->uid_base + cfg->uid_count > UINT32_MAX) {
		snprintf(err, errlen,
			 "[sandbox] uid_base %u + uid_count %u goes past the last uid (%u)",
			 cfg->uid_base, cfg->uid_count, UINT32_MAX - 1);
		return -1;
	}
	for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++)
		if (lim[i].def > lim[i].max) {
			snprintf(err, errlen,
				 "[default_limits] %s %llu exceeds [max_limits] %s %llu: a request "
				 "without limits would be refused",
				 lim[i].key, (unsigned long long)(lim[i].def / lim[i].unit),
				 lim[i].key, (unsigned long long)(lim[i].max / lim[i].unit));
			return -1;
		}
	/* gRPC refuses a bigger message before capiboxd sees it, with an
	 * error that names no limit: keep every valid request under it */
	request = (uint64_t)cfg->max_code_bytes + cfg->max_stdin_bytes + cfg->max_files_bytes +
		  cfg->max_env_bytes;
	if (cfg->max_dataset_bytes > cfg->max_message_bytes) {
		snprintf(err, errlen,
			 "[limits] max_message_bytes %zu is smaller than max_dataset_bytes %zu",
			 cfg->max_message_bytes, cfg->max_dataset_bytes);
		return -1;
	}
	if (request > cfg->max_message_bytes) {
		snprintf(err, errlen,
			 "[limits] max_message_bytes %zu is smaller than the largest valid request "
			 "(max_code_bytes + max_stdin_bytes + max_files_bytes + max_env_bytes = "
			 "%llu)",
			 cfg->max_message_bytes, (unsigned long long)request);
		return -1;
	}

	/* A code-execution port reachable without a key is remote code
	 * execution for anyone who finds it: only on an explicit request. */
	if (!loopback && cfg->keys_file == NULL && cfg->tls_client_ca_file == NULL) {
		if (!cfg->allow_remote) {
			snprintf(
				err, errlen,
				"refusing to listen on %s: it is not a loopback address and no "
				"keys file ([auth] keys, --keys) or client CA ([tls] client_ca, "
				"--tls-client-ca) is configured; give one, or set [auth] "
				"insecure_no_auth (--insecure-no-auth, old name --allow-remote) to "
				"serve unauthenticated anyway",
				cfg->listen);
			return -1;
		}
		snprintf(msg, sizeof(msg),
			 "WARNING: listening on %s, a non-loopback address: requests are NOT "
			 "authenticated, anyone who reaches this port can run code here",
			 cfg->listen);
		if (warn)
			warn(msg);
	}
	if (!loopback && cfg->keys_file && cfg->tls_cert_file == NULL) {
		snprintf(msg, sizeof(msg),
			 "WARNING: listening on %s without TLS: API keys cross the network in "
			 "clear text ([tls] cert and key, --tls-cert and --tls-key)",
			 cfg->listen);
		if (warn)
			warn(msg);
	}

	/* the files, loaded the way the server loads them (no secret is in
	 * them or in these messages: the keys file holds hashes) */
	if (cfg->keys_file) {
		struct auth *a = auth_new();
		char why[512];
		int n = auth_load(a, cfg->keys_file, why, sizeof(why));

		auth_free(a);
		if (n < 0) {
			snprintf(err, errlen, "[auth] keys: %s", why);
			return -1;
		}
	}
	if (cfg->tls_cert_file) {
		char why[512];
		struct rpc_tls *t = tls_new(cfg, why, sizeof(why));

		if (t == NULL) {
			snprintf(err, errlen, "[tls]: %s", why);
			return -1;
		}
		tls_free(t);
	}
	return 0;
}

/* --- printing -------------------------------------------------------------- */

static void origin_str(const struct config_origins *og, size_t slot, char *buf, size_t len)
{
	const struct origin *o = &og->slot[slot];

	switch (o->kind) {
	case FROM_DEFAULT: snprintf(buf, len, "default"); break;
	case FROM_FILE: snprintf(buf, len, "%s:%u", og->file, o->line); break;
	case FROM_FLAG: snprintf(buf, len, "flag --%s", o->flag); break;
	}
}

/* "key = value", padded, then "; origin"; commented out when there is no value. */
static void print_line(FILE *f, const char *key, const char *val, const char *origin)
{
	char kv[1024];
	int n;

	if (val == NULL)
		n = snprintf(kv, sizeof(kv), ";%s =", key);
	else
		n = snprintf(kv, sizeof(kv), "%s = %s", key, val);
	fprintf(f, "%s%*s ; %s%s\n", kv, n < 36 ? 36 - n : 0, "", origin,
		val == NULL ? " (none)" : "");
}

void config_print(FILE *f, const struct config *cfg, const struct config_origins *og)
{
	char val[64], origin[PATH_MAX + 32];

	fprintf(f,
		"# capiboxd %s: effective configuration (capiboxd --check-config)\n"
		"# precedence: built-in defaults < --config FILE < flags; after each key, where\n"
		"# its value came from. A key commented out has no value.\n\n",
		CAPIBOX_VERSION);
	for (size_t i = 0; i < N_OPTS; i++) {
		const struct opt *o = &opts[i];
		const char *v = val;

		if (i == 0 || strcmp(o->section, opts[i - 1].section) != 0)
			fprintf(f, "%s[%s]\n", i ? "\n" : "", o->section);
		origin_str(og, i, origin, sizeof(origin));
		switch (o->type) {
		case T_STR:
		case T_PATH:
			v = *(const char *const *)(const void *)((const char *)cfg + o->off);
			break;
		case T_BOOL: v = field_get(cfg, o) ? "true" : "false"; break;
		case T_ONOFF: v = field_get(cfg, o) ? "on" : "off"; break;
		case T_NUM:
			snprintf(val, sizeof(val), "%llu",
				 (unsigned long long)(field_get(cfg, o) / o->scale));
			break;
		case T_LOG_FORMAT: v = cfg->log_json ? "json" : "text"; break;
		case T_METRICS_ON: v = og->metrics_on ? "true" : "false"; break;
		case T_METRICS_ADDR: v = og->metrics_addr; break;
		case T_POOL:
			/* only runtimes that can have a pool; "bash = 0" is still accepted */
			for (size_t rt = 0; rt < runtime_count() && rt < CONFIG_MAX_RUNTIMES;
			     rt++) {
				if (runtime_at(rt)->runner == NULL)
					continue;
				origin_str(og, N_OPTS + rt, origin, sizeof(origin));
				snprintf(val, sizeof(val), "%u:%u", cfg->pool_target[rt],
					 cfg->pool_max[rt]);
				print_line(f, runtime_at(rt)->name, val, origin);
			}
			continue;
		}
		print_line(f, o->key, v, origin);
	}
}
