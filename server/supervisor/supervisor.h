/*
 * The supervisor process: forked from capiboxd before grpc_init (and before
 * any thread), it stays single-threaded and owns everything that needs
 * privilege: cloning sandboxes, writing their id maps, their timers and
 * reaping them. It talks to the front only through the IPC socket (ipc.h)
 * and never sees user output: the pipes go from the sandbox to the front.
 */
#ifndef CAPIBOX_SUPERVISOR_H
#define CAPIBOX_SUPERVISOR_H

#include <sys/types.h>

#include "../config.h"
#include "../ipc.h"

/* The IPC socket's descriptor number in the supervisor program. */
#define SUPERVISOR_FD 3

/*
 * The supervisor program's main loop over the IPC socket sock; never
 * returns. Called by capibox-supervisor (supervisor/main.c).
 */
__attribute__((noreturn)) void supervisor_main(const struct config *cfg, int sock);

/*
 * Spawns the supervisor program (cfg->supervisor_path) and waits for its
 * HELLO (copied to *hello). Returns the front's end of the IPC socket and
 * sets *pid; returns -1 (logged) if the supervisor did not come up. Safe to
 * call from a multi-threaded process.
 */
int supervisor_start(const struct config *cfg, pid_t *pid, struct ipc_hello *hello);

#endif
