/*
 * The local backend: sandboxes on this machine, made by the supervisor.
 * The front side (this file's thread) owns the output pipes and turns them
 * into sink callbacks; the supervisor owns the processes.
 */
#ifndef CAPIBOX_BACKEND_LOCAL_H
#define CAPIBOX_BACKEND_LOCAL_H

#include <sys/types.h>

#include "../config.h"
#include "../ipc.h"
#include "backend.h"

/*
 * Creates the backend over an IPC socket to a started supervisor (pid
 * sup_pid, versions from its HELLO) and starts its io thread. The backend
 * owns sock and waits for the supervisor in backend_destroy().
 */
struct backend *local_backend_create(const struct config *cfg, int sock, pid_t sup_pid,
				     const struct ipc_hello *hello);

#endif
