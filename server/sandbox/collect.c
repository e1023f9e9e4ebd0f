/*
 * Collect globs: the matcher, the walk of the working directory and the
 * MIME sniffer. The walk runs in the sandbox's init after every other
 * process of the sandbox has been killed and reaped, so nothing changes the
 * tree under it; it still trusts nothing the code left there: each step is
 * an openat() of one name from an already open directory with O_NOFOLLOW
 * (a symlink, planted anywhere, is never followed, not even as the last
 * part), the file system must stay the working directory's own (no mount
 * point is crossed), only regular files are read (a FIFO or a device would
 * block or lie) and every count is bounded.
 */
#include "collect.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../request.h"

#define PATH_LIMIT 1024 /* request_path_ok's limit: longer paths cannot be sent */

/* ---- globs ---------------------------------------------------------------- */

const char *collect_glob_check(const char *glob, size_t len)
{
	size_t seg = 0;

	if (len == 0)
		return "is empty";
	if (len > COLLECT_MAX_GLOB_LEN)
		return "is longer than 1024 bytes";
	if (memchr(glob, '\0', len) != NULL)
		return "contains a NUL byte";
	if (glob[0] == '/')
		return "is absolute (globs are relative to the working directory)";
	for (size_t i = 0; i <= len; i++) {
		if (i == len || glob[i] == '/') {
			const char *s = glob + i - seg;
			/* empty and "." parts match nothing useful; ".." would name
			 * something outside the working directory */
			if (seg == 0)
				return "has an empty part (a leading, trailing or double '/')";
			if (seg == 1 && s[0] == '.')
				return "has a '.' part";
			if (seg == 2 && s[0] == '.' && s[1] == '.')
				return "has a '..' part";
			seg = 0;
		} else {
			seg++;
		}
	}
	return NULL;
}

/* A glob split into its parts, consecutive "**" parts merged into one. */
struct glob {
	char *buf;
	char **part;
	size_t n;
};

static bool is_globstar(const char *part) { return strcmp(part, "**") == 0; }

static int glob_compile(struct glob *g, const char *text)
{
	size_t len = strlen(text), n = 1;

	g->buf = strdup(text);
	if (g->buf == NULL)
		return -1;
	for (size_t i = 0; i < len; i++)
		n += text[i] == '/';
	g->part = calloc(n, sizeof(*g->part));
	if (g->part == NULL) {
		free(g->buf);
		return -1;
	}
	g->n = 0;
	for (char *p = g->buf, *slash;; p = slash + 1) {
		slash = strchr(p, '/');
		if (slash != NULL)
			*slash = '\0';
		if (!(g->n > 0 && is_globstar(p) && is_globstar(g->part[g->n - 1])))
			g->part[g->n++] = p;
		if (slash == NULL)
			break;
	}
	return 0;
}

static void glob_free(struct glob *g)
{
	free(g->part);
	free(g->buf);
}

/*
 * The matcher is a dynamic program over the glob's parts, one path part at
 * a time: row[i] says the first i parts of the glob match the path so far.
 * It costs O(parts) fnmatch calls per path part whatever the glob (no
 * backtracking blow-up with many "**"), and the walk keeps one row per
 * directory level, so a directory no glob can match below is not entered.
 */
static void row_start(const struct glob *g, uint8_t *row)
{
	row[0] = 1;
	for (size_t i = 1; i <= g->n; i++)
		row[i] = row[i - 1] && is_globstar(g->part[i - 1]);
}

/* next = row advanced by the path part name. */
static void row_step(const struct glob *g, const uint8_t *row, const char *name, uint8_t *next)
{
	next[0] = 0;
	for (size_t i = 1; i <= g->n; i++) {
		const char *p = g->part[i - 1];
		if (is_globstar(p))
			/* "**" matches no part (next[i - 1]) or one more part,
			 * never a dot name */
			next[i] = next[i - 1] || (row[i] && name[0] != '.');
		else
			next[i] = row[i - 1] && fnmatch(p, name, FNM_PERIOD) == 0;
	}
}

/*
 * True when a path continuing below the row's directory may still match:
 * some part is left to match a child, or a "**" that got here may take it.
 */
static bool row_alive(const struct glob *g, const uint8_t *row)
{
	for (size_t i = 0; i <= g->n; i++)
		if (row[i] && (i < g->n || (i > 0 && is_globstar(g->part[i - 1]))))
			return true;
	return false;
}

