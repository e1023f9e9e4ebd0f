/* server/utf8.c: what counts as one valid UTF-8 sequence, and the in-place fix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "utf8.h"

static size_t len_of(const char *s) { return utf8_seq_len((const unsigned char *)s, strlen(s)); }

static void test_sequences(void **state)
{
	(void)state;
	assert_int_equal(len_of("a"), 1);
	assert_int_equal(len_of("\xc3\xa9"), 2);	 /* é */
	assert_int_equal(len_of("\xe2\x82\xac"), 3);	 /* € */
	assert_int_equal(len_of("\xf0\x9f\x98\x80"), 4); /* U+1F600 */
	assert_int_equal(len_of("\xc0\xaf"), 0);	 /* overlong '/' */
	assert_int_equal(len_of("\xe0\x80\xaf"), 0);	 /* overlong, 3 bytes */
	assert_int_equal(len_of("\xed\xa0\x80"), 0);	 /* surrogate U+D800 */
	assert_int_equal(len_of("\xf4\x90\x80\x80"), 0); /* beyond U+10FFFF */
	assert_int_equal(len_of("\x80"), 0);		 /* lone continuation */
	assert_int_equal(len_of("\xff"), 0);
	/* a sequence cut by the end of what may be read */
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xe2\x82\xac", 2), 0);
	assert_int_equal(utf8_seq_len((const unsigned char *)"a", 0), 0);
	/* the string form stops at the terminator */
	assert_int_equal(utf8_seq_len_str("\xe2\x82"), 0);
	assert_int_equal(utf8_seq_len_str("\xe2\x82\xac!"), 3);
}

static void test_fix(void **state)
{
	char s[] = "ok \xc3\xa9 \xff\xc0\xaf end \xe2\x82";

	(void)state;
	utf8_fix(s);
	assert_string_equal(s, "ok \xc3\xa9 ??? end ??");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sequences),
		cmocka_unit_test(test_fix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
