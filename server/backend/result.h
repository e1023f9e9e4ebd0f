/*
 * A result frame ('R') from a sandbox's runner: a JSON object
 * {"text": str, "json": str|null, "mime_type": str}. The sandbox is not
 * trusted: anything else ends the run with the message returned.
 */
#ifndef CAPIBOX_BACKEND_RESULT_H
#define CAPIBOX_BACKEND_RESULT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parses the len bytes at p (json-c, strict). Returns NULL and sets *text
 * (never NULL), *json and *mime (NULL when absent or null), each a new
 * NUL-terminated string the caller frees; or what is wrong, with nothing
 * set. A NUL in a value becomes '?'; a lone surrogate escape becomes
 * U+FFFD (json-c's choice); of a repeated key the last counts.
 */
const char *result_parse(const uint8_t *p, size_t len, char **text, char **json, char **mime);

#endif
