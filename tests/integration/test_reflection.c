/*
 * Server reflection through raw gRPC calls (one request per stream):
 * list_services on v1 and v1alpha, file_containing_symbol for a service, a
 * method and a nested type (the defining file first, then its imports),
 * file_by_filename, and NOT_FOUND error responses for unknown names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "grpc/reflection/v1/reflection.pb-c.h"
#include "harness.h"

static struct daemon daemon_;

#define V1 "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
#define V1ALPHA "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"

static int setup(void **state)
{
	static const struct daemon_opts opts = {.uid_slot = 7};

	return harness_group_setup(state, &daemon_, &opts);
}

/* Sends req on method; returns the decoded single answer (caller frees). */
static Grpc__Reflection__V1__ServerReflectionResponse *
ask(struct daemon *d, const char *method, Grpc__Reflection__V1__ServerReflectionRequest *req)
{
	Grpc__Reflection__V1__ServerReflectionResponse *resp;
	struct raw_result r;
	uint8_t buf[512];
	size_t len = grpc__reflection__v1__server_reflection_request__pack(req, buf);

	if (harness_raw_call(d->addr, method, buf, len, 10000, &r) != 0 || r.n_messages != 1)
		fail_msg("%s: status %d (%s), %d messages", method, r.code, r.message,
			 r.n_messages);
	resp = grpc__reflection__v1__server_reflection_response__unpack(NULL, r.first_len, r.first);
	harness_raw_free(&r);
	if (resp == NULL)
		fail_msg("%s: malformed ServerReflectionResponse", method);
	return resp;
}

static void test_list_services(void **state)
{
	static const char *const methods[] = {V1, V1ALPHA};
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	for (size_t m = 0; m < 2; m++) {
		Grpc__Reflection__V1__ServerReflectionRequest req =
			GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
		Grpc__Reflection__V1__ServerReflectionResponse *resp;
		bool sandbox = false, health = false, refl = false;

		req.message_request_case =
			GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
		req.list_services = "";
		resp = ask(d, methods[m], &req);
		if (resp->message_response_case !=
		    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE)
			fail_msg("%s: list_services answered with case %d", methods[m],
				 resp->message_response_case);
		for (size_t i = 0; i < resp->list_services_response->n_service; i++) {
			const char *n = resp->list_services_response->service[i]->name;

			sandbox |= strcmp(n, "capibox.v1.SandboxService") == 0;
			health |= strcmp(n, "grpc.health.v1.Health") == 0;
			refl |= strcmp(n, "grpc.reflection.v1alpha.ServerReflection") == 0;
		}
		if (!sandbox || !health || !refl)
			fail_msg("%s: list_services lacks a service", methods[m]);
		grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
	}
}

/* file_containing_symbol sym must answer with want_file first. */
static void expect_symbol(struct daemon *d, const char *sym, const char *want_file,
			  const char *want_text)
{
	Grpc__Reflection__V1__ServerReflectionRequest req =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
	Grpc__Reflection__V1__ServerReflectionResponse *resp;
	const ProtobufCBinaryData *f;

	req.message_request_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
	req.file_containing_symbol = (char *)sym;
	resp = ask(d, V1, &req);
	if (resp->message_response_case !=
		    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE ||
	    resp->file_descriptor_response->n_file_descriptor_proto == 0)
		fail_msg("symbol %s: no file descriptor in the answer", sym);
	f = &resp->file_descriptor_response->file_descriptor_proto[0];
	/* The file's name is field 1, at the start of the serialized descriptor. */
	if (f->len < 2 + strlen(want_file) ||
	    memcmp(f->data + 2, want_file, strlen(want_file)) != 0)
		fail_msg("symbol %s: first file is not %s", sym, want_file);
	if (memmem(f->data, f->len, want_text, strlen(want_text)) == NULL)
		fail_msg("symbol %s: %s lacks \"%s\"", sym, want_file, want_text);
	grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

static void test_symbols(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	expect_symbol(d, "capibox.v1.SandboxService", "capibox/v1/sandbox.proto", "Execute");
	expect_symbol(d, "capibox.v1.SandboxService.Execute", "capibox/v1/sandbox.proto",
		      "ExecuteRequest");
	expect_symbol(d, "capibox.v1.ExecuteRequest", "capibox/v1/sandbox.proto", "Limits");
	expect_symbol(d, "grpc.health.v1.Health", "grpc/health/v1/health.proto", "Watch");
	expect_symbol(d, "grpc.reflection.v1alpha.ServerReflection",
		      "grpc/reflection/v1alpha/reflection.proto", "ServerReflectionInfo");
}

static void test_not_found(void **state)
{
	struct daemon *d = *state;
	Grpc__Reflection__V1__ServerReflectionRequest req =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
	Grpc__Reflection__V1__ServerReflectionResponse *resp;

	HARNESS_REQUIRE(d);
	req.message_request_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
	req.file_containing_symbol = "no.such.Thing";
	resp = ask(d, V1, &req);
	if (resp->message_response_case !=
		    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE ||
	    resp->error_response->error_code != 5)
		fail_msg("unknown symbol: expected error_response NOT_FOUND");
	grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);

	req.message_request_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
	req.file_by_filename = "capibox/v1/sandbox.proto";
	resp = ask(d, V1, &req);
	if (resp->message_response_case !=
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE)
		fail_msg("file_by_filename capibox/v1/sandbox.proto: no descriptor");
	grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
	req.file_by_filename = "secret/../../etc/passwd";
	resp = ask(d, V1, &req);
	if (resp->message_response_case !=
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE)
		fail_msg("an unknown file name must be NOT_FOUND");
	grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_services),
		cmocka_unit_test(test_symbols),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	harness_init();
	rc = cmocka_run_group_tests_name("reflection", tests, setup, harness_group_teardown);
	return harness_finish(rc);
}
