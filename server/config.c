#include "config.h"

#include <string.h>

#define KIB (1024ULL)
#define MIB (1024ULL * 1024)
#define GIB (1024ULL * 1024 * 1024)

void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen = "127.0.0.1:50051";
	cfg->grace_ms = 10000;
	cfg->cq_threads = 2;
	cfg->max_live = 32;
	/* a burst of a few times the cap waits instead of failing; each waiter
	 * holds its request, so the queue is bounded in bytes too */
	cfg->max_queue = 128;
	cfg->max_queue_wait_ms = 10000;
	cfg->max_queue_bytes = 256 * MIB;
	/* warm pools, by runtime table index: python 2, javascript 1, bash none
	 * (bash starts in about a millisecond: nothing to gain) */
	cfg->pool_target[0] = 2;
	cfg->pool_target[1] = 1;
	/* a burst grows a pool up to this (an idle python sandbox costs about
	 * 4 MiB of memory); it shrinks back to the target when calm */
	cfg->pool_max[0] = 8;
	cfg->pool_max[1] = 4;
	cfg->pool_idle_ms = 30000;
	/* python refills are forks of one interpreter that has imported these;
	 * a new generation (new hash secret and layout) every zygote_recycle */
	cfg->zygote = true;
	cfg->zygote_preload = "numpy,pandas";
	cfg->zygote_recycle = 1000;
	cfg->max_sessions = 16;
	cfg->session_idle_default_s = 600;
	cfg->session_idle_max_s = 3600;
	cfg->max_code_bytes = 1 * MIB;
	cfg->max_stdin_bytes = 16 * MIB;
	cfg->max_files = 1000;
	cfg->max_files_bytes = 64 * MIB;
	cfg->max_env = 256;
	cfg->max_env_bytes = 64 * KIB;
	cfg->max_dataset_bytes = 64 * MIB;
	/* room for the largest valid request: code + stdin + files + framing */
	cfg->max_message_bytes = 96 * MIB;

	cfg->defaults.wall_time_ms = 30000;
	cfg->defaults.cpu_time_ms = 30000;
	cfg->defaults.memory_bytes = 512 * MIB;
	cfg->defaults.max_processes = 64;
	cfg->defaults.max_output_bytes = 16 * MIB;
	cfg->defaults.max_file_bytes = 64 * MIB;

	cfg->maxima.wall_time_ms = 600000;
	cfg->maxima.cpu_time_ms = 600000;
	cfg->maxima.memory_bytes = 8 * GIB;
	cfg->maxima.max_processes = 1024;
	cfg->maxima.max_output_bytes = 16 * GIB;
	cfg->maxima.max_file_bytes = 1 * GIB;

	cfg->tmpfs_bytes = 128 * MIB;
	cfg->uid_base = 2000000;
	cfg->uid_count = 65536;
	cfg->state_dir = "/run/capibox";
	cfg->ready_file = NULL;
	cfg->cgroup_root = "/sys/fs/cgroup";
	cfg->allow_rlimit_only = false;
	/* Loopback: metrics hold no secrets but reveal load and versions, so
	 * exposing them is the operator's choice. (9464: the port of
	 * OpenTelemetry's Prometheus exporter, free of the usual clashes.) */
	cfg->metrics_listen = "127.0.0.1:9464";
	cfg->audit_max_bytes = 64 * MIB;
	cfg->audit_keep = 5;
}
