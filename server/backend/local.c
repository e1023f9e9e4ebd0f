/*
 * Local backend, front side.
 *
 * One io thread runs an epoll loop over the IPC socket to the supervisor,
 * an eventfd (resume requests from the rpc threads) and the read ends of
 * every execution's stdout, stderr and events pipes (the events pipe is
 * the runner's fd 4: framed results and figures, see read_events()). It is
 * the only thread that reads pipes and calls sink callbacks, so per
 * execution the events are naturally ordered. Pipes are registered EPOLLONESHOT and re-armed only
 * when the caller has resumed: while a message is being sent nobody reads,
 * the pipe fills and the sandbox blocks in write() -- bounded memory, and
 * the client's pace sets the sandbox's.
 *
 * Lifetime: an execution has two references, the caller's (dropped by
 * backend_release) and the io thread's (dropped after finished is
 * delivered, when it also leaves the live list). Events for ids no longer
 * live are ignored, so stale epoll events cannot touch freed memory.
 */
#include "local.h"
#include "result.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../imports.h"
#include "../log.h"
#include "../request.h"
#include "../runtime.h"
#include "../sandbox/collect.h"
#include "../sandbox/payload.h"
#include "../sandbox/sandbox.h"
#include "../supervisor/supervisor.h"

#define CHUNK (64 * 1024) /* largest Output message */
#define EV_SOCK UINT64_MAX
#define EV_WAKE (UINT64_MAX - 1)
#define EV_CHLD (UINT64_MAX - 2)
#define EV_NONE (UINT64_MAX - 3) /* a session's pipe no cell reads now */
#define IPC_MAX_LOST 4096	 /* executions tracked through one supervisor restart */
#define NPIPES 3		 /* stdout, stderr, events: epoll data is id * NPIPES + pipe */
#define EV_PIPE 2

/*
 * The events pipe carries frames: u32 length (little-endian) of what
 * follows, u8 type, payload. 'R': a JSON object {"text", "json",
 * "mime_type"}; 'A': u16 path length, path, u64 offset, u64 file size, u8
 * flags (EV_EOF, EV_TRUNCATED), data. The sandbox writes them, so they are
 * untrusted bytes: bounded, parsed strictly, and a malformed frame ends the
 * run as REASON_SANDBOX_ERROR naming what was wrong.
 */
#define EV_MAX_DATA (1024 * 1024)	      /* artifact bytes per frame */
#define EV_MAX_FRAME (EV_MAX_DATA + 4096)     /* type, header, path and data */
#define EV_MAX_RESULTS 16		      /* result events per run; more are dropped */
#define EV_MAX_ARTIFACT_EVENTS 4096	      /* artifact events per run; more are dropped */
#define EV_ARTIFACT_BUDGET (64 * 1024 * 1024) /* artifact bytes per run; then truncated */
#define EV_EOF 1
#define EV_TRUNCATED 2

/* The events pipe's reading state of one execution (io thread only). */
struct events {
	uint8_t hdr[4];
	size_t hdr_got;
	uint8_t *frame; /* frame_len bytes once the header is complete */
	uint32_t frame_len;
	size_t frame_got;
	unsigned results, artifact_events;
	uint64_t artifact_bytes;
	bool in_file;	/* a file's pieces are arriving: next must continue it */
	bool skip_file; /* ...and are dropped (the budget is spent) */
	char path[4096];
	const char *mime; /* the file's type, from its first piece and name */
	uint64_t next_offset;
};

/*
 * What a run taken from the pool needs to start again in a sandbox made for
 * it, kept until its code has started: the pooled sandbox can die between
 * the take and the start (its zygote killed, the OOM killer), and the
 * request must not fail for that.
 */
struct retry {
	int payload; /* the payload memfd, sealed: the same bytes again */
	struct exec_limits limits;
	uint8_t *stdin_data;
	size_t stdin_len;
	uint32_t n_env;
	size_t env_len;
	char env[]; /* packed as for IPC_SPAWN */
};

struct local_exec {
	struct exec base;
	struct local_backend *lb;
	uint64_t id;
	int runtime;
	const struct exec_sink *sink;
	void *arg;
	int refs;

	/* all below under lb->mu */
	bool can_emit;
	bool have_started, started_sent;
	struct ipc_started started;
	bool have_exit, finished_sent;
	struct ipc_exited exited;
	int fd[NPIPES];
	/* armed in epoll (EPOLLIN, one-shot) and not fired since: re-arming
	 * it again would be a wasted epoll_ctl */
	bool armed[NPIPES];
	uint64_t bytes[2];
	uint64_t max_output;
	bool output_limited;
	char events_bad[128]; /* a malformed event frame ended the run: why */
	struct events ev;
	bool kill_sent;
	bool queued;
	bool warm;	     /* runs in a pooled sandbox */
	struct retry *retry; /* warm, until its code started */
	/* A cell of a session: its pipes are the session's (borrowed: never
	 * closed here) while it runs; it waits in the session's queue before. */
	struct session *sess;
	bool borrowed;
	bool in_cell_queue;
	bool is_cell;
	enum exec_reason kill_reason; /* why the cell was interrupted */
	uint64_t sandbox_no;	      /* the sandbox it runs in (Started.sandbox_id) */
	uint8_t *cell;		      /* the 'C' frame to send when it starts */
	size_t cell_len;
	uint32_t wall_ms;
	struct timespec t_cell;
	struct local_exec *qnext;
	struct local_exec *ready_next;
	struct local_exec *next, *prev;
};

/*
 * A pooled sandbox, started ahead with its own pipes: the front keeps the
 * read ends of stdout/stderr and the write end of stdin, exactly as for an
 * execution, so taking it needs no descriptor passing to the runner.
 */
struct warm {
	uint64_t id;
	int runtime;
	bool ready;	  /* init reported WARM: the runner is up */
	int stdin_w;	  /* the request's stdin goes here, then EOF */
	size_t stdin_cap; /* what fits into the pipe without blocking */
	int out_r, err_r, ev_r;
	struct warm *next;
};

/*
 * A session: one sandbox of its own whose runner loops over cells written
 * to its stdin pipe (the control pipe: 'C' a cell, 'I' interrupt), and
 * reports each cell's end on the events pipe ('E'). Its output pipes stay
 * open across cells; the cell running now borrows them.
 */
#define SESSION_GRACE_MS 2000 /* an interrupted cell's time to end before a restart */
#define SESSION_TICK_MS 50    /* the io thread's clock while sessions exist */
#define SESSION_TOMBS 64      /* ended sessions remembered (NOT_FOUND says why) */

struct session {
	char id[SESSION_ID_MAX];
	char owner[72];
	int runtime;	 /* of its sandbox (the runner's) */
	int lang_rt;	 /* of its cells (bash runs under the python runner) */
	uint64_t sbx;	 /* the sandbox (supervisor id) */
	bool await_warm; /* a sandbox started for us: taken when it is WARM */
	bool taken;	 /* its sandbox reported the take started: cells may go */
	bool respawned;	 /* its first sandbox ended before the take started */
	bool warm;	 /* the sandbox came from the pool */
	int ctl_w;	 /* the runner's stdin: cells go here */
	int fd[NPIPES];	 /* stdout, stderr, events (read ends) */
	uint8_t *wbuf;	 /* control bytes not written yet */
	size_t wlen, woff;
	/* what it was created with, for a restart */
	struct exec_limits limits;
	struct exec_env *env;
	size_t n_env;
	struct exec_file *files;
	size_t n_files;
	struct local_exec *cur;		  /* the cell running */
	struct local_exec *qhead, *qtail; /* cells waiting, in arrival order */
	bool interrupted;
	struct timespec grace_end;
	struct timespec idle_since;
	uint64_t created_ms, last_used_ms, executions;
	uint32_t idle_s;
	struct session *next;
};

struct session_tomb {
	char id[SESSION_ID_MAX];
	char owner[72];
	char why[160];
};

struct local_backend {
	struct backend base;
	const struct config *cfg;
	int sock;
	pid_t sup_pid;
	int ep;
	int evfd;
	pthread_t io;
	pthread_mutex_t mu;
	bool stop;
	bool draining;
	bool exit_io;		/* destroy: the io thread may end */
	pthread_cond_t idle_cv; /* stop and no execution live */
	struct local_exec *live_head;
	unsigned live;
	unsigned busy[IPC_MAX_RUNTIMES];
	struct local_exec *ready_head;
	uint64_t next_id;
	uint32_t nonce;
	char versions[IPC_MAX_RUNTIMES][IPC_VERSION_LEN];
	uint32_t cgroup_mode;
	char cgroup[128];
	unsigned restarts;	/* supervisor restarts */
	bool sup_reaped;	/* the io thread reaped the supervisor already */
	int chld_fd;		/* signalfd: SIGCHLD */
	struct warm *warm_head; /* pooled sandboxes: starting and idle */
	unsigned warm_idle[IPC_MAX_RUNTIMES];
	unsigned warm_starting[IPC_MAX_RUNTIMES];
	bool warm_failing[IPC_MAX_RUNTIMES]; /* the last one died starting: refill on demand */
	/* the supervisor's preloaded python zygote serves (IPC_ZYGOTE): code
	 * that imports its modules goes there, not to the pool */
	bool preloaded_serves;
	/* Adaptive size: a request that finds the pool empty raises want
	 * (up to pool_max); calm (no miss for cfg->pool_idle_ms) lowers it
	 * back to pool_target, one sandbox every POOL_TICK_MS. */
	unsigned pool_want[IPC_MAX_RUNTIMES];
	struct timespec pool_miss[IPC_MAX_RUNTIMES];   /* CLOCK_MONOTONIC */
	struct timespec pool_shrunk[IPC_MAX_RUNTIMES]; /* ... */
	uint8_t *buf;				       /* io thread only */
	struct session *sessions;
	unsigned n_sessions;
	unsigned sess_busy[IPC_MAX_RUNTIMES];
	struct session_tomb tombs[SESSION_TOMBS];
	unsigned tomb_next;
};

#define POOL_TICK_MS \
	1000 /* while a pool is grown: the io thread's check, and the
			   * pace at which it gives back sandboxes */

static const struct backend_ops local_ops;
static void warm_refill_locked(struct local_backend *lb);
static void warm_drop_all_locked(struct local_backend *lb);

static struct local_exec *find_live(struct local_backend *lb, uint64_t id)
{
	for (struct local_exec *x = lb->live_head; x; x = x->next)
		if (x->id == id)
			return x;
	return NULL;
}

static void unref_locked(struct local_exec *x, bool *do_free) { *do_free = --x->refs == 0; }

static void retry_free(struct retry *r)
{
	if (r == NULL)
		return;
	if (r->payload >= 0)
		close(r->payload);
	free(r->stdin_data);
	free(r);
}

static void exec_free(struct local_exec *x)
{
	retry_free(x->retry);
	for (int i = 0; i < NPIPES; i++)
		if (x->fd[i] >= 0 && !x->borrowed)
			close(x->fd[i]);
	free(x->cell);
	free(x->ev.frame);
	free(x);
}

/*
 * Re-arms the open pipes (one-shot) that are not armed already: a pipe
 * whose event has not fired since it was last armed needs nothing. Caller
 * holds mu.
 */
static void arm_pipes(struct local_exec *x)
{
	for (int i = 0; i < NPIPES; i++) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT,
					 .data.u64 = x->id * NPIPES + (uint64_t)i};
		if (x->fd[i] < 0 || x->armed[i])
			continue;
		if (epoll_ctl(x->lb->ep, EPOLL_CTL_MOD, x->fd[i], &ev) < 0)
			fatal("epoll_ctl mod");
		x->armed[i] = true;
	}
}

static void close_pipe(struct local_exec *x, int i)
{
	if (x->fd[i] < 0)
		return;
	x->armed[i] = false;
	if (x->borrowed) {
		/* a session's pipe: it stays open (and registered, disarmed) */
		struct epoll_event ev = {.events = EPOLLONESHOT, .data.u64 = EV_NONE};
		if (epoll_ctl(x->lb->ep, EPOLL_CTL_MOD, x->fd[i], &ev) < 0)
			fatal("epoll_ctl mod");
		x->fd[i] = -1;
		return;
	}
	/* no EPOLL_CTL_DEL: the read end is ours alone, and closing its last
	 * descriptor takes it out of the epoll set (a copy a fork holds
	 * until its exec can only deliver one stale event, whose id is no
	 * longer live and is ignored) */
	close(x->fd[i]);
	x->fd[i] = -1;
}

static void session_interrupt_locked(struct session *ss, struct local_exec *x,
				     enum exec_reason reason);
static void session_free_copy(struct session *ss);
static void session_end_locked(struct local_backend *lb, struct session *ss, const char *why,
			       const struct ipc_exited *exited);
static int session_take_locked(struct local_backend *lb, struct session *ss, char *why,
			       size_t whylen);
static struct session *session_by_sbx_locked(struct local_backend *lb, uint64_t sbx);
static void session_unqueue_locked(struct session *ss, struct local_exec *x);
static void session_close_pipes_locked(struct local_backend *lb, struct session *ss);
static int session_spawn_locked(struct local_backend *lb, struct session *ss, bool pooled,
				char *why, size_t whylen);
static void session_next_locked(struct local_backend *lb, struct session *ss);

