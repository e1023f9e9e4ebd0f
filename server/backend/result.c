#include "result.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The string value of v as a new C string (NUL bytes as '?'), or NULL. */
static char *dup_value(struct json_object *v)
{
	const char *s = json_object_get_string(v);
	int n = json_object_get_string_len(v);
	char *out;

	if (s == NULL || n < 0)
		return NULL;
	out = malloc((size_t)n + 1);
	if (out == NULL)
		return NULL;
	for (int i = 0; i < n; i++)
		out[i] = s[i] == '\0' ? '?' : s[i];
	out[n] = '\0';
	return out;
}

const char *result_parse(const uint8_t *p, size_t len, char **text, char **json, char **mime)
{
	/* one object of strings: depth 1 is the object */
	struct json_tokener *tok = json_tokener_new_ex(2);
	struct json_object *o = NULL;
	char *vals[3] = {NULL, NULL, NULL};
	const char *bad = NULL;

	*text = *json = *mime = NULL;
	if (tok == NULL)
		return "result: out of memory";
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	if (len <= INT_MAX)
		o = json_tokener_parse_ex(tok, (const char *)p, (int)len);
	if (o == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len || !json_object_is_type(o, json_type_object)) {
		bad = "result: not a JSON object";
		goto out;
	}
	json_object_object_foreach(o, key, v)
	{
		static const char *const names[3] = {"text", "json", "mime_type"};
		int k = 0;

		while (k < 3 && strcmp(key, names[k]) != 0)
			k++;
		if (k == 3) {
			bad = "result: unknown key";
			goto out;
		}
		if (k == 1 && json_object_is_type(v, json_type_null))
			continue;
		if (!json_object_is_type(v, json_type_string)) {
			bad = "result: bad string value";
			goto out;
		}
		if ((vals[k] = dup_value(v)) == NULL) {
			bad = "result: out of memory";
			goto out;
		}
	}
	if (vals[0] == NULL)
		bad = "result: no text";
out:
	if (bad != NULL) {
		for (int k = 0; k < 3; k++)
			free(vals[k]);
	} else {
		*text = vals[0];
		*json = vals[1];
		*mime = vals[2];
	}
	json_object_put(o);
	json_tokener_free(tok);
	return bad;
}
