/*
 * Theory of operation (supervisor)
 *
 * One process, one thread, one epoll loop over:
 *   - the IPC socket to the front: SPAWN and KILL come in; HELLO, STARTED
 *     and EXITED go out;
 *   - a signalfd for SIGCHLD: every sandbox init is our child;
 *   - per sandbox, its report pipe (init's READY, EXIT or setup ERROR
 *     records) and a timerfd (setup timeout, then the wall-time limit).
 * A sandbox slot lives from SPAWN until its init is reaped; only then is
 * EXITED sent, so "EXITED" means no process of it remains (when a pid
 * namespace's init dies the kernel kills and reaps the rest first).
 * When the front goes away (socket EOF) every sandbox is killed and the
 * supervisor exits.
 */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../log.h"
#include "../proctitle.h"
#include "../runtime.h"
#include "../sandbox/sandbox.h"
#include "cgroup.h"

extern char **environ;

#define SETUP_TIMEOUT_MS 10000

enum ev_kind {
	EV_IPC = 1,
	EV_SIGNAL,
	EV_REPORT,
	EV_TIMER,
	EV_TICK,
	EV_PIDFD,
	EV_ZYGOTE,
	EV_ZTIMER
};

/* how often the CPU time of running sandboxes is checked */
#define CPU_TICK_MS 100

struct slot {
	bool used;
	uint64_t id;
	pid_t pid;
	uint32_t host_uid;
	uint32_t runtime;
	int report_fd;
	int timer_fd;
	struct exec_limits limits;
	enum exec_reason kill_reason;
	bool ready, got_exit, got_error;
	bool done;	  /* init reported DONE: nothing of it runs any more */
	bool exited_sent; /* EXITED went out (at DONE); the reap only cleans up */
	struct sandbox_report exit_rep;
	char errmsg[160];
	uint64_t t_spawn_ns, t_ready_ns;
	/* pooled sandboxes */
	bool warm;	/* started ahead, waiting for (or given) a take */
	bool taken;	/* the take was forwarded */
	int control_fd; /* our end of init's take socket, -1 */
	uint64_t t_take_ns;
	uint64_t cpu_base_us; /* the runner's own start, not the request's */
	unsigned idx;	      /* in slots[]: its cgroup's too */
	int pidfd;	      /* made by the zygote (not our child): its pidfd, else -1 */
	/* a pool's sandbox asked of a zygote, its answer not in yet (no pid,
	 * pidfd or reports until then): zygote_answer */
	bool spawning;
	int zsock; /* the zygote's socket it was asked on */
	struct zygote_pending zp;
};

/* One zygote generation (docs/ZYGOTE.md). */
struct zygote {
	pid_t pid; /* our child; 0: none */
	int sock;  /* -1: none */
	bool ready;
	unsigned spawns;
	unsigned gen;
};

/*
 * The python zygotes: the lean one (nothing preloaded) makes the pool's
 * sandboxes, the preloaded one (numpy, pandas) the sandboxes of code that
 * imports them (the front says which, IPC_SPAWN's preloaded). Each has its
 * own host uid, generations and restart backoff.
 */
enum zkind { ZK_LEAN, ZK_PRELOADED, ZK_N };

struct zkind_state {
	bool on;
	const char *name;    /* for the log */
	const char *preload; /* "": the lean one */
	uint32_t uid;
	/* cur serves, next is starting (a recycle or a restart) */
	struct zygote cur, next;
	unsigned gen;
	unsigned backoff_ms;
	int timer; /* a restart's backoff, or a start's deadline */
};

#define ZYGOTE_BACKOFF_MIN_MS 1000
#define ZYGOTE_BACKOFF_MAX_MS 30000
/* a zygote not ready by then is stuck (it takes well under a second) */
#define ZYGOTE_START_MS 60000

struct sup {
	const struct config *cfg;
	int sock;
	int ep;
	int sigfd;
	int tick_fd; /* periodic while sandboxes run: CPU-time checks */
	bool ticking;
	char root_dir[512];
	struct slot *slots;
	unsigned nslots;
	unsigned live;
	unsigned running; /* live slots past READY: their code runs */
	int zyg_rt;	  /* the python runtime's index */
	int zyg_so_fd;
	struct zkind_state zk[ZK_N];
	bool told_preloaded; /* what the front was last told (IPC_ZYGOTE) */
	/* retired generations of either kind wait for their last sandboxes */
	pid_t *zyg_old; /* n_old: one per slot is enough, each live one holds a sandbox */
	unsigned n_old;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t ev_data(enum ev_kind k, unsigned idx) { return ((uint64_t)k << 32) | idx; }

static void ep_add(struct sup *s, int fd, enum ev_kind k, unsigned idx)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ev_data(k, idx)};
	if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		fatal("epoll_ctl add");
}

static void send_msg(struct sup *s, const void *m, size_t len)
{
	if (ipc_send(s->sock, m, len, NULL, 0) < 0) {
		/* the front is gone: the main loop sees EOF and cleans up */
		if (errno != EPIPE && errno != ECONNRESET)
			fatal("ipc send");
	}
}

static void send_exited(struct sup *s, uint64_t id, enum exec_reason reason, const char *msg)
{
	struct ipc_exited x;

	memset(&x, 0, sizeof(x));
	x.type = IPC_EXITED;
	x.id = id;
	x.reason = reason;
	snprintf(x.message, sizeof(x.message), "%s", msg);
	send_msg(s, &x, sizeof(x));
}

static void arm_timer(int fd, uint64_t ms)
{
	struct itimerspec it = {0};
	it.it_value.tv_sec = (time_t)(ms / 1000);
	it.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
	/* 0 disarms */
	if (timerfd_settime(fd, 0, &it, NULL) < 0)
		fatal("timerfd_settime");
}

static struct slot *find_slot(struct sup *s, uint64_t id)
{
	for (unsigned i = 0; i < s->nslots; i++)
		if (s->slots[i].used && s->slots[i].id == id)
			return &s->slots[i];
	return NULL;
}

static void kill_slot(struct slot *sl, enum exec_reason reason)
{
	if (sl->kill_reason == EXEC_REASON_UNSPECIFIED)
		sl->kill_reason = reason;
	if (sl->spawning)
		return; /* no process yet: the zygote's answer is killed (zygote_answer) */
	/* SIGKILL to a pid namespace's init ends every process in it; on cgroup
	 * v2, cgroup.kill also reaches anything in the group, namespace or not */
	if (sl->pidfd >= 0) {
		/* not our child: its pid could be reused, its pidfd cannot */
		if (syscall(SYS_pidfd_send_signal, sl->pidfd, SIGKILL, NULL, 0) < 0 &&
		    errno != ESRCH)
			log_warn("pidfd_send_signal %d", (int)sl->pid);
	} else if (kill(sl->pid, SIGKILL) < 0 && errno != ESRCH) {
		log_warn("kill %d", (int)sl->pid);
	}
	cg_kill(sl->idx);
}

/* Starts or stops the CPU tick: it runs only while code does (an idle pool,
 * a sandbox still being set up, need no CPU checks: handle_tick skips them). */
static void update_tick(struct sup *s)
{
	struct itimerspec it = {0};
	bool want = s->running > 0;

	if (want == s->ticking)
		return;
	if (want) {
		it.it_interval.tv_nsec = CPU_TICK_MS * 1000000L;
		it.it_value = it.it_interval;
	}
	if (timerfd_settime(s->tick_fd, 0, &it, NULL) < 0)
		fatal("timerfd_settime");
	s->ticking = want;
}

/* Puts a new sandbox into its cgroup before it runs anything. */
static int attach_cgroup(void *arg, pid_t pid, bool in_cgroup, char *err, size_t errlen)
{
	const unsigned *idx = arg;

	if (in_cgroup)
		return 0; /* clone3 put it there */
	return cg_attach(*idx, pid, err, errlen);
}