/* Sends a KILL for x. Caller holds mu. */
static void send_kill_locked(struct local_exec *x, enum exec_reason reason)
{
	struct ipc_kill k = {.type = IPC_KILL, .reason = reason, .id = x->id};

	if (x->kill_sent || x->have_exit)
		return;
	if (x->sess != NULL) {
		/* a cell: interrupted, the session lives on if it recovers */
		x->kill_sent = true;
		x->kill_reason = reason;
		if (x->in_cell_queue)
			session_unqueue_locked(x->sess, x);
		else
			session_interrupt_locked(x->sess, x, reason);
		return;
	}
	x->kill_sent = true;
	if (x->lb->sock >= 0 && ipc_send(x->lb->sock, &k, sizeof(k), NULL, 0) < 0)
		log_warn("ipc send KILL"); /* the supervisor is gone: its sandboxes too */
}

static void make_sandbox_id(const struct local_exec *x, char *buf, size_t len)
{
	snprintf(buf, len, "local-%08" PRIx32 "-%" PRIu64, x->lb->nonce,
		 x->sandbox_no ? x->sandbox_no : x->id);
}

static void session_cell_done_locked(struct local_backend *lb, struct local_exec *x);

/*
 * Delivers the next pending event of x if the caller is ready for it.
 * io thread only; takes and releases mu; calls the sink without it.
 */
static void try_emit(struct local_exec *x)
{
	struct local_backend *lb = x->lb;
	bool do_free = false;

	pthread_mutex_lock(&lb->mu);
	if (!x->can_emit || x->finished_sent) {
		pthread_mutex_unlock(&lb->mu);
		return;
	}
	if (!x->started_sent && x->have_started) {
		struct exec_started st;
		char sid[64];
		make_sandbox_id(x, sid, sizeof(sid));
		st.sandbox_id = sid;
		st.language = runtime_at((size_t)x->runtime)->name;
		st.queued_us = 0;
		st.start_us = x->started.start_us;
		st.backend = "local";
		st.warm = x->warm;
		x->started_sent = true;
		x->can_emit = false;
		pthread_mutex_unlock(&lb->mu);
		x->sink->started(x->arg, &st);
		return;
	}
	if (!x->started_sent && !x->have_exit) {
		pthread_mutex_unlock(&lb->mu);
		return;
	}
	if (x->fd[0] >= 0 || x->fd[1] >= 0 || x->fd[EV_PIPE] >= 0) {
		arm_pipes(x);
		pthread_mutex_unlock(&lb->mu);
		return;
	}
	if (x->have_exit) {
		struct exec_result res;
		memset(&res, 0, sizeof(res));
		res.reason = (enum exec_reason)x->exited.reason;
		res.exit_code = x->exited.exit_code;
		res.signal = x->exited.signal;
		res.wall_time_us = x->exited.wall_time_us;
		res.cpu_time_us = x->exited.cpu_time_us;
		res.peak_memory_bytes = x->exited.peak_memory_bytes;
		snprintf(res.message, sizeof(res.message), "%s", x->exited.message);
		if (x->output_limited) {
			/* we cut the output: that is why it ended, whatever the
			 * program did after */
			res.reason = EXEC_REASON_OUTPUT_LIMIT;
			res.signal = 0;
			snprintf(res.message, sizeof(res.message),
				 "output limit of %" PRIu64 " bytes reached", x->max_output);
		} else if (x->events_bad[0] != '\0') {
			/* we ended it for what it wrote to the events pipe */
			res.reason = EXEC_REASON_SANDBOX_ERROR;
			res.signal = 0;
			snprintf(res.message, sizeof(res.message), "events pipe: %s",
				 x->events_bad);
		}
		res.stdout_bytes = x->bytes[0];
		res.stderr_bytes = x->bytes[1];
		x->finished_sent = true;
		x->can_emit = false;
		/* leave the live list now: later epoll events for this id are ignored */
		if (x->prev)
			x->prev->next = x->next;
		else
			lb->live_head = x->next;
		if (x->next)
			x->next->prev = x->prev;
		lb->live--;
		if (!x->is_cell)
			lb->busy[x->runtime]--;
		else
			session_cell_done_locked(lb, x);
		if (x->queued) {
			/* a resume queued before finishing must not outlive it */
			struct local_exec **pp = &lb->ready_head;
			while (*pp != x)
				pp = &(*pp)->ready_next;
			*pp = x->ready_next;
			x->queued = false;
		}
		pthread_mutex_unlock(&lb->mu);
		x->sink->finished(x->arg, &res);
		pthread_mutex_lock(&lb->mu);
		unref_locked(x, &do_free);
		pthread_mutex_unlock(&lb->mu);
		if (do_free)
			exec_free(x);
		return;
	}
	pthread_mutex_unlock(&lb->mu);
}

static void cell_frame(struct local_exec *x, uint8_t type, const uint8_t *p);

/* ---- the events pipe ----------------------------------------------------- */

static uint16_t get_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/*
 * Parses an artifact frame and, if it is to be delivered, fills a (whose
 * path points into x->ev). Returns NULL (*deliver says whether to), or
 * what is wrong.
 */
static const char *parse_artifact(struct local_exec *x, const uint8_t *p, size_t len,
				  struct exec_artifact *a, bool *deliver)
{
	struct events *e = &x->ev;
	size_t plen, dlen;
	uint64_t offset, size, remaining;
	uint8_t flags;
	bool eof;

	*deliver = false;
	if (len < 2)
		return "artifact: short frame";
	plen = get_le16(p);
	if (len < 2 + plen + 17)
		return "artifact: short frame";
	if (plen == 0 || plen >= sizeof(e->path) || memchr(p + 2, '\0', plen) != NULL ||
	    !request_path_ok((const char *)p + 2, plen))
		return "artifact: bad path";
	offset = get_le64(p + 2 + plen);
	size = get_le64(p + 2 + plen + 8);
	flags = p[2 + plen + 16];
	dlen = len - (2 + plen + 17);
	eof = flags & EV_EOF;
	if (flags & ~(EV_EOF | EV_TRUNCATED) || dlen > EV_MAX_DATA)
		return "artifact: bad flags or size";
	/* the pieces must add up to the file: in order, within its size, eof
	 * exactly at its end unless the runner says it cut it */
	if (dlen > size || offset > size - dlen)
		return "artifact: piece beyond the file's size";
	if ((flags & EV_TRUNCATED) ? !eof : eof != (offset + dlen == size))
		return "artifact: bad eof";
	if (!e->in_file && offset == 0) {
		memcpy(e->path, p + 2, plen);
		e->path[plen] = '\0';
		e->skip_file = false;
		/* from the content where it tells (the name is the sandbox's
		 * choice), else the name: docs/api.md "Collecting files" */
		e->mime = collect_mime_type(e->path, p + 2 + plen + 17, dlen, eof);
	} else if (!e->in_file || offset != e->next_offset || strlen(e->path) != plen ||
		   memcmp(e->path, p + 2, plen) != 0)
		return "artifact: piece out of order";
	e->next_offset = offset + dlen;
	e->in_file = !eof;
	if (e->skip_file || e->artifact_events >= EV_MAX_ARTIFACT_EVENTS)
		return NULL; /* dropped */
	memset(a, 0, sizeof(*a));
	a->path = e->path;
	a->mime_type = e->mime;
	a->data = p + 2 + plen + 17;
	a->len = dlen;
	a->offset = offset;
	a->size = size;
	a->eof = eof;
	a->truncated = flags & EV_TRUNCATED;
	remaining = EV_ARTIFACT_BUDGET - e->artifact_bytes;
	if (dlen > remaining) {
		/* the budget ends here: what fits, marked truncated, then
		 * nothing more of this file (other files: one empty truncated
		 * piece each) */
		a->len = (size_t)remaining;
		a->truncated = true;
		a->eof = true;
		e->skip_file = !eof;
	}
	e->artifact_bytes += a->len;
	e->artifact_events++;
	*deliver = true;
	return NULL;
}

/* Ends x for a malformed events frame. io thread; takes mu. */
static void events_fail(struct local_exec *x, const char *why)
{
	struct local_backend *lb = x->lb;

	pthread_mutex_lock(&lb->mu);
	if (x->events_bad[0] == '\0') {
		snprintf(x->events_bad, sizeof(x->events_bad), "%s", why);
		log_info("local backend: run %" PRIu64 ": malformed events frame (%s); ending it",
			 x->id, why);
	}
	send_kill_locked(x, EXEC_REASON_SANDBOX_ERROR);
	close_pipe(x, EV_PIPE);
	pthread_mutex_unlock(&lb->mu);
	free(x->ev.frame);
	x->ev.frame = NULL;
	try_emit(x);
}

/*
 * Delivers the complete frame in x->ev (or drops it), then resets the
 * reader. io thread, without mu.
 */
static void events_frame(struct local_exec *x)
{
	struct local_backend *lb = x->lb;
	struct events *e = &x->ev;
	const uint8_t *f = e->frame;
	const char *bad = NULL;
	char *text = NULL, *json = NULL, *mime = NULL;
	struct exec_artifact a;
	bool deliver = false, result = false;

	if (f[0] == 'R') {
		bad = result_parse(f + 1, e->frame_len - 1, &text, &json, &mime);
		result = true;
		deliver = bad == NULL && e->results < EV_MAX_RESULTS && x->sink->result != NULL;
		if (bad == NULL)
			e->results++;
	} else if (f[0] == 'A') {
		bad = parse_artifact(x, f + 1, e->frame_len - 1, &a, &deliver);
		deliver = deliver && x->sink->artifact != NULL;
	} else if ((f[0] == 'E' || f[0] == 'T') && x->is_cell) {
		/* a session's runner: the cell ended ('E': i32 exit code, u64
		 * CPU microseconds), or it interrupted the cell for its CPU
		 * limit ('T', empty) */
		if (f[0] == 'E' && e->frame_len != 1 + 4 + 8)
			bad = "end of cell: bad size";
		else if (f[0] == 'T' && e->frame_len != 1)
			bad = "cpu interrupt: bad size";
		else {
			/* x may be gone once cell_frame returns: done with it first */
			uint8_t type = f[0], body[12] = {0};
			memcpy(body, f + 1, e->frame_len - 1);
			free(e->frame);
			e->frame = NULL;
			e->hdr_got = e->frame_got = 0;
			e->frame_len = 0;
			cell_frame(x, type, body);
			return;
		}
	} else {
		bad = "unknown frame type";
	}
	if (bad != NULL) {
		free(text);
		free(json);
		free(mime);
		events_fail(x, bad);
		return;
	}
	if (deliver) {
		pthread_mutex_lock(&lb->mu);
		x->can_emit = false;
		pthread_mutex_unlock(&lb->mu);
		if (result) {
			struct exec_result_value r = {
				.text = text,
				.json = json,
				.mime_type = mime != NULL ? mime : "text/plain",
			};
			x->sink->result(x->arg, &r);
		} else {
			x->sink->artifact(x->arg, &a);
		}
	}
	free(text);
	free(json);
	free(mime);
	free(e->frame);
	e->frame = NULL;
	e->hdr_got = e->frame_got = 0;
	e->frame_len = 0;
	if (!deliver) {
		/* nothing sent, so no resume comes: go on reading */
		pthread_mutex_lock(&lb->mu);
		arm_pipes(x);
		pthread_mutex_unlock(&lb->mu);
	}
}

/*
 * Reads the events pipe of x (fd) up to one complete frame and handles it.
 * A frame is read exactly, header then body, so nothing of the next one is
 * ever buffered here. io thread, without mu.
 */
static void read_events(struct local_exec *x, int fd)
{
	struct local_backend *lb = x->lb;
	struct events *e = &x->ev;

	for (;;) {
		ssize_t n;
		if (e->hdr_got < sizeof(e->hdr))
			n = read(fd, e->hdr + e->hdr_got, sizeof(e->hdr) - e->hdr_got);
		else
			n = read(fd, e->frame + e->frame_got, e->frame_len - e->frame_got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			pthread_mutex_lock(&lb->mu);
			arm_pipes(x);
			pthread_mutex_unlock(&lb->mu);
			return;
		}
		if (n <= 0) {
			/* the writers are gone (a frame cut by the end of the
			 * run is simply not delivered) */
			pthread_mutex_lock(&lb->mu);
			close_pipe(x, EV_PIPE);
			pthread_mutex_unlock(&lb->mu);
			free(e->frame);
			e->frame = NULL;
			try_emit(x);
			return;
		}
		if (e->hdr_got < sizeof(e->hdr)) {
			e->hdr_got += (size_t)n;
			if (e->hdr_got < sizeof(e->hdr))
				continue;
			e->frame_len = get_le32(e->hdr);
			if (e->frame_len == 0 || e->frame_len > EV_MAX_FRAME) {
				char why[64];
				snprintf(why, sizeof(why), "frame of %" PRIu32 " bytes",
					 e->frame_len);
				events_fail(x, why);
				return;
			}
			e->frame = malloc(e->frame_len);
			if (e->frame == NULL) {
				events_fail(x, "out of memory");
				return;
			}
			e->frame_got = 0;
			continue;
		}
		e->frame_got += (size_t)n;
		if (e->frame_got == e->frame_len) {
			events_frame(x);
			return;
		}
	}
}

/*
 * Which of stdout (0) and stderr (1) of x has something to read, or -1: the
 * runner writes its output before the result and figures, so output
 * already in a pipe is delivered first. Caller holds mu.
 */
