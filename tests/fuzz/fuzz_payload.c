/*
 * Fuzz target: payload_unpack(), the parser the sandbox's init runs on the
 * payload memfd (code, input files and collect globs) before the user's
 * code starts.
 *
 * Input: the payload bytes, as the memfd would hold them. The sandbox's init
 * is the receiving side: a payload it cannot parse must be an error message,
 * never a crash or a write outside the directory it was given.
 *
 * Each input is written to one reused memfd and extracted into the private
 * tmpfs of scratch.c, which is emptied after every input.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "sandbox/collect.h"
#include "sandbox/payload.h"

static struct scratch scratch;
static int memfd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	scratch_init(&scratch);
	memfd = memfd_create("fuzz-payload", MFD_CLOEXEC);
	if (memfd < 0) {
		perror("memfd_create");
		exit(2);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256], **globs = NULL;
	size_t off = 0;
	int rc;

	if (ftruncate(memfd, 0) < 0)
		abort();
	while (off < size) {
		ssize_t n = pwrite(memfd, data + off, size - off, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			abort();
		off += (size_t)n;
	}
	memset(err, 'x', sizeof(err)); /* a message must be written, and terminated */
	rc = payload_unpack(memfd, scratch.code_path, scratch.home, &globs, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -1, "rc %d", rc);
	if (rc < 0) {
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0',
			   "an error without a message");
	} else if (globs != NULL) {
		/* what init will walk with: each glob as the front validates it */
		size_t n = 0;
		for (; globs[n] != NULL; n++)
			FUZZ_CHECK(collect_glob_check(globs[n], strlen(globs[n])) == NULL,
				   "glob %zu passed the payload but not the check", n);
		FUZZ_CHECK(n > 0 && n <= COLLECT_MAX_GLOBS, "%zu globs", n);
	}
	free(globs);
	scratch_clear(&scratch);
	return 0;
}
