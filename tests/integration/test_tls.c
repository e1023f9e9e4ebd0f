/*
 * TLS and mTLS end to end, with a throwaway CA, server and client
 * certificates made by the openssl command: plaintext to a TLS server
 * refused, a client trusting another CA refused, a token over TLS accepted
 * (and still required), mTLS without a client certificate or with one from
 * another CA refused, and SIGHUP swapping the server certificate.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static struct daemon daemon_;
static char dir[64];
static char keys_path[128], secret[128];
static char p_ca[128], p_ca2[128], p_srv_crt[128], p_srv_key[128], p_cli_crt[128], p_cli_key[128],
	p_cli2_crt[128], p_cli2_key[128], p_srv2_crt[128], p_srv2_key[128];
static bool certs_ok;

#define NAME "capibox.test" /* the server certificate's only name */

/* The certificates and a key, made once before any gRPC thread exists. */
static bool make_material(void)
{
	static const char script[] =
		"set -e\n"
		"cd \"$1\"\n"
		"gen() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
		"-keyout $1.key -out $1.crt -days 2 -subj /CN=$1 2>/dev/null; }\n"
		"leaf() { # name ca cn ext\n"
		"  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
		"-keyout $1.key -out $1.csr -subj /CN=$3 2>/dev/null\n"
		"  printf '%s\\n' \"$4\" > $1.ext\n"
		"  openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial "
		"-out $1.crt -days 2 -extfile $1.ext 2>/dev/null\n"
		"}\n"
		"gen ca; gen ca2\n"
		"leaf server ca " NAME " subjectAltName=DNS:" NAME "\n"
		"leaf server2 ca2 " NAME " subjectAltName=DNS:" NAME "\n"
		"leaf client ca router-client extendedKeyUsage=clientAuth\n"
		"leaf client2 ca2 intruder extendedKeyUsage=clientAuth\n"
		"chmod 600 *.key\n"
		"echo ok\n";
	const char *argv[] = {"/bin/sh", "-c", script, "sh", dir, NULL};
	const char *kg[] = {CAPIBOXD_PATH, "keygen", "tls-client", NULL};
	char *out, *l2, *l4, *nl;
	FILE *f;
	int rc;

	if (access("/usr/bin/openssl", X_OK) != 0) {
		printf("SKIP: no /usr/bin/openssl to make test certificates\n");
		return false;
	}
	rc = harness_command(argv, &out);
	if (rc != 0 || strcmp(out, "ok\n") != 0) {
		printf("making certificates failed (%d): %s\n", rc, out);
		free(out);
		return false;
	}
	free(out);
#define P(var, name) snprintf(var, sizeof(var), "%s/%s", dir, name)
	P(p_ca, "ca.crt");
	P(p_ca2, "ca2.crt");
	P(p_srv_crt, "server.crt");
	P(p_srv_key, "server.key");
	P(p_srv2_crt, "server2.crt");
	P(p_srv2_key, "server2.key");
	P(p_cli_crt, "client.crt");
	P(p_cli_key, "client.key");
	P(p_cli2_crt, "client2.crt");
	P(p_cli2_key, "client2.key");
	P(keys_path, "keys");
#undef P
	if (harness_command(kg, &out) != 0)
		return false;
	l2 = strchr(out, '\n');
	l4 = l2 ? strchr(l2 + 1, '\n') : NULL;
	l4 = l4 ? strchr(l4 + 1, '\n') : NULL;
	if (l2 == NULL || l4 == NULL)
		return false;
	nl = strchr(l2 + 1, '\n');
	snprintf(secret, sizeof(secret), "%.*s", (int)(nl - l2 - 1), l2 + 1);
	f = fopen(keys_path, "we");
	if (f == NULL)
		return false;
	fputs(l4 + 1, f);
	fclose(f);
	chmod(keys_path, 0600);
	free(out);
	return true;
}

