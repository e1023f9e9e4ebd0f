/*
 * Fuzz target: an Execute request's bytes, on the exact path the server
 * takes after gRPC has delivered (and decompressed) the message:
 * convert_decode_execute() = the raw-bytes NUL scan, protobuf-c unpack,
 * conversion to struct exec_request, request_validate_execute().
 *
 * Input: the serialized ExecuteRequest. Every refusal must carry a message
 * (it becomes the INVALID_ARGUMENT text). Every accepted request is then
 * taken further, to check what the layers below rely on:
 *  - the SPAWN and TAKE packets the local backend would build from it
 *    pass ipc_check(): otherwise one request would make the supervisor
 *    refuse the front;
 *  - the payload memfd payload_create() builds from it is parsed back by
 *    payload_extract() into the same code, with at most a file system
 *    error (two files whose paths collide), never a format error.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "ipc.h"
#include "request.h"
#include "rpc/convert.h"
#include "runtime.h"
#include "sandbox/payload.h"

static struct config cfg;
static struct scratch scratch;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	config_defaults(&cfg);
	scratch_init(&scratch);
	return 0;
}

/* The environment as local.c's pack_env writes it; keep the two in step. */
static void pack_env(const struct exec_request *req, char *p)
{
	for (size_t i = 0; i < req->n_env; i++) {
		size_t nl = strlen(req->env[i].name), vl = strlen(req->env[i].value);

		memcpy(p, req->env[i].name, nl);
		p[nl] = '=';
		memcpy(p + nl + 1, req->env[i].value, vl + 1);
		p += nl + 1 + vl + 1;
	}
}

/*
 * The SPAWN (cold sandbox) and TAKE (pooled sandbox) packets as
 * server/backend/local.c builds them; keep them in step. Checks them the
 * way the supervisor's ipc_read does.
 */
static void check_packets(const struct exec_request *req)
{
	struct ipc_spawn *sp;
	struct ipc_take *tk;
	size_t env_len = 0;
	const char *bad;
	int rt = runtime_find(req->language);

	FUZZ_CHECK(rt >= 0 && rt < IPC_MAX_RUNTIMES, "accepted language \"%s\"", req->language);
	for (size_t i = 0; i < req->n_env; i++)
		env_len += strlen(req->env[i].name) + 1 + strlen(req->env[i].value) + 1;
	if (env_len > IPC_ENV_MAX)
		return; /* local_execute refuses it (BACKEND_INVALID): no packet */
	sp = calloc(1, sizeof(*sp) + env_len);
	tk = calloc(1, sizeof(*tk) + env_len);
	if (sp == NULL || tk == NULL)
		abort();
	sp->type = IPC_SPAWN;
	sp->runtime = (uint32_t)rt;
	sp->id = 1;
	sp->limits = req->limits;
	sp->tmpfs_bytes = cfg.tmpfs_bytes;
	sp->n_env = (uint32_t)req->n_env;
	sp->env_len = (uint32_t)env_len;
	pack_env(req, sp->env);
	bad = ipc_check((const union ipc_msg *)sp, sizeof(*sp) + env_len, IPC_SPAWN_FDS);
	FUZZ_CHECK(bad == NULL, "a validated request makes a SPAWN the supervisor refuses: %s",
		   bad);
	tk->type = IPC_TAKE;
	tk->id = 1;
	tk->limits = req->limits;
	tk->n_env = (uint32_t)req->n_env;
	tk->env_len = (uint32_t)env_len;
	pack_env(req, tk->env);
	bad = ipc_check((const union ipc_msg *)tk, sizeof(*tk) + env_len, 1);
	FUZZ_CHECK(bad == NULL, "a validated request makes a TAKE the supervisor refuses: %s", bad);
	free(sp);
	free(tk);
}

/* Reads all of fd into a new buffer; *len gets its size. */
static uint8_t *read_back(int fd, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t off = 0;

	if (fstat(fd, &st) < 0)
		abort();
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL)
		abort();
	while (off < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + off, (size_t)st.st_size - off, (off_t)off);

		if (n <= 0)
			abort();
		off += (size_t)n;
	}
	*len = off;
	return buf;
}