/* ---- the python zygotes (docs/ZYGOTE.md) ------------------------------------ */

static void zygote_schedule(struct sup *s, enum zkind k);
static void zygote_arm(struct sup *s, enum zkind k, unsigned ms);
static void zygote_kill(struct sup *s, struct zygote *z);

/* True when zygote kind k can clone a sandbox now. */
static bool zygote_serves(const struct sup *s, enum zkind k)
{
	const struct zkind_state *zk = &s->zk[k];
	return zk->on && zk->cur.ready && zk->cur.sock >= 0;
}

/* Tells the front when the preloaded zygote starts or stops serving. */
static void zygote_tell(struct sup *s)
{
	bool serves = zygote_serves(s, ZK_PRELOADED);
	struct ipc_zygote m = {.type = IPC_ZYGOTE, .preloaded_serves = serves};

	if (serves == s->told_preloaded)
		return;
	s->told_preloaded = serves;
	send_msg(s, &m, sizeof(m));
}

/* The epoll index of zygote z of kind k: kind * 2 + (0 cur, 1 next). */
static unsigned zygote_index(const struct sup *s, enum zkind k, const struct zygote *z)
{
	return (unsigned)k * 2 + (z == &s->zk[k].cur ? 0 : 1);
}

/* Starts a zygote generation of kind k into z (its READY comes on its socket). */
static void zygote_launch(struct sup *s, enum zkind k, struct zygote *z)
{
	struct zkind_state *zk = &s->zk[k];
	struct sandbox_spec spec;
	char err[200];
	int sock = -1;
	pid_t pid;

	memset(&spec, 0, sizeof(spec));
	spec.rt = runtime_at((size_t)s->zyg_rt);
	spec.tmpfs_bytes = s->cfg->tmpfs_bytes;
	spec.root_dir = s->root_dir;
	spec.zygote = true;
	spec.payload_fd = spec.stdin_fd = spec.stdout_fd = spec.stderr_fd = -1;
	spec.events_fd = spec.control_fd = spec.cgroup_fd = -1;
	/* slot idx is uid idx + 1 of the zygote's namespace = host uid_base + idx,
	 * the uid the slot has without a zygote */
	pid = sandbox_zygote_start(&spec, zk->uid, s->cfg->uid_base, s->nslots, s->zyg_so_fd,
				   zk->preload, &sock, err, sizeof(err));
	if (pid < 0) {
		log_warnx("%s zygote: %s", zk->name, err);
		zygote_schedule(s, k);
		return;
	}
	memset(z, 0, sizeof(*z));
	z->pid = pid;
	z->sock = sock;
	z->gen = ++zk->gen;
	ep_add(s, sock, EV_ZYGOTE, zygote_index(s, k, z));
	zygote_arm(s, k, ZYGOTE_START_MS);
	log_info("%s zygote generation %u starting (pid %d, host uid %u)", zk->name, z->gen,
		 (int)pid, zk->uid);
}

static void finish_slot(struct sup *s, struct slot *sl, int init_status);
static pid_t zygote_go(unsigned idx, struct zygote_pending *zp, int pidfd, int *report_fd,
		       char *err, size_t errlen);

/* Ends a pool sandbox whose zygote never answered for it. */
static void spawn_failed(struct sup *s, struct slot *sl, const char *why)
{
	log_warnx("sandbox %" PRIu64 ": %s", sl->id, why);
	sandbox_zygote_drop(&sl->zp);
	sl->spawning = false;
	snprintf(sl->errmsg, sizeof(sl->errmsg), "%.150s", why);
	sl->got_error = true;
	finish_slot(s, sl, 0);
}

/*
 * The answer of the zygote on zsock for sandbox id (a pool's: the request
 * went out without waiting, handle_spawn): the sandbox goes on, or ends
 * with the zygote's reason. Returns false when no such request is pending
 * there: the zygote's stream is broken.
 */
