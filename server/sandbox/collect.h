/*
 * Collecting files after a run: the request's collect globs select
 * regular files under the sandbox's working directory, which the sandbox's
 * init sends to the front as artifact frames on the events pipe once every
 * other process of the sandbox is gone.
 *
 * Globs are relative to the working directory and matched one path part at
 * a time: "*", "?" and "[...]" (fnmatch(3)) never cross a '/'; a part that
 * is exactly "**" matches any number of parts, none included. A name
 * starting with '.' is matched only by a part that starts with '.' itself:
 * "*" and "**" neither match dotfiles nor enter dot directories (caches such
 * as .cache/matplotlib stay out unless a glob names them: ".cache" then "**").
 *
 * The MIME sniffer is here too so the front can use the same rules.
 */
#ifndef CAPIBOX_COLLECT_H
#define CAPIBOX_COLLECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COLLECT_MAX_GLOBS 64	     /* globs per request */
#define COLLECT_MAX_GLOB_LEN 1024    /* bytes per glob */
#define COLLECT_MAX_FILES 1000	     /* files returned per run */
#define COLLECT_MAX_ENTRIES 100000   /* directory entries looked at per run */
#define COLLECT_MAX_DEPTH 64	     /* directory levels entered below the working dir */
#define COLLECT_CHUNK (1024 * 1024)  /* file bytes per artifact frame (the front's maximum) */
#define COLLECT_BUDGET (64ULL << 20) /* file bytes per run; the front's budget is the same */
#define COLLECT_FLAG_EOF 1
#define COLLECT_FLAG_TRUNCATED 2

/* NULL when glob (len bytes) is a usable collect glob, else why it is not. */
const char *collect_glob_check(const char *glob, size_t len);

/* True when the relative path matches glob (which passed collect_glob_check). */
bool collect_match(const char *glob, const char *path);

/*
 * The MIME type of a file named path whose first len bytes are head;
 * complete: head is the whole file (else a UTF-8 sequence may be cut at its
 * end). Content first (png, jpeg, pdf signatures), then text (valid UTF-8,
 * no NUL) typed by name or markup, else application/octet-stream. Never NULL.
 */
const char *collect_mime_type(const char *path, const uint8_t *head, size_t len, bool complete);

struct collect_stats {
	unsigned files;	  /* files sent (a truncated one included) */
	unsigned skipped; /* matching names that were not readable regular files */
	uint64_t bytes;	  /* file bytes sent */
	bool truncated;	  /* the budget cut a file: nothing was sent after it */
	bool limited;	  /* a count limit (files, entries) ended the walk */
};

/*
 * Walks the directory homefd and writes every regular file matching one of
 * globs (n of them) to events_fd as 'A' frames, COLLECT_CHUNK bytes at most
 * each, at most budget bytes in all. Never follows a symlink, never leaves
 * homefd's file system, skips what is not a regular file or not readable.
 * Returns 0, or -1 (errno) when the events pipe failed. Fills st.
 */
__attribute__((warn_unused_result)) int collect_run(int homefd, const char *const *globs, size_t n,
						    int events_fd, uint64_t budget,
						    struct collect_stats *st);

#endif
