/*
 * API keys; see auth.h.
 *
 * The loaded keys are an array of reference-counted keys behind a mutex.
 * A lookup hashes the presented secret outside the lock, then compares the
 * hash with every key's (CRYPTO_memcmp, no early exit) and references the
 * match, so a call keeps its key even when SIGHUP replaces the file. The
 * number of running executions belongs to the key id, not to the loaded
 * key, so a reload neither resets nor double-counts it.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "log.h"

#define KEYS_FILE_MAX (4u << 20)

/* Running executions of one key id; lives as long as the store. */
struct auth_usage {
	struct auth_usage *next;
	char id[AUTH_ID_MAX + 1];
	unsigned running; /* guarded by auth->lock */
};

struct auth_key {
	unsigned refs; /* __atomic */
	struct auth *auth;
	struct auth_usage *usage;
	char id[AUTH_ID_MAX + 1];
	uint8_t hash[SHA256_DIGEST_LENGTH];
	struct auth_limits lim;
};

struct auth {
	pthread_mutex_t lock;
	bool enabled;
	struct auth_key **keys;
	size_t n_keys;
	struct auth_usage *usages;
};

struct auth *auth_new(void)
{
	struct auth *a = calloc(1, sizeof(*a));

	if (a == NULL)
		fatal("calloc");
	pthread_mutex_init(&a->lock, NULL);
	return a;
}

static void key_ref(struct auth_key *k) { __atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED); }