static bool zygote_answer(struct sup *s, int zsock, int type, uint64_t id, int pidfd,
			  const char *why)
{
	struct slot *sl = find_slot(s, id);
	char err[200];
	pid_t pid;
	int report_fd = -1;
	unsigned idx;

	if (sl == NULL || !sl->spawning || sl->zsock != zsock) {
		if (pidfd >= 0) {
			(void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
			close(pidfd);
		}
		return false;
	}
	if (type != ZYGOTE_SPAWNED) {
		spawn_failed(s, sl, why);
		return true;
	}
	idx = (unsigned)(sl - s->slots);
	pid = zygote_go(idx, &sl->zp, pidfd, &report_fd, err, sizeof(err));
	if (pid < 0) {
		spawn_failed(s, sl, err);
		return true;
	}
	sl->spawning = false;
	sl->pid = pid;
	sl->pidfd = pidfd;
	sl->report_fd = report_fd;
	ep_add(s, pidfd, EV_PIDFD, idx);
	ep_add(s, report_fd, EV_REPORT, idx);
	if (sl->kill_reason != EXEC_REASON_UNSPECIFIED)
		kill_slot(sl, sl->kill_reason); /* killed while it was being made */
	return true;
}

/*
 * z's socket goes: the pool sandboxes asked of it and not answered yet
 * end. With drain (a retiring generation, still working), its answers are
 * taken first, each within ZYGOTE_ANSWER_MS.
 */
static void zygote_settle(struct sup *s, struct zygote *z, bool drain)
{
	char err[200];
	uint64_t id;
	int type, pidfd;

	for (;;) {
		bool pending = false;
		for (unsigned i = 0; i < s->nslots && !pending; i++)
			pending = s->slots[i].used && s->slots[i].spawning &&
				  s->slots[i].zsock == z->sock;
		if (!pending)
			return;
		type = drain ? sandbox_zygote_recv(z->sock, ZYGOTE_ANSWER_MS, &id, &pidfd, err,
						   sizeof(err)) :
			       -1;
		if ((type == ZYGOTE_SPAWNED || type == ZYGOTE_FAILED) &&
		    zygote_answer(s, z->sock, type, id, pidfd, err))
			continue;
		for (unsigned i = 0; i < s->nslots; i++)
			if (s->slots[i].used && s->slots[i].spawning &&
			    s->slots[i].zsock == z->sock)
				spawn_failed(s, &s->slots[i], "zygote gone before it answered");
		return;
	}
}

/* Drops z's socket: a serving zygote sees EOF and stops serving. */
static void zygote_close(struct sup *s, struct zygote *z)
{
	if (z->sock >= 0)
		zygote_settle(s, z, false);
	if (z->sock >= 0) {
		epoll_ctl(s->ep, EPOLL_CTL_DEL, z->sock, NULL);
		close(z->sock);
	}
	z->sock = -1;
	z->ready = false;
}

/* Ends z at once: SIGKILL to its pid namespace's init ends its sandboxes too. */
static void zygote_kill(struct sup *s, struct zygote *z)
{
	zygote_close(s, z);
	if (z->pid > 0)
		kill(z->pid, SIGKILL); /* still our child: reap() takes it */
}

/* Retires z: it waits for its sandboxes, then exits (reap() takes it). */
static void zygote_retire(struct sup *s, struct zygote *z)
{
	if (z->sock >= 0)
		zygote_settle(s, z, true);
	zygote_close(s, z);
	for (unsigned i = 0; i < s->n_old && z->pid > 0; i++)
		if (s->zyg_old[i] == 0) {
			s->zyg_old[i] = z->pid;
			z->pid = 0;
		}
	if (z->pid > 0) {
		/* cannot happen: a draining generation holds a live sandbox,
		 * and there are n_old slots (see zygote_init) */
		log_warnx("zygote generation %u: %u older generations still running: killed",
			  z->gen, s->n_old);
		kill(z->pid, SIGKILL);
	}
	memset(z, 0, sizeof(*z));
	z->sock = -1;
}

static void zygote_arm(struct sup *s, enum zkind k, unsigned ms)
{
	struct itimerspec it = {0};

	it.it_value.tv_sec = ms / 1000;
	it.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
	if (timerfd_settime(s->zk[k].timer, 0, &it, NULL) < 0)
		fatal("timerfd_settime");
}

/* A restart after a failure, with backoff (1 s doubling to 30 s). */
static void zygote_schedule(struct sup *s, enum zkind k)
{
	struct zkind_state *zk = &s->zk[k];
	unsigned ms = zk->backoff_ms * 2;

	if (ms < ZYGOTE_BACKOFF_MIN_MS)
		ms = ZYGOTE_BACKOFF_MIN_MS;
	if (ms > ZYGOTE_BACKOFF_MAX_MS)
		ms = ZYGOTE_BACKOFF_MAX_MS;
	zk->backoff_ms = ms;
	zygote_arm(s, k, ms);
	log_info("%s zygote: restart in %u ms; %s", zk->name, ms,
		 k == ZK_LEAN ? "python sandboxes come from the other zygote or start "
				"interpreters meanwhile" :
				"code that imports its modules runs in lean sandboxes meanwhile");
}

static void zygote_timer(struct sup *s, enum zkind k)
{
	struct zkind_state *zk = &s->zk[k];
	struct zygote *stuck = NULL;
	uint64_t ticks;

	if (read(zk->timer, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		fatal("timerfd read");
	if (zk->cur.pid > 0 && !zk->cur.ready)
		stuck = &zk->cur;
	else if (zk->next.pid > 0 && !zk->next.ready)
		stuck = &zk->next;
	if (stuck != NULL) {
		/* reap() schedules the next attempt */
		log_warnx("%s zygote generation %u: not ready after %d s: killed", zk->name,
			  stuck->gen, ZYGOTE_START_MS / 1000);
		zygote_kill(s, stuck);
	} else if (zk->cur.pid == 0 && zk->next.pid == 0) {
		zygote_launch(s, k, &zk->cur);
	}
	zygote_tell(s);
}

/* Packets (or EOF) from the zygote at epoll index idx (zygote_index). */
static void zygote_event(struct sup *s, unsigned idx)
{
	enum zkind k = (enum zkind)(idx / 2);
	struct zkind_state *zk;
	struct zygote *z;
	char err[200];
	uint64_t id;
	int type, pidfd;

	if (k >= ZK_N)
		return;
	zk = &s->zk[k];
	z = idx % 2 == 0 ? &zk->cur : &zk->next;
	for (;;) {
		if (z->sock < 0)
			return;
		type = sandbox_zygote_recv(z->sock, 0, &id, &pidfd, err, sizeof(err));
		if (type == 0)
			return;
		if (type == ZYGOTE_READY && !z->ready) {
			z->ready = true;
			log_info("%s zygote generation %u ready", zk->name, z->gen);
			if (z == &zk->next) {
				/* the new generation takes over; the old one drains */
				zygote_retire(s, &zk->cur);
				epoll_ctl(s->ep, EPOLL_CTL_DEL, z->sock, NULL);
				zk->cur = *z;
				ep_add(s, zk->cur.sock, EV_ZYGOTE, zygote_index(s, k, &zk->cur));
				memset(z, 0, sizeof(*z));
				z->sock = -1;
				z = &zk->cur;
			}
			zygote_tell(s);
			continue;
		}
		if ((type == ZYGOTE_SPAWNED || type == ZYGOTE_FAILED) &&
		    zygote_answer(s, z->sock, type, id, pidfd, err)) {
			if (type == ZYGOTE_SPAWNED)
				zk->backoff_ms = 0; /* it works */
			continue;
		}
		/* EOF (it died: reap() says why) or a packet nobody asked for */
		if (type != -1 || strstr(err, "closed its socket") == NULL)
			log_warnx("%s zygote generation %u: unexpected packet: killed", zk->name,
				  z->gen);
		zygote_kill(s, z);
		zygote_tell(s);
		return;
	}
}

/* pid was reaped: if it was a zygote, say so and replace it if needed. */
static void zygote_reaped(struct sup *s, pid_t pid, int status)
{
	struct zkind_state *zk = NULL;
	struct zygote *z = NULL;
	enum zkind k;

	for (unsigned i = 0; i < s->n_old; i++)
		if (s->zyg_old[i] == pid) {
			s->zyg_old[i] = 0;
			log_info("zygote pid %d retired (its sandboxes are gone)", (int)pid);
			return;
		}
	for (k = ZK_LEAN; k < ZK_N && z == NULL; k++) {
		zk = &s->zk[k];
		if (zk->cur.pid == pid)
			z = &zk->cur;
		else if (zk->next.pid == pid)
			z = &zk->next;
	}
	if (z == NULL)
		return;
	k--; /* the loop went one past */
	if (WIFSIGNALED(status))
		log_warnx("%s zygote generation %u died: signal %d", zk->name, z->gen,
			  WTERMSIG(status));
	else
		log_warnx("%s zygote generation %u exited: status %d", zk->name, z->gen,
			  WEXITSTATUS(status));
	zygote_close(s, z);
	memset(z, 0, sizeof(*z));
	z->sock = -1;
	if (zk->cur.pid == 0 && zk->next.pid == 0)
		zygote_schedule(s, k);
	zygote_tell(s);
}

/* At start: whether zygotes can serve, and their first generations. */
static void zygote_init(struct sup *s)
{
	char path[PATH_MAX + 32], *slash;
	const char *preload = s->cfg->zygote_preload ? s->cfg->zygote_preload : "";
	ssize_t n;

	s->zyg_so_fd = -1;
	for (enum zkind k = ZK_LEAN; k < ZK_N; k++) {
		struct zkind_state *zk = &s->zk[k];
		zk->cur.sock = zk->next.sock = -1;
		zk->name = k == ZK_LEAN ? "lean" : "preloaded";
		zk->preload = k == ZK_LEAN ? "" : preload;
		/* each its own host uid, just past the sandbox range */
		zk->uid = s->cfg->uid_base + s->cfg->uid_count + (uint32_t)k;
		zk->timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (zk->timer < 0)
			fatal("timerfd_create");
		ep_add(s, zk->timer, EV_ZTIMER, (unsigned)k);
	}
	/* a retired generation lives while one of its sandboxes does (a
	 * pooled one, a session's): at most one per slot */
	s->n_old = s->nslots + ZK_N;
	s->zyg_old = calloc(s->n_old, sizeof(pid_t));
	if (s->zyg_old == NULL)
		fatal("calloc");
	s->zyg_rt = runtime_find("python");
	if (!s->cfg->zygote || s->zyg_rt < 0)
		return;
	if ((uint64_t)s->cfg->uid_base + s->cfg->uid_count + ZK_N > UINT32_MAX) {
		log_warnx("zygote: off: no host uids past the sandbox range");
		return;
	}
	/* the extension sits next to us (the build directory, or where the
	 * binaries are installed) */
	n = readlink("/proc/self/exe", path, PATH_MAX);
	if (n <= 0) {
		log_warn("zygote: off: readlink /proc/self/exe");
		return;
	}
	path[n] = '\0';
	slash = strrchr(path, '/');
	if (slash == NULL)
		return;
	snprintf(slash, sizeof(path) - (size_t)(slash - path), "/_capibox_zygote.so");
	s->zyg_so_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->zyg_so_fd < 0) {
		log_warn("zygote: off: %s (sanitizer builds do not build it)", path);
		return;
	}
	s->zk[ZK_LEAN].on = true;
	s->zk[ZK_PRELOADED].on = preload[0] != '\0';
	log_info("zygote: on (a lean zygote for the pool%s%s%s, a new generation every %u "
		 "spawns)",
		 s->zk[ZK_PRELOADED].on ? " and one preloading \"" : "", preload,
		 s->zk[ZK_PRELOADED].on ? "\" for code that imports it" : "",
		 s->cfg->zygote_recycle);
	for (enum zkind k = ZK_LEAN; k < ZK_N; k++)
		if (s->zk[k].on)
			zygote_launch(s, k, &s->zk[k].cur);
}

/* At exit: every zygote goes, with its sandboxes, before we do. */
static void zygote_shutdown(struct sup *s)
{
	pid_t *pids = calloc(s->n_old + 2 * ZK_N, sizeof(pid_t));
	unsigned n = 0;

	if (pids == NULL)
		fatal("calloc");
	for (enum zkind k = ZK_LEAN; k < ZK_N; k++) {
		if (s->zk[k].cur.pid > 0)
			pids[n++] = s->zk[k].cur.pid;
		if (s->zk[k].next.pid > 0)
			pids[n++] = s->zk[k].next.pid;
	}
	for (unsigned i = 0; i < s->n_old; i++)
		if (s->zyg_old[i] > 0)
			pids[n++] = s->zyg_old[i];
	for (unsigned i = 0; i < n; i++)
		kill(pids[i], SIGKILL);
	for (unsigned i = 0; i < n; i++)
		while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
			;
	free(pids);
}

/* True when a cold spawn's environment lets a pooled sandbox run it. */
static bool zygote_cold_ok(const struct ipc_spawn *sp)
{
	const char *names[256];
	const char *p = sp->env;

	if (sp->n_env > 256)
		return false;
	/* "NAME=value": the prefixes compared are names' */
	for (uint32_t i = 0; i < sp->n_env; i++) {
		names[i] = p;
		p += strlen(p) + 1;
	}
	return runtime_warm_env_ok(runtime_at(sp->runtime), names, sp->n_env) != 0;
}

/*
 * Which zygote clones a python sandbox (ZK_N: none serves): code that
 * imports the preloaded modules gets the preloaded one, the rest the lean
 * one; either stands in while the other restarts.
 */
static enum zkind zygote_choose(const struct sup *s, bool preloaded)
{
	enum zkind first = preloaded ? ZK_PRELOADED : ZK_LEAN;
	enum zkind other = preloaded ? ZK_LEAN : ZK_PRELOADED;

	if (zygote_serves(s, first))
		return first;
	if (zygote_serves(s, other))
		return other;
	return ZK_N;
}

/*
 * A cold request made by the zygote: its init gets the take at once (the
 * request's limits, environment and payload), as a pooled one would from
 * the front. Returns 0, or -1 with err.
 */
static int zygote_take_at_once(const struct ipc_spawn *sp, int ctl, int payload_fd, char *err,
			       size_t errlen)
{
	union ipc_msg *m = malloc(IPC_MAX_PACKET);
	size_t len = sizeof(struct ipc_take) + sp->env_len;
	int rc = -1;

	if (m == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memset(m, 0, sizeof(struct ipc_take));
	m->take.type = IPC_TAKE;
	m->take.n_env = sp->n_env;
	m->take.id = sp->id;
	m->take.limits = sp->limits;
	m->take.env_len = sp->env_len;
	memcpy(m->take.env, sp->env, sp->env_len);
	if (ipc_send(ctl, m, len, &payload_fd, 1) < 0)
		snprintf(err, errlen, "take: %s", strerror(errno));
	else
		rc = 0;
	free(m);
	return rc;
}

/*
 * Lets a zygote's new sandbox (pidfd, the request zp) go: into its cgroup
 * first where that needs its pid (v2). Returns its host pid and sets
 * *report_fd; -1 with err, the sandbox killed and pidfd closed.
 */
static pid_t zygote_go(unsigned idx, struct zygote_pending *zp, int pidfd, int *report_fd,
		       char *err, size_t errlen)
{
	pid_t pid = sandbox_pidfd_pid(pidfd);

	if (pid < 0)
		snprintf(err, errlen, "zygote: the new sandbox's pid: %s", strerror(errno));
	if (pid < 0 || cg_attach(idx, pid, err, errlen) < 0 ||
	    sandbox_zygote_go(zp, report_fd, err, errlen) < 0) {
		(void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		close(pidfd);
		sandbox_zygote_drop(zp);
		return -1;
	}
	return pid;
}

/*
 * Waits (bounded) for z's answer to zp, a request someone waits for; the
 * answers to earlier pool requests that come first are handled on the way.
 * Returns the host pid (*pidfd, *report_fd set); -1 with err when this
 * sandbox failed; -2 when the zygote must be replaced.
 */
static pid_t zygote_wait(struct sup *s, struct zygote *z, unsigned idx, struct zygote_pending *zp,
			 int *report_fd, int *pidfd, char *err, size_t errlen)
{
	uint64_t id;
	int type, fd;

	for (;;) {
		type = sandbox_zygote_recv(z->sock, ZYGOTE_ANSWER_MS, &id, &fd, err, errlen);
		if ((type != ZYGOTE_SPAWNED && type != ZYGOTE_FAILED) || id == zp->id)
			break;
		if (!zygote_answer(s, z->sock, type, id, fd, err)) {
			snprintf(err, errlen, "zygote: an answer nobody asked for");
			type = -1;
			break;
		}
	}
	if (type == ZYGOTE_SPAWNED) {
		*pidfd = fd;
		return zygote_go(idx, zp, fd, report_fd, err, errlen);
	}
	if (type == 0)
		snprintf(err, errlen, "zygote: no answer in %d ms", ZYGOTE_ANSWER_MS);
	sandbox_zygote_drop(zp);
	return type == ZYGOTE_FAILED ? -1 : -2;
}

/*
 * Takes slot idx for sp's sandbox: its fields, cgroup figure files and
 * setup timer, and for a pooled one the take socket (*ctl0, then -1). The
 * caller adds the process (pid, pidfd, reports) when it has it.
 */
static void slot_open(struct sup *s, unsigned idx, const struct ipc_spawn *sp, uint32_t host_uid,
		      int *ctl0)
{
	struct slot *sl = &s->slots[idx];

	sl->used = true;
	sl->id = sp->id;
	sl->host_uid = host_uid;
	sl->runtime = sp->runtime;
	sl->limits = sp->limits;
	sl->idx = idx;
	sl->report_fd = -1;
	sl->pidfd = -1;
	sl->warm = sp->warm != 0;
	sl->control_fd = -1;
	if (sp->warm) { /* a cold one's take went already (or it has none) */
		sl->control_fd = *ctl0;
		*ctl0 = -1;
	}
	sl->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (sl->timer_fd < 0)
		fatal("timerfd_create");
	arm_timer(sl->timer_fd, SETUP_TIMEOUT_MS);
	ep_add(s, sl->timer_fd, EV_TIMER, idx);
	s->live++;
	update_tick(s);
}

static void handle_spawn(struct sup *s, const struct ipc_spawn *sp, int fds[IPC_SPAWN_FDS])
{
	bool into_cgroup = false, via_zygote;
	enum zkind zk = ZK_N;
	int tasks = 0;
	int ctl[2] = {-1, -1}, pidfd = -1;
	struct sandbox_spec spec;
	struct slot *sl = NULL;
	char err[200];
	unsigned idx = 0;
	pid_t pid;
	int report_fd = -1;
	uint64_t cg_memory;
	uint32_t cg_procs;

	if (sp->runtime >= runtime_count())
		fatalx("ipc: SPAWN with runtime index %u out of range", sp->runtime);
	if (find_slot(s, sp->id) != NULL)
		fatalx("ipc: SPAWN with duplicate id %" PRIu64, sp->id);
	for (idx = 0; idx < s->nslots; idx++)
		if (!s->slots[idx].used) {
			sl = &s->slots[idx];
			break;
		}
	if (sl == NULL) {
		send_exited(s, sp->id, EXEC_REASON_SANDBOX_ERROR,
			    "supervisor: no free sandbox slot");
		goto out;
	}
	memset(&spec, 0, sizeof(spec));
	spec.rt = runtime_at(sp->runtime);
	spec.limits = sp->limits;
	spec.tmpfs_bytes = sp->tmpfs_bytes;
	/* slot index -> host uid: unique among live sandboxes, and a slot is
	 * reused only after every process of its previous sandbox is gone */
	spec.host_uid = s->cfg->uid_base + idx;
	spec.root_dir = s->root_dir;
	spec.env = sp->env;
	spec.n_env = sp->n_env;
	spec.payload_fd = fds[0];
	spec.stdin_fd = fds[1];
	spec.stdout_fd = fds[2];
	spec.stderr_fd = fds[3];
	spec.events_fd = fds[4];

	spec.cpu_backstop = cg_cpu_accounted();
	spec.before_release = attach_cgroup;
	spec.hook_arg = &idx;
	spec.control_fd = -1;
	/* python from a zygote: pooled sandboxes, and cold requests that a
	 * pooled sandbox could serve (the pool was empty, or the code imports
	 * what the preloaded zygote has) */
	if (fds[4] >= 0 && (int)sp->runtime == s->zyg_rt && (sp->warm || zygote_cold_ok(sp)))
		zk = zygote_choose(s, sp->preloaded != 0);
	via_zygote = zk != ZK_N;
	if (sp->warm || via_zygote) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0) {
			snprintf(err, sizeof(err), "socketpair: %s", strerror(errno));
			send_exited(s, sp->id, EXEC_REASON_SANDBOX_ERROR, err);
			goto out;
		}
		spec.warm = sp->warm != 0;
		spec.control_fd = sp->warm ? ctl[1] : -1;
	}

	memset(sl, 0, sizeof(*sl));
	sl->pidfd = -1;
	sl->t_spawn_ns = now_ns();
	cg_memory = sp->cg_memory_bytes != 0 ? sp->cg_memory_bytes : sp->limits.memory_bytes;
	cg_procs = sp->cg_max_processes != 0 ? sp->cg_max_processes : sp->limits.max_processes;
	if (cg_begin(idx, cg_memory, cg_procs, err, sizeof(err)) < 0) {
		log_warnx("sandbox %" PRIu64 ": %s", sp->id, err);
		send_exited(s, sp->id, EXEC_REASON_SANDBOX_ERROR, err);
		goto out;
	}
	/* cgroup v1: init joins its groups itself (cg_open_tasks; cg_attach
	 * does nothing there) */
	tasks = cg_open_tasks(idx, spec.cgroup_tasks);
	if (tasks < 0) {
		snprintf(err, sizeof(err), "open the cgroup's tasks: %s", strerror(errno));
		log_warnx("sandbox %" PRIu64 ": %s", sp->id, err);
		cg_end(idx);
		send_exited(s, sp->id, EXEC_REASON_SANDBOX_ERROR, err);
		goto out;
	}
	if (tasks > 0)
		spec.n_cgroup_tasks = (unsigned)tasks;
	pid = -1;
	if (via_zygote) {
		struct zygote *z = &s->zk[zk].cur;
		struct sandbox_spec zs = spec;
		struct zygote_pending zp;
		zs.warm = true;
		zs.at_once = !sp->warm;
		zs.control_fd = ctl[1];
		pid = sandbox_zygote_send(z->sock, &zs, idx + 1, sp->id, &zp, err, sizeof(err));
		if (pid == 0 && ++z->spawns >= s->cfg->zygote_recycle && s->zk[zk].next.pid == 0)
			zygote_launch(s, zk, &s->zk[zk].next); /* a new generation */
		if (pid == 0 && sp->warm) {
			/* a pool's: its answer is handled when it comes (zygote_answer),
			 * so that a take or a run's end is not held up meanwhile */
			slot_open(s, idx, sp, spec.host_uid, &ctl[0]);
			sl->spawning = true;
			sl->zsock = z->sock;
			sl->zp = zp;
			goto out;
		}
		if (pid == 0)
			pid = zygote_wait(s, z, idx, &zp, &report_fd, &pidfd, err, sizeof(err));
		if (pid >= 0 && !sp->warm &&
		    zygote_take_at_once(sp, ctl[0], fds[0], err, sizeof(err)) < 0) {
			(void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
			close(pidfd);
			close(report_fd);
			pidfd = report_fd = -1;
			log_warnx("sandbox %" PRIu64 ": %s: started without the zygote", sp->id,
				  err);
			pid = -3; /* today's path; the zygote is fine */
		}
		if (pid == -3) {
			pid = -1;
		} else if (pid == -2) {
			/* the zygote misbehaved: replace it; this one starts as today */
			log_warnx("%s zygote generation %u: %s: restarting it", s->zk[zk].name,
				  z->gen, err);
			zygote_kill(s, z); /* reap() schedules its restart */
			zygote_tell(s);
			pid = -1;
		} else if (pid < 0) {
			log_warnx("sandbox %" PRIu64 ": %s", sp->id, err);
			cg_end(idx);
			send_exited(s, sp->id, EXEC_REASON_SANDBOX_ERROR, err);
			goto out;
		} else {
			s->zk[zk].backoff_ms = 0; /* it works */
		}
	}
	if (pid < 0) {
		spec.cgroup_fd = cg_open(idx);
		pid = sandbox_spawn(&spec, &report_fd, &into_cgroup, err, sizeof(err));
		if (spec.cgroup_fd >= 0)
			close(spec.cgroup_fd);
	}
	if (ctl[1] >= 0) {
		close(ctl[1]); /* init has it */
		ctl[1] = -1;
	}
	if (pid < 0) {
		log_warnx("sandbox %" PRIu64 ": %s", sp->id, err);
		cg_end(idx);
		send_exited(s, sp->id, EXEC_REASON_SANDBOX_ERROR, err);
		goto out;
	}
	slot_open(s, idx, sp, spec.host_uid, &ctl[0]);
	sl->pid = pid;
	sl->report_fd = report_fd;
	sl->pidfd = pidfd;
	if (pidfd >= 0)
		ep_add(s, pidfd, EV_PIDFD, idx);
	ep_add(s, sl->report_fd, EV_REPORT, idx);
out:
	/* the child has its own copies; ours would keep the pipes open */
	for (int i = 0; i < IPC_SPAWN_FDS; i++)
		close(fds[i]);
	for (int i = 0; i < tasks; i++)
		close(spec.cgroup_tasks[i]);
	for (int i = 0; i < 2; i++)
		if (ctl[i] >= 0)
			close(ctl[i]);
}

/* Reads report records; the sandbox is not trusted to write well-formed ones. */
static void read_reports(struct sup *s, struct slot *sl)
{
	for (;;) {
		struct sandbox_report r;
		ssize_t n = read(sl->report_fd, &r, sizeof(r));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0 || errno != EAGAIN) {
				epoll_ctl(s->ep, EPOLL_CTL_DEL, sl->report_fd, NULL);
				close(sl->report_fd);
				sl->report_fd = -1;
			}
			return;
		}
		if (n != sizeof(r)) {
			snprintf(sl->errmsg, sizeof(sl->errmsg), "sandbox sent a malformed report");
			sl->got_error = true;
			kill_slot(sl, EXEC_REASON_SANDBOX_ERROR);
			continue;
		}
		r.msg[sizeof(r.msg) - 1] = '\0';
		switch (r.type) {
		case SANDBOX_REPORT_READY:
			if (!sl->ready) {
				struct ipc_started st = {.type = IPC_STARTED, .id = sl->id};
				sl->ready = true;
				s->running++;
				update_tick(s);
				sl->t_ready_ns = now_ns();
				st.pid = (uint32_t)sl->pid;
				/* pooled: the time from the take, the rest was paid ahead */
				st.start_us = (sl->t_ready_ns -
					       (sl->taken ? sl->t_take_ns : sl->t_spawn_ns)) /
					      1000;
				send_msg(s, &st, sizeof(st));
				arm_timer(sl->timer_fd, sl->limits.wall_time_ms);
			}
			break;
		case SANDBOX_REPORT_WARM:
			if (sl->warm && !sl->taken) {
				struct ipc_warm w = {.type = IPC_WARM, .id = sl->id};
				arm_timer(sl->timer_fd, 0); /* idle: no deadline */
				send_msg(s, &w, sizeof(w));
			}
			break;
		case SANDBOX_REPORT_EXIT:
			sl->exit_rep = r;
			sl->got_exit = true;
			break;
		case SANDBOX_REPORT_DONE:
			sl->exit_rep = r;
			sl->got_exit = true;
			sl->done = true;
			break;
		case SANDBOX_REPORT_ERROR:
			snprintf(sl->errmsg, sizeof(sl->errmsg), "%s", r.msg);
			sl->got_error = true;
			break;
		default:
			snprintf(sl->errmsg, sizeof(sl->errmsg), "sandbox sent an unknown report");
			sl->got_error = true;
			kill_slot(sl, EXEC_REASON_SANDBOX_ERROR);
			break;
		}
	}
}

/*
 * Sends EXITED for sl: what it reported, its cgroup's figures, why it ended.
 * Called when nothing of the sandbox runs any more: at its reap, or earlier
 * when init reported DONE (its processes are then being torn down, which
 * the client need not wait for; the slot is freed at the reap).
 */
static void send_exited_slot(struct sup *s, struct slot *sl, int init_status)
{
	struct ipc_exited x;
	struct cg_usage use;
	uint64_t end = now_ns();
	const struct sandbox_report *r = &sl->exit_rep;

	sl->exited_sent = true;
	memset(&x, 0, sizeof(x));
	x.type = IPC_EXITED;
	x.id = sl->id;
	x.wall_time_us = (end - (sl->ready ? sl->t_ready_ns : sl->t_spawn_ns)) / 1000;
	/* no code of the sandbox runs any more: the cgroup's figures are final
	 * (but for the teardown of what was killed) */
	cg_read_usage(sl->idx, &use);
	if (sl->got_exit) {
		x.cpu_time_us = r->utime_us + r->stime_us;
		x.peak_memory_bytes = r->maxrss_kb * 1024;
	}
	/* the cgroup counts every process, also those killed before init
	 * could wait for them */
	if (use.cpu_us > 0)
		x.cpu_time_us = use.cpu_us > sl->cpu_base_us ? use.cpu_us - sl->cpu_base_us : 0;
	if (use.peak_memory_bytes > 0)
		x.peak_memory_bytes = use.peak_memory_bytes;
	if (sl->kill_reason == EXEC_REASON_UNSPECIFIED && use.oom_killed && sl->got_exit &&
	    WIFSIGNALED(r->wstatus) && WTERMSIG(r->wstatus) == SIGKILL) {
		/* the OOM killer's SIGKILL: report the limit, not the signal */
		x.reason = EXEC_REASON_MEMORY_LIMIT;
		x.signal = SIGKILL;
		snprintf(x.message, sizeof(x.message), "memory limit of %" PRIu64 " bytes reached",
			 sl->limits.memory_bytes);
	} else if (sl->kill_reason != EXEC_REASON_UNSPECIFIED) {
		x.reason = sl->kill_reason;
		switch (sl->kill_reason) {
		case EXEC_REASON_WALL_TIMEOUT:
			snprintf(x.message, sizeof(x.message),
				 "wall time limit of %" PRIu32 " ms reached",
				 sl->limits.wall_time_ms);
			break;
		case EXEC_REASON_CANCELLED:
			snprintf(x.message, sizeof(x.message), "cancelled");
			break;
		case EXEC_REASON_SANDBOX_ERROR:
			snprintf(x.message, sizeof(x.message), "%s",
				 sl->errmsg[0] ? sl->errmsg : "sandbox error");
			break;
		case EXEC_REASON_CPU_TIMEOUT:
			snprintf(x.message, sizeof(x.message),
				 "cpu time limit of %" PRIu32 " ms reached",
				 sl->limits.cpu_time_ms);
			break;
		default:
			snprintf(x.message, sizeof(x.message), "stopped: %s",
				 exec_reason_name(sl->kill_reason));
			break;
		}
		if (sl->got_exit && WIFSIGNALED(r->wstatus))
			x.signal = WTERMSIG(r->wstatus);
	} else if (sl->got_error) {
		x.reason = EXEC_REASON_SANDBOX_ERROR;
		snprintf(x.message, sizeof(x.message), "%s", sl->errmsg);
	} else if (sl->got_exit && WIFEXITED(r->wstatus)) {
		x.reason = EXEC_REASON_EXITED;
		x.exit_code = WEXITSTATUS(r->wstatus);
	} else if (sl->got_exit && WIFSIGNALED(r->wstatus)) {
		int sig = WTERMSIG(r->wstatus);
		uint64_t cpu_limit_us = (uint64_t)sl->limits.cpu_time_ms * 1000;
		x.signal = sig;
		/* RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one */
		if (sig == SIGXCPU || (sig == SIGKILL && x.cpu_time_us >= cpu_limit_us)) {
			x.reason = EXEC_REASON_CPU_TIMEOUT;
			snprintf(x.message, sizeof(x.message),
				 "cpu time limit of %" PRIu32 " ms reached",
				 sl->limits.cpu_time_ms);
		} else {
			x.reason = EXEC_REASON_SIGNALED;
			snprintf(x.message, sizeof(x.message), "killed by signal %d (%s)", sig,
				 strsignal(sig));
		}
	} else {
		x.reason = EXEC_REASON_SANDBOX_ERROR;
		snprintf(x.message, sizeof(x.message),
			 "sandbox init ended unexpectedly (status %#x)", (unsigned)init_status);
	}
	send_msg(s, &x, sizeof(x));
}

/* Frees sl once its init is reaped: every process of it is gone. */
static void finish_slot(struct sup *s, struct slot *sl, int init_status)
{
	if (sl->report_fd >= 0)
		read_reports(s, sl);
	if (!sl->exited_sent)
		send_exited_slot(s, sl, init_status);
	cg_end(sl->idx);
	if (sl->report_fd >= 0) {
		epoll_ctl(s->ep, EPOLL_CTL_DEL, sl->report_fd, NULL);
		close(sl->report_fd);
	}
	epoll_ctl(s->ep, EPOLL_CTL_DEL, sl->timer_fd, NULL);
	close(sl->timer_fd);
	if (sl->control_fd >= 0)
		close(sl->control_fd);
	if (sl->pidfd >= 0) {
		epoll_ctl(s->ep, EPOLL_CTL_DEL, sl->pidfd, NULL);
		close(sl->pidfd);
	}
	if (sl->ready)
		s->running--;
	memset(sl, 0, sizeof(*sl));
	sl->pidfd = -1;
	s->live--;
	update_tick(s);
}

/*
 * A pooled sandbox waited at the lowest priority (sandbox.c): its init and
 * runner get the normal one back. Before the take they are the only
 * members of init's process group (init's setsid), so one call on the
 * group reaches them; PRIO_USER, on its uid, walked every thread of the
 * host (about 40 us), walking /proc took about 50.
 */
static void unnice_sandbox(pid_t init) { (void)setpriority(PRIO_PGRP, (id_t)init, 0); }

/*
 * A request for a pooled sandbox: its cgroup limits become the request's,
 * the take (with the payload) goes to its init, and the setup timer runs
 * until init reports READY.
 */
static void handle_take(struct sup *s, const union ipc_msg *m, size_t len, int payload_fd)
{
	struct slot *sl = find_slot(s, m->take.id);
	char err[200];

	if (sl == NULL || !sl->warm || sl->taken || sl->control_fd < 0 || sl->spawning) {
		/* it died meanwhile: its EXITED is on its way to the front */
		log_warnx("take of sandbox %" PRIu64 ": not a waiting pooled sandbox", m->take.id);
		goto out;
	}
	sl->taken = true;
	sl->t_take_ns = now_ns();
	sl->limits = m->take.limits;
	sl->cpu_base_us = cg_cpu_us(sl->idx);
	if (sl->pid > 0)
		unnice_sandbox(sl->pid);
	/* the group has the configured default limits (cg_memory_bytes): a
	 * request with the same (the usual one) needs no write */
	if (cg_set_limits(sl->idx, sl->limits.memory_bytes, sl->limits.max_processes, err,
			  sizeof(err)) < 0) {
		snprintf(sl->errmsg, sizeof(sl->errmsg), "%.150s", err);
		sl->got_error = true;
		kill_slot(sl, EXEC_REASON_SANDBOX_ERROR);
		goto out;
	}
	if (ipc_send(sl->control_fd, m, len, &payload_fd, 1) < 0) {
		snprintf(sl->errmsg, sizeof(sl->errmsg), "take: %s", strerror(errno));
		sl->got_error = true;
		kill_slot(sl, EXEC_REASON_SANDBOX_ERROR);
		goto out;
	}
	close(sl->control_fd);
	sl->control_fd = -1;
	arm_timer(sl->timer_fd, SETUP_TIMEOUT_MS);
out:
	close(payload_fd);
}

static void reap(struct sup *s)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
		for (unsigned i = 0; i < s->nslots; i++)
			if (s->slots[i].used && s->slots[i].pidfd < 0 && s->slots[i].pid == pid) {
				finish_slot(s, &s->slots[i], status);
				break;
			}
		zygote_reaped(s, pid, status);
	}
}

