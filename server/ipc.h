/*
 * Messages between the front (capiboxd's gRPC process) and the supervisor,
 * over a SOCK_SEQPACKET socketpair: one message per packet, fixed layouts,
 * file descriptors passed with SCM_RIGHTS.
 *
 * Each side distrusts the other: ipc_recv() checks the size and type of
 * every packet and the number of descriptors it carries; a malformed packet
 * is fatal to the receiver (fatalx), never undefined behaviour.
 */
#ifndef CAPIBOX_IPC_H
#define CAPIBOX_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "exec.h"

enum ipc_type {
	IPC_HELLO = 1, /* supervisor -> front: ready, runtime versions */
	IPC_SPAWN,     /* front -> supervisor: start a sandbox (5 fds) */
	IPC_KILL,      /* front -> supervisor: end a sandbox with a reason */
	IPC_STARTED,   /* supervisor -> front: the code is starting */
	IPC_EXITED,    /* supervisor -> front: the sandbox is gone */
	IPC_WARM,      /* supervisor -> front: a pooled sandbox waits for code */
	IPC_TAKE,      /* front -> supervisor -> init: run this in a pooled sandbox (1 fd) */
	IPC_ZYGOTE,    /* supervisor -> front: whether the preloaded zygote serves */
};

#define IPC_MAX_RUNTIMES 16
#define IPC_VERSION_LEN 64
#define IPC_ENV_MAX (64 * 1024 + 4096)
/* payload memfd, stdin memfd, the write ends of stdout, stderr and the
 * events pipe (results and figures, the runner's fd 4) */
#define IPC_SPAWN_FDS 5

struct ipc_hello {
	uint32_t type;
	uint32_t n_runtimes;
	char versions[IPC_MAX_RUNTIMES][IPC_VERSION_LEN];
	uint32_t cgroup_mode; /* 0 none, 1 v1, 2 v2 */
	char cgroup[128];     /* describes the limits enforcement in use */
};

struct ipc_spawn {
	uint32_t type;
	uint32_t runtime; /* index into the runtime table */
	uint64_t id;	  /* chosen by the front, unique */
	struct exec_limits limits;
	uint64_t tmpfs_bytes;
	uint32_t warm; /* 1: a pooled sandbox, started ahead (payload unused) */
	/* 1: code that imports what the preloaded zygote has loaded: a
	 * clone of it when it serves (docs/ZYGOTE.md) */
	uint32_t preloaded;
	/* a pooled sandbox's cgroup limits until its take (0: limits'): the
	 * configured defaults, so that a take with the default limits writes
	 * nothing (the runner's rlimits still start at the maxima) */
	uint32_t cg_max_processes;
	uint64_t cg_memory_bytes;
	uint32_t n_env;	  /* entries in env */
	uint32_t env_len; /* bytes of env that follow */
	char env[];	  /* n_env "NAME=value\0" strings */
};

struct ipc_warm {
	uint32_t type;
	uint32_t reserved;
	uint64_t id;
};

/* Sent at each change: the front routes code to it only while it serves. */
struct ipc_zygote {
	uint32_t type;
	uint32_t preloaded_serves; /* 0 or 1 */
};

/* The request for a pooled sandbox; the payload memfd travels with it. */
struct ipc_take {
	uint32_t type;
	uint32_t n_env;
	uint64_t id;
	struct exec_limits limits;
	uint32_t env_len;
	uint32_t reserved;
	char env[];
};

struct ipc_kill {
	uint32_t type;
	uint32_t reason; /* enum exec_reason */
	uint64_t id;
};

struct ipc_started {
	uint32_t type;
	uint32_t pid; /* host pid of the sandbox's init */
	uint64_t id;
	uint64_t start_us; /* SPAWN received -> code about to start */
};

struct ipc_exited {
	uint32_t type;
	uint32_t reason;
	uint64_t id;
	int32_t exit_code;
	int32_t signal;
	uint64_t wall_time_us;
	uint64_t cpu_time_us;
	uint64_t peak_memory_bytes;
	char message[200];
};

union ipc_msg {
	uint32_t type;
	struct ipc_hello hello;
	struct ipc_spawn spawn;
	struct ipc_kill kill;
	struct ipc_started started;
	struct ipc_exited exited;
	struct ipc_warm warm;
	struct ipc_take take;
	struct ipc_zygote zygote;
};

/* Largest packet: a spawn with the biggest environment. */
#define IPC_MAX_PACKET (sizeof(struct ipc_spawn) + IPC_ENV_MAX)

/* Creates the socketpair (CLOEXEC) with buffers big enough for IPC_MAX_PACKET. */
void ipc_socketpair(int sv[2]);

/*
 * Sends one packet with nfds descriptors. Returns 0, or -1 with errno
 * (EPIPE when the peer is gone). Thread-safe per packet.
 */
__attribute__((warn_unused_result)) int ipc_send(int sock, const void *msg, size_t len,
						 const int *fds, size_t nfds);

/* The most descriptors ipc_send_packet passes in one packet. */
#define IPC_MAX_FDS 12

/*
 * ipc_send without the front/supervisor protocol's bounds: len bytes of buf
 * and at most IPC_MAX_FDS descriptors as one packet on a SOCK_SEQPACKET
 * socket (the zygote's protocol uses it too). 0, or -1 with errno.
 */
__attribute__((warn_unused_result)) int ipc_send_packet(int sock, const void *buf, size_t len,
							const int *fds, size_t nfds);

/*
 * Receives one packet of at most len bytes into buf, and its descriptors
 * (CLOEXEC, at most maxfds <= IPC_MAX_FDS) into fds, *nfds of them. Returns
 * its length, 0 at EOF, or -1 with errno. *bad is NULL, or what was wrong
 * with it (truncated, too many descriptors, which are then closed, another
 * control message): the caller decides, and closes fds, what it rejects.
 */
__attribute__((warn_unused_result)) ssize_t ipc_recv_packet(int sock, void *buf, size_t len,
							    int *fds, size_t maxfds, size_t *nfds,
							    const char **bad);

/*
 * Receives one packet into buf (IPC_MAX_PACKET bytes). Returns its length, 0
 * when the peer closed. Checks the packet against its type's layout and
 * fds received against the type (IPC_SPAWN: exactly IPC_SPAWN_FDS, TAKE 1,
 * others none) and
 * calls fatalx() on anything malformed. fds get CLOEXEC descriptors.
 */
size_t ipc_recv(int sock, union ipc_msg *buf, int fds[IPC_SPAWN_FDS]);

/*
 * Like ipc_recv, but a malformed packet returns -1 with the reason in *why
 * (its descriptors closed) instead of ending the process: for a receiver
 * that can replace its peer (the front restarts the supervisor).
 */
__attribute__((warn_unused_result)) ssize_t ipc_read(int sock, union ipc_msg *buf,
						     int fds[IPC_SPAWN_FDS], const char **why);

/* Checks a packet's layout; returns NULL if valid, else what is wrong. */
const char *ipc_check(const union ipc_msg *m, size_t len, size_t nfds);

#endif