void auth_key_release(struct auth_key *k)
{
	if (k != NULL && __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(k);
}

static void keys_release(struct auth_key **keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		auth_key_release(keys[i]);
	free(keys);
}

void auth_free(struct auth *a)
{
	struct auth_usage *u, *next;

	if (a == NULL)
		return;
	keys_release(a->keys, a->n_keys);
	for (u = a->usages; u != NULL; u = next) {
		next = u->next;
		free(u);
	}
	pthread_mutex_destroy(&a->lock);
	free(a);
}

bool auth_id_ok(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > AUTH_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = id[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

static int hex_val(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static bool hash_parse(const char *s, size_t len, uint8_t out[SHA256_DIGEST_LENGTH])
{
	if (len != 2 * SHA256_DIGEST_LENGTH)
		return false;
	for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
		int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static void hex_encode(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static void sha256(const char *s, size_t len, uint8_t out[SHA256_DIGEST_LENGTH])
{
	unsigned int n = 0;

	if (EVP_Digest(s, len, out, &n, EVP_sha256(), NULL) != 1 || n != SHA256_DIGEST_LENGTH)
		fatalx("EVP_Digest(sha256) failed");
}

void auth_hash_hex(const char *s, size_t len, char hex[65])
{
	uint8_t h[SHA256_DIGEST_LENGTH];

	sha256(s, len, h);
	hex_encode(h, sizeof(h), hex);
}

/* Reads a whole small file; NULL with err on failure. Caller frees. */
static char *file_read(const char *path, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: fstat: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto fail;
	}
	/* Whoever can add a line can run code here: the file must be ours alone to write. */
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "%s: writable by group or others (mode %04o); chmod go-w it",
			 path, (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		snprintf(err, errlen, "%s: owned by uid %u, neither root nor us", path,
			 (unsigned)st.st_uid);
		goto fail;
	}
	if ((uint64_t)st.st_size > KEYS_FILE_MAX) {
		snprintf(err, errlen, "%s: larger than %u bytes", path, KEYS_FILE_MAX);
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s: read: %s", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	close(fd);
	*len = got;
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}

static bool parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	char tmp[32], *end;
	unsigned long long v;

	if (len == 0 || len >= sizeof(tmp) || s[0] < '0' || s[0] > '9')
		return false;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	errno = 0;
	v = strtoull(tmp, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return false;
	*out = v;
	return true;
}

static bool languages_ok(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == ',' ||
		      ch == '_' || ch == '-' || ch == '+'))
			return false;
	}
	return s[0] != ',' && s[len - 1] != ',';
}

/* Parses one "name=value" option into lim. Returns false with err (without location). */
static bool option_parse(const char *s, size_t len, struct auth_limits *lim, char *err,
			 size_t errlen)
{
	const char *eq = memchr(s, '=', len);
	size_t nlen, vlen;
	const char *v;
	uint64_t n;

	if (eq == NULL) {
		snprintf(err, errlen, "\"%.*s\" is not name=value", (int)(len > 64 ? 64 : len), s);
		return false;
	}
	nlen = (size_t)(eq - s);
	v = eq + 1;
	vlen = len - nlen - 1;
#define NAME_IS(lit) (nlen == sizeof(lit) - 1 && memcmp(s, lit, nlen) == 0)
	if (NAME_IS("languages")) {
		if (!languages_ok(v, vlen) || vlen >= sizeof(lim->languages)) {
			snprintf(err, errlen,
				 "languages: \"%.*s\" is not a comma-separated list of names",
				 (int)(vlen > 64 ? 64 : vlen), v);
			return false;
		}
		memcpy(lim->languages, v, vlen);
		lim->languages[vlen] = '\0';
		return true;
	}
	if (!parse_u64(v, vlen, UINT64_MAX, &n) || n == 0) {
		snprintf(err, errlen, "%.*s: \"%.*s\" is not a positive number", (int)nlen, s,
			 (int)(vlen > 32 ? 32 : vlen), v);
		return false;
	}
	if ((NAME_IS("concurrent") || NAME_IS("sessions") || NAME_IS("wall_time_ms") ||
	     NAME_IS("cpu_time_ms") || NAME_IS("max_processes")) &&
	    n > UINT32_MAX) {
		snprintf(err, errlen, "%.*s: %llu is too large", (int)nlen, s,
			 (unsigned long long)n);
		return false;
	}
	if (NAME_IS("concurrent"))
		lim->max_concurrent = (unsigned)n;
	else if (NAME_IS("sessions"))
		lim->max_sessions = (unsigned)n;
	else if (NAME_IS("wall_time_ms"))
		lim->maxima.wall_time_ms = (uint32_t)n;
	else if (NAME_IS("cpu_time_ms"))
		lim->maxima.cpu_time_ms = (uint32_t)n;
	else if (NAME_IS("memory_bytes"))
		lim->maxima.memory_bytes = n;
	else if (NAME_IS("max_processes"))
		lim->maxima.max_processes = (uint32_t)n;
	else if (NAME_IS("max_output_bytes"))
		lim->maxima.max_output_bytes = n;
	else if (NAME_IS("max_file_bytes"))
		lim->maxima.max_file_bytes = n;
	else {
		snprintf(err, errlen,
			 "unknown option \"%.*s\" (known: concurrent, sessions, languages, "
			 "wall_time_ms, cpu_time_ms, memory_bytes, max_processes, "
			 "max_output_bytes, max_file_bytes)",
			 (int)(nlen > 32 ? 32 : nlen), s);
		return false;
	}
#undef NAME_IS
	return true;
}

/* The usage record of id, made on first sight. Caller holds a->lock. */
static struct auth_usage *usage_get_locked(struct auth *a, const char *id)
{
	struct auth_usage *u;

	for (u = a->usages; u != NULL; u = u->next)
		if (strcmp(u->id, id) == 0)
			return u;
	u = calloc(1, sizeof(*u));
	if (u == NULL)
		fatal("calloc");
	snprintf(u->id, sizeof(u->id), "%s", id);
	u->next = a->usages;
	a->usages = u;
	return u;
}

/* Parses one line into a new key (NULL for a blank or comment line). */
static int line_parse(struct auth *a, const char *line, size_t len, struct auth_key **out,
		      char *err, size_t errlen)
{
	const char *tok[16 + 2];
	size_t toklen[16 + 2], n = 0, i = 0;
	struct auth_key *k;
	char why[300];

	*out = NULL;
	while (i < len) {
		while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
			i++;
		if (i == len || line[i] == '#')
			break;
		if (n == sizeof(tok) / sizeof(tok[0])) {
			snprintf(err, errlen, "too many fields");
			return -1;
		}
		tok[n] = line + i;
		while (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			i++;
		toklen[n] = (size_t)(line + i - tok[n]);
		n++;
	}
	if (n == 0)
		return 0;
	if (n < 2) {
		snprintf(err, errlen, "expected \"ID SHA256-HEX [options]\"");
		return -1;
	}
	k = calloc(1, sizeof(*k));
	if (k == NULL)
		fatal("calloc");
	k->refs = 1;
	k->auth = a;
	if (toklen[0] > AUTH_ID_MAX) {
		snprintf(err, errlen, "key id longer than %d bytes", AUTH_ID_MAX);
		goto fail;
	}
	memcpy(k->id, tok[0], toklen[0]);
	k->id[toklen[0]] = '\0';
	if (!auth_id_ok(k->id)) {
		snprintf(err, errlen, "key id \"%s\" may only hold A-Z a-z 0-9 . _ -", k->id);
		goto fail;
	}
	if (!hash_parse(tok[1], toklen[1], k->hash)) {
		/* A secret pasted where its hash belongs must not end up in a log. */
		snprintf(err, errlen,
			 "key %s: the second field is not a SHA-256 hash (64 hex digits); "
			 "put the hash from `capiboxd keygen` there, never the secret",
			 k->id);
		goto fail;
	}
	for (size_t t = 2; t < n; t++) {
		if (!option_parse(tok[t], toklen[t], &k->lim, why, sizeof(why))) {
			snprintf(err, errlen, "key %s: %s", k->id, why);
			goto fail;
		}
	}
	*out = k;
	return 0;
fail:
	free(k);
	return -1;
}

int auth_load(struct auth *a, const char *path, char *err, size_t errlen)
{
	struct auth_key **keys = NULL, **old;
	size_t n_keys = 0, len, lineno = 0, n_old;
	char *buf, *p, *end;
	char why[400];

	buf = file_read(path, &len, err, errlen);
	if (buf == NULL)
		return -1;
	for (p = buf, end = buf + len; p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		struct auth_key *k;

		lineno++;
		if (memchr(p, '\0', ll) != NULL) {
			snprintf(err, errlen, "%s:%zu: contains a NUL byte", path, lineno);
			goto fail;
		}
		if (line_parse(a, p, ll, &k, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%zu: %s", path, lineno, why);
			goto fail;
		}
		p += ll + (nl ? 1 : 0);
		if (k == NULL)
			continue;
		for (size_t i = 0; i < n_keys; i++) {
			bool dup_id = strcmp(keys[i]->id, k->id) == 0;
			bool dup_hash = memcmp(keys[i]->hash, k->hash, sizeof(k->hash)) == 0;

			if (dup_id || dup_hash) {
				snprintf(err, errlen, "%s:%zu: key %s: %s key %s", path, lineno,
					 k->id, dup_id ? "same id as" : "same secret as",
					 keys[i]->id);
				free(k);
				goto fail;
			}
		}
		if (n_keys == AUTH_MAX_KEYS) {
			snprintf(err, errlen, "%s:%zu: more than %d keys", path, lineno,
				 AUTH_MAX_KEYS);
			free(k);
			goto fail;
		}
		old = realloc(keys, (n_keys + 1) * sizeof(*keys));
		if (old == NULL)
			fatal("realloc");
		keys = old;
		keys[n_keys++] = k;
	}
	free(buf);
	buf = NULL;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < n_keys; i++)
		keys[i]->usage = usage_get_locked(a, keys[i]->id);
	old = a->keys;
	n_old = a->n_keys;
	a->keys = keys;
	a->n_keys = n_keys;
	a->enabled = true;
	pthread_mutex_unlock(&a->lock);
	keys_release(old, n_old);
	return (int)n_keys;
fail:
	free(buf);
	keys_release(keys, n_keys);
	return -1;
}

bool auth_enabled(struct auth *a)
{
	bool on;

	pthread_mutex_lock(&a->lock);
	on = a->enabled;
	pthread_mutex_unlock(&a->lock);
	return on;
}

enum auth_rc auth_check(struct auth *a, const char *secret, size_t len, struct auth_key **key)
{
	uint8_t h[SHA256_DIGEST_LENGTH];
	struct auth_key *found = NULL;

	*key = NULL;
	if (!auth_enabled(a))
		return AUTH_OK;
	if (len == 0)
		return AUTH_MISSING;
	sha256(secret, len, h);
	pthread_mutex_lock(&a->lock);
	/* Every key is compared, whatever matched: the time taken does not
	 * depend on which key (if any) the secret belongs to. */
	for (size_t i = 0; i < a->n_keys; i++) {
		int diff = CRYPTO_memcmp(h, a->keys[i]->hash, sizeof(h));

		if (diff == 0)
			found = a->keys[i];
	}
	if (found)
		key_ref(found);
	pthread_mutex_unlock(&a->lock);
	OPENSSL_cleanse(h, sizeof(h));
	*key = found;
	return found ? AUTH_OK : AUTH_BAD;
}

const char *auth_key_id(const struct auth_key *k) { return k->id; }

const struct auth_limits *auth_key_limits(const struct auth_key *k) { return &k->lim; }

static bool language_listed(const char *list, const char *lang)
{
	size_t n = strlen(lang);

	for (const char *p = list; *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (len == n && memcmp(p, lang, n) == 0)
			return true;
		p += len + (comma ? 1 : 0);
	}
	return false;
}

/* One limit: refuse an explicit request above max, lower a default to it. */
#define LIMIT_APPLY(field)                                                                \
	do {                                                                              \
		uint64_t max_ = lim->maxima.field;                                        \
		if (max_ == 0)                                                            \
			break;                                                            \
		if (requested->field > max_) {                                            \
			snprintf(err, errlen,                                             \
				 "limits." #field ": %llu exceeds key %s's maximum %llu", \
				 (unsigned long long)requested->field, k->id,             \
				 (unsigned long long)max_);                               \
			return AUTH_OVER_LIMIT;                                           \
		}                                                                         \
		if (req->limits.field > max_)                                             \
			req->limits.field = max_;                                         \
	} while (0)

enum auth_rc auth_key_admit(const struct auth_key *k, const struct exec_limits *requested,
			    struct exec_request *req, char *err, size_t errlen)
{
	const struct auth_limits *lim = &k->lim;

	if (lim->languages[0] != '\0' &&
	    (req->language == NULL || !language_listed(lim->languages, req->language))) {
		snprintf(err, errlen, "key %s may not run language \"%.64s\" (allowed: %s)", k->id,
			 req->language ? req->language : "", lim->languages);
		return AUTH_LANGUAGE;
	}
	LIMIT_APPLY(wall_time_ms);
	LIMIT_APPLY(cpu_time_ms);
	LIMIT_APPLY(memory_bytes);
	LIMIT_APPLY(max_processes);
	LIMIT_APPLY(max_output_bytes);
	LIMIT_APPLY(max_file_bytes);
	return AUTH_OK;
}

#undef LIMIT_APPLY

enum auth_rc auth_key_enter(struct auth_key *k, char *err, size_t errlen)
{
	struct auth *a = k->auth;
	enum auth_rc rc = AUTH_OK;

	pthread_mutex_lock(&a->lock);
	if (k->lim.max_concurrent != 0 && k->usage->running >= k->lim.max_concurrent) {
		snprintf(err, errlen,
			 "key %s already runs %u executions, its limit (concurrent=%u)", k->id,
			 k->usage->running, k->lim.max_concurrent);
		rc = AUTH_TOO_MANY_RUNNING;
	} else {
		k->usage->running++;
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

void auth_key_leave(struct auth_key *k)
{
	struct auth *a = k->auth;

	pthread_mutex_lock(&a->lock);
	if (k->usage->running > 0)
		k->usage->running--;
	pthread_mutex_unlock(&a->lock);
}

unsigned auth_key_running(const struct auth_key *k)
{
	struct auth *a = k->auth;
	unsigned n;

	pthread_mutex_lock(&a->lock);
	n = k->usage->running;
	pthread_mutex_unlock(&a->lock);
	return n;
}

int auth_keygen(const char *id, char *secret, size_t secretlen, char *line, size_t linelen,
		char *err, size_t errlen)
{
	uint8_t raw[32];
	char hex[65];

	if (!auth_id_ok(id)) {
		snprintf(err, errlen, "key id \"%.80s\": 1 to %d characters of A-Z a-z 0-9 . _ -",
			 id, AUTH_ID_MAX);
		return -1;
	}
	if (secretlen < AUTH_SECRET_LEN + 1) {
		snprintf(err, errlen, "secret buffer too small");
		return -1;
	}
	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		snprintf(err, errlen, "RAND_bytes failed: no secure randomness");
		return -1;
	}
	memcpy(secret, AUTH_SECRET_PREFIX, sizeof(AUTH_SECRET_PREFIX) - 1);
	hex_encode(raw, sizeof(raw), secret + sizeof(AUTH_SECRET_PREFIX) - 1);
	OPENSSL_cleanse(raw, sizeof(raw));
	auth_hash_hex(secret, strlen(secret), hex);
	if (snprintf(line, linelen, "%s %s\n", id, hex) >= (int)linelen) {
		snprintf(err, errlen, "line buffer too small");
		return -1;
	}
	return 0;
}