static int output_pending_locked(const struct local_exec *x)
{
	struct pollfd p[2];
	int idx[2];
	nfds_t n = 0;

	for (int i = 0; i < 2; i++)
		if (x->fd[i] >= 0) {
			p[n] = (struct pollfd){.fd = x->fd[i], .events = POLLIN};
			idx[n++] = i;
		}
	if (n == 0 || poll(p, n, 0) <= 0)
		return -1;
	for (nfds_t i = 0; i < n; i++)
		if (p[i].revents & (POLLIN | POLLHUP | POLLERR))
			return idx[i];
	return -1;
}

static void on_pipe(struct local_backend *lb, uint64_t data)
{
	uint64_t id = data / NPIPES;
	int i = (int)(data % NPIPES), fd;
	struct local_exec *x;
	ssize_t n;

	pthread_mutex_lock(&lb->mu);
	x = find_live(lb, id);
	if (x != NULL)
		/* a one-shot event fired: the pipe is disarmed (when called
		 * for pending output instead, it may still be armed: at worst
		 * the next arm_pipes re-arms it once more) */
		x->armed[i] = false;
	if (x == NULL || x->fd[i] < 0 || !x->can_emit || (!x->started_sent && !x->have_exit)) {
		/* one-shot: stays disarmed until the next resume re-arms it */
		pthread_mutex_unlock(&lb->mu);
		return;
	}
	fd = x->fd[i];
	if (i == EV_PIPE) {
		int out = output_pending_locked(x);
		pthread_mutex_unlock(&lb->mu);
		if (out >= 0) {
			/* this pipe stays disarmed until the output's resume */
			on_pipe(lb, id * NPIPES + (uint64_t)out);
			return;
		}
		read_events(x, fd);
		return;
	}
	pthread_mutex_unlock(&lb->mu);

	do {
		n = read(fd, lb->buf, CHUNK);
	} while (n < 0 && errno == EINTR);
	if (n > 0 && x->is_cell && x->output_limited) {
		/* an interrupted cell's output past the limit: dropped, while
		 * its end is awaited on the events pipe */
		pthread_mutex_lock(&lb->mu);
		arm_pipes(x);
		pthread_mutex_unlock(&lb->mu);
		return;
	}
	if (n < 0 && errno == EAGAIN) {
		pthread_mutex_lock(&lb->mu);
		arm_pipes(x);
		pthread_mutex_unlock(&lb->mu);
		return;
	}
	pthread_mutex_lock(&lb->mu);
	if (n <= 0) {
		close_pipe(x, i);
		pthread_mutex_unlock(&lb->mu);
		try_emit(x);
		return;
	}
	{
		uint64_t used = x->bytes[0] + x->bytes[1];
		uint64_t allowed = x->max_output > used ? x->max_output - used : 0;
		if ((uint64_t)n > allowed) {
			/* deliver exactly up to the limit, then stop the run and
			 * stop reading: the client never gets more than the limit */
			n = (ssize_t)allowed;
			x->output_limited = true;
			send_kill_locked(x, EXEC_REASON_OUTPUT_LIMIT);
			if (!x->borrowed) {
				close_pipe(x, 0);
				close_pipe(x, 1);
				close_pipe(x, EV_PIPE);
			}
		}
	}
	if (n == 0) {
		pthread_mutex_unlock(&lb->mu);
		try_emit(x);
		return;
	}
	x->bytes[i] += (uint64_t)n;
	x->can_emit = false;
	pthread_mutex_unlock(&lb->mu);
	x->sink->output(x->arg, i == 0 ? EXEC_STDOUT : EXEC_STDERR, lb->buf, (size_t)n);
}

/* Ends x as lost with the supervisor. Caller holds mu. */
static void mark_lost_locked(struct local_exec *x, const char *why)
{
	memset(&x->exited, 0, sizeof(x->exited));
	x->exited.type = IPC_EXITED;
	x->exited.id = x->id;
	x->exited.reason = EXEC_REASON_SANDBOX_ERROR;
	snprintf(x->exited.message, sizeof(x->exited.message),
		 "the sandbox supervisor stopped (%.120s); this run was lost", why);
	x->have_exit = true;
	x->kill_sent = true;
}

/*
 * The supervisor died or sent something malformed: its sandboxes die with
 * it (their init has PDEATHSIG), their runs end as REASON_SANDBOX_ERROR
 * with an orderly stream, and a new supervisor takes over. io thread only.
 */
