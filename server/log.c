#include "log.h"
#include "utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * Each line is built in one buffer and written with one call: stderr is
 * unbuffered, so lines of different threads (and of the supervisor, which
 * shares the descriptor) never interleave mid-line.
 */
#define LINE_MAX_BYTES 4096

static const char *log_role = "capiboxd";
static bool log_json;

void log_init(const char *role)
{
	const char *f = getenv("CAPIBOX_LOG_FORMAT");

	log_role = role;
	if (f != NULL && strcmp(f, "json") == 0)
		log_json = true;
}

void log_set_json(bool on) { log_json = on; }

bool log_is_json(void) { return log_json; }

static void log_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	/* the casts bound each field for the compiler's truncation check */
	snprintf(buf, len, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
		 (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
		 (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
		 (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u,
		 (unsigned)(ts.tv_nsec / 1000000) % 1000u);
}

/*
 * Appends s as a JSON string (quotes included) at buf+*off. Messages may
 * quote a client's bytes: anything that is not valid UTF-8 becomes U+FFFD,
 * so every line stays valid JSON. Truncates at the buffer's end.
 */
static void json_string(char *buf, size_t len, size_t *off, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), o = *off;

	/* room for the closing quote and NUL is kept back */
	if (o + 3 > len)
		return;
	buf[o++] = '"';
	while (n > 0 && o + 8 < len) {
		size_t k = utf8_seq_len(p, n);

		if (k == 0) {
			memcpy(buf + o, "\\ufffd", 6);
			o += 6;
			p++;
			n--;
			continue;
		}
		if (k > 1) {
			memcpy(buf + o, p, k);
			o += k;
		} else if (*p == '"' || *p == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)*p;
		} else if (*p == '\n') {
			memcpy(buf + o, "\\n", 2);
			o += 2;
		} else if (*p == '\t') {
			memcpy(buf + o, "\\t", 2);
			o += 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			o += (size_t)snprintf(buf + o, len - o, "\\u%04x", *p);
		} else {
			buf[o++] = (char)*p;
		}
		p += k;
		n -= k;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	*off = o;
}

/* Appends s at buf+*off, cut at the buffer's end; *off stays below len. */
static void put(char *buf, size_t len, size_t *off, const char *s)
{
	size_t n = strlen(s);

	if (*off + 1 >= len)
		return;
	if (n > len - 1 - *off)
		n = len - 1 - *off;
	memcpy(buf + *off, s, n);
	*off += n;
	buf[*off] = '\0';
}

/* {"time":...,"level":...,"role":...,"pid":... (no closing brace) */
static size_t json_prefix(char *buf, size_t len, const char *level)
{
	char t[40], pid[32];
	size_t o = 0;

	log_time(t, sizeof(t));
	snprintf(pid, sizeof(pid), ",\"pid\":%d", (int)getpid());
	put(buf, len, &o, "{\"time\":\"");
	put(buf, len, &o, t);
	put(buf, len, &o, "\",\"level\":");
	json_string(buf, len, &o, level);
	put(buf, len, &o, ",\"role\":");
	json_string(buf, len, &o, log_role);
	put(buf, len, &o, pid);
	return o;
}

static void log_vprint(const char *level, int errnum, const char *fmt, va_list ap)
{
	char msg[1024], line[LINE_MAX_BYTES], t[40];
	size_t o;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_json) {
		/* "}\n" and the NUL always fit after what these write */
		size_t len = sizeof(line) - 3;

		o = json_prefix(line, len, level);
		put(line, len, &o, ",\"msg\":");
		json_string(line, len, &o, msg);
		if (errnum) {
			put(line, len, &o, ",\"error\":");
			json_string(line, len, &o, strerror(errnum));
		}
		memcpy(line + o, "}\n", 3);
	} else {
		log_time(t, sizeof(t));
		if (errnum)
			snprintf(line, sizeof(line), "%s %s[%d] %s: %s: %s\n", t, log_role,
				 (int)getpid(), level, msg, strerror(errnum));
		else
			snprintf(line, sizeof(line), "%s %s[%d] %s: %s\n", t, log_role,
				 (int)getpid(), level, msg);
	}
	fputs(line, stderr);
}

void log_json_record(const char *level, const char *obj)
{
	char line[LINE_MAX_BYTES];
	size_t o, n;

	if (!log_json || obj[0] != '{')
		return;
	o = json_prefix(line, sizeof(line), level);
	obj++; /* its members follow ours */
	while (*obj == ' ')
		obj++;
	n = strlen(obj);
	/* A record longer than a line is cut by its producer; never here,
	 * where cutting would break the JSON. */
	if (o + 1 + n + 2 > sizeof(line))
		return;
	if (*obj != '}')
		line[o++] = ',';
	memcpy(line + o, obj, n);
	o += n;
	memcpy(line + o, "\n", 2);
	fputs(line, stderr);
}

void log_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vprint("info", 0, fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	log_vprint("warn", saved, fmt, ap);
	va_end(ap);
	errno = saved;
}

void log_warnx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vprint("warn", 0, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	log_vprint("fatal", saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vprint("fatal", 0, fmt, ap);
	va_end(ap);
	exit(1);
}
