/*
 * Logging and the fatal tier of error handling (OpenBSD log.h style).
 * fatal() appends strerror(errno); fatalx() does not. Both never return.
 */
#ifndef CAPIBOX_LOG_H
#define CAPIBOX_LOG_H

/* Sets the prefix printed before each line (process role), e.g. "front". */
void log_init(const char *role);
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