static void supervisor_lost(struct local_backend *lb, const char *why)
{
	struct local_exec *lost[IPC_MAX_LOST];
	size_t n = 0;
	struct ipc_hello hello;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_SOCK};
	pid_t old_pid, pid = -1;
	int sock = -1;
	bool stopping;

	pthread_mutex_lock(&lb->mu);
	log_warnx("local backend: supervisor lost: %s; restarting it", why);
	while (lb->sessions != NULL) {
		struct ipc_exited ex;
		memset(&ex, 0, sizeof(ex));
		ex.reason = EXEC_REASON_SANDBOX_ERROR;
		snprintf(ex.message, sizeof(ex.message), "the sandbox supervisor stopped (%.120s)",
			 why);
		session_end_locked(lb, lb->sessions, ex.message, &ex);
	}
	for (struct local_exec *x = lb->live_head; x; x = x->next)
		if (!x->have_exit) {
			mark_lost_locked(x, why);
			if (n < IPC_MAX_LOST)
				lost[n++] = x;
		}
	epoll_ctl(lb->ep, EPOLL_CTL_DEL, lb->sock, NULL);
	close(lb->sock);
	lb->sock = -1;		  /* execute() sees it and fails the run cleanly */
	warm_drop_all_locked(lb); /* their sandboxes died with the supervisor */
	lb->preloaded_serves = false;
	old_pid = lb->sup_pid;
	stopping = lb->stop;
	pthread_mutex_unlock(&lb->mu);

	/* a supervisor that talks nonsense may still be alive: end it */
	if (!lb->sup_reaped) {
		kill(old_pid, SIGKILL);
		while (waitpid(old_pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	lb->sup_reaped = true; /* reaped above */
	if (stopping) {
		/* stopping anyway: no new supervisor */
		for (size_t i = 0; i < n; i++)
			try_emit(lost[i]);
		return;
	}
	lb->sup_reaped = false;
	for (int attempt = 1; attempt <= 5 && sock < 0; attempt++) {
		sock = supervisor_start(lb->cfg, &pid, &hello);
		if (sock < 0)
			usleep(200000 * (useconds_t)attempt);
	}
	if (sock < 0)
		fatalx("the supervisor could not be restarted");
	pthread_mutex_lock(&lb->mu);
	lb->sock = sock;
	lb->sup_pid = pid;
	lb->restarts++;
	lb->cgroup_mode = hello.cgroup_mode;
	memcpy(lb->cgroup, hello.cgroup, sizeof(lb->cgroup));
	if (epoll_ctl(lb->ep, EPOLL_CTL_ADD, sock, &ev) < 0)
		fatal("epoll_ctl");
	memset(lb->warm_failing, 0, sizeof(lb->warm_failing));
	warm_refill_locked(lb);
	pthread_mutex_unlock(&lb->mu);
	log_info("local backend: supervisor restarted (pid %d, %u restarts)", (int)pid,
		 lb->restarts);
	/* live, so not freed under us: only this thread ends executions */
	for (size_t i = 0; i < n; i++)
		try_emit(lost[i]);
}

static void warm_free(struct warm *w)
{
	if (w->stdin_w >= 0)
		close(w->stdin_w);
	if (w->out_r >= 0)
		close(w->out_r);
	if (w->err_r >= 0)
		close(w->err_r);
	if (w->ev_r >= 0)
		close(w->ev_r);
	free(w);
}

/* Unlinks w from the pool and fixes the counts. Caller holds mu. */
static void warm_unlink_locked(struct local_backend *lb, struct warm *w)
{
	struct warm **pp = &lb->warm_head;

	while (*pp != w)
		pp = &(*pp)->next;
	*pp = w->next;
	if (w->ready)
		lb->warm_idle[w->runtime]--;
	else
		lb->warm_starting[w->runtime]--;
}

static struct warm *warm_find_locked(struct local_backend *lb, uint64_t id)
{
	for (struct warm *w = lb->warm_head; w; w = w->next)
		if (w->id == id)
			return w;
	return NULL;
}

/*
 * A sandbox's stdout, stderr and events pipes (CLOEXEC): the read ends
 * (non-blocking, ours) into rd, the write ends (the sandbox's, with bigger
 * buffers: fewer wake-ups per MiB streamed) into wr. Returns 0, or -1 with
 * errno and nothing open.
 */
_Static_assert(IPC_SPAWN_FDS == 2 + NPIPES, "a spawn passes payload, stdin and the pipes");

static int output_pipes(int rd[NPIPES], int wr[NPIPES])
{
	int i, e;

	for (i = 0; i < NPIPES; i++)
		rd[i] = wr[i] = -1;
	for (i = 0; i < NPIPES; i++) {
		int p[2];
		if (pipe2(p, O_CLOEXEC) < 0)
			goto fail;
		rd[i] = p[0];
		wr[i] = p[1];
		(void)fcntl(wr[i], F_SETPIPE_SZ, 256 * 1024); /* best effort */
		if (fcntl(rd[i], F_SETFL, O_NONBLOCK) < 0)
			goto fail;
	}
	return 0;
fail:
	e = errno;
	for (i = 0; i < NPIPES; i++) {
		if (rd[i] >= 0)
			close(rd[i]);
		if (wr[i] >= 0)
			close(wr[i]);
		rd[i] = wr[i] = -1;
	}
	errno = e;
	return -1;
}

/* Adds x's pipes to the io thread's epoll set under x's id. Caller holds mu. */
static void watch_pipes_locked(struct local_backend *lb, struct local_exec *x)
{
	for (int i = 0; i < NPIPES; i++) {
		/* registered disarmed; armed once started has been delivered */
		struct epoll_event ev = {.events = EPOLLONESHOT,
					 .data.u64 = x->id * NPIPES + (uint64_t)i};
		if (epoll_ctl(lb->ep, EPOLL_CTL_ADD, x->fd[i], &ev) < 0)
			fatal("epoll_ctl add");
		x->armed[i] = false;
	}
}

/*
 * x's pooled sandbox ended before x's code started (why): x starts again in
 * a sandbox made for it, with new pipes and id, from what x->retry kept.
 * Returns 0, or -1 (x ends with the pooled sandbox's EXITED). Caller holds
 * mu; x's pipes were never armed (nothing is read before Started).
 */
static int retry_cold_locked(struct local_backend *lb, struct local_exec *x, const char *why)
{
	struct retry *rt = x->retry;
	struct ipc_spawn *sp = NULL;
	int fds[IPC_SPAWN_FDS], rd[NPIPES];
	int rc = -1;

	x->retry = NULL; /* once */
	for (int i = 0; i < IPC_SPAWN_FDS; i++)
		fds[i] = -1;
	if (lb->sock < 0 || lb->draining)
		goto out;
	sp = malloc(sizeof(*sp) + rt->env_len);
	fds[1] = payload_blob("capibox-stdin", rt->stdin_data, rt->stdin_len);
	if (sp == NULL || fds[1] < 0 || output_pipes(rd, fds + 2) < 0)
		goto out;
	fds[0] = rt->payload;
	rt->payload = -1;
	for (int i = 0; i < NPIPES; i++) {
		epoll_ctl(lb->ep, EPOLL_CTL_DEL, x->fd[i], NULL);
		close(x->fd[i]);
		x->fd[i] = rd[i];
	}
	x->id = ++lb->next_id;
	x->warm = false;
	watch_pipes_locked(lb, x);
	memset(sp, 0, sizeof(*sp));
	sp->type = IPC_SPAWN;
	sp->runtime = (uint32_t)x->runtime;
	sp->id = x->id;
	sp->limits = rt->limits;
	sp->tmpfs_bytes = lb->cfg->tmpfs_bytes;
	sp->n_env = rt->n_env;
	sp->env_len = (uint32_t)rt->env_len;
	memcpy(sp->env, rt->env, rt->env_len);
	log_warnx("local backend: a pooled %s sandbox ended before its run started (%.100s): "
		  "the run starts again in a new sandbox (%" PRIu64 ")",
		  runtime_at((size_t)x->runtime)->name, why, x->id);
	/* on failure x ends with the pooled sandbox's EXITED (our copies of
	 * the new pipes' write ends close below) */
	if (ipc_send(lb->sock, sp, sizeof(*sp) + rt->env_len, fds, IPC_SPAWN_FDS) == 0)
		rc = 0;
out:
	for (int i = 0; i < IPC_SPAWN_FDS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(sp);
	retry_free(rt);
	return rc;
}

/*
 * Starts a sandbox of runtime rt whose runner waits for a take, with its
 * pipes (not linked into the pool). Caller holds mu.
 */
static struct warm *warm_new_locked(struct local_backend *lb, int rt)
{
	struct ipc_spawn sp;
	struct warm *w = calloc(1, sizeof(*w));
	int in[2] = {-1, -1}, rd[NPIPES], wr[NPIPES], none = -1;
	int fds[IPC_SPAWN_FDS], cap;

	for (int i = 0; i < NPIPES; i++)
		rd[i] = wr[i] = -1;
	if (w == NULL)
		return NULL;
	if (pipe2(in, O_CLOEXEC) < 0 || output_pipes(rd, wr) < 0 ||
	    (none = payload_blob("capibox-none", NULL, 0)) < 0)
		goto fail;
	/* stdin is written whole at take time, so the pipe should hold it */
	(void)fcntl(in[1], F_SETPIPE_SZ, 1024 * 1024);
	cap = fcntl(in[1], F_GETPIPE_SZ);
	if (cap <= 0 || fcntl(in[1], F_SETFL, O_NONBLOCK) < 0)
		goto fail;
	memset(&sp, 0, sizeof(sp));
	sp.type = IPC_SPAWN;
	sp.runtime = (uint32_t)rt;
	sp.id = ++lb->next_id;
	sp.warm = 1;
	/* the largest any request may ask: a take lowers them, nothing can
	 * raise them again */
	sp.limits = lb->cfg->maxima;
	sp.cg_memory_bytes = lb->cfg->defaults.memory_bytes;
	sp.cg_max_processes = lb->cfg->defaults.max_processes;
	sp.tmpfs_bytes = lb->cfg->tmpfs_bytes;
	fds[0] = none;
	fds[1] = in[0];
	fds[2] = wr[0];
	fds[3] = wr[1];
	fds[4] = wr[EV_PIPE];
	if (lb->sock < 0 || ipc_send(lb->sock, &sp, sizeof(sp), fds, IPC_SPAWN_FDS) < 0)
		goto fail;
	close(none);
	close(in[0]);
	for (int i = 0; i < NPIPES; i++)
		close(wr[i]);
	w->id = sp.id;
	w->runtime = rt;
	w->stdin_w = in[1];
	w->stdin_cap = (size_t)cap;
	w->out_r = rd[0];
	w->err_r = rd[1];
	w->ev_r = rd[EV_PIPE];
	return w;
fail:
	for (int i = 0; i < NPIPES; i++) {
		if (rd[i] >= 0)
			close(rd[i]);
		if (wr[i] >= 0)
			close(wr[i]);
	}
	for (int i = 0; i < 2; i++)
		if (in[i] >= 0)
			close(in[i]);
	if (none >= 0)
		close(none);
	free(w);
	return NULL;
}

/* Starts one pooled sandbox of runtime rt. Caller holds mu. */
static int warm_spawn_locked(struct local_backend *lb, int rt)
{
	struct warm *w = warm_new_locked(lb, rt);

	if (w == NULL)
		return -1;
	w->next = lb->warm_head;
	lb->warm_head = w;
	lb->warm_starting[rt]++;
	return 0;
}

/*
 * Tops the pools up to their targets, within the supervisor's slots
 * (running executions plus pool targets). Caller holds mu.
 */
static void warm_refill_locked(struct local_backend *lb)
{
	if (lb->stop || lb->draining || lb->sock < 0)
		return;
	for (size_t rt = 0; rt < runtime_count() && rt < IPC_MAX_RUNTIMES; rt++) {
		unsigned target = lb->pool_want[rt];
		if (runtime_at(rt)->runner == NULL || lb->warm_failing[rt])
			continue;
		while (lb->warm_idle[rt] + lb->warm_starting[rt] < target)
			if (warm_spawn_locked(lb, (int)rt) < 0) {
				log_warn("local backend: starting a pooled %s sandbox",
					 runtime_at(rt)->name);
				return;
			}
	}
}

static int64_t ms_since(const struct timespec *t0, const struct timespec *now)
{
	return (int64_t)(now->tv_sec - t0->tv_sec) * 1000 + (now->tv_nsec - t0->tv_nsec) / 1000000;
}

/*
 * A request of runtime rt found no idle pooled sandbox: the pool grows by
 * one (up to its maximum), refilled as runs end. Caller holds mu.
 */
static void pool_missed_locked(struct local_backend *lb, int rt)
{
	if (rt >= CONFIG_MAX_RUNTIMES || runtime_at((size_t)rt)->runner == NULL ||
	    lb->cfg->pool_target[rt] == 0)
		return; /* no pool */
	if (lb->warm_failing[rt]) {
		/* the last one died starting (e.g. with the zygote that made
		 * it): demand tries again, refilled when this run ends; a
		 * failure sets it again */
		if (lb->warm_starting[rt] == 0)
			lb->warm_failing[rt] = false;
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &lb->pool_miss[rt]);
	if (lb->pool_want[rt] < lb->cfg->pool_max[rt])
		lb->pool_want[rt]++; /* a target above the maximum is simply not grown */
}

/* True when some pool is above its target (the io thread then ticks). */
static bool pool_grown(struct local_backend *lb)
{
	bool grown = false;

	pthread_mutex_lock(&lb->mu);
	for (size_t rt = 0; rt < IPC_MAX_RUNTIMES && rt < CONFIG_MAX_RUNTIMES; rt++)
		grown |= lb->pool_want[rt] > lb->cfg->pool_target[rt];
	pthread_mutex_unlock(&lb->mu);
	return grown;
}

/*
 * A grown pool that had no miss for cfg->pool_idle_ms gives back one idle
 * sandbox every POOL_TICK_MS until it is at its target again. Caller holds
 * mu.
 */
static void pool_shrink_locked(struct local_backend *lb)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	for (size_t rt = 0; rt < IPC_MAX_RUNTIMES && rt < CONFIG_MAX_RUNTIMES; rt++) {
		if (lb->pool_want[rt] <= lb->cfg->pool_target[rt] ||
		    ms_since(&lb->pool_miss[rt], &now) < (int64_t)lb->cfg->pool_idle_ms ||
		    ms_since(&lb->pool_shrunk[rt], &now) < POOL_TICK_MS)
			continue;
		lb->pool_want[rt]--;
		lb->pool_shrunk[rt] = now;
		if (lb->warm_idle[rt] + lb->warm_starting[rt] <= lb->pool_want[rt])
			continue;
		for (struct warm *w = lb->warm_head; w; w = w->next) {
			if (w->runtime != (int)rt || !w->ready)
				continue;
			struct ipc_kill k = {
				.type = IPC_KILL, .reason = EXEC_REASON_CANCELLED, .id = w->id};
			/* its EXITED finds neither a run nor a pooled sandbox */
			if (lb->sock >= 0 && ipc_send(lb->sock, &k, sizeof(k), NULL, 0) < 0)
				log_warn("ipc send KILL");
			warm_unlink_locked(lb, w);
			warm_free(w);
			break;
		}
	}
}

/* Closes the whole pool (the supervisor is gone, or we stop). Caller holds mu. */
static void warm_drop_all_locked(struct local_backend *lb)
{
	while (lb->warm_head != NULL) {
		struct warm *w = lb->warm_head;
		warm_unlink_locked(lb, w);
		warm_free(w);
	}
}

/*
 * Reaps our children: the supervisor, and the sandbox inits a dead
 * supervisor leaves behind (we are their subreaper), which would otherwise
 * stay zombies.
 */
static void on_chld(struct local_backend *lb)
{
	struct signalfd_siginfo si;
	pid_t pid;

	while (read(lb->chld_fd, &si, sizeof(si)) > 0)
		;
	while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
		if (pid == lb->sup_pid)
			lb->sup_reaped = true; /* the socket's EOF starts the restart */
}

static void on_sock(struct local_backend *lb, union ipc_msg *msg)
{
	int fds[IPC_SPAWN_FDS];
	struct local_exec *x = NULL;
	const char *why = NULL;
	ssize_t len = ipc_read(lb->sock, msg, fds, &why);

	if (len == 0) {
		supervisor_lost(lb, "it exited");
		return;
	}
	if (len < 0 || (msg->type != IPC_STARTED && msg->type != IPC_EXITED &&
			msg->type != IPC_WARM && msg->type != IPC_ZYGOTE)) {
		char reason[160];
		snprintf(reason, sizeof(reason), "malformed message: %s",
			 len < 0 ? why : "unexpected packet type");
		supervisor_lost(lb, reason);
		return;
	}
	pthread_mutex_lock(&lb->mu);
	if (msg->type == IPC_ZYGOTE) {
		lb->preloaded_serves = msg->zygote.preloaded_serves != 0;
	} else if (msg->type == IPC_WARM) {
		struct warm *w = warm_find_locked(lb, msg->warm.id);
		struct session *ss = w == NULL ? session_by_sbx_locked(lb, msg->warm.id) : NULL;
		if (ss != NULL && ss->await_warm) {
			char swhy[160];
			ss->await_warm = false;
			if (session_take_locked(lb, ss, swhy, sizeof(swhy)) < 0)
				session_end_locked(lb, ss, swhy, NULL);
		}
		if (w != NULL && !w->ready) {
			w->ready = true;
			lb->warm_starting[w->runtime]--;
			lb->warm_idle[w->runtime]++;
			lb->warm_failing[w->runtime] = false;
		}
	} else if (msg->type == IPC_EXITED && find_live(lb, msg->exited.id) == NULL) {
		/* a pooled sandbox that died before anyone took it */
		struct warm *w = warm_find_locked(lb, msg->exited.id);
		struct session *ss = session_by_sbx_locked(lb, msg->exited.id);
		if (ss != NULL) {
			char swhy[200], err[160];
			snprintf(swhy, sizeof(swhy), "its sandbox ended (%s%s%.150s)",
				 exec_reason_name((enum exec_reason)msg->exited.reason),
				 msg->exited.message[0] ? ": " : "", msg->exited.message);
			if (!ss->taken && !ss->respawned && !lb->draining) {
				/* before its take started (a pooled sandbox that died
				 * as it was taken): nothing of the session ran there,
				 * no cell was sent; a sandbox made for it, once (the
				 * pool may hold more like the dead one) */
				ss->respawned = true;
				log_warnx("local backend: session %s: %s before any cell ran; "
					  "a sandbox made for it",
					  ss->id, swhy);
				session_close_pipes_locked(lb, ss);
				if (session_spawn_locked(lb, ss, false, err, sizeof(err)) < 0)
					session_end_locked(lb, ss, err, NULL);
			} else {
				session_end_locked(lb, ss, swhy, &msg->exited);
			}
			warm_refill_locked(lb);
		}
		if (w != NULL) {
			log_warnx("local backend: pooled %s sandbox ended %s: %s",
				  runtime_at((size_t)w->runtime)->name,
				  w->ready ? "while idle" : "while starting", msg->exited.message);
			if (!w->ready)
				lb->warm_failing[w->runtime] = true;
			warm_unlink_locked(lb, w);
			warm_free(w);
			warm_refill_locked(lb);
		}
	} else if (msg->type == IPC_STARTED) {
		struct session *ss;
		x = find_live(lb, msg->started.id);
		if (x == NULL && (ss = session_by_sbx_locked(lb, msg->started.id)) != NULL) {
			/* the session's take started: its cells may go */
			ss->taken = true;
			session_next_locked(lb, ss);
		}
		if (x != NULL) {
			x->started = msg->started;
			x->have_started = true;
			retry_free(x->retry); /* its code runs: no starting again */
			x->retry = NULL;
		}
	} else {
		x = find_live(lb, msg->exited.id);
		if (x != NULL && !x->have_exit && x->retry != NULL && !x->have_started &&
		    !x->kill_sent && msg->exited.reason == EXEC_REASON_SANDBOX_ERROR &&
		    retry_cold_locked(lb, x, msg->exited.message) == 0) {
			/* it goes on in a new sandbox; the pool lost one */
			warm_refill_locked(lb);
			x = NULL;
		} else if (x != NULL && !x->have_exit) {
			x->exited = msg->exited;
			x->have_exit = true;
			/* the replacement starts only now: where making it
			 * writes a pid into a cgroup (a zygote's clone on cgroup
			 * v2), that takes a lock every fork and exit on the
			 * machine waits for (an RCU grace period), which would
			 * stall the run it replaces. On v1 sandboxes join their
			 * groups themselves, but refilling at the take still
			 * lost: the refill's clone and setup compete with the
			 * run for the CPU (print(1) after a 50 ms pause 3.4 to
			 * 3.6 ms p50 against 1.9 to 2.3; back to back 3.06
			 * against 3.19, nearly every run warm either way) */
			warm_refill_locked(lb);
		}
	}
	pthread_mutex_unlock(&lb->mu);
	if (x != NULL)
		try_emit(x);
}

static void on_wake(struct local_backend *lb)
{
	uint64_t v;
	struct local_exec *list;

	if (read(lb->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		fatal("eventfd read");
	pthread_mutex_lock(&lb->mu);
	list = lb->ready_head;
	lb->ready_head = NULL;
	for (struct local_exec *x = list; x; x = x->ready_next)
		x->queued = false;
	pthread_mutex_unlock(&lb->mu);
	/* the queued executions hold no extra reference: they are live (only
	 * the io thread removes them), so they cannot be freed under us */
	while (list != NULL) {
		struct local_exec *next = list->ready_next;
		try_emit(list);
		list = next;
	}
}

static bool sessions_open_any(struct local_backend *lb)
{
	bool any;

	pthread_mutex_lock(&lb->mu);
	any = lb->sessions != NULL;
	pthread_mutex_unlock(&lb->mu);
	return any;
}

static void session_tick_locked(struct local_backend *lb);

static void *io_main(void *arg)
{
	struct local_backend *lb = arg;
	union ipc_msg *msg = malloc(IPC_MAX_PACKET);

	if (msg == NULL)
		fatal("malloc");
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(lb->ep, evs, 64,
				   sessions_open_any(lb) ? SESSION_TICK_MS :
				   pool_grown(lb)	 ? POOL_TICK_MS :
							   -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fatal("epoll_wait");
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 == EV_SOCK)
				on_sock(lb, msg);
			else if (evs[i].data.u64 == EV_WAKE)
				on_wake(lb);
			else if (evs[i].data.u64 == EV_CHLD)
				on_chld(lb);
			else if (evs[i].data.u64 == EV_NONE)
				continue;
			else
				on_pipe(lb, evs[i].data.u64);
		}
		pthread_mutex_lock(&lb->mu);
		pool_shrink_locked(lb);
		session_tick_locked(lb);
		if (lb->stop && lb->live == 0)
			pthread_cond_broadcast(&lb->idle_cv);
		if (lb->exit_io) {
			pthread_mutex_unlock(&lb->mu);
			break;
		}
		pthread_mutex_unlock(&lb->mu);
	}
	free(msg);
	return NULL;
}

static void wake(struct local_backend *lb)
{
	uint64_t one = 1;
	if (write(lb->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		fatal("eventfd write");
}

/* Writes req's environment as "NAME=value\0" entries (env_len bytes) to p. */
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
 * An idle pooled sandbox that can serve req, unlinked from the pool, or
 * NULL. A request whose environment changes how the interpreter starts, or
 * whose stdin does not fit the pipe at once, gets a cold sandbox. Caller
 * holds mu.
 */
static struct warm *warm_take_locked(struct local_backend *lb, int rt,
				     const struct exec_request *req)
{
	const char *names[256];
	struct warm *oldest = NULL;

	if (req->n_env > 256)
		return NULL;
	for (size_t i = 0; i < req->n_env; i++)
		names[i] = req->env[i].name;
	if (!runtime_warm_env_ok(runtime_at((size_t)rt), names, req->n_env))
		return NULL;
	if (lb->warm_idle[rt] == 0) {
		/* it could have used one: demand exceeds the pool */
		pool_missed_locked(lb, rt);
		return NULL;
	}
	/* the oldest (the list is newest first): no sandbox waits in the pool
	 * for long, so a retired zygote generation, which lives on until its
	 * sandboxes are gone (ZYGOTE.md), gives way soon */
	for (struct warm *w = lb->warm_head; w; w = w->next)
		if (w->runtime == rt && w->ready && req->stdin_len <= w->stdin_cap)
			oldest = w;
	if (oldest != NULL)
		warm_unlink_locked(lb, oldest);
	return oldest;
}

/*
 * What req needs to run again (struct retry), made before the pool is
 * looked at: a run taken from the pool holds it from the take on. NULL
 * with errno when out of memory or descriptors.
 */
static struct retry *retry_new(const struct exec_request *req, size_t env_len)
{
	struct retry *rt = calloc(1, sizeof(*rt) + env_len);

	if (rt == NULL)
		return NULL;
	rt->payload = payload_create(req);
	if (rt->payload < 0 ||
	    (req->stdin_len > 0 && (rt->stdin_data = malloc(req->stdin_len)) == NULL)) {
		int e = errno;
		retry_free(rt);
		errno = e;
		return NULL;
	}
	if (req->stdin_len > 0)
		memcpy(rt->stdin_data, req->stdin_data, req->stdin_len);
	rt->stdin_len = req->stdin_len;
	rt->limits = req->limits;
	rt->n_env = (uint32_t)req->n_env;
	rt->env_len = env_len;
	pack_env(req, rt->env);
	return rt;
}

/*
 * Runs req in the pooled sandbox x was given (x is live, holding its output
 * pipes): stdin into its pipe (then EOF), the payload (a descriptor of our
 * own) with the limits and environment to its init through the supervisor.
 * Unless x was started again meanwhile (its pooled sandbox died: on_sock).
 * A failure here ends the run as a sandbox error, through the stream like
 * any other end.
 */
static void warm_start(struct local_backend *lb, struct local_exec *x, int stdin_w,
		       const struct exec_request *req, size_t env_len, int payload)
{
	struct ipc_take *tk = NULL;
	ssize_t n = 0;
	char why[96] = "";

	if (req->stdin_len > 0)
		n = write(stdin_w, req->stdin_data, req->stdin_len);
	close(stdin_w);
	if (n < 0 || (size_t)n != req->stdin_len)
		snprintf(why, sizeof(why), "writing stdin: %s", n < 0 ? strerror(errno) : "short");
	if (why[0] == '\0') {
		tk = calloc(1, sizeof(*tk) + env_len);
		if (payload < 0 || tk == NULL)
			snprintf(why, sizeof(why), "preparing the input: %s", strerror(errno));
	}
	pthread_mutex_lock(&lb->mu);
	if (!x->warm || x->have_exit) {
		/* started again in a new sandbox, or over: the pooled one is
		 * gone (what went wrong above was its death) */
		why[0] = '\0';
	} else {
		if (why[0] == '\0') {
			tk->type = IPC_TAKE;
			tk->id = x->id;
			tk->limits = req->limits;
			tk->n_env = (uint32_t)req->n_env;
			tk->env_len = (uint32_t)env_len;
			pack_env(req, tk->env);
			if (lb->sock < 0)
				snprintf(why, sizeof(why), "restarting");
			else if (ipc_send(lb->sock, tk, sizeof(*tk) + env_len, &payload, 1) < 0)
				snprintf(why, sizeof(why), "%s", strerror(errno));
		}
		if (why[0] != '\0') {
			/* the pooled sandbox is ours and unused: end it */
			struct ipc_kill k = {
				.type = IPC_KILL, .reason = EXEC_REASON_CANCELLED, .id = x->id};
			log_warnx("local backend: taking a pooled sandbox: %s", why);
			if (lb->sock >= 0 && ipc_send(lb->sock, &k, sizeof(k), NULL, 0) < 0)
				log_warn("ipc send KILL");
			mark_lost_locked(x, why);
		}
	}
	/* the replacement starts when this one has ended (see on_sock) */
	pthread_mutex_unlock(&lb->mu);
	if (payload >= 0)
		close(payload);
	free(tk);
}

/* ---- sessions ------------------------------------------------------------- */

static uint64_t unix_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

/* Lets the io thread deliver x's next event (or its end). Caller holds mu. */
static void queue_emit_locked(struct local_backend *lb, struct local_exec *x)
{
	if (!x->queued && !x->finished_sent) {
		x->queued = true;
		x->ready_next = lb->ready_head;
		lb->ready_head = x;
	}
	wake(lb);
}

static struct session *session_find_locked(struct local_backend *lb, const char *id,
					   const char *owner)
{
	for (struct session *ss = lb->sessions; ss; ss = ss->next)
		if (strcmp(ss->id, id) == 0 && strcmp(ss->owner, owner) == 0)
			return ss;
	return NULL;
}

static struct session *session_by_sbx_locked(struct local_backend *lb, uint64_t sbx)
{
	for (struct session *ss = lb->sessions; ss; ss = ss->next)
		if (ss->sbx == sbx)
			return ss;
	return NULL;
}

/* Writes what the control pipe takes now; the rest waits for the tick. Caller holds mu. */
static void session_flush_locked(struct session *ss)
{
	while (ss->ctl_w >= 0 && ss->woff < ss->wlen) {
		ssize_t n = write(ss->ctl_w, ss->wbuf + ss->woff, ss->wlen - ss->woff);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			/* the runner is gone: its sandbox's EXITED ends the session */
			ss->woff = ss->wlen;
			break;
		}
		ss->woff += (size_t)n;
	}
	free(ss->wbuf);
	ss->wbuf = NULL;
	ss->wlen = ss->woff = 0;
}

/* Queues a control frame (type, then body) for the runner. Caller holds mu. */
static void session_send_locked(struct session *ss, const uint8_t *frame, size_t len)
{
	uint8_t *nb;

	if (ss->ctl_w < 0)
		return;
	nb = realloc(ss->wbuf, ss->wlen + len);
	if (nb == NULL) {
		log_warnx("local backend: session %s: out of memory for a cell", ss->id);
		return;
	}
	memcpy(nb + ss->wlen, frame, len);
	ss->wbuf = nb;
	ss->wlen += len;
	session_flush_locked(ss);
}

/* Its pipes: closed (a cell holding them lets go first). Caller holds mu. */
static void session_close_pipes_locked(struct local_backend *lb, struct session *ss)
{
	for (int i = 0; i < NPIPES; i++) {
		if (ss->fd[i] < 0)
			continue;
		epoll_ctl(lb->ep, EPOLL_CTL_DEL, ss->fd[i], NULL);
		close(ss->fd[i]);
		ss->fd[i] = -1;
	}
	if (ss->ctl_w >= 0)
		close(ss->ctl_w);
	ss->ctl_w = -1;
	free(ss->wbuf);
	ss->wbuf = NULL;
	ss->wlen = ss->woff = 0;
}

/* Sends the take that makes the session's sandbox a session. Caller holds mu. */
static int session_take_locked(struct local_backend *lb, struct session *ss, char *why,
			       size_t whylen)
{
	struct exec_request r;
	struct ipc_take *tk;
	/* "1": the runner's own language; else the one it drives ("bash") */
	const char *mode = ss->lang_rt == ss->runtime ? "1" : runtime_at((size_t)ss->lang_rt)->name;
	size_t env_len = sizeof(SANDBOX_SESSION_ENV "=") + strlen(mode);
	char *p;
	int payload, rc = -1;

	memset(&r, 0, sizeof(r));
	r.language = runtime_at((size_t)ss->runtime)->name;
	r.code = "";
	r.files = ss->files;
	r.n_files = ss->n_files;
	for (size_t i = 0; i < ss->n_env; i++)
		env_len += strlen(ss->env[i].name) + 1 + strlen(ss->env[i].value) + 1;
	payload = payload_create(&r);
	tk = calloc(1, sizeof(*tk) + env_len);
	if (payload < 0 || tk == NULL) {
		snprintf(why, whylen, "preparing the session's files: %s", strerror(errno));
		goto out;
	}
	tk->type = IPC_TAKE;
	tk->id = ss->sbx;
	tk->limits = ss->limits;
	/* per cell, the front's clock and the runner's check; the sandbox's
	 * own wall timer is off and its CPU budget the server's maximum */
	tk->limits.wall_time_ms = 0;
	/* below the maximum the pooled runner started with: init adds the
	 * runner's own start to it, and a limit cannot be raised */
	tk->limits.cpu_time_ms = lb->cfg->maxima.cpu_time_ms > 4000 ?
					 lb->cfg->maxima.cpu_time_ms - 3000 :
					 lb->cfg->maxima.cpu_time_ms;
	tk->n_env = (uint32_t)ss->n_env + 1;
	tk->env_len = (uint32_t)env_len;
	p = tk->env;
	for (size_t i = 0; i < ss->n_env; i++)
		p += snprintf(p, env_len - (size_t)(p - tk->env), "%s=%s", ss->env[i].name,
			      ss->env[i].value) +
		     1;
	snprintf(p, env_len - (size_t)(p - tk->env), SANDBOX_SESSION_ENV "=%s", mode);
	if (lb->sock < 0 || ipc_send(lb->sock, tk, sizeof(*tk) + env_len, &payload, 1) < 0) {
		snprintf(why, whylen, "starting the session's sandbox: %s",
			 lb->sock < 0 ? "restarting" : strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (payload >= 0)
		close(payload);
	free(tk);
	return rc;
}

/*
 * Gives the session a fresh sandbox: a pooled one when one fits (and
 * pooled), else one started for it (taken when it reports WARM). Caller
 * holds mu.
 */
static int session_spawn_locked(struct local_backend *lb, struct session *ss, bool pooled,
				char *why, size_t whylen)
{
	struct exec_request r;
	struct warm *w;
	bool taken = false;

	memset(&r, 0, sizeof(r));
	r.env = ss->env;
	r.n_env = ss->n_env;
	ss->taken = false;
	w = pooled ? warm_take_locked(lb, ss->runtime, &r) : NULL;
	if (w != NULL) {
		taken = true;
		ss->warm = true;
	} else {
		w = warm_new_locked(lb, ss->runtime);
		ss->warm = false;
		if (w == NULL) {
			snprintf(why, whylen, "starting a sandbox: %s",
				 lb->sock < 0 ? "the supervisor is restarting" : strerror(errno));
			return -1;
		}
	}
	ss->sbx = w->id;
	ss->ctl_w = w->stdin_w;
	ss->fd[0] = w->out_r;
	ss->fd[1] = w->err_r;
	ss->fd[EV_PIPE] = w->ev_r;
	w->stdin_w = w->out_r = w->err_r = w->ev_r = -1;
	warm_free(w);
	for (int i = 0; i < NPIPES; i++) {
		struct epoll_event ev = {.events = EPOLLONESHOT, .data.u64 = EV_NONE};
		if (epoll_ctl(lb->ep, EPOLL_CTL_ADD, ss->fd[i], &ev) < 0)
			fatal("epoll_ctl add");
	}
	ss->await_warm = !taken;
	if (taken) {
		if (session_take_locked(lb, ss, why, whylen) < 0)
			return -1;
		warm_refill_locked(lb); /* the pool gave one away */
	}
	return 0;
}

/* Starts the next waiting cell when none runs. Caller holds mu. */
static void session_next_locked(struct local_backend *lb, struct session *ss)
{
	struct local_exec *x = ss->qhead;

	/* a cell goes once the sandbox has the take (until then, one that ends
	 * can be replaced without losing anything) */
	if (ss->cur != NULL || x == NULL || !ss->taken)
		return;
	ss->qhead = x->qnext;
	if (ss->qhead == NULL)
		ss->qtail = NULL;
	x->qnext = NULL;
	x->in_cell_queue = false;
	ss->cur = x;
	ss->interrupted = false;
	x->borrowed = true;
	for (int i = 0; i < NPIPES; i++) {
		/* disarmed: armed once started has been delivered */
		struct epoll_event ev = {.events = EPOLLONESHOT,
					 .data.u64 = x->id * NPIPES + (uint64_t)i};
		x->fd[i] = ss->fd[i];
		if (x->fd[i] >= 0 && epoll_ctl(lb->ep, EPOLL_CTL_MOD, x->fd[i], &ev) < 0)
			fatal("epoll_ctl mod");
	}
	x->sandbox_no = ss->sbx;
	x->warm = ss->warm;
	x->have_started = true;
	x->started.start_us = 0;
	clock_gettime(CLOCK_MONOTONIC, &x->t_cell);
	ss->executions++;
	session_send_locked(ss, x->cell, x->cell_len);
	free(x->cell);
	x->cell = NULL;
	queue_emit_locked(lb, x);
}

/* Sets x's end (a cell). Caller holds mu. */
static void cell_end_locked(struct local_exec *x, enum exec_reason reason, int32_t code,
			    uint64_t cpu_us, const char *msg)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	memset(&x->exited, 0, sizeof(x->exited));
	x->exited.type = IPC_EXITED;
	x->exited.id = x->id;
	x->exited.reason = reason;
	x->exited.exit_code = code;
	x->exited.cpu_time_us = cpu_us;
	if (x->t_cell.tv_sec != 0)
		x->exited.wall_time_us = (uint64_t)((now.tv_sec - x->t_cell.tv_sec) * 1000000 +
						    (now.tv_nsec - x->t_cell.tv_nsec) / 1000);
	snprintf(x->exited.message, sizeof(x->exited.message), "%s", msg);
	x->have_exit = true;
	x->kill_sent = true;
}

/* Why an interrupted cell ended (reason and limit). */
static void cell_why(const struct local_exec *x, char *buf, size_t len)
{
	switch (x->kill_reason) {
	case EXEC_REASON_WALL_TIMEOUT:
		snprintf(buf, len, "wall time limit of %" PRIu32 " ms reached", x->wall_ms);
		break;
	case EXEC_REASON_CPU_TIMEOUT: snprintf(buf, len, "cpu time limit reached"); break;
	case EXEC_REASON_CANCELLED: snprintf(buf, len, "cancelled"); break;
	default: snprintf(buf, len, "stopped: %s", exec_reason_name(x->kill_reason)); break;
	}
}

/*
 * Ends the session: its cells end, its sandbox is killed, its id is
 * remembered with why (NOT_FOUND says it). exited: the sandbox's own end,
 * when that is why. Caller holds mu.
 */
static void session_end_locked(struct local_backend *lb, struct session *ss, const char *why,
			       const struct ipc_exited *exited)
{
	struct session **pp = &lb->sessions;
	struct session_tomb *t;
	struct local_exec *x = ss->cur;

	while (*pp != ss)
		pp = &(*pp)->next;
	*pp = ss->next;
	lb->n_sessions--;
	lb->sess_busy[ss->lang_rt]--;
	t = &lb->tombs[lb->tomb_next++ % SESSION_TOMBS];
	snprintf(t->id, sizeof(t->id), "%s", ss->id);
	snprintf(t->owner, sizeof(t->owner), "%s", ss->owner);
	snprintf(t->why, sizeof(t->why), "%s", why);
	log_info("local backend: session %s ended: %s", ss->id, why);
	if (exited == NULL) {
		struct ipc_kill k = {
			.type = IPC_KILL, .reason = EXEC_REASON_CANCELLED, .id = ss->sbx};
		if (lb->sock >= 0 && ipc_send(lb->sock, &k, sizeof(k), NULL, 0) < 0)
			log_warn("ipc send KILL");
	}
	if (x != NULL) {
		/* the running cell keeps the pipes it reads: what the sandbox
		 * wrote before its end still reaches it, then EOF */
		for (int i = 0; i < NPIPES; i++)
			if (x->fd[i] >= 0)
				ss->fd[i] = -1;
		x->borrowed = false;
		x->sess = NULL;
		if (!x->have_exit) {
			char msg[200];
			if (exited != NULL) {
				snprintf(msg, sizeof(msg), "%.120s; the session ended",
					 exited->message[0] ? exited->message :
							      exec_reason_name(exited->reason));
				cell_end_locked(x, (enum exec_reason)exited->reason,
						exited->exit_code, 0, msg);
				x->exited.signal = exited->signal;
				x->exited.peak_memory_bytes = exited->peak_memory_bytes;
			} else {
				snprintf(msg, sizeof(msg), "the session ended: %.150s", why);
				cell_end_locked(x, EXEC_REASON_CANCELLED, 0, 0, msg);
			}
		}
		queue_emit_locked(lb, x);
	}
	while (ss->qhead != NULL) {
		struct local_exec *q = ss->qhead;
		char msg[200];
		ss->qhead = q->qnext;
		q->qnext = NULL;
		q->in_cell_queue = false;
		q->sess = NULL;
		snprintf(msg, sizeof(msg), "the session ended before this ran: %.140s", why);
		cell_end_locked(q, EXEC_REASON_SANDBOX_ERROR, 0, 0, msg);
		queue_emit_locked(lb, q);
	}
	session_close_pipes_locked(lb, ss);
	session_free_copy(ss);
}

/*
 * The running cell did not end within the grace after its interrupt: it
 * ends now, and the session gets a fresh sandbox (same id, state lost).
 * Caller holds mu.
 */
static void session_restart_locked(struct local_backend *lb, struct session *ss)
{
	struct local_exec *x = ss->cur;
	struct ipc_kill k = {.type = IPC_KILL, .reason = EXEC_REASON_CANCELLED, .id = ss->sbx};
	char why[128], msg[256], err[160];

	if (lb->sock >= 0 && ipc_send(lb->sock, &k, sizeof(k), NULL, 0) < 0)
		log_warn("ipc send KILL");
	if (x != NULL) {
		for (int i = 0; i < NPIPES; i++)
			close_pipe(x, i);
		x->borrowed = false;
		x->sess = NULL;
		ss->cur = NULL;
		cell_why(x, why, sizeof(why));
		snprintf(msg, sizeof(msg),
			 "%s; the cell did not stop within %d ms of the interrupt: the session "
			 "was restarted and its state was lost",
			 why, SESSION_GRACE_MS);
		cell_end_locked(x, x->kill_reason ? x->kill_reason : EXEC_REASON_SANDBOX_ERROR, 0,
				0, msg);
		queue_emit_locked(lb, x);
	}
	ss->interrupted = false;
	session_close_pipes_locked(lb, ss);
	log_info("local backend: session %s: restarted (a cell did not stop)", ss->id);
	if (lb->draining || session_spawn_locked(lb, ss, true, err, sizeof(err)) < 0) {
		session_end_locked(lb, ss, lb->draining ? "the server is shutting down" : err,
				   NULL);
		return;
	}
	session_next_locked(lb, ss);
}

/* Interrupts the running cell x (the runner raises KeyboardInterrupt). Caller holds mu. */
static void session_interrupt_locked(struct session *ss, struct local_exec *x,
				     enum exec_reason reason)
{
	static const uint8_t frame[5] = {1, 0, 0, 0, 'I'};

	(void)reason;
	if (ss->cur != x || ss->interrupted)
		return;
	ss->interrupted = true;
	clock_gettime(CLOCK_MONOTONIC, &ss->grace_end);
	ss->grace_end.tv_sec += SESSION_GRACE_MS / 1000;
	session_send_locked(ss, frame, sizeof(frame));
}

/* A waiting cell leaves the queue (cancelled, deadline). Caller holds mu. */
static void session_unqueue_locked(struct session *ss, struct local_exec *x)
{
	struct local_exec **pp = &ss->qhead, *prev = NULL;

	while (*pp != NULL && *pp != x) {
		prev = *pp;
		pp = &(*pp)->qnext;
	}
	if (*pp == x) {
		*pp = x->qnext;
		if (ss->qtail == x)
			ss->qtail = prev;
	}
	x->qnext = NULL;
	x->in_cell_queue = false;
	x->sess = NULL;
	cell_end_locked(x, EXEC_REASON_CANCELLED, 0, 0,
			"cancelled while waiting for the session's earlier executions");
	queue_emit_locked(x->lb, x);
}

/* x's finished was delivered: the session takes its next cell. Caller holds mu. */
static void session_cell_done_locked(struct local_backend *lb, struct local_exec *x)
{
	struct session *ss = x->sess;

	if (ss == NULL)
		return;
	x->sess = NULL;
	if (ss->cur == x) {
		ss->cur = NULL;
		ss->interrupted = false;
	}
	clock_gettime(CLOCK_MONOTONIC, &ss->idle_since);
	ss->last_used_ms = unix_ms();
	session_next_locked(lb, ss);
}

/* A cell's end ('E') or its runner's CPU interrupt ('T'). io thread, without mu. */
static void cell_frame(struct local_exec *x, uint8_t type, const uint8_t *p)
{
	struct local_backend *lb = x->lb;
	struct session *ss;
	char why[128], msg[200];

	pthread_mutex_lock(&lb->mu);
	ss = x->sess;
	if (type == 'T') {
		if (ss != NULL && ss->cur == x && !x->kill_sent) {
			x->kill_sent = true;
			x->kill_reason = EXEC_REASON_CPU_TIMEOUT;
			ss->interrupted = true;
			clock_gettime(CLOCK_MONOTONIC, &ss->grace_end);
			ss->grace_end.tv_sec += SESSION_GRACE_MS / 1000;
		}
		arm_pipes(x);
		pthread_mutex_unlock(&lb->mu);
		return;
	}
	if (x->kill_reason != EXEC_REASON_UNSPECIFIED) {
		cell_why(x, why, sizeof(why));
		snprintf(msg, sizeof(msg),
			 "%s: the cell was interrupted; the session's state is kept", why);
		cell_end_locked(x, x->kill_reason, (int32_t)get_le32(p), get_le64(p + 4), msg);
	} else {
		cell_end_locked(x, EXEC_REASON_EXITED, (int32_t)get_le32(p), get_le64(p + 4), "");
	}
	for (int i = 0; i < NPIPES; i++)
		close_pipe(x, i);
	pthread_mutex_unlock(&lb->mu);
	try_emit(x);
}

/* Wall limits, graces, idle timeouts and pending control bytes. Caller holds mu. */
static void session_tick_locked(struct local_backend *lb)
{
	struct timespec now;
	struct session *ss, *next;

	clock_gettime(CLOCK_MONOTONIC, &now);
	for (ss = lb->sessions; ss; ss = next) {
		struct local_exec *x = ss->cur;
		next = ss->next;
		session_flush_locked(ss);
		if (x != NULL) {
			if (ss->interrupted && ms_since(&ss->grace_end, &now) >= 0)
				session_restart_locked(lb, ss);
			else if (!x->kill_sent && x->wall_ms > 0 && !x->have_exit &&
				 ms_since(&x->t_cell, &now) >= (int64_t)x->wall_ms)
				send_kill_locked(x, EXEC_REASON_WALL_TIMEOUT);
		} else if (ss->qhead == NULL &&
			   ms_since(&ss->idle_since, &now) >= (int64_t)ss->idle_s * 1000) {
			char why[96];
			snprintf(why, sizeof(why),
				 "closed after %" PRIu32 " s without an execution", ss->idle_s);
			session_end_locked(lb, ss, why, NULL);
		}
	}
}

/* Why id is not an open session of owner (err), for NOT_FOUND. Caller holds mu. */
static void session_missing_locked(struct local_backend *lb, const char *id, const char *owner,
				   char *err, size_t errlen)
{
	for (unsigned i = 0; i < SESSION_TOMBS; i++) {
		const struct session_tomb *t = &lb->tombs[i];
		if (t->id[0] != '\0' && strcmp(t->id, id) == 0 && strcmp(t->owner, owner) == 0) {
			snprintf(err, errlen, "session \"%s\" has ended: %s", id, t->why);
			return;
		}
	}
	snprintf(err, errlen, "session \"%.64s\" not found (never opened, closed, or not yours)",
		 id);
}

static void session_info_locked(const struct session *ss, struct session_info *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%s", ss->id);
	snprintf(out->language, sizeof(out->language), "%s", runtime_at((size_t)ss->lang_rt)->name);
	out->created_unix_ms = ss->created_ms;
	out->last_used_unix_ms = ss->last_used_ms;
	out->executions = ss->executions;
	out->idle_timeout_s = ss->idle_s;
}

/* Frees a session's copies of its request, and it. */
static void session_free_copy(struct session *ss)
{
	if (ss == NULL)
		return;
	for (size_t i = 0; i < ss->n_env; i++) {
		free((char *)ss->env[i].name);
		free((char *)ss->env[i].value);
	}
	for (size_t i = 0; i < ss->n_files; i++) {
		free((char *)ss->files[i].path);
		free((uint8_t *)ss->files[i].data);
	}
	free(ss->env);
	free(ss->files);
	free(ss->wbuf);
	free(ss);
}

/*
 * The runtime whose runner runs sessions of language rt, or -1: python's
 * and node's runners know the session loop; python's also drives one
 * long-lived bash for bash sessions.
 */
static int session_runner_of(int rt)
{
	const char *name;

	if (rt < 0)
		return -1;
	name = runtime_at((size_t)rt)->name;
	if (strcmp(name, "python") == 0 || strcmp(name, "javascript") == 0)
		return runtime_at((size_t)rt)->runner != NULL ? rt : -1;
	if (strcmp(name, "bash") == 0) {
		int py = runtime_find("python");
		return py >= 0 && py < IPC_MAX_RUNTIMES && runtime_at((size_t)py)->runner != NULL ?
			       py :
			       -1;
	}
	return -1;
}

static enum backend_rc local_session_create(struct backend *b, const struct session_request *sr,
					    struct session_info *out, char *err, size_t errlen)
{
	struct local_backend *lb = (struct local_backend *)b;
	const struct exec_request *req = sr->req;
	int rt = runtime_find(req->language);
	struct session *ss;
	uint8_t rnd[12];
	unsigned mine = 0;
	char why[160];

	int runner_rt = rt < IPC_MAX_RUNTIMES ? session_runner_of(rt) : -1;

	if (runner_rt < 0) {
		snprintf(
			err, errlen,
			"language: \"%.32s\" has no sessions here (python, javascript and bash have)",
			req->language);
		return BACKEND_INVALID;
	}
	ss = calloc(1, sizeof(*ss));
	if (ss == NULL || getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		goto oom;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(ss->id + 2 * i, 3, "%02x", rnd[i]);
	snprintf(ss->owner, sizeof(ss->owner), "%s", sr->owner ? sr->owner : "");
	ss->runtime = runner_rt;
	ss->lang_rt = rt;
	ss->ctl_w = -1;
	ss->fd[0] = ss->fd[1] = ss->fd[EV_PIPE] = -1;
	ss->limits = req->limits;
	ss->idle_s = sr->idle_timeout_s;
	ss->created_ms = ss->last_used_ms = unix_ms();
	clock_gettime(CLOCK_MONOTONIC, &ss->idle_since);
	ss->env = calloc(req->n_env + 1, sizeof(*ss->env));
	ss->files = calloc(req->n_files + 1, sizeof(*ss->files));
	if (ss->env == NULL || ss->files == NULL)
		goto oom;
	for (size_t i = 0; i < req->n_env; i++) {
		ss->env[i].name = strdup(req->env[i].name);
		ss->env[i].value = strdup(req->env[i].value ? req->env[i].value : "");
		ss->n_env++;
		if (ss->env[i].name == NULL || ss->env[i].value == NULL)
			goto oom;
	}
	for (size_t i = 0; i < req->n_files; i++) {
		uint8_t *d = malloc(req->files[i].len + 1);
		ss->files[i] = req->files[i];
		ss->files[i].data = d;
		ss->files[i].path = strdup(req->files[i].path);
		ss->n_files++;
		if (d == NULL || ss->files[i].path == NULL)
			goto oom;
		memcpy(d, req->files[i].data, req->files[i].len);
	}

	pthread_mutex_lock(&lb->mu);
	if (lb->draining) {
		pthread_mutex_unlock(&lb->mu);
		snprintf(err, errlen, "server is shutting down");
		goto refuse_draining;
	}
	for (struct session *o = lb->sessions; o; o = o->next)
		mine += strcmp(o->owner, ss->owner) == 0;
	if (lb->n_sessions >= lb->cfg->max_sessions ||
	    (sr->max_per_owner > 0 && mine >= sr->max_per_owner)) {
		if (lb->n_sessions >= lb->cfg->max_sessions)
			snprintf(err, errlen,
				 "too many sessions: %u of %u open (max_sessions); close one or "
				 "retry later",
				 lb->n_sessions, lb->cfg->max_sessions);
		else
			snprintf(err, errlen,
				 "too many sessions: the key has %u of its %u open (sessions=%u); "
				 "close one first",
				 mine, sr->max_per_owner, sr->max_per_owner);
		pthread_mutex_unlock(&lb->mu);
		session_free_copy(ss);
		return BACKEND_FULL;
	}
	if (session_spawn_locked(lb, ss, true, why, sizeof(why)) < 0) {
		session_close_pipes_locked(lb, ss);
		pthread_mutex_unlock(&lb->mu);
		snprintf(err, errlen, "%s", why);
		session_free_copy(ss);
		return BACKEND_INTERNAL;
	}
	ss->next = lb->sessions;
	lb->sessions = ss;
	lb->n_sessions++;
	lb->sess_busy[ss->lang_rt]++;
	session_info_locked(ss, out);
	pthread_mutex_unlock(&lb->mu);
	wake(lb); /* the io thread's clock now ticks */
	return BACKEND_OK;
oom:
	snprintf(err, errlen, "out of memory");
	session_free_copy(ss);
	return BACKEND_INTERNAL;
refuse_draining:
	session_free_copy(ss);
	return BACKEND_DRAINING;
}

static enum backend_rc local_session_close(struct backend *b, const char *id, const char *owner,
					   struct session_info *out, char *err, size_t errlen)
{
	struct local_backend *lb = (struct local_backend *)b;
	struct session *ss;

	pthread_mutex_lock(&lb->mu);
	ss = session_find_locked(lb, id, owner ? owner : "");
	if (ss == NULL) {
		session_missing_locked(lb, id, owner ? owner : "", err, errlen);
		pthread_mutex_unlock(&lb->mu);
		return BACKEND_NOT_FOUND;
	}
	session_info_locked(ss, out);
	session_end_locked(lb, ss, "closed by CloseSession", NULL);
	pthread_mutex_unlock(&lb->mu);
	return BACKEND_OK;
}

static size_t local_session_list(struct backend *b, const char *owner, struct session_info *out,
				 size_t max)
{
	struct local_backend *lb = (struct local_backend *)b;
	size_t n = 0;

	pthread_mutex_lock(&lb->mu);
	for (struct session *ss = lb->sessions; ss && n < max; ss = ss->next)
		if (strcmp(ss->owner, owner ? owner : "") == 0)
			session_info_locked(ss, &out[n++]);
	pthread_mutex_unlock(&lb->mu);
	return n;
}

static unsigned local_sessions_open(struct backend *b)
{
	struct local_backend *lb = (struct local_backend *)b;
	unsigned n;

	pthread_mutex_lock(&lb->mu);
	n = lb->n_sessions;
	pthread_mutex_unlock(&lb->mu);
	return n;
}

/*
 * Execute in a session: the cell waits in the session's queue (arrival
 * order) and runs when the cells before it have ended.
 */
static enum backend_rc local_execute_cell(struct local_backend *lb, const struct exec_request *req,
					  const struct exec_sink *sink, void *arg,
					  struct exec **out, char *err, size_t errlen)
{
	const char *owner = req->session_owner ? req->session_owner : "";
	struct local_exec *x;
	struct session *ss;
	size_t len = 1 + 12, off;
	uint8_t *f;

	if (req->stdin_len > 0) {
		snprintf(err, errlen,
			 "stdin: not supported in a session (its cells read /dev/null)");
		return BACKEND_INVALID;
	}
	for (size_t i = 0; i < req->n_files; i++)
		len += 2 + strlen(req->files[i].path) + 4 + 8 + req->files[i].len;
	len += 4;
	for (size_t i = 0; i < req->n_collect; i++)
		len += 2 + strlen(req->collect[i]);
	len += req->code_len;
	x = calloc(1, sizeof(*x));
	f = malloc(4 + len);
	if (x == NULL || f == NULL) {
		free(x);
		free(f);
		snprintf(err, errlen, "out of memory");
		return BACKEND_INTERNAL;
	}
	pthread_mutex_lock(&lb->mu);
	ss = session_find_locked(lb, req->session_id, owner);
	if (ss == NULL || lb->draining || lb->live >= lb->cfg->max_live ||
	    (req->language && req->language[0] &&
	     strcmp(req->language, runtime_at((size_t)ss->lang_rt)->name) != 0)) {
		enum backend_rc rc = BACKEND_NOT_FOUND;
		if (ss == NULL) {
			session_missing_locked(lb, req->session_id, owner, err, errlen);
		} else if (lb->draining) {
			snprintf(err, errlen, "server is shutting down");
			rc = BACKEND_DRAINING;
		} else if (lb->live >= lb->cfg->max_live) {
			snprintf(err, errlen,
				 "server is full: %u of %u sandboxes in use; retry later", lb->live,
				 lb->cfg->max_live);
			rc = BACKEND_FULL;
		} else {
			snprintf(err, errlen, "language: the session runs %s, not \"%.32s\"",
				 runtime_at((size_t)ss->lang_rt)->name, req->language);
			rc = BACKEND_INVALID;
		}
		pthread_mutex_unlock(&lb->mu);
		free(x);
		free(f);
		return rc;
	}
	/* the frame: u32 length, 'C', u32 wall ms, u32 cpu ms, u32 files,
	 * each file (u16 path length, path, u32 mode, u64 length, data), u32
	 * collect globs, each (u16 length, glob), code */
	put_le32(f, (uint32_t)len);
	f[4] = 'C';
	x->wall_ms = req->wall_set || ss->limits.wall_time_ms == 0 ? req->limits.wall_time_ms :
								     ss->limits.wall_time_ms;
	put_le32(f + 5, x->wall_ms);
	put_le32(f + 9, req->cpu_set || ss->limits.cpu_time_ms == 0 ? req->limits.cpu_time_ms :
								      ss->limits.cpu_time_ms);
	put_le32(f + 13, (uint32_t)req->n_files);
	off = 17;
	for (size_t i = 0; i < req->n_files; i++) {
		size_t pl = strlen(req->files[i].path);
		f[off] = (uint8_t)pl;
		f[off + 1] = (uint8_t)(pl >> 8);
		memcpy(f + off + 2, req->files[i].path, pl);
		off += 2 + pl;
		put_le32(f + off, req->files[i].mode ? req->files[i].mode : 0644);
		put_le64(f + off + 4, req->files[i].len);
		off += 12;
		memcpy(f + off, req->files[i].data, req->files[i].len);
		off += req->files[i].len;
	}
	put_le32(f + off, (uint32_t)req->n_collect);
	off += 4;
	for (size_t i = 0; i < req->n_collect; i++) {
		size_t gl = strlen(req->collect[i]);
		f[off] = (uint8_t)gl;
		f[off + 1] = (uint8_t)(gl >> 8);
		memcpy(f + off + 2, req->collect[i], gl);
		off += 2 + gl;
	}
	memcpy(f + off, req->code, req->code_len);
	x->cell = f;
	x->cell_len = 4 + len;
	x->base.ops = &local_ops;
	x->lb = lb;
	x->runtime = ss->lang_rt;
	x->sink = sink;
	x->arg = arg;
	x->refs = 2;
	x->can_emit = true;
	x->fd[0] = x->fd[1] = x->fd[EV_PIPE] = -1;
	x->max_output = req->output_set || ss->limits.max_output_bytes == 0 ?
				req->limits.max_output_bytes :
				ss->limits.max_output_bytes;
	x->is_cell = true;
	x->sess = ss;
	x->in_cell_queue = true;
	x->id = ++lb->next_id;
	lb->live++;
	x->next = lb->live_head;
	if (lb->live_head)
		lb->live_head->prev = x;
	lb->live_head = x;
	if (ss->qtail)
		ss->qtail->qnext = x;
	else
		ss->qhead = x;
	ss->qtail = x;
	session_next_locked(lb, ss);
	pthread_mutex_unlock(&lb->mu);
	*out = &x->base;
	return BACKEND_OK;
}

/* Makes x live (the io thread then routes its events). Caller holds mu. */
static void link_live_locked(struct local_backend *lb, struct local_exec *x)
{
	watch_pipes_locked(lb, x);
	x->next = lb->live_head;
	if (lb->live_head)
		lb->live_head->prev = x;
	lb->live_head = x;
}

static enum backend_rc local_execute(struct backend *b, const struct exec_request *req,
				     const struct exec_sink *sink, void *arg, struct exec **out,
				     char *err, size_t errlen)
{
	struct local_backend *lb = (struct local_backend *)b;
	struct local_exec *x = NULL;
	struct ipc_spawn *sp = NULL;
	int fds[IPC_SPAWN_FDS], rd[NPIPES];
	int rt = runtime_find(req->language);
	size_t env_len = 0;
	enum backend_rc rc = BACKEND_INTERNAL;
	struct warm *w = NULL;
	struct retry *again;
	bool preloaded;

	if (req->session_id != NULL && req->session_id[0] != '\0')
		return local_execute_cell(lb, req, sink, arg, out, err, errlen);
	if (rt < 0 || rt >= IPC_MAX_RUNTIMES) {
		snprintf(err, errlen, "language: \"%s\" is not served by the local backend",
			 req->language);
		return BACKEND_INVALID;
	}
	for (size_t i = 0; i < req->n_env; i++)
		env_len += strlen(req->env[i].name) + 1 + strlen(req->env[i].value) + 1;
	if (env_len > IPC_ENV_MAX) {
		snprintf(err, errlen, "env: too large");
		return BACKEND_INVALID;
	}
	/* the code and files, and what a run taken from the pool keeps */
	again = retry_new(req, env_len);
	if (again == NULL) {
		snprintf(err, errlen, "preparing the sandbox's input: %s", strerror(errno));
		return BACKEND_INTERNAL;
	}

	pthread_mutex_lock(&lb->mu);
	if (lb->draining) {
		pthread_mutex_unlock(&lb->mu);
		retry_free(again);
		snprintf(err, errlen, "server is shutting down");
		return BACKEND_DRAINING;
	}
	if (lb->live >= lb->cfg->max_live) {
		unsigned live = lb->live;
		pthread_mutex_unlock(&lb->mu);
		retry_free(again);
		snprintf(err, errlen, "server is full: %u of %u sandboxes in use; retry later",
			 live, lb->cfg->max_live);
		return BACKEND_FULL;
	}
	lb->live++; /* reserve the slot before the slow part */
	lb->busy[rt]++;
	x = calloc(1, sizeof(*x));
	if (x == NULL) {
		lb->live--;
		lb->busy[rt]--;
		pthread_mutex_unlock(&lb->mu);
		retry_free(again);
		snprintf(err, errlen, "out of memory");
		return BACKEND_INTERNAL;
	}
	x->base.ops = &local_ops;
	x->lb = lb;
	x->runtime = rt;
	x->sink = sink;
	x->arg = arg;
	x->refs = 2;
	x->can_emit = true;
	x->fd[0] = x->fd[1] = x->fd[EV_PIPE] = -1;
	x->max_output = req->limits.max_output_bytes;
	/* code that imports numpy or pandas: a clone of the zygote that has
	 * them, made for it, beats a lean pooled sandbox (docs/ZYGOTE.md) */
	preloaded = lb->preloaded_serves && strcmp(runtime_at((size_t)rt)->name, "python") == 0 &&
		    imports_any(req->code, req->code_len, lb->cfg->zygote_preload);
	if (!preloaded)
		w = warm_take_locked(lb, rt, req);
	if (w != NULL) {
		int stdin_w = w->stdin_w;
		/* ours to send; the retry's copy may go with a restart */
		int payload = dup(again->payload);
		/* live at once, in the same critical section that took it from
		 * the pool: whatever the sandbox reports next finds it, and can
		 * start the run again from the start (on_sock) */
		x->id = w->id;
		x->warm = true;
		x->retry = again;
		x->fd[0] = w->out_r;
		x->fd[1] = w->err_r;
		x->fd[EV_PIPE] = w->ev_r;
		w->stdin_w = w->out_r = w->err_r = w->ev_r = -1;
		link_live_locked(lb, x);
		pthread_mutex_unlock(&lb->mu);
		warm_free(w);
		warm_start(lb, x, stdin_w, req, env_len, payload);
		*out = &x->base;
		return BACKEND_OK;
	}
	x->id = ++lb->next_id;
	pthread_mutex_unlock(&lb->mu);

	for (int i = 0; i < IPC_SPAWN_FDS; i++)
		fds[i] = -1;
	fds[0] = again->payload; /* a cold run is not started again */
	again->payload = -1;
	retry_free(again);
	fds[1] = payload_blob("capibox-stdin", req->stdin_data, req->stdin_len);
	if (fds[0] < 0 || fds[1] < 0 || output_pipes(rd, fds + 2) < 0) {
		snprintf(err, errlen, "preparing the sandbox's input: %s", strerror(errno));
		goto fail;
	}
	for (int i = 0; i < NPIPES; i++)
		x->fd[i] = rd[i];

	sp = malloc(sizeof(*sp) + env_len);
	if (sp == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	memset(sp, 0, sizeof(*sp));
	sp->type = IPC_SPAWN;
	sp->runtime = (uint32_t)rt;
	sp->id = x->id;
	sp->limits = req->limits;
	sp->tmpfs_bytes = lb->cfg->tmpfs_bytes;
	sp->preloaded = preloaded;
	sp->n_env = (uint32_t)req->n_env;
	sp->env_len = (uint32_t)env_len;
	pack_env(req, sp->env);

	pthread_mutex_lock(&lb->mu);
	link_live_locked(lb, x);
	if (lb->sock < 0 || ipc_send(lb->sock, sp, sizeof(*sp) + env_len, fds, IPC_SPAWN_FDS) < 0)
		/* the supervisor is gone or restarting: our copies of the
		 * pipes' write ends close below, so the run ends at once */
		mark_lost_locked(x, lb->sock < 0 ? "restarting" : strerror(errno));
	pthread_mutex_unlock(&lb->mu);
	rc = BACKEND_OK;
	*out = &x->base;
	x = NULL;
fail:
	free(sp);
	for (int i = 0; i < IPC_SPAWN_FDS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (x != NULL) {
		pthread_mutex_lock(&lb->mu);
		lb->live--;
		lb->busy[rt]--;
		pthread_mutex_unlock(&lb->mu);
		exec_free(x);
	}
	return rc;
}

static void local_resume(struct exec *e)
{
	struct local_exec *x = (struct local_exec *)e;
	struct local_backend *lb = x->lb;

	pthread_mutex_lock(&lb->mu);
	x->can_emit = true;
	if (x->queued || x->finished_sent) {
		/* the io thread will see it, or there is nothing left */
		pthread_mutex_unlock(&lb->mu);
		return;
	}
	if (x->started_sent && (x->fd[0] >= 0 || x->fd[1] >= 0 || x->fd[EV_PIPE] >= 0)) {
		/* what try_emit would do next is re-arm the pipes: done here,
		 * without a wake-up of the io thread in between (the pipes'
		 * events still reach only it) */
		arm_pipes(x);
		pthread_mutex_unlock(&lb->mu);
		return;
	}
	x->queued = true;
	x->ready_next = lb->ready_head;
	lb->ready_head = x;
	pthread_mutex_unlock(&lb->mu);
	wake(lb);
}

static void local_cancel(struct exec *e, enum exec_reason reason)
{
	struct local_exec *x = (struct local_exec *)e;

	pthread_mutex_lock(&x->lb->mu);
	if (!x->finished_sent)
		send_kill_locked(x, reason);
	pthread_mutex_unlock(&x->lb->mu);
}

static void local_release(struct exec *e)
{
	struct local_exec *x = (struct local_exec *)e;
	bool do_free;

	pthread_mutex_lock(&x->lb->mu);
	unref_locked(x, &do_free);
	pthread_mutex_unlock(&x->lb->mu);
	if (do_free)
		exec_free(x);
}

static size_t local_stats(struct backend *b, struct runtime_stats *out, size_t max)
{
	struct local_backend *lb = (struct local_backend *)b;
	size_t n = 0;

	pthread_mutex_lock(&lb->mu);
	for (size_t i = 0; i < runtime_count() && i < IPC_MAX_RUNTIMES && n < max; i++) {
		if (runtime_at(i)->internal)
			continue; /* not a language clients pick */
		out[n].language = runtime_at(i)->name;
		out[n].idle = lb->warm_idle[i];
		out[n].busy = lb->busy[i] + lb->sess_busy[i];
		out[n].target = runtime_at(i)->runner != NULL && i < CONFIG_MAX_RUNTIMES ?
					lb->pool_want[i] :
					0;
		out[n].version = lb->versions[i];
		n++;
	}
	pthread_mutex_unlock(&lb->mu);
	return n;
}

static void local_cancel_all(struct backend *b, enum exec_reason reason)
{
	struct local_backend *lb = (struct local_backend *)b;

	pthread_mutex_lock(&lb->mu);
	for (struct local_exec *x = lb->live_head; x; x = x->next)
		send_kill_locked(x, reason);
	pthread_mutex_unlock(&lb->mu);
}

static unsigned local_live(struct backend *b)
{
	struct local_backend *lb = (struct local_backend *)b;
	unsigned n;

	pthread_mutex_lock(&lb->mu);
	n = lb->live;
	pthread_mutex_unlock(&lb->mu);
	return n;
}

static enum backend_status local_status(struct backend *b, char *msg, size_t len)
{
	struct local_backend *lb = (struct local_backend *)b;

	pthread_mutex_lock(&lb->mu);
	if (lb->restarts > 0)
		snprintf(msg, len, "limits: %s; supervisor restarts: %u", lb->cgroup, lb->restarts);
	else
		snprintf(msg, len, "limits: %s", lb->cgroup);
	pthread_mutex_unlock(&lb->mu);
	/* without cgroups memory and process limits are not enforced */
	return lb->cgroup_mode == 0 ? BACKEND_STATUS_DEGRADED : BACKEND_STATUS_SERVING;
}

static void local_drain(struct backend *b)
{
	struct local_backend *lb = (struct local_backend *)b;

	pthread_mutex_lock(&lb->mu);
	lb->draining = true;
	pthread_mutex_unlock(&lb->mu);
}

static void local_destroy(struct backend *b)
{
	struct local_backend *lb = (struct local_backend *)b;
	int status;

	pthread_mutex_lock(&lb->mu);
	lb->draining = true;
	lb->stop = true;
	while (lb->sessions != NULL)
		session_end_locked(lb, lb->sessions, "the server is shutting down", NULL);
	if (lb->live > 0)
		log_warnx("local backend: stopping with %u executions live", lb->live);
	for (struct local_exec *x = lb->live_head; x; x = x->next)
		send_kill_locked(x, EXEC_REASON_CANCELLED);
	/* the idle pooled sandboxes end with the supervisor, below */
	warm_drop_all_locked(lb);
	pthread_mutex_unlock(&lb->mu);
	wake(lb);
	/* the io thread delivers the last finished events... */
	pthread_mutex_lock(&lb->mu);
	while (lb->live > 0)
		pthread_cond_wait(&lb->idle_cv, &lb->mu);
	/* ...and lives on while the supervisor stops: a restarted supervisor
	 * was spawned by that thread, and its parent-death signal follows the
	 * thread; killed that way it could not clean up its sandboxes and
	 * cgroups. Closing the socket asks it to, and we wait. */
	if (lb->sock >= 0)
		close(lb->sock);
	lb->sock = -1;
	pthread_mutex_unlock(&lb->mu);
	if (!lb->sup_reaped)
		while (waitpid(lb->sup_pid, &status, 0) < 0 && errno == EINTR)
			;
	pthread_mutex_lock(&lb->mu);
	lb->exit_io = true;
	pthread_mutex_unlock(&lb->mu);
	wake(lb);
	pthread_join(lb->io, NULL);
	close(lb->ep);
	close(lb->evfd);
	close(lb->chld_fd);
	pthread_mutex_destroy(&lb->mu);
	pthread_cond_destroy(&lb->idle_cv);
	free(lb->buf);
	free(lb);
}

static const struct backend_ops local_ops = {
	.name = "local",
	.execute = local_execute,
	.resume = local_resume,
	.cancel = local_cancel,
	.release = local_release,
	.stats = local_stats,
	.cancel_all = local_cancel_all,
	.live = local_live,
	.status = local_status,
	.drain = local_drain,
	.destroy = local_destroy,
	.session_create = local_session_create,
	.session_close = local_session_close,
	.session_list = local_session_list,
	.sessions_open = local_sessions_open,
};

struct backend *local_backend_create(const struct config *cfg, int sock, pid_t sup_pid,
				     const struct ipc_hello *hello)
{
	struct local_backend *lb = calloc(1, sizeof(*lb));
	struct epoll_event ev = {.events = EPOLLIN};
	sigset_t chld;

	if (lb == NULL || (lb->buf = malloc(CHUNK)) == NULL)
		fatal("malloc");
	lb->base.ops = &local_ops;
	lb->cfg = cfg;
	lb->sock = sock;
	lb->sup_pid = sup_pid;
	for (uint32_t i = 0; i < hello->n_runtimes && i < IPC_MAX_RUNTIMES; i++)
		memcpy(lb->versions[i], hello->versions[i], IPC_VERSION_LEN);
	lb->cgroup_mode = hello->cgroup_mode;
	memcpy(lb->cgroup, hello->cgroup, sizeof(lb->cgroup));
	if (lb->cgroup_mode == 0)
		log_warnx("local backend: %s; Health reports DEGRADED", lb->cgroup);
	if (getrandom(&lb->nonce, sizeof(lb->nonce), 0) != sizeof(lb->nonce))
		lb->nonce = (uint32_t)time(NULL);
	pthread_mutex_init(&lb->mu, NULL);
	pthread_cond_init(&lb->idle_cv, NULL);
	lb->ep = epoll_create1(EPOLL_CLOEXEC);
	lb->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (lb->ep < 0 || lb->evfd < 0)
		fatal("epoll/eventfd");
	ev.data.u64 = EV_SOCK;
	if (epoll_ctl(lb->ep, EPOLL_CTL_ADD, sock, &ev) < 0)
		fatal("epoll_ctl");
	ev.data.u64 = EV_WAKE;
	if (epoll_ctl(lb->ep, EPOLL_CTL_ADD, lb->evfd, &ev) < 0)
		fatal("epoll_ctl");
	/* sandbox inits whose supervisor died are reparented to us, not lost
	 * to init(1); SIGCHLD is blocked in every thread (main.c) */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		fatal("prctl subreaper");
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	lb->chld_fd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (lb->chld_fd < 0)
		fatal("signalfd");
	ev.data.u64 = EV_CHLD;
	if (epoll_ctl(lb->ep, EPOLL_CTL_ADD, lb->chld_fd, &ev) < 0)
		fatal("epoll_ctl");
	pthread_mutex_lock(&lb->mu);
	for (size_t rt = 0; rt < IPC_MAX_RUNTIMES && rt < CONFIG_MAX_RUNTIMES; rt++)
		lb->pool_want[rt] = cfg->pool_target[rt];
	warm_refill_locked(lb); /* the pools fill while gRPC starts */
	pthread_mutex_unlock(&lb->mu);
	if (pthread_create(&lb->io, NULL, io_main, lb) != 0)
		fatalx("pthread_create failed");
	return &lb->base;
}
