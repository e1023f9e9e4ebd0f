/*
 * The audit log; see audit.h.
 *
 * Theory of operation: audit_record() builds the whole line (json-c) on the
 * caller's thread and appends it to a queue under a mutex; one writer
 * thread takes the queue and writes each line with write(2) to a file
 * opened O_APPEND. Being the only writer, it owns the descriptor: rotation
 * (rename file -> file.1 -> ... -> file.N, then a new file), reopening
 * (SIGHUP, a marker in the queue so it happens after the records queued
 * before it) and error handling need no further locking, and lines cannot
 * interleave. The queue is bounded in bytes: a disk that stops taking data
 * costs records (dropped, counted, logged once a minute), never a stalled
 * execution or memory without bound.
 */
#include "audit.h"
#include "utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "log.h"
#include "metrics.h"

/* Lines waiting for the writer. A record is at most a few MiB (the code,
 * escaped); this holds several of the largest and thousands of the usual. */
#define AUDIT_QUEUE_MAX_BYTES (32u << 20)
/* A failing disk or a full queue is logged at most this often. */
#define AUDIT_WARN_INTERVAL_S 60

enum item_kind {
	ITEM_LINE,
	ITEM_REOPEN,
};

struct item {
	struct item *next;
	enum item_kind kind;
	size_t len;
	char data[]; /* the line with its '\n' (ITEM_LINE) */
};

/* A warning that repeats at most once per interval, with what it held back. */
struct ratelimit {
	struct timespec last; /* CLOCK_MONOTONIC; 0: never warned */
	unsigned long held;   /* occurrences not logged since */
};

struct audit {
	bool enabled;
	char *path;
	uint64_t max_bytes; /* 0: never rotate */
	unsigned keep;
	bool with_code;

	pthread_mutex_t lock; /* guards everything down to `dropped` */
	pthread_cond_t wake;  /* the writer: work or stop */
	pthread_cond_t done;  /* audit_flush: progress */
	struct item *head, *tail;
	size_t queued_bytes;
	uint64_t queued_seq; /* items ever queued */
	uint64_t done_seq;   /* items the writer has finished */
	bool stopping;
	struct ratelimit dropped;

	/* the writer thread's own */
	pthread_t thread;
	bool thread_started;
	int fd; /* -1: no file open (a failed rotate or reopen); retried per record */
	struct ratelimit write_err;
};

static const char *const reason_names[] = {
	"REASON_UNSPECIFIED",  "REASON_EXITED",	     "REASON_SIGNALED",
	"REASON_WALL_TIMEOUT", "REASON_CPU_TIMEOUT", "REASON_MEMORY_LIMIT",
	"REASON_OUTPUT_LIMIT", "REASON_CANCELLED",   "REASON_SANDBOX_ERROR",
};

const char *audit_reason_name(enum exec_reason r)
{
	if ((unsigned)r >= sizeof(reason_names) / sizeof(reason_names[0]))
		return reason_names[0];
	return reason_names[r];
}

/*
 * True when the warning should be logged now; *held then says how many
 * were suppressed before it (and is reset). Called under a->lock or by
 * the writer only, never both for one ratelimit.
 */
static bool ratelimit_pass(struct ratelimit *rl, unsigned long *held)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (rl->last.tv_sec != 0 && now.tv_sec - rl->last.tv_sec < AUDIT_WARN_INTERVAL_S) {
		rl->held++;
		return false;
	}
	rl->last = now;
	/* a clock that starts at 0 must not look like "never" */
	if (rl->last.tv_sec == 0)
		rl->last.tv_sec = 1;
	*held = rl->held;
	rl->held = 0;
	return true;
}

/* ------------------------------------------------------------------ */
/* the file (writer thread, and audit_open before it starts)            */

/* path.N into buf; the length was checked at open. */
static void rotated_name(const struct audit *a, unsigned n, char *buf, size_t len)
{
	snprintf(buf, len, "%s.%u", a->path, n);
}

