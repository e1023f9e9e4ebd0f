/*
 * Server reflection; see reflection.h.
 *
 * The descriptor set is parsed once at start with a small protobuf wire
 * reader (only names, packages, dependencies and the symbols each file
 * defines are needed; the file descriptors themselves are served as the
 * bytes protoc wrote). The index is read-only afterwards, so the
 * completion-queue threads share it without a lock.
 */
#include "reflection.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../log.h"

extern const uint8_t capibox_descriptor_set[];
extern const size_t capibox_descriptor_set_len;

#define NAME_MAX_LEN 256
#define STATUS_NOT_FOUND 5
#define STATUS_UNIMPLEMENTED 12

/* Services this server answers, in the order list_services gives them. */
static const char *const services[] = {
	"capibox.v1.SandboxService",
	"grpc.health.v1.Health",
	"grpc.reflection.v1.ServerReflection",
	"grpc.reflection.v1alpha.ServerReflection",
};
#define N_SERVICES (sizeof(services) / sizeof(services[0]))

struct refl_file {
	const uint8_t *data; /* serialized FileDescriptorProto */
	size_t len;
	char *name;
	char **dep_names;
	size_t n_deps;
	size_t *deps; /* indexes into files */
};

struct refl_symbol {
	char *name; /* fully qualified, no leading dot */
	size_t file;
};

static struct refl_file *files;
static size_t n_files;
static struct refl_symbol *symbols;
static size_t n_symbols;

/* ---- protobuf wire reading (bounded) ---- */

struct wire {
	const uint8_t *p, *end;
};

static bool wire_varint(struct wire *w, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (w->p >= w->end)
			return false;
		*v |= (uint64_t)(*w->p & 0x7f) << shift;
		if ((*w->p++ & 0x80) == 0)
			return true;
	}
	return false;
}

/*
 * Next field: number and, for length-delimited fields, the payload; other
 * wire types are skipped (*data NULL). False at the end or on bad input
 * (*bad set).
 */
static bool wire_next(struct wire *w, uint32_t *field, const uint8_t **data, size_t *len, bool *bad)
{
	uint64_t key, v;

	*bad = false;
	if (w->p >= w->end)
		return false;
	if (!wire_varint(w, &key))
		goto bad;
	*field = (uint32_t)(key >> 3);
	*data = NULL;
	*len = 0;
	switch (key & 7) {
	case 0:
		if (!wire_varint(w, &v))
			goto bad;
		return true;
	case 1:
		if (w->end - w->p < 8)
			goto bad;
		w->p += 8;
		return true;
	case 5:
		if (w->end - w->p < 4)
			goto bad;
		w->p += 4;
		return true;
	case 2:
		if (!wire_varint(w, &v) || v > (uint64_t)(w->end - w->p))
			goto bad;
		*data = w->p;
		*len = (size_t)v;
		w->p += v;
		return true;
	default: goto bad;
	}
bad:
	*bad = true;
	return false;
}

static char *xstrndup(const uint8_t *s, size_t n)
{
	char *r = strndup((const char *)s, n);

	if (r == NULL)
		fatal("strndup");
	return r;
}

static void symbol_add(const char *prefix, const uint8_t *name, size_t len, size_t file, char *out,
		       size_t outlen)
{
	struct refl_symbol *s;

	if (snprintf(out, outlen, "%s%s%.*s", prefix, prefix[0] ? "." : "", (int)len,
		     (const char *)name) >= (int)outlen)
		fatalx("reflection: symbol name too long in the descriptor set");
	s = realloc(symbols, (n_symbols + 1) * sizeof(*symbols));
	if (s == NULL)
		fatal("realloc");
	symbols = s;
	symbols[n_symbols].name = strdup(out);
	if (symbols[n_symbols].name == NULL)
		fatal("strdup");
	symbols[n_symbols].file = file;
	n_symbols++;
}

/* The name (field 1) of a descriptor message, or NULL. */
static const uint8_t *descriptor_name(const uint8_t *d, size_t dl, size_t *len)
{
	struct wire w = {d, d + dl};
	const uint8_t *data;
	uint32_t f;
	bool bad;

	while (wire_next(&w, &f, &data, len, &bad))
		if (f == 1 && data)
			return data;
	return NULL;
}

/* A message type, its nested types and enums (DescriptorProto 3 and 4). */
static void index_message(const char *prefix, const uint8_t *d, size_t dl, size_t file)
{
	char full[NAME_MAX_LEN];
	struct wire w = {d, d + dl};
	const uint8_t *name, *data;
	size_t nl, len;
	uint32_t f;
	bool bad;

	name = descriptor_name(d, dl, &nl);
	if (name == NULL)
		fatalx("reflection: a message without a name in the descriptor set");
	symbol_add(prefix, name, nl, file, full, sizeof(full));
	while (wire_next(&w, &f, &data, &len, &bad)) {
		if (data == NULL)
			continue;
		if (f == 3) {
			index_message(full, data, len, file);
		} else if (f == 4) {
			char e[NAME_MAX_LEN];
			const uint8_t *en = descriptor_name(data, len, &nl);

			if (en)
				symbol_add(full, en, nl, file, e, sizeof(e));
		}
	}
	if (bad)
		fatalx("reflection: malformed message descriptor %s", full);
}