bool collect_match(const char *glob, const char *path)
{
	struct glob g;
	uint8_t *block, *a, *b;
	char *copy;
	bool ok = false;

	if (glob_compile(&g, glob) < 0)
		return false;
	block = calloc(2, g.n + 1);
	copy = strdup(path);
	if (block == NULL || copy == NULL)
		goto out;
	a = block;
	b = block + g.n + 1;
	row_start(&g, a);
	for (char *part = copy, *slash;; part = slash + 1) {
		uint8_t *t;
		slash = strchr(part, '/');
		if (slash != NULL)
			*slash = '\0';
		row_step(&g, a, part, b);
		t = a;
		a = b;
		b = t;
		if (slash == NULL)
			break;
	}
	ok = a[g.n];
out:
	free(block);
	free(copy);
	glob_free(&g);
	return ok;
}

/* ---- MIME types -------------------------------------------------------------- */

/* True when p[0..len) is UTF-8 without NUL; a sequence cut at the end is
 * accepted unless complete. */
static bool text_ok(const uint8_t *p, size_t len, bool complete)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = p[i];
		size_t need;
		uint32_t cp, min;
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			need = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			need = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return false;
		}
		if (i + need >= len) {
			/* the sequence runs past the end */
			if (complete)
				return false;
			for (size_t k = i + 1; k < len; k++)
				if ((p[k] & 0xc0) != 0x80)
					return false;
			return true;
		}
		for (size_t k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		/* overlong forms, surrogates and beyond U+10FFFF are not UTF-8 */
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

/* True when the text, after blanks (and a BOM), starts with tag (any case). */
static bool starts_with_tag(const uint8_t *p, size_t len, const char *tag)
{
	size_t i = 0, tlen = strlen(tag);

	if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
		i = 3;
	while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
		i++;
	return len - i >= tlen && strncasecmp((const char *)p + i, tag, tlen) == 0;
}

/* True when "<svg" appears in the first KiB (after an XML prolog, comments). */
static bool has_svg_root(const uint8_t *p, size_t len)
{
	if (len > 1024)
		len = 1024;
	return memmem(p, len, "<svg", 4) != NULL;
}

const char *collect_mime_type(const char *path, const uint8_t *head, size_t len, bool complete)
{
	static const struct {
		const char *ext, *mime;
	} by_name[] = {
		{".csv", "text/csv"},  {".json", "application/json"}, {".html", "text/html"},
		{".htm", "text/html"}, {".svg", "image/svg+xml"},     {".txt", "text/plain"},
	};
	const char *base = strrchr(path, '/'), *dot;

	/* content first: what a viewer would trust is what the bytes are */
	if (len >= 8 && memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0)
		return "image/png";
	if (len >= 3 && memcmp(head, "\xff\xd8\xff", 3) == 0)
		return "image/jpeg";
	if (len >= 5 && memcmp(head, "%PDF-", 5) == 0)
		return "application/pdf";
	if (!text_ok(head, len, complete))
		return "application/octet-stream";
	base = base != NULL ? base + 1 : path;
	dot = strrchr(base, '.');
	if (dot != NULL && dot != base)
		for (size_t i = 0; i < sizeof(by_name) / sizeof(by_name[0]); i++)
			if (strcasecmp(dot, by_name[i].ext) == 0) {
				/* an .svg must still look like one: it is rendered */
				if (strcmp(by_name[i].ext, ".svg") == 0 && !has_svg_root(head, len))
					return "text/plain";
				return by_name[i].mime;
			}
	if (starts_with_tag(head, len, "<svg") ||
	    (starts_with_tag(head, len, "<?xml") && has_svg_root(head, len)))
		return "image/svg+xml";
	if (starts_with_tag(head, len, "<!doctype html") || starts_with_tag(head, len, "<html"))
		return "text/html";
	return "text/plain";
}

/* ---- the walk ---------------------------------------------------------------- */

struct walk {
	struct glob *globs;
	size_t n;
	size_t row_bytes; /* one row of every glob, back to back */
	int events_fd;
	dev_t dev;
	uint64_t budget;
	uint8_t *buf; /* COLLECT_CHUNK bytes */
	unsigned entries;
	bool stop;
	bool failed; /* the events pipe is gone */
	struct collect_stats *st;
};

static void put_le(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Writes both buffers fully (the pipe may take them in pieces). */
static int write_iov(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t n = writev(fd, iov, cnt);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* One 'A' frame: u32 length, 'A', u16 path length, path, u64 offset, u64 size, u8 flags, data. */
static int send_frame(struct walk *w, const char *path, uint64_t offset, uint64_t size,
		      uint8_t flags, const uint8_t *data, size_t len)
{
	uint8_t head[4 + 1 + 2 + PATH_LIMIT + 17];
	size_t plen = strlen(path), h = 0;
	struct iovec iov[2];

	put_le(head, 1 + 2 + plen + 17 + len, 4);
	head[4] = 'A';
	put_le(head + 5, plen, 2);
	memcpy(head + 7, path, plen);
	h = 7 + plen;
	put_le(head + h, offset, 8);
	put_le(head + h + 8, size, 8);
	head[h + 16] = flags;
	iov[0] = (struct iovec){.iov_base = head, .iov_len = h + 17};
	iov[1] = (struct iovec){.iov_base = (void *)data, .iov_len = len};
	if (write_iov(w->events_fd, iov, len > 0 ? 2 : 1) < 0) {
		w->failed = w->stop = true;
		return -1;
	}
	return 0;
}

/* Reads up to len bytes at offset; returns how many (short only at the file's end). */
static ssize_t read_at(int fd, uint8_t *buf, size_t len, uint64_t offset)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)(offset + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Sends the regular file name (in dfd, seen as *seen) as path. */
static void send_file(struct walk *w, int dfd, const char *name, const char *path,
		      const struct stat *seen)
{
	uint64_t size, sendable, left = w->budget - w->st->bytes, off = 0;
	bool cut;
	struct stat st;
	int fd;

	if (w->st->files >= COLLECT_MAX_FILES) {
		w->st->limited = w->stop = true;
		return;
	}
	/* O_NONBLOCK: were it swapped for a FIFO, opening it would not wait
	 * for a writer. A file the code made unreadable (mode 000) fails here
	 * with EACCES: init holds no capability, it reads as the sandbox user */
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		w->st->skipped++;
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_dev != seen->st_dev ||
	    st.st_ino != seen->st_ino) {
		w->st->skipped++;
		close(fd);
		return;
	}
	size = (uint64_t)st.st_size;
	cut = size > left;
	sendable = cut ? left : size;
	do {
		size_t want =
			sendable - off > COLLECT_CHUNK ? COLLECT_CHUNK : (size_t)(sendable - off);
		ssize_t got = want > 0 ? read_at(fd, w->buf, want, off) : 0;
		uint8_t flags = 0;
		if (got < 0)
			got = 0; /* an I/O error: send what we have, marked cut */
		if ((size_t)got < want) {
			cut = true; /* it changed under us (it cannot: nothing runs) */
			sendable = off + (uint64_t)got;
		}
		if (off + (uint64_t)got == sendable)
			flags = COLLECT_FLAG_EOF | (cut ? COLLECT_FLAG_TRUNCATED : 0);
		if (send_frame(w, path, off, size, flags, w->buf, (size_t)got) < 0)
			break;
		off += (uint64_t)got;
		w->st->bytes += (uint64_t)got;
	} while (off < sendable);
	close(fd);
	w->st->files++;
	if (cut) {
		/* the budget is spent: nothing more, not even empty files */
		w->st->truncated = true;
		w->stop = true;
	}
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Reads the names of the directory dfd (consumed), sorted so the artifacts
 * come in a stable order. Returns them (NULL-terminated, free each and the
 * array), or NULL.
 */
static char **read_names(struct walk *w, int dfd, size_t *count)
{
	DIR *d = fdopendir(dfd);
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;

	*count = 0;
	if (d == NULL) {
		close(dfd);
		return NULL;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (++w->entries > COLLECT_MAX_ENTRIES) {
			w->st->limited = w->stop = true;
			break;
		}
		if (n + 1 >= cap) {
			size_t ncap = cap ? cap * 2 : 16;
			char **t = realloc(names, ncap * sizeof(*names));
			if (t == NULL)
				break;
			names = t;
			cap = ncap;
		}
		names[n] = strdup(de->d_name);
		if (names[n] == NULL)
			break;
		n++;
	}
	closedir(d);
	if (names != NULL)
		qsort(names, n, sizeof(*names), cmp_names);
	*count = n;
	return names;
}

/*
 * Walks the directory dir (an open fd, consumed; its path relative to the
 * working directory is path, plen bytes, "" at the top), rows: the globs'
 * rows for it.
 */
static void walk_dir(struct walk *w, int dir, char *path, size_t plen, const uint8_t *rows,
		     unsigned depth)
{
	uint8_t *next = malloc(w->row_bytes);
	size_t count = 0;
	/* fdopendir takes dir; we keep a duplicate for the openat()s */
	int dfd = fcntl(dir, F_DUPFD_CLOEXEC, 0);
	char **names;

	if (next == NULL || dfd < 0) {
		free(next);
		close(dir);
		if (dfd >= 0)
			close(dfd);
		return;
	}
	names = read_names(w, dir, &count);
	for (size_t k = 0; k < count && !w->stop; k++) {
		const char *name = names[k];
		size_t nlen = strlen(name), off = 0;
		bool alive = false, match = false;
		struct stat st;

		if (plen + (plen > 0) + nlen > PATH_LIMIT)
			continue; /* too long to send, and so is everything below */
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		/* only directories and regular files: symlinks, FIFOs, sockets
		 * and devices are never opened */
		if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
			continue;
		for (size_t i = 0; i < w->n; i++) {
			const struct glob *g = &w->globs[i];
			row_step(g, rows + off, name, next + off);
			alive = alive || row_alive(g, next + off);
			match = match || next[off + g->n];
			off += g->n + 1;
		}
		if (plen > 0)
			path[plen] = '/';
		memcpy(path + plen + (plen > 0), name, nlen + 1);
		if (S_ISREG(st.st_mode) && match) {
			send_file(w, dfd, name, path, &st);
		} else if (S_ISDIR(st.st_mode) && alive && st.st_dev == w->dev &&
			   depth < COLLECT_MAX_DEPTH) {
			/* O_NOFOLLOW: a symlinked directory is not entered; the
			 * device check: nor is a mount point (there are none in a
			 * working directory the code cannot mount on, but the check
			 * is cheap) */
			int sub =
				openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			struct stat sst;
			if (sub >= 0 && fstat(sub, &sst) == 0 && sst.st_dev == w->dev &&
			    sst.st_ino == st.st_ino)
				walk_dir(w, sub, path, plen + (plen > 0) + nlen, next, depth + 1);
			else if (sub >= 0)
				close(sub);
		}
		path[plen] = '\0';
	}
	for (size_t k = 0; k < count; k++)
		free(names[k]);
	free(names);
	free(next);
	close(dfd);
}

int collect_run(int homefd, const char *const *globs, size_t n, int events_fd, uint64_t budget,
		struct collect_stats *st)
{
	struct walk w = {.n = 0, .events_fd = events_fd, .budget = budget, .st = st};
	char path[PATH_LIMIT + 2] = "";
	uint8_t *rows = NULL;
	struct stat hst;
	int top = -1, rc = -1;

	memset(st, 0, sizeof(*st));
	w.globs = calloc(n ? n : 1, sizeof(*w.globs));
	w.buf = malloc(COLLECT_CHUNK);
	if (w.globs == NULL || w.buf == NULL)
		goto out;
	for (; w.n < n; w.n++) {
		if (glob_compile(&w.globs[w.n], globs[w.n]) < 0)
			goto out;
		w.row_bytes += w.globs[w.n].n + 1;
	}
	rows = malloc(w.row_bytes ? w.row_bytes : 1);
	if (rows == NULL)
		goto out;
	for (size_t i = 0, off = 0; i < n; i++) {
		row_start(&w.globs[i], rows + off);
		off += w.globs[i].n + 1;
	}
	top = fcntl(homefd, F_DUPFD_CLOEXEC, 0);
	if (top < 0 || fstat(top, &hst) < 0)
		goto out;
	w.dev = hst.st_dev;
	walk_dir(&w, top, path, 0, rows, 0);
	top = -1;
	if (w.failed)
		goto out;
	rc = 0;
out:
	if (top >= 0)
		close(top);
	for (size_t i = 0; i < w.n; i++)
		glob_free(&w.globs[i]);
	free(w.globs);
	free(w.buf);
	free(rows);
	return rc;
}