static int file_open(struct audit *a, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	/* 0600 at creation: records may hold code, key ids and peers. The
	 * umask can only take bits away. */
	do
		fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", a->path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "fstat %s: %s", a->path, strerror(errno));
		close(fd);
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s is a directory", a->path);
		close(fd);
		return -1;
	}
	/* An operator's (or logrotate's) file: warn, do not change it. */
	if (S_ISREG(st.st_mode) && (st.st_mode & 077))
		log_warnx("audit: %s has mode %03o: others may read it, and records hold peers, "
			  "key ids and (with code on) code; 0600 is advised",
			  a->path, (unsigned)(st.st_mode & 0777));
	a->fd = fd;
	return 0;
}

static void writer_warn(struct audit *a, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A file problem, logged once a minute: the server never stops for it. */
static void writer_warn(struct audit *a, int errnum, const char *fmt, ...)
{
	unsigned long held;
	char msg[512];
	va_list ap;

	if (!ratelimit_pass(&a->write_err, &held))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (held > 0) {
		size_t n = strlen(msg);

		snprintf(msg + n, sizeof(msg) - n,
			 " (and %lu problems not logged in the last minute)", held);
	}
	if (errnum) {
		errno = errnum;
		log_warn("audit: %s", msg);
	} else {
		log_warnx("audit: %s", msg);
	}
}

static void file_close(struct audit *a)
{
	if (a->fd >= 0 && close(a->fd) < 0 && errno != EINTR)
		writer_warn(a, errno, "close %s", a->path);
	a->fd = -1;
}

static void writer_open(struct audit *a)
{
	char err[PATH_MAX + 128];

	if (file_open(a, err, sizeof(err)) < 0)
		writer_warn(a, 0, "%s; records are lost until it opens", err);
}

/*
 * file.N-1 -> file.N, ..., file -> file.1, then a new file. rename()
 * replaces the oldest in one step. keep 0: the full file is removed. A
 * rename that fails leaves that file where it is; writing goes on.
 */
static void writer_rotate(struct audit *a)
{
	char from[PATH_MAX], to[PATH_MAX];

	file_close(a);
	if (a->keep == 0) {
		if (unlink(a->path) < 0 && errno != ENOENT)
			writer_warn(a, errno, "rotate: unlink %s", a->path);
	} else {
		for (unsigned i = a->keep - 1; i >= 1; i--) {
			rotated_name(a, i, from, sizeof(from));
			rotated_name(a, i + 1, to, sizeof(to));
			if (rename(from, to) < 0 && errno != ENOENT)
				writer_warn(a, errno, "rotate: rename %s to %s", from, to);
		}
		rotated_name(a, 1, to, sizeof(to));
		if (rename(a->path, to) < 0 && errno != ENOENT)
			writer_warn(a, errno, "rotate: rename %s to %s", a->path, to);
	}
	writer_open(a);
}

/* One line, whole or not at all (as far as the file system lets us). */
static void writer_write(struct audit *a, const char *p, size_t len)
{
	struct stat st;
	size_t off = 0;
	bool regular;

	if (a->fd < 0)
		writer_open(a);
	if (a->fd < 0)
		return;
	/* The file's real size, not a count of ours: logrotate's copytruncate
	 * or an operator may have shrunk it. */
	if (fstat(a->fd, &st) < 0) {
		writer_warn(a, errno, "fstat %s", a->path);
		return;
	}
	regular = S_ISREG(st.st_mode);
	if (regular && a->max_bytes > 0 && st.st_size > 0 &&
	    (uint64_t)st.st_size + len > a->max_bytes) {
		writer_rotate(a);
		if (a->fd < 0)
			return;
		if (fstat(a->fd, &st) < 0) {
			writer_warn(a, errno, "fstat %s", a->path);
			return;
		}
	}
	while (off < len) {
		ssize_t n = write(a->fd, p + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int saved = n < 0 ? errno : ENOSPC;

			/* A partial line would glue itself to the next one:
			 * cut it off again (we are the file's only writer). */
			if (off > 0 && regular && ftruncate(a->fd, st.st_size) < 0)
				writer_warn(a, errno, "ftruncate %s after a short write", a->path);
			writer_warn(a, saved, "write %s: a record is lost", a->path);
			return;
		}
		off += (size_t)n;
	}
}

static void *writer_main(void *arg)
{
	struct audit *a = arg;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		struct item *list;
		uint64_t n = 0;

		while (a->head == NULL && !a->stopping)
			pthread_cond_wait(&a->wake, &a->lock);
		if (a->head == NULL)
			break; /* stopping, and all written */
		list = a->head;
		a->head = a->tail = NULL;
		a->queued_bytes = 0;
		pthread_mutex_unlock(&a->lock);

		while (list != NULL) {
			struct item *it = list;

			list = it->next;
			if (it->kind == ITEM_REOPEN) {
				file_close(a);
				writer_open(a);
			} else {
				writer_write(a, it->data, it->len);
			}
			free(it);
			n++;
		}

		pthread_mutex_lock(&a->lock);
		a->done_seq += n;
		pthread_cond_broadcast(&a->done);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* the queue                                                            */

/* Appends it, or drops it when the queue is full; takes ownership. */
static void queue_push(struct audit *a, struct item *it)
{
	unsigned long held;
	bool warn = false;

	pthread_mutex_lock(&a->lock);
	/* An empty queue takes any record, so a huge one is not always lost. */
	if (it->kind == ITEM_LINE && a->head != NULL &&
	    a->queued_bytes + it->len > AUDIT_QUEUE_MAX_BYTES) {
		warn = ratelimit_pass(&a->dropped, &held);
		pthread_mutex_unlock(&a->lock);
		free(it);
		if (warn)
			log_warnx("audit: the writer is behind (%u MiB queued): a record was "
				  "dropped (and %lu more in the last minute); is %s's disk slow?",
				  AUDIT_QUEUE_MAX_BYTES >> 20, held, a->path);
		return;
	}
	it->next = NULL;
	if (a->tail)
		a->tail->next = it;
	else
		a->head = it;
	a->tail = it;
	if (it->kind == ITEM_LINE)
		a->queued_bytes += it->len;
	a->queued_seq++;
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->lock);
}

/* ------------------------------------------------------------------ */
/* formatting (caller's thread)                                         */

/*
 * A JSON string of s[0..len): json-c copies bytes as they are, so anything
 * that is not UTF-8 becomes U+FFFD first, or the line would not be JSON to
 * a strict reader. NULL when out of memory.
 */
static json_object *json_utf8(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	json_object *o;
	size_t i = 0, o_len = 0;
	char *clean;

	while (i < len) {
		size_t k = utf8_seq_len(p + i, len - i);

		if (k == 0)
			break;
		i += k;
	}
	/* json-c takes an int length; U+FFFD is 3 bytes for an invalid one */
	if (len > (size_t)(INT_MAX / 3))
		return NULL;
	if (i == len)
		return json_object_new_string_len(s, (int)len);
	clean = malloc(len * 3 + 1);
	if (clean == NULL)
		return NULL;
	for (i = 0; i < len;) {
		size_t k = utf8_seq_len(p + i, len - i);

		if (k == 0) {
			memcpy(clean + o_len, "\xef\xbf\xbd", 3);
			o_len += 3;
			i++;
		} else {
			memcpy(clean + o_len, p + i, k);
			o_len += k;
			i += k;
		}
	}
	o = json_object_new_string_len(clean, (int)o_len);
	free(clean);
	return o;
}

static void put_str(json_object *o, const char *key, const char *v)
{
	if (v != NULL && v[0] != '\0')
		json_object_object_add(o, key, json_utf8(v, strlen(v)));
}

static void put_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

static void put_int(json_object *o, const char *key, int64_t v)
{
	json_object_object_add(o, key, json_object_new_int64(v));
}

static void put_bool(json_object *o, const char *key, bool v)
{
	json_object_object_add(o, key, json_object_new_boolean(v));
}

/* "2026-11-30T03:10:00.123Z" */
static void iso_time(uint64_t ms, char *buf, size_t len)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&s, &tm);
	snprintf(buf, len, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
		 (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
		 (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
		 (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u, (unsigned)(ms % 1000));
}

_Static_assert(AUDIT_SHA256_HEX == 2 * SHA256_DIGEST_LENGTH + 1, "hex digest size");

/* "" if OpenSSL fails (never expected). */
void audit_hash_code(const char *code, size_t len, char hex[AUDIT_SHA256_HEX])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	hex[0] = '\0';
	if (EVP_Digest(code ? code : "", code ? len : 0, md, &n, EVP_sha256(), NULL) != 1 ||
	    n != SHA256_DIGEST_LENGTH)
		return;
	for (unsigned i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* The record's JSON object; NULL when out of memory. */
static json_object *entry_json(const struct audit *a, const struct audit_entry *e)
{
	char when[40], hash[AUDIT_SHA256_HEX];
	json_object *o = json_object_new_object(), *lim;
	uint64_t ms = e->time_ms;

	if (o == NULL)
		return NULL;
	if (ms == 0) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	}
	iso_time(ms, when, sizeof(when));
	put_str(o, "time", when);
	put_u64(o, "time_ms", ms);
	put_str(o, "rpc", e->rpc);
	put_str(o, "request_id", e->request_id);
	put_str(o, "key", e->key_id);
	put_str(o, "peer", e->peer);
	put_str(o, "client_cert", e->client_cert);
	put_str(o, "language", e->language);
	if (e->code_sha256 != NULL) {
		put_str(o, "code_sha256", e->code_sha256);
	} else if (e->code != NULL || e->code_len == 0) {
		audit_hash_code(e->code, e->code_len, hash);
		put_str(o, "code_sha256", hash);
	}
	put_u64(o, "code_bytes", e->code_len);
	if (a->with_code && e->code != NULL)
		json_object_object_add(o, "code", json_utf8(e->code, e->code_len));
	put_u64(o, "files", e->n_files);
	put_u64(o, "files_bytes", e->files_bytes);
	put_u64(o, "stdin_bytes", e->stdin_bytes);
	if (e->has_limits) {
		lim = json_object_new_object();
		if (lim != NULL) {
			put_u64(lim, "wall_time_ms", e->limits.wall_time_ms);
			put_u64(lim, "cpu_time_ms", e->limits.cpu_time_ms);
			put_u64(lim, "memory_bytes", e->limits.memory_bytes);
			put_u64(lim, "max_processes", e->limits.max_processes);
			put_u64(lim, "max_output_bytes", e->limits.max_output_bytes);
			put_u64(lim, "max_file_bytes", e->limits.max_file_bytes);
			json_object_object_add(o, "limits", lim);
		}
	}
	put_str(o, "status", metrics_code_name(e->status_code));
	put_u64(o, "status_code", e->status_code);
	put_str(o, "error", e->error);
	if (e->started) {
		put_str(o, "sandbox_id", e->sandbox_id);
		put_bool(o, "warm", e->warm);
		put_u64(o, "queued_us", e->queued_us);
		put_u64(o, "start_us", e->start_us);
	}
	if (e->finished) {
		put_str(o, "reason", audit_reason_name(e->reason));
		put_int(o, "exit_code", e->exit_code);
		put_int(o, "signal", e->signal);
		put_u64(o, "wall_time_us", e->wall_time_us);
		put_u64(o, "cpu_time_us", e->cpu_time_us);
		put_u64(o, "peak_memory_bytes", e->peak_memory_bytes);
		put_u64(o, "stdout_bytes", e->stdout_bytes);
		put_u64(o, "stderr_bytes", e->stderr_bytes);
	}
	return o;
}

/* ------------------------------------------------------------------ */
/* the interface                                                        */

struct audit *audit_open(const struct config *cfg, char *err, size_t errlen)
{
	struct audit *a = calloc(1, sizeof(*a));
	sigset_t all, old;
	int rc;

	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->fd = -1;
	if (cfg->audit_file == NULL || cfg->audit_file[0] == '\0')
		return a; /* disabled: every call returns at once */
	/* room for ".N" with any keep */
	if (strlen(cfg->audit_file) + 12 >= PATH_MAX) {
		snprintf(err, errlen, "audit file name too long");
		goto fail;
	}
	a->path = strdup(cfg->audit_file);
	if (a->path == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	a->max_bytes = cfg->audit_max_bytes;
	a->keep = cfg->audit_keep;
	a->with_code = cfg->audit_code;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->wake, NULL);
	pthread_cond_init(&a->done, NULL);
	/* At start an unwritable file is the operator's to fix, now. */
	if (file_open(a, err, errlen) < 0)
		goto fail_sync;
	/* The writer takes no signal: main's sigwaitinfo gets them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&a->thread, NULL, writer_main, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "pthread_create: %s", strerror(rc));
		close(a->fd);
		goto fail_sync;
	}
	a->thread_started = true;
	a->enabled = true;
	log_info("audit: recording executions to %s (rotated at %llu bytes, %u kept, code %s)",
		 a->path, (unsigned long long)a->max_bytes, a->keep,
		 a->with_code ? "included" : "hashed only");
	return a;
fail_sync:
	pthread_cond_destroy(&a->done);
	pthread_cond_destroy(&a->wake);
	pthread_mutex_destroy(&a->lock);
fail:
	free(a->path);
	free(a);
	return NULL;
}

bool audit_enabled(const struct audit *a) { return a != NULL && a->enabled; }

bool audit_wants_code(const struct audit *a) { return audit_enabled(a) && a->with_code; }

void audit_record(struct audit *a, const struct audit_entry *e)
{
	json_object *o;
	const char *s;
	struct item *it;
	size_t len = 0;

	if (!audit_enabled(a) || e == NULL)
		return;
	o = entry_json(a, e);
	if (o == NULL)
		goto oom;
	/* json-c escapes control characters: the line holds no newline */
	s = json_object_to_json_string_length(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	it = s ? malloc(sizeof(*it) + len + 1) : NULL;
	if (it == NULL) {
		json_object_put(o);
		goto oom;
	}
	it->kind = ITEM_LINE;
	memcpy(it->data, s, len);
	it->data[len] = '\n';
	it->len = len + 1;
	json_object_put(o);
	queue_push(a, it);
	return;
oom:
	log_warnx("audit: out of memory: a record is lost");
}

void audit_reopen(struct audit *a)
{
	struct item *it;

	if (!audit_enabled(a))
		return;
	it = calloc(1, sizeof(*it));
	if (it == NULL) {
		log_warnx("audit: out of memory: the file is not reopened");
		return;
	}
	it->kind = ITEM_REOPEN;
	queue_push(a, it);
}

void audit_flush(struct audit *a)
{
	uint64_t target;

	if (!audit_enabled(a))
		return;
	pthread_mutex_lock(&a->lock);
	target = a->queued_seq;
	while (a->done_seq < target)
		pthread_cond_wait(&a->done, &a->lock);
	pthread_mutex_unlock(&a->lock);
}

void audit_close(struct audit *a)
{
	if (a == NULL)
		return;
	if (a->enabled) {
		pthread_mutex_lock(&a->lock);
		a->stopping = true;
		pthread_cond_signal(&a->wake);
		pthread_mutex_unlock(&a->lock);
		if (a->thread_started)
			pthread_join(a->thread, NULL);
		file_close(a);
		pthread_cond_destroy(&a->done);
		pthread_cond_destroy(&a->wake);
		pthread_mutex_destroy(&a->lock);
	}
	free(a->path);
	free(a);
}
