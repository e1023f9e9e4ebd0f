#include "payload.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../request.h"
#include "collect.h"

#define PAYLOAD_MAGIC 0x32584243u /* "CBX2": with the collect globs */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int seal(int fd)
{
	/* sealed: nobody (not even a confused sandbox) can change it after */
	if (lseek(fd, 0, SEEK_SET) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		return -1;
	return 0;
}

int payload_blob(const char *name, const void *data, size_t len)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -1;
	if ((len > 0 && write_all(fd, data, len) < 0) || seal(fd) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int payload_create(const struct exec_request *req)
{
	int fd = memfd_create("capibox-payload", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	uint32_t head[2] = {PAYLOAD_MAGIC, (uint32_t)req->n_files};
	uint64_t code_len = req->code_len;

	if (fd < 0)
		return -1;
	if (write_all(fd, head, sizeof(head)) < 0 || write_all(fd, &code_len, 8) < 0 ||
	    write_all(fd, req->code, req->code_len) < 0)
		goto fail;
	for (size_t i = 0; i < req->n_files; i++) {
		const struct exec_file *f = &req->files[i];
		uint32_t fh[2] = {(uint32_t)strlen(f->path), f->mode ? f->mode : 0644};
		uint64_t len = f->len;
		if (write_all(fd, fh, sizeof(fh)) < 0 || write_all(fd, &len, 8) < 0 ||
		    write_all(fd, f->path, fh[0]) < 0 ||
		    (f->len > 0 && write_all(fd, f->data, f->len) < 0))
			goto fail;
	}
	{
		uint32_t n_collect = (uint32_t)req->n_collect;
		if (write_all(fd, &n_collect, 4) < 0)
			goto fail;
		for (size_t i = 0; i < req->n_collect; i++) {
			uint32_t len = (uint32_t)strlen(req->collect[i]);
			if (write_all(fd, &len, 4) < 0 || write_all(fd, req->collect[i], len) < 0)
				goto fail;
		}
	}
	if (seal(fd) < 0)
		goto fail;
	return fd;
fail : {
	int saved = errno;
	close(fd);
	errno = saved;
}
	return -1;
}

/* Bounded reader over the mapped payload. */
struct reader {
	const uint8_t *p;
	size_t left;
};

static int take(struct reader *r, void *out, size_t n)
{
	if (n > r->left)
		return -1;
	if (out)
		memcpy(out, r->p, n);
	r->p += n;
	r->left -= n;
	return 0;
}

static int write_file(int dirfd, const char *path, uint32_t mode, const uint8_t *data, size_t len,
		      char *err, size_t errlen)
{
	char buf[1100];
	char *slash;
	int fd;

	if (strlen(path) >= sizeof(buf)) {
		snprintf(err, errlen, "file path too long");
		return -1;
	}
	memcpy(buf, path, strlen(path) + 1);
	/* create parents one by one; never follow a symlink (there should be none
	 * in a fresh tmpfs, but the check is cheap) */
	for (slash = strchr(buf, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdirat(dirfd, buf, 0755) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "mkdir %s: %s", buf, strerror(errno));
			return -1;
		}
		*slash = '/';
	}
	fd = openat(dirfd, buf, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		    mode & 07777);
	if (fd < 0) {
		snprintf(err, errlen, "create %s: %s", buf, strerror(errno));
		return -1;
	}
	if ((len > 0 && write_all(fd, data, len) < 0) || fchmod(fd, mode & 07777) < 0) {
		snprintf(err, errlen, "write %s: %s", buf, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * Reads the collect globs at r (the payload's last section) into *out (NULL
 * when there are none): one allocation, the pointers then the strings.
 */
static int read_globs(struct reader *r, char ***out, char *err, size_t errlen)
{
	struct reader start;
	uint32_t n, len;
	size_t bytes = 0;
	char **v, *s;

	if (out != NULL)
		*out = NULL;
	if (take(r, &n, 4) < 0 || n > COLLECT_MAX_GLOBS) {
		snprintf(err, errlen, "payload: bad collect count");
		return -1;
	}
	/* first pass: check each glob and size the block */
	start = *r;
	for (uint32_t i = 0; i < n; i++) {
		const char *why;
		if (take(r, &len, 4) < 0 || len > COLLECT_MAX_GLOB_LEN || len > r->left) {
			snprintf(err, errlen, "payload: bad collect record %u", i);
			return -1;
		}
		why = collect_glob_check((const char *)r->p, len);
		if (why != NULL) {
			snprintf(err, errlen, "payload: collect glob %u %s", i, why);
			return -1;
		}
		take(r, NULL, len);
		bytes += len + 1;
	}
	if (n == 0 || out == NULL)
		return 0;
	v = malloc((n + 1) * sizeof(*v) + bytes);
	if (v == NULL) {
		snprintf(err, errlen, "payload: out of memory");
		return -1;
	}
	s = (char *)(v + n + 1);
	for (uint32_t i = 0; i < n; i++) {
		take(&start, &len, 4);
		take(&start, s, len);
		s[len] = '\0';
		v[i] = s;
		s += len + 1;
	}
	v[n] = NULL;
	*out = v;
	return 0;
}

int payload_extract(int fd, const char *code_path, int dirfd, char *err, size_t errlen)
{
	return payload_unpack(fd, code_path, dirfd, NULL, err, errlen);
}

int payload_unpack(int fd, const char *code_path, int dirfd, char ***collect, char *err,
		   size_t errlen)
{
	struct stat st;
	struct reader r;
	uint32_t head[2];
	uint64_t code_len;
	void *map = NULL;
	char **globs = NULL;
	int ret = -1, cfd;

	if (fstat(fd, &st) < 0 || st.st_size < 16) {
		snprintf(err, errlen, "payload: too short");
		return -1;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		snprintf(err, errlen, "payload: mmap: %s", strerror(errno));
		return -1;
	}
	r.p = map;
	r.left = (size_t)st.st_size;
	if (take(&r, head, sizeof(head)) < 0 || head[0] != PAYLOAD_MAGIC ||
	    take(&r, &code_len, 8) < 0 || code_len > r.left) {
		snprintf(err, errlen, "payload: bad header");
		goto out;
	}
	cfd = open(code_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
	if (cfd < 0 || write_all(cfd, r.p, (size_t)code_len) < 0) {
		snprintf(err, errlen, "write %s: %s", code_path, strerror(errno));
		if (cfd >= 0)
			close(cfd);
		goto out;
	}
	close(cfd);
	take(&r, NULL, (size_t)code_len);
	for (uint32_t i = 0; i < head[1]; i++) {
		uint32_t fh[2];
		uint64_t len;
		char path[1025];
		if (take(&r, fh, sizeof(fh)) < 0 || take(&r, &len, 8) < 0 || fh[0] == 0 ||
		    fh[0] >= sizeof(path) || take(&r, path, fh[0]) < 0 || len > r.left) {
			snprintf(err, errlen, "payload: bad file record %u", i);
			goto out;
		}
		path[fh[0]] = '\0';
		if (!request_path_ok(path, fh[0])) {
			snprintf(err, errlen, "payload: bad file path in record %u", i);
			goto out;
		}
		if (write_file(dirfd, path, fh[1], r.p, (size_t)len, err, errlen) < 0)
			goto out;
		take(&r, NULL, (size_t)len);
	}
	if (read_globs(&r, collect != NULL ? &globs : NULL, err, errlen) < 0)
		goto out;
	if (r.left != 0) {
		snprintf(err, errlen, "payload: trailing bytes");
		goto out;
	}
	if (collect != NULL) {
		*collect = globs;
		globs = NULL;
	}
	ret = 0;
out:
	free(globs);
	munmap(map, (size_t)st.st_size);
	return ret;
}
