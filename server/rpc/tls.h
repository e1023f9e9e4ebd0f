/*
 * TLS for the gRPC server (internal to server/rpc/): the certificate, key
 * and optional client CA from PEM files, served through gRPC's certificate
 * config fetcher so SIGHUP can swap them without dropping connections.
 */
#ifndef CAPIBOX_RPC_TLS_H
#define CAPIBOX_RPC_TLS_H

#include <stddef.h>

#include <grpc/grpc_security.h>

#include "../config.h"

struct rpc_tls;

/*
 * Reads cfg's certificate, key and client CA (mTLS: a verified client
 * certificate is then required). NULL with err naming the file on failure.
 */
__attribute__((warn_unused_result)) struct rpc_tls *tls_new(const struct config *cfg, char *err,
							    size_t errlen);

/* Server credentials that fetch from t; t must outlive the server. */
grpc_server_credentials *tls_server_credentials(struct rpc_tls *t);

/*
 * Re-reads the files; new handshakes use them. Returns 0, or -1 with err
 * (the old certificates stay).
 */
__attribute__((warn_unused_result)) int tls_reload(struct rpc_tls *t, char *err, size_t errlen);

/* Frees t; only after grpc_server_destroy. */
void tls_free(struct rpc_tls *t);

#endif
