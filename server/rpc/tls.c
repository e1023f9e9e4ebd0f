/*
 * TLS; see tls.h.
 *
 * gRPC calls the fetcher at start and before each handshake. A reload
 * builds the new config on the signal thread and leaves it in pending;
 * the next fetch hands it over (gRPC owns it from then on). A config that
 * failed to build never reaches gRPC, so a broken renewal keeps serving
 * the old certificate.
 */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../log.h"

#define PEM_MAX (1u << 20)

struct rpc_tls {
	const char *cert_file, *key_file, *ca_file;
	pthread_mutex_t lock;
	grpc_ssl_server_certificate_config *pending; /* for the next fetch */
};

/* A whole PEM file, NUL-terminated; NULL with err. Caller frees (and wipes keys). */
static char *pem_read(const char *what, const char *path, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > PEM_MAX) {
		snprintf(err, errlen, "%s %s: not a regular file of at most %u bytes", what, path,
			 PEM_MAX);
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		snprintf(err, errlen, "%s %s: out of memory", what, path);
		goto fail;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	close(fd);
	if (strstr(buf, "-----BEGIN ") == NULL) {
		snprintf(err, errlen, "%s %s: no PEM block in it", what, path);
		explicit_bzero(buf, got);
		free(buf);
		return NULL;
	}
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}

/*
 * True when key is the private key of cert's first certificate: checked
 * here because gRPC would only find out at the next handshake, after the
 * old (working) certificate was already replaced.
 */
static bool key_matches(const char *cert, const char *key)
{
	BIO *cb = BIO_new_mem_buf(cert, -1), *kb = BIO_new_mem_buf(key, -1);
	X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
	EVP_PKEY *pk = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
	bool ok = x && pk && X509_check_private_key(x, pk) == 1;

	EVP_PKEY_free(pk);
	X509_free(x);
	BIO_free(kb);
	BIO_free(cb);
	return ok;
}

/* Builds a certificate config from the files; NULL with err. */
static grpc_ssl_server_certificate_config *config_build(const struct rpc_tls *t, char *err,
							size_t errlen)
{
	grpc_ssl_server_certificate_config *cfg = NULL;
	grpc_ssl_pem_key_cert_pair pair;
	char *cert = NULL, *key = NULL, *ca = NULL;

	cert = pem_read("TLS certificate", t->cert_file, err, errlen);
	if (cert == NULL)
		goto out;
	key = pem_read("TLS key", t->key_file, err, errlen);
	if (key == NULL)
		goto out;
	if (strstr(key, "PRIVATE KEY-----") == NULL) {
		snprintf(err, errlen, "TLS key %s: no private key in it", t->key_file);
		goto out;
	}
	if (!key_matches(cert, key)) {
		snprintf(err, errlen, "TLS key %s does not belong to the certificate %s",
			 t->key_file, t->cert_file);
		goto out;
	}
	if (t->ca_file && (ca = pem_read("TLS client CA", t->ca_file, err, errlen)) == NULL)
		goto out;
	pair.cert_chain = cert;
	pair.private_key = key;
	/*
	 * gRPC copies the strings. The fetcher path asserts that roots are
	 * given even when no client certificate is requested; then our own
	 * chain stands in: with SSL_VERIFY_NONE it is never used to verify.
	 */
	cfg = grpc_ssl_server_certificate_config_create(ca ? ca : cert, &pair, 1);
	if (cfg == NULL)
		snprintf(err, errlen, "cannot build a TLS config from %s and %s", t->cert_file,
			 t->key_file);
out:
	free(cert);
	if (key) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	free(ca);
	return cfg;
}

static grpc_ssl_certificate_config_reload_status fetch(void *arg,
						       grpc_ssl_server_certificate_config **config)
{
	struct rpc_tls *t = arg;
	grpc_ssl_certificate_config_reload_status rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;

	pthread_mutex_lock(&t->lock);
	if (t->pending) {
		*config = t->pending;
		t->pending = NULL;
		rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

struct rpc_tls *tls_new(const struct config *cfg, char *err, size_t errlen)
{
	struct rpc_tls *t = calloc(1, sizeof(*t));

	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->cert_file = cfg->tls_cert_file;
	t->key_file = cfg->tls_key_file;
	t->ca_file = cfg->tls_client_ca_file;
	pthread_mutex_init(&t->lock, NULL);
	t->pending = config_build(t, err, errlen);
	if (t->pending == NULL) {
		tls_free(t);
		return NULL;
	}
	return t;
}

grpc_server_credentials *tls_server_credentials(struct rpc_tls *t)
{
	/* With a client CA: mTLS, a client without a certificate signed by it
	 * does not get past the handshake. */
	grpc_ssl_client_certificate_request_type req =
		t->ca_file ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY :
			     GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
	grpc_ssl_server_credentials_options *o =
		grpc_ssl_server_credentials_create_options_using_config_fetcher(req, fetch, t);

	return grpc_ssl_server_credentials_create_with_options(o);
}

int tls_reload(struct rpc_tls *t, char *err, size_t errlen)
{
	grpc_ssl_server_certificate_config *cfg = config_build(t, err, errlen), *old;

	if (cfg == NULL)
		return -1;
	pthread_mutex_lock(&t->lock);
	old = t->pending;
	t->pending = cfg;
	pthread_mutex_unlock(&t->lock);
	if (old)
		grpc_ssl_server_certificate_config_destroy(old);
	return 0;
}

void tls_free(struct rpc_tls *t)
{
	if (t == NULL)
		return;
	if (t->pending)
		grpc_ssl_server_certificate_config_destroy(t->pending);
	pthread_mutex_destroy(&t->lock);
	free(t);
}
