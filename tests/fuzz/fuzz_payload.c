/*
 * Fuzz target: payload_extract(), the parser the sandbox's init runs on the
 * payload memfd (code and input files) before the user's code starts.
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
	char err[256];
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
	rc = payload_extract(memfd, scratch.code_path, scratch.home, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -1, "rc %d", rc);
	if (rc < 0)
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0',
			   "an error without a message");
	scratch_clear(&scratch);
	return 0;
}
