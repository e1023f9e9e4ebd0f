/*
 * A scan of python source for imported top-level packages. Not a parser:
 * comments and strings are not skipped, so a word "import numpy" inside a
 * string counts. Both kinds of error only change which zygote clones the
 * sandbox (imports.h).
 */
#include "imports.h"

#include <string.h>

/* packages that import numpy when they load: numpy preloaded speeds them */
static const char *const numpy_users[] = {
	"matplotlib", "scipy", "seaborn", "sklearn", "statsmodels", "numexpr", "bottleneck",
};

struct scan {
	const char *p, *end;
};

static bool ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || (unsigned char)c >= 0x80;
}

/* Spaces, tabs and backslash-newline continuations; also newlines inside
 * the parentheses of `from x import (a,\n b)` when nl. */
static void skip_blank(struct scan *s, bool nl)
{
	while (s->p < s->end) {
		if (*s->p == ' ' || *s->p == '\t' || (nl && (*s->p == '\n' || *s->p == '\r')))
			s->p++;
		else if (*s->p == '\\' && s->p + 1 < s->end && s->p[1] == '\n')
			s->p += 2;
		else
			break;
	}
}

/* An identifier at s->p (length 0 when none); s->p moves past it. */
static size_t take_ident(struct scan *s, const char **start)
{
	*start = s->p;
	while (s->p < s->end && ident_char(*s->p))
		s->p++;
	return (size_t)(s->p - *start);
}

/* Whether name (len bytes) is one of csv's entries (spaces around each ignored). */
static bool in_csv(const char *name, size_t len, const char *csv)
{
	const char *p = csv;

	while (*p != '\0') {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		const char *a = p, *b = p + n;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		if ((size_t)(b - a) == len && len > 0 && memcmp(a, name, len) == 0)
			return true;
		if (e == NULL)
			break;
		p = e + 1;
	}
	return false;
}

static bool wanted(const char *name, size_t len, const char *csv)
{
	if (in_csv(name, len, csv))
		return true;
	if (!in_csv("numpy", 5, csv))
		return false;
	for (size_t i = 0; i < sizeof(numpy_users) / sizeof(numpy_users[0]); i++)
		if (strlen(numpy_users[i]) == len && memcmp(numpy_users[i], name, len) == 0)
			return true;
	return false;
}

/* A dotted name at s->p: true when its first part is wanted. */
static bool dotted_wanted(struct scan *s, const char *csv)
{
	const char *id;
	size_t n = take_ident(s, &id);
	bool hit = n > 0 && wanted(id, n, csv);

	while (s->p < s->end && *s->p == '.') {
		s->p++;
		take_ident(s, &id);
	}
	return hit;
}

/* After `import`: "a.b as c, d, (e)" up to the end of the statement. */
static bool import_list(struct scan *s, const char *csv)
{
	for (;;) {
		const char *id;
		size_t n;

		skip_blank(s, false);
		if (dotted_wanted(s, csv))
			return true;
		skip_blank(s, false);
		n = take_ident(s, &id);
		if (n == 2 && memcmp(id, "as", 2) == 0) {
			skip_blank(s, false);
			take_ident(s, &id);
			skip_blank(s, false);
		} else if (n > 0) {
			return false;
		}
		if (s->p >= s->end || *s->p != ',')
			return false;
		s->p++;
	}
}

/* After `__import__` or `import_module`: ( "name" or ( 'name'. */
static bool call_literal(struct scan *s, const char *csv)
{
	char q;

	skip_blank(s, false);
	if (s->p >= s->end || *s->p != '(')
		return false;
	s->p++;
	skip_blank(s, true);
	if (s->p >= s->end || (*s->p != '"' && *s->p != '\''))
		return false;
	q = *s->p++;
	return dotted_wanted(s, csv) && s->p < s->end && (*s->p == q || *s->p == '.');
}

bool imports_any(const char *code, size_t len, const char *csv)
{
	struct scan s = {code, code + len};

	if (code == NULL || csv == NULL || csv[0] == '\0')
		return false;
	while (s.p < s.end) {
		const char *id;
		size_t n;

		if (!ident_char(*s.p)) {
			s.p++;
			continue;
		}
		n = take_ident(&s, &id);
		if (n == 6 && memcmp(id, "import", 6) == 0) {
			if (import_list(&s, csv))
				return true;
		} else if (n == 4 && memcmp(id, "from", 4) == 0) {
			skip_blank(&s, false);
			if (s.p < s.end && *s.p != '.' && dotted_wanted(&s, csv))
				return true;
		} else if ((n == 10 && memcmp(id, "__import__", 10) == 0) ||
			   (n == 13 && memcmp(id, "import_module", 13) == 0)) {
			if (call_literal(&s, csv))
				return true;
		}
	}
	return false;
}
