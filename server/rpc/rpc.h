/*
 * The rpc layer: the gRPC C core server, protobuf <-> plain C conversion and
 * the method handlers. The only place that includes grpc or protobuf-c.
 */
#ifndef CAPIBOX_RPC_H
#define CAPIBOX_RPC_H

#include "../backend/backend.h"
#include "../config.h"

struct rpc_server;
struct admission;

/*
 * Calls grpc_init, binds cfg->listen, registers the methods and starts the
 * completion-queue threads. Exits through fatalx() if the address cannot be
 * bound. Logs the bound address. Executions are admitted through adm, which
 * must outlive the server (the caller destroys it after the shutdown).
 */
struct rpc_server *rpc_server_start(const struct config *cfg, struct backend *backend,
				    struct admission *adm);

/*
 * Orderly stop: health turns NOT_SERVING, no new calls are accepted, running
 * executions get grace_ms to finish, then are cancelled (REASON_CANCELLED,
 * their Finished is still sent), remaining calls are cancelled, threads are
 * joined and gRPC is shut down. Frees srv.
 */
void rpc_server_shutdown(struct rpc_server *srv, unsigned grace_ms);

/*
 * SIGHUP: reloads the keys file (and TLS certificates). A broken file keeps
 * what was loaded and logs why; running calls keep their keys.
 */
void rpc_server_reload(struct rpc_server *srv);

#endif
