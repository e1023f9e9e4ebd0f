/*
 * Server configuration: every option with its default. Command-line flags
 * fill it in main.c; everything below reads it and never writes it.
 */
#ifndef CAPIBOX_CONFIG_H
#define CAPIBOX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exec.h"

#define CAPIBOX_VERSION "0.1.0"
#define CONFIG_MAX_RUNTIMES 8

struct config {
	const char *listen;	    /* gRPC address, "127.0.0.1:50051" or "unix:/path" */
	bool allow_remote;	    /* permit a non-loopback listen address */
	unsigned grace_ms;	    /* shutdown: time running executions get */
	unsigned cq_threads;	    /* completion-queue threads */
	unsigned max_live;	    /* cap on running executions (admission) */
	unsigned max_queue;	    /* executions that may wait for a running slot; 0: none */
	unsigned max_queue_wait_ms; /* longest wait before RESOURCE_EXHAUSTED */
	size_t max_queue_bytes;	    /* request bytes held by waiting executions */
	unsigned pool_target[CONFIG_MAX_RUNTIMES]; /* warm sandboxes kept, by runtime index */
	unsigned pool_max[CONFIG_MAX_RUNTIMES];	   /* ... grown to under a burst, at most */
	unsigned pool_idle_ms;		 /* a grown pool shrinks after this long without demand */
	bool zygote;			 /* python refills are cloned from a zygote (ZYGOTE.md) */
	const char *zygote_preload;	 /* modules the zygote imports, "numpy,pandas"; NULL none */
	unsigned zygote_recycle;	 /* spawns per zygote generation */
	unsigned max_sessions;		 /* open sessions (each holds a sandbox) */
	unsigned session_idle_default_s; /* a session's idle timeout when it asks none */
	unsigned session_idle_max_s;	 /* the longest idle timeout a session may ask */
	size_t max_code_bytes;		 /* ExecuteRequest.code */
	size_t max_stdin_bytes;		 /* ExecuteRequest.stdin */
	size_t max_files;		 /* ExecuteRequest.files count */
	size_t max_files_bytes;		 /* sum of file contents */
	size_t max_env;			 /* number of env entries */
	size_t max_env_bytes;		 /* sum of env names and values */
	size_t max_dataset_bytes;	 /* AnalyzeRequest.dataset.content */
	size_t max_message_bytes;	 /* gRPC receive limit */
	struct exec_limits defaults;	 /* a zero request field takes these */
	struct exec_limits maxima;	 /* a request field above these is refused */
	uint64_t tmpfs_bytes;		 /* size of /home/user and of /tmp, each */
	uint32_t uid_base;		 /* first host uid for sandboxes */
	uint32_t uid_count;		 /* host uids in the range (>= max_live) */
	const char *state_dir;		 /* root-owned scratch dir (sandbox mount point) */
	const char *supervisor_path;	 /* the capibox-supervisor program */
	const char *cgroup_root;	 /* cgroup file system (default /sys/fs/cgroup) */
	bool allow_rlimit_only;		 /* start even without usable cgroups (DEGRADED) */
	const char *ready_file;		/* if set: the bound address is written here once serving */
	const char *keys_file;		/* API keys (auth.h); NULL = no authentication */
	const char *tls_cert_file;	/* PEM server certificate chain; NULL = plaintext */
	const char *tls_key_file;	/* PEM private key of tls_cert_file */
	const char *tls_client_ca_file; /* PEM CA: clients need a certificate it signed (mTLS) */
	const char *metrics_listen;	/* Prometheus HTTP address; NULL = no metrics */
	bool metrics_required;		/* given explicitly: failing to bind it is fatal */
	bool log_json;			/* --log-format json: JSON lines, one record per call */
	const char *audit_file;		/* JSON lines, one per execution; NULL = no audit log */
	uint64_t audit_max_bytes;	/* rotate the audit log at this size */
	unsigned audit_keep;		/* rotated audit files kept (file.1 .. file.N) */
	bool audit_code;		/* include the code text in audit records */
};

/* Fills cfg with the built-in defaults. */
void config_defaults(struct config *cfg);

#endif