static void check_file(const struct exec_file *f, size_t i)
{
	struct stat st;
	uint8_t *got;
	size_t len;
	int fd = openat(scratch.home, f->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	FUZZ_CHECK(fd >= 0, "files[%zu] \"%s\" was not extracted", i, f->path);
	if (fstat(fd, &st) < 0)
		abort();
	FUZZ_CHECK((st.st_mode & 07777) == (f->mode ? f->mode : 0644), "files[%zu] mode %o", i,
		   (unsigned)st.st_mode & 07777);
	got = read_back(fd, &len);
	FUZZ_CHECK(len == f->len && (len == 0 || memcmp(got, f->data, len) == 0),
		   "files[%zu] \"%s\" differs after the round trip", i, f->path);
	free(got);
	close(fd);
}

static void check_payload(const struct exec_request *req)
{
	char err[256] = "";
	uint8_t *code;
	size_t len;
	int fd = payload_create(req), cfd;

	FUZZ_CHECK(fd >= 0, "payload_create failed");
	if (payload_extract(fd, scratch.code_path, scratch.home, err, sizeof(err)) < 0) {
		/* colliding paths ("a" and "a/b") are the only expected failure */
		FUZZ_CHECK(strncmp(err, "payload:", 8) != 0,
			   "payload_extract refuses what payload_create wrote: %s", err);
		goto out;
	}
	cfd = open(scratch.code_path, O_RDONLY | O_CLOEXEC);
	FUZZ_CHECK(cfd >= 0, "no code file");
	code = read_back(cfd, &len);
	FUZZ_CHECK(len == req->code_len && memcmp(code, req->code, len) == 0,
		   "code differs after the round trip");
	free(code);
	close(cfd);
	/* the last file written under a path is what the path holds */
	for (size_t i = req->n_files; i-- > 0;) {
		size_t j;

		for (j = i + 1; j < req->n_files; j++)
			if (strcmp(req->files[i].path, req->files[j].path) == 0)
				break;
		if (j == req->n_files)
			check_file(&req->files[i], i);
	}
out:
	close(fd);
	scratch_clear(&scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct convert_exec cx;
	char err[512];
	enum request_rc rc;

	memset(err, 'x', sizeof(err)); /* a message must be written, and terminated */
	rc = convert_decode_execute(&cfg, data, size, &cx, err, sizeof(err));
	if (rc != REQUEST_OK) {
		FUZZ_CHECK(rc == REQUEST_INVALID || rc == REQUEST_TOO_LARGE ||
				   rc == REQUEST_UNIMPLEMENTED,
			   "rc %d", (int)rc);
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0',
			   "a refusal without a message");
	} else {
		const struct exec_request *req = &cx.req;

		FUZZ_CHECK(req->code_len > 0 && req->code_len <= cfg.max_code_bytes &&
				   strlen(req->code) == req->code_len,
			   "code_len %zu", req->code_len);
		for (size_t i = 0; i < req->n_env; i++)
			FUZZ_CHECK(request_env_name_ok(req->env[i].name) &&
					   req->env[i].value != NULL,
				   "env[%zu]", i);
		for (size_t i = 0; i < req->n_files; i++)
			FUZZ_CHECK(
				request_path_ok(req->files[i].path, strlen(req->files[i].path)) &&
					(req->files[i].mode & ~07777U) == 0,
				"files[%zu]", i);
		FUZZ_CHECK(req->limits.wall_time_ms > 0 &&
				   req->limits.wall_time_ms <= cfg.maxima.wall_time_ms &&
				   req->limits.memory_bytes <= cfg.maxima.memory_bytes &&
				   req->limits.max_processes <= cfg.maxima.max_processes,
			   "limits not filled or above the maxima");
		if (req->session_id != NULL && req->session_id[0] != '\0') {
			/* a cell of a session: the session has its language (the
			 * request's may be empty) and its sandbox; no SPAWN or TAKE
			 * packet is built for it */
			FUZZ_CHECK(req->language == NULL || req->language[0] == '\0' ||
					   runtime_find_public(req->language) >= 0,
				   "session cell with language \"%s\"", req->language);
			FUZZ_CHECK(request_session_id_ok(req->session_id), "session id accepted");
		} else {
			check_packets(req);
		}
		check_payload(req);
	}
	convert_exec_free(&cx);
	return 0;
}
