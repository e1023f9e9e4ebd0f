/*
 * Where struct config comes from: built-in defaults, then an INI file
 * (--config FILE, parsed with inih), then command-line flags. One table of
 * options drives both the file's keys and the flags, so a key and its flag
 * always take the same values with the same checks and messages.
 *
 * Strings in the resulting config point into argv or into copies of the
 * file's values that are never freed: they live as long as the process.
 */
#ifndef CAPIBOX_CONFIG_FILE_H
#define CAPIBOX_CONFIG_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"

/* What the command line asks for. */
enum config_action {
	CONFIG_RUN,	/* serve */
	CONFIG_CHECK,	/* --check-config: validate, print, exit */
	CONFIG_HELP,	/* --help */
	CONFIG_VERSION, /* --version */
	CONFIG_USAGE,	/* unknown flag, missing argument, stray word: exit 64 */
};

/* Where each value came from; filled by config_from_args. */
struct config_origins;

/*
 * Fills cfg (which holds config_defaults) from argv: --config FILE first,
 * then the file, then every other flag, whatever their order on the line.
 * *action says what the command line asks for (set even on error, so
 * --check-config can report the error its way; getopt has printed the
 * reason of CONFIG_USAGE). Returns 0, or -1 with err: "FILE:LINE: [section]
 * key: why" or "--flag: why". *origins (never freed) records where each
 * value came from, for config_print.
 */
__attribute__((warn_unused_result)) int config_from_args(struct config *cfg, int argc, char **argv,
							 enum config_action *action,
							 struct config_origins **origins, char *err,
							 size_t errlen);

/*
 * The checks that need every value, as capiboxd makes them before it
 * starts: TLS files in pairs and loadable, the keys file parses, max_live
 * fits the uid range, defaults within maxima, a non-loopback address only
 * with keys, a client CA or the insecure flag. Reads files, needs no root,
 * binds nothing. warn (may be NULL) gets a legal but dangerous setup.
 * Returns 0, or -1 with err.
 */
__attribute__((warn_unused_result)) int
config_check(const struct config *cfg, void (*warn)(const char *msg), char *err, size_t errlen);

/* Writes cfg as an INI file, every key, each with its origin as a comment. */
void config_print(FILE *f, const struct config *cfg, const struct config_origins *o);

/* True when addr is a loopback or Unix-socket address. */
bool config_listen_is_loopback(const char *addr);

#endif
