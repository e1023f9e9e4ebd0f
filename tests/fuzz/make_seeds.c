/*
 * Writes the seed corpus of the fuzz targets: a few valid inputs each (and
 * a few near misses), built with the real packers (protobuf-c, the ipc
 * structs, payload_create) so they follow the formats exactly.
 *
 *   make_seeds DIR    -> DIR/{execute,health,ipc,payload}/NAME
 *
 * The seeds are committed in tests/fuzz/corpus/; run this again (README.md)
 * when a format changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capibox/v1/sandbox.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "ipc.h"
#include "sandbox/payload.h"

int main(int argc, char **argv);

static const char *outdir;

static void die(const char *what)
{
	fprintf(stderr, "make_seeds: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void put(const char *target, const char *name, const void *data, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		die(path);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	f = fopen(path, "wbe");
	if (f == NULL || (len > 0 && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
		die(path);
}

static void put_msg(const char *target, const char *name, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);

	if (buf == NULL)
		die("malloc");
	protobuf_c_message_pack(m, buf);
	put(target, name, buf, len);
	free(buf);
}

/* ---- execute ----------------------------------------------------------- */

static void seeds_execute(void)
{
	Capibox__V1__ExecuteRequest r = CAPIBOX__V1__EXECUTE_REQUEST__INIT;
	Capibox__V1__Limits lim = CAPIBOX__V1__LIMITS__INIT;
	Capibox__V1__File f1 = CAPIBOX__V1__FILE__INIT, f2 = CAPIBOX__V1__FILE__INIT;
	Capibox__V1__File *files[] = {&f1, &f2};
	Capibox__V1__ExecuteRequest__EnvEntry e1 = CAPIBOX__V1__EXECUTE_REQUEST__ENV_ENTRY__INIT,
					      e2 = CAPIBOX__V1__EXECUTE_REQUEST__ENV_ENTRY__INIT;
	Capibox__V1__ExecuteRequest__EnvEntry *env[] = {&e1, &e2};
	char *collect[] = {"*.png"};

	r.language = "python";
	r.code = "print(1)";
	put_msg("execute", "python-print", &r.base);

	r.language = "bash";
	r.code = "echo \"$GREETING\"; cat data/in.csv; read x; echo $x";
	f1.path = "data/in.csv";
	f1.content.data = (uint8_t *)"a,b\n1,2\n";
	f1.content.len = 8;
	f2.path = "run.sh";
	f2.content.data = (uint8_t *)"exit 3\n";
	f2.content.len = 7;
	f2.mode = 0755;
	r.n_files = 2;
	r.files = files;
	e1.key = "GREETING";
	e1.value = "hello";
	e2.key = "LANG";
	e2.value = "C.UTF-8";
	r.n_env = 2;
	r.env = env;
	r.stdin.data = (uint8_t *)"42\n";
	r.stdin.len = 3;
	lim.wall_time_ms = 1000;
	lim.cpu_time_ms = 500;
	lim.memory_bytes = 64ull << 20;
	lim.max_processes = 8;
	lim.max_output_bytes = 4096;
	lim.max_file_bytes = 1 << 20;
	r.limits = &lim;
	r.request_id = "req-1";
	put_msg("execute", "bash-files-env-limits", &r.base);

	r.language = "javascript";
	r.code = "console.log([1,2,3].map(x => x * 2))";
	r.n_files = 0;
	r.n_env = 0;
	r.limits = NULL;
	put_msg("execute", "javascript", &r.base);

	/* near misses: each refused for one reason */
	lim.wall_time_ms = 900000;
	r.limits = &lim;
	put_msg("execute", "limit-too-high", &r.base);
	r.limits = NULL;
	r.session_id = "s1";
	put_msg("execute", "session", &r.base);
	r.session_id = "";
	r.n_collect = 1;
	r.collect = collect;
	put_msg("execute", "collect", &r.base);
	r.n_collect = 0;
	f1.path = "../escape";
	r.n_files = 1;
	put_msg("execute", "path-dotdot", &r.base);
	r.n_files = 0;
	r.language = "cobol";
	put_msg("execute", "unknown-language", &r.base);
	/* a NUL inside code: protobuf-c cannot express it, so by hand */
	{
		static const uint8_t nul[] = {0x0a, 0x06, 'p', 'y',  't', 'h', 'o', 'n',
					      0x12, 0x05, 'a', '\0', 'r', 'm', ' '};
		put("execute", "code-nul", nul, sizeof(nul));
	}
}

/* ---- health ------------------------------------------------------------ */

static void seeds_health(void)
{
	Capibox__V1__HealthRequest h = CAPIBOX__V1__HEALTH_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckRequest c = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

	put_msg("health", "empty", &h.base);
	h.deep = 1;
	put_msg("health", "deep", &h.base);
	c.service = "capibox.v1.SandboxService";
	put_msg("health", "check-sandbox", &c.base);
	c.service = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xb9";
	put_msg("health", "check-utf8", &c.base);
	c.service = "bad \xc3 \xed\xa0\x80 \x01\x7f end";
	put_msg("health", "check-not-utf8", &c.base);
}

/* ---- ipc --------------------------------------------------------------- */

/* One byte for the number of descriptors (fuzz_ipc.c), then the packet. */
static void put_ipc(const char *name, size_t nfds, const void *msg, size_t len)
{
	uint8_t *buf = malloc(len + 1);

	if (buf == NULL)
		die("malloc");
	buf[0] = (uint8_t)nfds;
	memcpy(buf + 1, msg, len);
	put("ipc", name, buf, len + 1);
	free(buf);
}

