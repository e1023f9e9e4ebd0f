/*
 * API keys: the keys file, authentication of a presented secret, and the
 * per-key limits. Plain C (OpenSSL's libcrypto for SHA-256, RAND_bytes and
 * CRYPTO_memcmp), no gRPC: the rpc layer takes the secret out of the call's
 * metadata and maps the results to status codes.
 *
 * Keys file: one key per line, '#' starts a comment.
 *
 *   ID  SHA256-HEX-OF-SECRET  [concurrent=N] [sessions=N] [languages=a,b]
 *                             [wall_time_ms=N] [cpu_time_ms=N] [memory_bytes=N]
 *                             [max_processes=N] [max_output_bytes=N] [max_file_bytes=N]
 *
 * The file holds hashes only: reading it does not give anyone a secret.
 * Writing it does grant the power to run code, so it must not be writable
 * by group or others.
 */
#ifndef CAPIBOX_AUTH_H
#define CAPIBOX_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exec.h"

#define AUTH_ID_MAX 64		  /* bytes of a key id: [A-Za-z0-9._-] */
#define AUTH_SECRET_PREFIX "cbx_" /* every generated secret starts with it */
#define AUTH_SECRET_LEN (4 + 64)  /* prefix + 32 random bytes in hex */
#define AUTH_MAX_KEYS 4096

enum auth_rc {
	AUTH_OK = 0,
	AUTH_MISSING,	       /* no secret presented: UNAUTHENTICATED */
	AUTH_BAD,	       /* no key has this secret: UNAUTHENTICATED */
	AUTH_LANGUAGE,	       /* the key may not use the language: PERMISSION_DENIED */
	AUTH_OVER_LIMIT,       /* a requested limit exceeds the key's: RESOURCE_EXHAUSTED */
	AUTH_TOO_MANY_RUNNING, /* the key's concurrent executions: RESOURCE_EXHAUSTED */
};

/* Per-key limits; 0 (or no languages) means the server's own limit applies. */
struct auth_limits {
	unsigned max_concurrent; /* executions running at once */
	unsigned max_sessions;	 /* open sessions of the key (CreateSession refuses more) */
	char languages[256];	 /* "python,bash"; "" = every language */
	struct exec_limits maxima;
};

struct auth;
struct auth_key;

/* A store without keys (authentication off until auth_load succeeds). Exits on ENOMEM. */
struct auth *auth_new(void);
/* Frees a; every key taken from it must have been released. */
void auth_free(struct auth *a);

/*
 * Reads path and, when it is entirely valid, replaces the keys (running
 * calls keep the keys they hold; concurrency counts carry over by id).
 * Returns the number of keys, or -1 with err naming file, line and what is
 * wrong, in which case the old keys stay.
 */
__attribute__((warn_unused_result)) int auth_load(struct auth *a, const char *path, char *err,
						  size_t errlen);

/* True once a keys file is loaded: every protected call needs a key. */
bool auth_enabled(struct auth *a);

/*
 * Finds the key whose secret is secret[0..len). Compares SHA-256 hashes in
 * constant time against every key. AUTH_OK with *key referenced (release it
 * with auth_key_release) or NULL when authentication is off; AUTH_MISSING
 * (len 0) or AUTH_BAD otherwise.
 */
__attribute__((warn_unused_result)) enum auth_rc auth_check(struct auth *a, const char *secret,
							    size_t len, struct auth_key **key);

void auth_key_release(struct auth_key *k);
/* The key's id ("router"); never the secret. */
const char *auth_key_id(const struct auth_key *k);
const struct auth_limits *auth_key_limits(const struct auth_key *k);

/*
 * Applies k's limits to a validated request: AUTH_LANGUAGE when the language
 * is not allowed, AUTH_OVER_LIMIT when a limit the client asked for
 * (requested, 0 = none asked) exceeds the key's maximum; a limit left to the
 * default is lowered to the key's maximum in req. err names the limit.
 */
__attribute__((warn_unused_result)) enum auth_rc auth_key_admit(const struct auth_key *k,
								const struct exec_limits *requested,
								struct exec_request *req, char *err,
								size_t errlen);

/*
 * Takes one of k's concurrent-execution slots: AUTH_OK (give it back with
 * auth_key_leave) or AUTH_TOO_MANY_RUNNING with err naming the limit.
 */
__attribute__((warn_unused_result)) enum auth_rc auth_key_enter(struct auth_key *k, char *err,
								size_t errlen);
void auth_key_leave(struct auth_key *k);
/* Executions k's id has running now. */
unsigned auth_key_running(const struct auth_key *k);

/*
 * A new secret (AUTH_SECRET_LEN chars + NUL in secret, from RAND_bytes) and
 * its keys-file line for id ("id hash\n" in line). Returns 0, or -1 with err.
 */
__attribute__((warn_unused_result)) int auth_keygen(const char *id, char *secret, size_t secretlen,
						    char *line, size_t linelen, char *err,
						    size_t errlen);

/* Lower-case hex SHA-256 of s[0..len) into hex (65 bytes). */
void auth_hash_hex(const char *s, size_t len, char hex[65]);

/* True when id is a valid key id. */
bool auth_id_ok(const char *id);

#endif
