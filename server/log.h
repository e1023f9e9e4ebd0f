/*
 * Logging and the fatal tier of error handling (OpenBSD log.h style).
 * fatal() appends strerror(errno); fatalx() does not. Both never return.
 */
#ifndef CAPIBOX_LOG_H
#define CAPIBOX_LOG_H

#include <stdbool.h>

/*
 * Sets the prefix printed before each line (process role), e.g. "front".
 * CAPIBOX_LOG_FORMAT=json in the environment selects JSON lines (so a
 * helper process can follow its parent's format).
 */
void log_init(const char *role);

/* JSON lines instead of text from now on (--log-format json). */
void log_set_json(bool on);
/* True when lines are JSON objects. */
bool log_is_json(void);

/*
 * JSON mode only: writes one line, the members of obj (a serialized JSON
 * object, "{...}") after time, level, role and pid. Does nothing in text
 * mode. The caller vouches that obj is valid JSON.
 */
void log_json_record(const char *level, const char *obj);
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