static int setup(void **state)
{
	static const char *extra[] = {"--keys",	   keys_path, "--tls-cert", p_srv_crt,
				      "--tls-key", p_srv_key, NULL};
	static struct capibox_connect_opts copts;
	static struct daemon_opts opts = {.uid_slot = 7, .extra = extra};

	*state = &daemon_;
	if (!harness_init() || !certs_ok)
		return 0;
	copts.token = secret;
	copts.ca_file = p_ca;
	copts.server_name = NAME;
	opts.client = &copts;
	return harness_group_setup(state, &daemon_, &opts);
}

/* grpc.health.v1 Check through a client made from o (needs no key). */
static int check_with(const char *addr, const struct capibox_connect_opts *o,
		      struct capibox_status *st)
{
	char err[256];
	int serving = 0, rc;
	struct capibox_client *c = capibox_connect(addr, o, err, sizeof(err));

	if (c == NULL)
		fail_msg("capibox_connect: %s", err);
	rc = capibox_health_check(c, "", 5000, &serving, st);
	capibox_close(c);
	return rc;
}

static void test_token_over_tls(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	harness_run_code(d, "python", "print('over tls')", &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "over tls\n");
	harness_run_free(&r);
}

static int ignore_event(const struct capibox_event *ev, void *arg)
{
	(void)ev;
	(void)arg;
	return 0;
}

static void test_tls_still_needs_key(void **state)
{
	struct daemon *d = *state;
	struct capibox_connect_opts o = {.ca_file = p_ca, .server_name = NAME};
	struct capibox_exec_request req = {.language = "python", .code = "print(1)"};
	struct capibox_status st;
	struct capibox_client *c;
	char err[256];
	int rc;

	HARNESS_REQUIRE(d);
	c = capibox_connect(d->addr, &o, err, sizeof(err));
	assert_non_null(c);
	rc = capibox_execute(c, &req, ignore_event, NULL, &st);
	capibox_close(c);
	if (rc != CAPIBOX_UNAUTHENTICATED)
		fail_msg("TLS without a key: %s %s", capibox_code_name(rc), st.message);
}

static void test_plaintext_refused(void **state)
{
	struct daemon *d = *state;
	struct capibox_connect_opts o = {.token = secret};
	struct capibox_status st;
	int rc;

	HARNESS_REQUIRE(d);
	rc = check_with(d->addr, &o, &st);
	if (rc != CAPIBOX_UNAVAILABLE)
		fail_msg("plaintext to a TLS server: expected UNAVAILABLE, got %s: %s",
			 capibox_code_name(rc), st.message);
	print_message("plaintext: %s: %s\n", capibox_code_name(rc), st.message);
}

static void test_wrong_ca_refused(void **state)
{
	struct daemon *d = *state;
	struct capibox_connect_opts o = {.token = secret, .ca_file = p_ca2, .server_name = NAME};
	struct capibox_status st;
	int rc;

	HARNESS_REQUIRE(d);
	rc = check_with(d->addr, &o, &st);
	if (rc != CAPIBOX_UNAVAILABLE)
		fail_msg("client trusting another CA: expected UNAVAILABLE, got %s: %s",
			 capibox_code_name(rc), st.message);
	/* And the name must match: the address alone does not. */
	o.ca_file = p_ca;
	o.server_name = NULL;
	rc = check_with(d->addr, &o, &st);
	if (rc != CAPIBOX_UNAVAILABLE)
		fail_msg("certificate name mismatch: expected UNAVAILABLE, got %s: %s",
			 capibox_code_name(rc), st.message);
}

/* Copies src over dst (for the certificate swap). */
static void copy_file(const char *src, const char *dst)
{
	const char *argv[] = {"/bin/cp", src, dst, NULL};
	char *out;

	if (harness_command(argv, &out) != 0)
		fail_msg("cp %s %s failed", src, dst);
	free(out);
}

static bool log_has(struct daemon *d, const char *needle, int ms)
{
	double end = harness_now() + ms / 1000.0;

	do {
		char *log = harness_daemon_log(d);
		bool found = strstr(log, needle) != NULL;

		free(log);
		if (found)
			return true;
		harness_sleep_ms(50);
	} while (harness_now() < end);
	return false;
}