static void seeds_ipc(void)
{
	static const char env[] = "A=1\0PATH=/usr/bin:/bin\0EMPTY=\0";
	struct ipc_hello hello;
	struct ipc_spawn *sp = calloc(1, sizeof(*sp) + sizeof(env) - 1);
	struct ipc_take *tk = calloc(1, sizeof(*tk) + sizeof(env) - 1);
	struct ipc_warm warm = {.type = IPC_WARM, .id = 9};
	struct ipc_zygote zyg = {.type = IPC_ZYGOTE, .preloaded_serves = 1};
	struct ipc_kill kill = {.type = IPC_KILL, .reason = EXEC_REASON_CANCELLED, .id = 7};
	struct ipc_started started = {.type = IPC_STARTED, .pid = 1234, .id = 7, .start_us = 900};
	struct ipc_exited exited;

	memset(&hello, 0, sizeof(hello));
	hello.type = IPC_HELLO;
	hello.n_runtimes = 3;
	snprintf(hello.versions[0], IPC_VERSION_LEN, "Python 3.11.2");
	snprintf(hello.versions[1], IPC_VERSION_LEN, "v18.19.0");
	snprintf(hello.versions[2], IPC_VERSION_LEN, "GNU bash, version 5.2.15");
	hello.cgroup_mode = 2;
	snprintf(hello.cgroup, sizeof(hello.cgroup), "cgroup v2: memory pids cpu");
	put_ipc("hello", 0, &hello, sizeof(hello));

	if (sp == NULL)
		die("calloc");
	sp->type = IPC_SPAWN;
	sp->runtime = 0;
	sp->id = 7;
	sp->limits.wall_time_ms = 30000;
	sp->limits.cpu_time_ms = 30000;
	sp->limits.memory_bytes = 512ull << 20;
	sp->limits.max_processes = 64;
	sp->limits.max_output_bytes = 16ull << 20;
	sp->limits.max_file_bytes = 64ull << 20;
	sp->tmpfs_bytes = 128ull << 20;
	sp->n_env = 3;
	sp->env_len = sizeof(env) - 1;
	memcpy(sp->env, env, sizeof(env) - 1);
	put_ipc("spawn", IPC_SPAWN_FDS, sp, sizeof(*sp) + sizeof(env) - 1);
	sp->n_env = 0;
	sp->env_len = 0;
	put_ipc("spawn-noenv", IPC_SPAWN_FDS, sp, sizeof(*sp));

	sp->warm = 1;
	put_ipc("spawn-warm", IPC_SPAWN_FDS, sp, sizeof(*sp));
	free(sp);

	if (tk == NULL)
		die("calloc");
	tk->type = IPC_TAKE;
	tk->id = 8;
	tk->limits.wall_time_ms = 1000;
	tk->limits.memory_bytes = 64ull << 20;
	tk->n_env = 3;
	tk->env_len = sizeof(env) - 1;
	memcpy(tk->env, env, sizeof(env) - 1);
	put_ipc("take", 1, tk, sizeof(*tk) + sizeof(env) - 1);
	free(tk);

	put_ipc("warm", 0, &warm, sizeof(warm));
	put_ipc("zygote", 0, &zyg, sizeof(zyg));
	put_ipc("kill", 0, &kill, sizeof(kill));
	put_ipc("started", 0, &started, sizeof(started));
	memset(&exited, 0, sizeof(exited));
	exited.type = IPC_EXITED;
	exited.reason = EXEC_REASON_EXITED;
	exited.id = 7;
	exited.exit_code = 3;
	exited.wall_time_us = 25000;
	exited.cpu_time_us = 20000;
	exited.peak_memory_bytes = 9 << 20;
	snprintf(exited.message, sizeof(exited.message), "exited with code 3");
	put_ipc("exited", 0, &exited, sizeof(exited));
}

/* ---- payload ----------------------------------------------------------- */

static void put_payload(const char *name, const struct exec_request *req)
{
	int fd = payload_create(req);
	struct stat st;
	uint8_t *buf;

	if (fd < 0 || fstat(fd, &st) < 0)
		die("payload_create");
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL || pread(fd, buf, (size_t)st.st_size, 0) != st.st_size)
		die("read payload");
	put("payload", name, buf, (size_t)st.st_size);
	free(buf);
	close(fd);
}

static void seeds_payload(void)
{
	struct exec_file files[] = {
		{.path = "in.csv", .data = (const uint8_t *)"a,b\n1,2\n", .len = 8},
		{.path = "data/deep/x.bin", .data = (const uint8_t *)"\0\1\2", .len = 3},
		{.path = "run.sh", .data = (const uint8_t *)"echo hi\n", .len = 8, .mode = 0755},
		{.path = "empty", .data = NULL, .len = 0},
	};
	struct exec_request req = {.language = "python", .code = "print(1)", .code_len = 8};

	put_payload("code-only", &req);
	req.files = files;
	req.n_files = sizeof(files) / sizeof(files[0]);
	put_payload("files", &req);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make_seeds DIR\n");
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0755) < 0 && errno != EEXIST)
		die(outdir);
	seeds_execute();
	seeds_health();
	seeds_ipc();
	seeds_payload();
	return 0;
}
