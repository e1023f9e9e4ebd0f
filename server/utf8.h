/*
 * UTF-8 checks shared by everything that passes on bytes it did not make
 * (log lines, audit records, status messages, what a sandbox wrote): other
 * languages' decoders reject a whole message over one invalid string.
 */
#ifndef CAPIBOX_UTF8_H
#define CAPIBOX_UTF8_H

#include <stddef.h>

/*
 * Length (1..4) of the valid UTF-8 sequence at s, reading at most n bytes;
 * 0 when it is not one (overlong forms, surrogates and code points beyond
 * U+10FFFF are not).
 */
size_t utf8_seq_len(const unsigned char *s, size_t n);

/* Same for a NUL-terminated string: never reads past its terminator. */
size_t utf8_seq_len_str(const char *s);

/* Replaces, in place, every byte of s that is not part of valid UTF-8 with '?'. */
void utf8_fix(char *s);

#endif