static void test_reload_certificate(void **state)
{
	struct daemon *d = *state;
	struct capibox_connect_opts o1 = {.ca_file = p_ca, .server_name = NAME};
	struct capibox_connect_opts o2 = {.ca_file = p_ca2, .server_name = NAME};
	struct capibox_status st;
	int rc;

	HARNESS_REQUIRE(d);
	/* A key that does not fit the certificate is refused, the old one stays. */
	copy_file(p_srv2_key, p_srv_key);
	harness_daemon_signal(d, SIGHUP);
	if (!log_has(d, "keeping the previous TLS certificate", 5000))
		fail_msg("a mismatched key was not reported on reload");
	rc = check_with(d->addr, &o1, &st);
	if (rc != 0)
		fail_msg("old certificate after a failed reload: %s %s", capibox_code_name(rc),
			 st.message);

	copy_file(p_srv2_crt, p_srv_crt);
	harness_daemon_signal(d, SIGHUP);
	if (!log_has(d, "TLS certificate reloaded", 5000))
		fail_msg("no certificate reload logged");
	rc = check_with(d->addr, &o2, &st);
	if (rc != 0)
		fail_msg("new certificate (CA 2) after SIGHUP: %s %s", capibox_code_name(rc),
			 st.message);
	rc = check_with(d->addr, &o1, &st);
	if (rc != CAPIBOX_UNAVAILABLE)
		fail_msg("the old CA still accepted after the swap: %s", capibox_code_name(rc));
}

static void test_mtls(void **state)
{
	const char *extra[] = {"--tls-cert",	  p_srv2_crt, "--tls-key", p_srv2_key,
			       "--tls-client-ca", p_ca,	      NULL};
	struct capibox_connect_opts o = {.ca_file = p_ca2, .server_name = NAME};
	struct capibox_connect_opts with_cert = {.ca_file = p_ca2,
						 .server_name = NAME,
						 .cert_file = p_cli_crt,
						 .key_file = p_cli_key};
	struct capibox_connect_opts intruder = {.ca_file = p_ca2,
						.server_name = NAME,
						.cert_file = p_cli2_crt,
						.key_file = p_cli2_key};
	struct daemon_opts opts = {.uid_slot = 6, .extra = extra, .client = &with_cert};
	struct capibox_status st;
	struct daemon d2;
	struct run r = {0};
	int rc;

	HARNESS_REQUIRE((struct daemon *)*state);
	if (harness_daemon_start(&d2, &opts) != 0)
		fail_msg("the mTLS daemon did not start");
	rc = check_with(d2.addr, &o, &st);
	if (rc != CAPIBOX_UNAVAILABLE)
		fail_msg("mTLS without a client certificate: expected UNAVAILABLE, got %s: %s",
			 capibox_code_name(rc), st.message);
	rc = check_with(d2.addr, &intruder, &st);
	if (rc != CAPIBOX_UNAVAILABLE)
		fail_msg("mTLS with a certificate of another CA: expected UNAVAILABLE, got %s",
			 capibox_code_name(rc));
	/* mTLS alone authenticates: no keys file on this daemon. */
	harness_run_code(&d2, "python", "print('mtls')", &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "mtls\n");
	harness_run_free(&r);
	if (!log_has(&d2, "TLS, client certificates required", 100))
		fail_msg("the daemon does not say it requires client certificates");
	rc = harness_daemon_stop(&d2);
	if (rc != 0)
		fail_msg("mTLS daemon exit status %d", rc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_over_tls),
		cmocka_unit_test(test_tls_still_needs_key),
		cmocka_unit_test(test_plaintext_refused),
		cmocka_unit_test(test_wrong_ca_refused),
		cmocka_unit_test(test_mtls),
		cmocka_unit_test(test_reload_certificate),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	if (harness_init()) {
		snprintf(dir, sizeof(dir), "/tmp/capibox-tls-XXXXXX");
		if (mkdtemp(dir) == NULL)
			return 1;
		harness_remove_at_finish(dir);
		certs_ok = make_material();
		if (!certs_ok)
			return access("/usr/bin/openssl", X_OK) != 0 ? 77 : 1;
	}
	rc = cmocka_run_group_tests_name("tls", tests, setup, harness_group_teardown);
	return harness_finish(rc);
}