static void index_service(const char *prefix, const uint8_t *d, size_t dl, size_t file)
{
	char full[NAME_MAX_LEN], m[NAME_MAX_LEN];
	struct wire w = {d, d + dl};
	const uint8_t *name, *data;
	size_t nl, len;
	uint32_t f;
	bool bad;

	name = descriptor_name(d, dl, &nl);
	if (name == NULL)
		fatalx("reflection: a service without a name in the descriptor set");
	symbol_add(prefix, name, nl, file, full, sizeof(full));
	while (wire_next(&w, &f, &data, &len, &bad)) {
		const uint8_t *mn;

		if (f == 2 && data && (mn = descriptor_name(data, len, &nl)) != NULL)
			symbol_add(full, mn, nl, file, m, sizeof(m));
	}
	if (bad)
		fatalx("reflection: malformed service descriptor %s", full);
}

static void index_file(size_t i)
{
	struct refl_file *rf = &files[i];
	struct wire w = {rf->data, rf->data + rf->len};
	char package[NAME_MAX_LEN] = "", tmp[NAME_MAX_LEN];
	const uint8_t *data;
	size_t len, nl;
	uint32_t f;
	bool bad;

	/* The package first: it prefixes every symbol whatever the field order. */
	while (wire_next(&w, &f, &data, &len, &bad)) {
		if (f == 1 && data) {
			rf->name = xstrndup(data, len);
		} else if (f == 2 && data) {
			snprintf(package, sizeof(package), "%.*s", (int)len, (const char *)data);
		} else if (f == 3 && data) {
			char **d = realloc(rf->dep_names, (rf->n_deps + 1) * sizeof(*d));

			if (d == NULL)
				fatal("realloc");
			rf->dep_names = d;
			rf->dep_names[rf->n_deps++] = xstrndup(data, len);
		}
	}
	if (bad || rf->name == NULL)
		fatalx("reflection: malformed file descriptor in the descriptor set");
	w.p = rf->data;
	while (wire_next(&w, &f, &data, &len, &bad)) {
		const uint8_t *n;

		if (data == NULL)
			continue;
		if (f == 4)
			index_message(package, data, len, i);
		else if (f == 5 && (n = descriptor_name(data, len, &nl)) != NULL)
			symbol_add(package, n, nl, i, tmp, sizeof(tmp));
		else if (f == 6)
			index_service(package, data, len, i);
	}
}

static long file_find(const char *name)
{
	for (size_t i = 0; i < n_files; i++)
		if (strcmp(files[i].name, name) == 0)
			return (long)i;
	return -1;
}

void reflection_init(void)
{
	struct wire w = {capibox_descriptor_set,
			 capibox_descriptor_set + capibox_descriptor_set_len};
	const uint8_t *data;
	size_t len;
	uint32_t f;
	bool bad;

	if (files != NULL)
		return;
	while (wire_next(&w, &f, &data, &len, &bad)) {
		struct refl_file *nf;

		if (f != 1 || data == NULL)
			continue;
		nf = realloc(files, (n_files + 1) * sizeof(*files));
		if (nf == NULL)
			fatal("realloc");
		files = nf;
		memset(&files[n_files], 0, sizeof(files[n_files]));
		files[n_files].data = data;
		files[n_files].len = len;
		n_files++;
	}
	if (bad || n_files == 0)
		fatalx("reflection: the embedded descriptor set is malformed");
	for (size_t i = 0; i < n_files; i++)
		index_file(i);
	for (size_t i = 0; i < n_files; i++) {
		files[i].deps = calloc(files[i].n_deps + 1, sizeof(size_t));
		if (files[i].deps == NULL)
			fatal("calloc");
		for (size_t d = 0; d < files[i].n_deps; d++) {
			long j = file_find(files[i].dep_names[d]);

			if (j < 0)
				fatalx("reflection: %s imports %s, which is not in the descriptor "
				       "set (build it with --include_imports)",
				       files[i].name, files[i].dep_names[d]);
			files[i].deps[d] = (size_t)j;
		}
	}
}

/* ---- answers ---- */

struct answer {
	Grpc__Reflection__V1__ServerReflectionResponse resp; /* first: the handle */
	Grpc__Reflection__V1__ServerReflectionRequest *req;
	Grpc__Reflection__V1__FileDescriptorResponse fdr;
	ProtobufCBinaryData *blobs;
	Grpc__Reflection__V1__ListServiceResponse lsr;
	Grpc__Reflection__V1__ServiceResponse svc[N_SERVICES];
	Grpc__Reflection__V1__ServiceResponse *svc_ptrs[N_SERVICES];
	Grpc__Reflection__V1__ExtensionNumberResponse enr;
	Grpc__Reflection__V1__ErrorResponse er;
	char message[400];
};

