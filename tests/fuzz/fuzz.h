/*
 * Helpers shared by the libFuzzer targets in tests/fuzz/.
 *
 * FUZZ_CHECK states a property the code under test promises; a violation
 * aborts, which libFuzzer reports as a crash with the input that caused it
 * (assert() would vanish under -DNDEBUG).
 *
 * The scratch directory is where payload_extract writes: a tmpfs mounted
 * in a private mount namespace and then detached, so it lives only as long
 * as the fuzzer process holds its descriptor and nothing is left in /tmp,
 * not even after a crash.
 */
#ifndef CAPIBOX_FUZZ_H
#define CAPIBOX_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, ...)                                                                   \
	do {                                                                                    \
		if (!(cond)) {                                                                  \
			fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s: ", __FILE__, __LINE__, \
				#cond);                                                         \
			fprintf(stderr, __VA_ARGS__);                                           \
			fputc('\n', stderr);                                                    \
			abort();                                                                \
		}                                                                               \
	} while (0)

struct scratch {
	int root;	    /* the scratch directory itself */
	int home;	    /* root/home: where payload files go (the sandbox's /home/user) */
	char code_path[64]; /* root/code through /proc/self/fd: payload_extract takes a path */
};

/* Sets up the scratch directory (once per process); exits on failure. */
void scratch_init(struct scratch *s);

/* Removes everything the last extraction left: root/code and all under home. */
void scratch_clear(struct scratch *s);

/* The libFuzzer entry points, declared for -Wmissing-prototypes. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
