/*
 * Fuzz target: the Health requests. The server unpacks capibox.v1
 * HealthRequest and grpc.health.v1 HealthCheckRequest with protobuf-c and,
 * for an unknown service, echoes the name back through convert_utf8_clean()
 * into a 160-byte buffer (the NOT_FOUND message).
 *
 * Input: the message bytes, unpacked as both types. The service name is
 * then cleaned into the server's buffer size and into tiny ones (the
 * truncation paths), and the result is checked with a UTF-8 decoder that
 * shares no code with convert.c: what goes back to a client must be valid
 * UTF-8 without control bytes other than tab and newline.
 */
#include <string.h>

#include "capibox/v1/sandbox.pb-c.h"
#include "fuzz.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/convert.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

/* Validates s as UTF-8 (RFC 3629: no overlongs, surrogates, > U+10FFFF). */
static int utf8_clean(const unsigned char *s)
{
	while (*s) {
		uint32_t cp;
		int more;

		if (*s < 0x80) {
			if ((*s < 0x20 && *s != '\n' && *s != '\t') || *s == 0x7f)
				return 0;
			s++;
			continue;
		}
		if ((*s & 0xe0) == 0xc0) {
			cp = *s & 0x1f;
			more = 1;
		} else if ((*s & 0xf0) == 0xe0) {
			cp = *s & 0x0f;
			more = 2;
		} else if ((*s & 0xf8) == 0xf0) {
			cp = *s & 0x07;
			more = 3;
		} else {
			return 0;
		}
		s++;
		for (int i = 0; i < more; i++, s++) {
			if ((*s & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (*s & 0x3f);
		}
		if ((more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) ||
		    (more == 3 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return 0;
	}
	return 1;
}

static void check_clean(const char *in, size_t buflen)
{
	char buf[160];
	const char *out;

	memset(buf, 'x', sizeof(buf));
	out = convert_utf8_clean(in, buf, buflen);
	FUZZ_CHECK(out == buf, "did not return buf");
	FUZZ_CHECK(memchr(buf, '\0', buflen) != NULL, "unterminated in %zu bytes", buflen);
	FUZZ_CHECK(utf8_clean((const unsigned char *)buf), "not clean UTF-8 (buflen %zu)", buflen);
	FUZZ_CHECK(strlen(buf) <= strlen(in), "grew");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Capibox__V1__HealthRequest *h;
	Grpc__Health__V1__HealthCheckRequest *c;

	h = (Capibox__V1__HealthRequest *)protobuf_c_message_unpack(
		&capibox__v1__health_request__descriptor, NULL, size, data);
	if (h != NULL) {
		FUZZ_CHECK(h->deep == 0 || h->deep == 1, "deep %d", (int)h->deep);
		capibox__v1__health_request__free_unpacked(h, NULL);
	}
	c = (Grpc__Health__V1__HealthCheckRequest *)protobuf_c_message_unpack(
		&grpc__health__v1__health_check_request__descriptor, NULL, size, data);
	if (c != NULL) {
		FUZZ_CHECK(c->service != NULL, "service is NULL");
		check_clean(c->service, 160); /* check_handle's name[160] */
		for (size_t n = 1; n <= 5; n++)
			check_clean(c->service, n);
		grpc__health__v1__health_check_request__free_unpacked(c, NULL);
	}
	return 0;
}