static void handle_timer(struct sup *s, struct slot *sl)
{
	uint64_t ticks;

	if (read(sl->timer_fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		fatal("timerfd read");
	if (sl->spawning) {
		/* its zygote never answered: replaced, which ends this one */
		for (enum zkind k = ZK_LEAN; k < ZK_N; k++)
			if (s->zk[k].cur.sock == sl->zsock) {
				log_warnx("%s zygote generation %u: no answer in %d ms: killed",
					  s->zk[k].name, s->zk[k].cur.gen, SETUP_TIMEOUT_MS);
				zygote_kill(s, &s->zk[k].cur);
				zygote_tell(s);
			}
		if (sl->used && sl->spawning) /* (cannot happen: its socket went) */
			spawn_failed(s, sl, "zygote: no answer");
		return;
	}
	if (!sl->ready) {
		snprintf(sl->errmsg, sizeof(sl->errmsg), "sandbox setup timed out");
		kill_slot(sl, EXEC_REASON_SANDBOX_ERROR);
	} else {
		kill_slot(sl, EXEC_REASON_WALL_TIMEOUT);
	}
}

/*
 * The CPU-time limit over the whole sandbox: the cgroup adds up every
 * process and thread, where RLIMIT_CPU (still set, as a backstop) counts
 * each process alone and a program that forks would get N times the limit.
 */
static void handle_tick(struct sup *s)
{
	uint64_t ticks;

	if (read(s->tick_fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		fatal("timerfd read");
	for (unsigned i = 0; i < s->nslots; i++) {
		struct slot *sl = &s->slots[i];
		if (!sl->used || !sl->ready || sl->kill_reason != EXEC_REASON_UNSPECIFIED)
			continue;
		if (cg_cpu_us(sl->idx) >= sl->cpu_base_us + (uint64_t)sl->limits.cpu_time_ms * 1000)
			kill_slot(sl, EXEC_REASON_CPU_TIMEOUT);
	}
}

/* Runs a runtime's version command on the host (trusted binaries, at start). */
static void probe_version(const struct runtime *rt, char *out, size_t len)
{
	posix_spawn_file_actions_t fa;
	int p[2];
	pid_t pid;
	ssize_t n = 0, k;
	char buf[256];

	snprintf(out, len, "unknown");
	if (rt->version_argv[0] == NULL) {
		snprintf(out, len, "capibox %s", CAPIBOX_VERSION);
		return;
	}
	if (pipe2(p, O_CLOEXEC) < 0)
		return;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	if (posix_spawn(&pid, rt->version_argv[0], &fa, NULL, (char *const *)rt->version_argv,
			environ) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		close(p[0]);
		close(p[1]);
		snprintf(out, len, "not installed");
		return;
	}
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	while (n < (ssize_t)sizeof(buf) - 1 &&
	       (k = read(p[0], buf + n, sizeof(buf) - 1 - (size_t)n)) != 0) {
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			break;
		n += k;
	}
	close(p[0]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if (buf[0])
		snprintf(out, len, "%.*s", (int)len - 1, buf);
}

void supervisor_main(const struct config *cfg, int sock)
{
	struct sup s = {.cfg = cfg, .sock = sock};
	struct ipc_hello hello;
	union ipc_msg *msg = malloc(IPC_MAX_PACKET);
	sigset_t mask;

	log_init("supervisor");
	if (msg == NULL)
		fatal("malloc");
	/* sandboxes are cloned from us: carry no supplementary groups into them */
	if (setgroups(0, NULL) < 0)
		fatal("setgroups");
	if (mkdir(cfg->state_dir, 0711) < 0 && errno != EEXIST)
		fatal("mkdir %s", cfg->state_dir);
	snprintf(s.root_dir, sizeof(s.root_dir), "%s/root", cfg->state_dir);
	if (mkdir(s.root_dir, 0755) < 0 && errno != EEXIST)
		fatal("mkdir %s", s.root_dir);
	/* twice the front's count: a sandbox whose EXITED went out at its DONE
	 * keeps its slot (and host uid) until its init is reaped, while the
	 * front may already have started the next one */
	s.nslots = cfg->max_live < cfg->uid_count / 2 ? 2 * cfg->max_live : cfg->uid_count;
	s.slots = calloc(s.nslots, sizeof(*s.slots));
	if (s.slots == NULL)
		fatal("calloc");

	memset(&hello, 0, sizeof(hello));
	hello.type = IPC_HELLO;
	hello.cgroup_mode = cg_init(cfg->cgroup_root, hello.cgroup, sizeof(hello.cgroup));
	if (cg_setup(s.nslots) < 0)
		fatal("calloc");
	log_info("limits: %s", hello.cgroup);
	hello.n_runtimes = (uint32_t)runtime_count();
	for (size_t i = 0; i < runtime_count() && i < IPC_MAX_RUNTIMES; i++)
		probe_version(runtime_at(i), hello.versions[i], IPC_VERSION_LEN);

	/* sandbox inits are our forks and show as pid 1 inside: they must not
	 * carry capiboxd's arguments or environment */
	if (clearenv() != 0)
		fatalx("clearenv failed");
	proctitle_set("capiboxd: supervisor");

	/* SIGTERM/SIGINT stay blocked here: the front decides when we stop
	 * (by closing the socket), so a Ctrl-C to the process group cannot cut
	 * running executions short of their grace period */
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	s.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	s.ep = epoll_create1(EPOLL_CLOEXEC);
	if (s.sigfd < 0 || s.ep < 0)
		fatal("signalfd/epoll");
	ep_add(&s, s.sock, EV_IPC, 0);
	ep_add(&s, s.sigfd, EV_SIGNAL, 0);
	s.tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (s.tick_fd < 0)
		fatal("timerfd_create");
	ep_add(&s, s.tick_fd, EV_TICK, 0);
	for (unsigned i = 0; i < s.nslots; i++)
		s.slots[i].pidfd = -1;
	zygote_init(&s);
	send_msg(&s, &hello, sizeof(hello));

	for (;;) {
		struct epoll_event evs[32];
		int n = epoll_wait(s.ep, evs, 32, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fatal("epoll_wait");
		for (int i = 0; i < n; i++) {
			enum ev_kind k = (enum ev_kind)(evs[i].data.u64 >> 32);
			unsigned idx = (unsigned)(evs[i].data.u64 & 0xffffffffu);
			if (k == EV_IPC) {
				int fds[IPC_SPAWN_FDS];
				size_t len;
				for (int j = 0; j < IPC_SPAWN_FDS; j++)
					fds[j] = -1;
				len = ipc_recv(s.sock, msg, fds);
				if (len == 0)
					goto front_gone;
				if (msg->type == IPC_SPAWN) {
					handle_spawn(&s, &msg->spawn, fds);
				} else if (msg->type == IPC_TAKE) {
					handle_take(&s, msg, len, fds[0]);
				} else if (msg->type == IPC_KILL) {
					struct slot *sl = find_slot(&s, msg->kill.id);
					if (sl != NULL)
						kill_slot(sl, (enum exec_reason)msg->kill.reason);
				} else {
					fatalx("ipc: unexpected packet type %u from front",
					       msg->type);
				}
			} else if (k == EV_TICK) {
				handle_tick(&s);
			} else if (k == EV_ZYGOTE) {
				zygote_event(&s, idx);
			} else if (k == EV_ZTIMER) {
				if (idx < ZK_N)
					zygote_timer(&s, (enum zkind)idx);
			} else if (k == EV_SIGNAL) {
				struct signalfd_siginfo si;
				while (read(s.sigfd, &si, sizeof(si)) > 0)
					;
				reap(&s);
			} else if (idx < s.nslots && s.slots[idx].used) {
				if (k == EV_REPORT && s.slots[idx].report_fd >= 0) {
					struct slot *sl = &s.slots[idx];
					read_reports(&s, sl);
					if (sl->used && sl->done && !sl->exited_sent)
						send_exited_slot(&s, sl, 0);
				} else if (k == EV_TIMER)
					handle_timer(&s, &s.slots[idx]);
				else if (k == EV_PIDFD)
					/* a zygote's sandbox: its init and every process
					 * of its pid namespace are gone. No wait status
					 * for a non-child: init's EXIT report says it */
					finish_slot(&s, &s.slots[idx],
						    s.slots[idx].got_exit ? 0 : SIGKILL);
			}
		}
	}
front_gone:
	for (unsigned i = 0; i < s.nslots; i++)
		if (s.slots[i].used)
			kill_slot(&s.slots[i], EXEC_REASON_CANCELLED);
	/* the zygotes' sandboxes end with them; each one's pidfd says when */
	zygote_shutdown(&s);
	for (unsigned i = 0; i < s.nslots; i++)
		if (s.slots[i].used && s.slots[i].pidfd >= 0) {
			struct pollfd p = {.fd = s.slots[i].pidfd, .events = POLLIN};
			while (poll(&p, 1, -1) < 0 && errno == EINTR)
				;
			finish_slot(&s, &s.slots[i], SIGKILL);
		}
	while (s.live > 0) {
		int status;
		pid_t pid = waitpid(-1, &status, 0);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid < 0)
			break;
		for (unsigned i = 0; i < s.nslots; i++)
			if (s.slots[i].used && s.slots[i].pid == pid) {
				finish_slot(&s, &s.slots[i], status);
				break;
			}
	}
	cg_remove_all();
	_exit(0);
}

int supervisor_start(const struct config *cfg, pid_t *pid, struct ipc_hello *hello)
{
	posix_spawn_file_actions_t fa;
	union ipc_msg *msg = NULL;
	int sv[2], fds[IPC_SPAWN_FDS], rc;
	const char *why = NULL;
	ssize_t len;
	char max_live[16], uid_base[16], uid_count[16], parent[16], recycle[16];
	unsigned slots;
	int py = runtime_find("python");
	char *argv[] = {
		(char *)"capibox-supervisor",
		(char *)"--state-dir",
		(char *)cfg->state_dir,
		(char *)"--max-live",
		max_live,
		(char *)"--uid-base",
		uid_base,
		(char *)"--uid-count",
		uid_count,
		(char *)"--cgroup-root",
		(char *)cfg->cgroup_root,
		(char *)"--parent",
		parent,
		NULL, /* the zygote's options, when it is on */
		NULL,
		NULL,
		NULL,
		NULL,
	};
	/* nothing of ours but the log format (log.c reads it) */
	char *const envp[] = {log_is_json() ? (char *)"CAPIBOX_LOG_FORMAT=json" : NULL, NULL};

	/* sandbox slots: running executions, open sessions and the warm pools */
	slots = cfg->max_live + cfg->max_sessions;
	for (size_t i = 0; i < CONFIG_MAX_RUNTIMES; i++)
		slots += cfg->pool_target[i] > cfg->pool_max[i] ? cfg->pool_target[i] :
								  cfg->pool_max[i];
	snprintf(max_live, sizeof(max_live), "%u", slots);
	snprintf(uid_base, sizeof(uid_base), "%u", cfg->uid_base);
	snprintf(uid_count, sizeof(uid_count), "%u", cfg->uid_count);
	snprintf(parent, sizeof(parent), "%d", (int)getpid());
	/* the zygote makes python's warm sandboxes: only worth it with a pool */
	if (cfg->zygote && py >= 0 && py < CONFIG_MAX_RUNTIMES && cfg->pool_target[py] > 0) {
		size_t n = sizeof(argv) / sizeof(argv[0]) - 5;
		snprintf(recycle, sizeof(recycle), "%u", cfg->zygote_recycle);
		argv[n++] = (char *)"--zygote-preload";
		argv[n++] = (char *)(cfg->zygote_preload ? cfg->zygote_preload : "");
		argv[n++] = (char *)"--zygote-recycle";
		argv[n++] = recycle;
	}
	ipc_socketpair(sv);
	/*
	 * posix_spawn (vfork + exec) rather than fork: it is safe from the
	 * multi-threaded front, where a restart happens. The supervisor is a
	 * fresh, small program: no gRPC mappings to copy on every sandbox
	 * clone, no front memory, no environment.
	 */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], SUPERVISOR_FD);
	rc = posix_spawn(pid, cfg->supervisor_path, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	if (rc != 0) {
		log_warnx("spawn %s: %s", cfg->supervisor_path, strerror(rc));
		goto fail;
	}
	msg = malloc(IPC_MAX_PACKET);
	if (msg == NULL)
		fatal("malloc");
	len = ipc_read(sv[0], msg, fds, &why);
	if (len <= 0 || msg->type != IPC_HELLO) {
		log_warnx("supervisor start-up failed: %s", len < 0  ? why :
							    len == 0 ? "it exited" :
								       "no HELLO");
		kill(*pid, SIGKILL);
		while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
			;
		goto fail;
	}
	*hello = msg->hello;
	free(msg);
	return sv[0];
fail:
	free(msg);
	close(sv[0]);
	return -1;
}