/* Adds file i and, after it, everything it imports (each once). */
static void closure_add(size_t i, bool *seen, struct answer *a)
{
	if (seen[i])
		return;
	seen[i] = true;
	a->blobs[a->fdr.n_file_descriptor_proto].data = (uint8_t *)files[i].data;
	a->blobs[a->fdr.n_file_descriptor_proto].len = files[i].len;
	a->fdr.n_file_descriptor_proto++;
	for (size_t d = 0; d < files[i].n_deps; d++)
		closure_add(files[i].deps[d], seen, a);
}

static void answer_files(struct answer *a, size_t i)
{
	bool *seen = calloc(n_files, sizeof(*seen));

	a->blobs = calloc(n_files, sizeof(*a->blobs));
	if (seen == NULL || a->blobs == NULL)
		fatal("calloc");
	grpc__reflection__v1__file_descriptor_response__init(&a->fdr);
	a->fdr.file_descriptor_proto = a->blobs;
	closure_add(i, seen, a);
	free(seen);
	a->resp.message_response_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
	a->resp.file_descriptor_response = &a->fdr;
}

static void answer_error(struct answer *a, int code, const char *what, const char *name)
{
	char clean[160];
	size_t o = 0;

	/* The name is the client's: keep it short and printable. */
	for (size_t i = 0; name[i] && o + 1 < sizeof(clean); i++)
		clean[o++] = (name[i] >= 0x20 && name[i] < 0x7f) ? name[i] : '?';
	clean[o] = '\0';
	grpc__reflection__v1__error_response__init(&a->er);
	a->er.error_code = code;
	snprintf(a->message, sizeof(a->message), "%s not found: %s", what, clean);
	a->er.error_message = a->message;
	a->resp.message_response_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
	a->resp.error_response = &a->er;
}

static void answer_symbol(struct answer *a, const char *sym)
{
	if (sym[0] == '.')
		sym++;
	for (size_t i = 0; i < n_symbols; i++) {
		if (strcmp(symbols[i].name, sym) == 0) {
			answer_files(a, symbols[i].file);
			return;
		}
	}
	answer_error(a, STATUS_NOT_FOUND, "symbol", sym);
}

Grpc__Reflection__V1__ServerReflectionResponse *reflection_answer(const uint8_t *req, size_t len,
								  char *err, size_t errlen)
{
	struct answer *a;
	Grpc__Reflection__V1__ServerReflectionRequest *m;
	long fi;

	m = grpc__reflection__v1__server_reflection_request__unpack(NULL, len, req);
	if (m == NULL) {
		snprintf(err, errlen, "malformed ServerReflectionRequest");
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		fatal("calloc");
	a->req = m;
	grpc__reflection__v1__server_reflection_response__init(&a->resp);
	a->resp.valid_host = m->host;
	a->resp.original_request = m;
	switch (m->message_request_case) {
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
		grpc__reflection__v1__list_service_response__init(&a->lsr);
		for (size_t i = 0; i < N_SERVICES; i++) {
			grpc__reflection__v1__service_response__init(&a->svc[i]);
			a->svc[i].name = (char *)services[i];
			a->svc_ptrs[i] = &a->svc[i];
		}
		a->lsr.service = a->svc_ptrs;
		a->lsr.n_service = N_SERVICES;
		a->resp.message_response_case =
			GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
		a->resp.list_services_response = &a->lsr;
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
		fi = file_find(m->file_by_filename);
		if (fi < 0)
			answer_error(a, STATUS_NOT_FOUND, "file", m->file_by_filename);
		else
			answer_files(a, (size_t)fi);
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
		answer_symbol(a, m->file_containing_symbol);
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
		/* None of our protos declares extensions: an empty list. */
		grpc__reflection__v1__extension_number_response__init(&a->enr);
		a->enr.base_type_name = m->all_extension_numbers_of_type;
		a->resp.message_response_case =
			GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
		a->resp.all_extension_numbers_response = &a->enr;
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
		answer_error(a, STATUS_NOT_FOUND, "extension of",
			     m->file_containing_extension &&
					     m->file_containing_extension->containing_type ?
				     m->file_containing_extension->containing_type :
				     "");
		break;
	default: answer_error(a, STATUS_UNIMPLEMENTED, "request kind", "(none set)"); break;
	}
	return &a->resp;
}

void reflection_answer_free(Grpc__Reflection__V1__ServerReflectionResponse *resp)
{
	struct answer *a = (struct answer *)resp;

	if (a == NULL)
		return;
	grpc__reflection__v1__server_reflection_request__free_unpacked(a->req, NULL);
	free(a->blobs);
	free(a);
}
