/*
 * The hostile-code suite: real programs (tests/security/programs/) in
 * python, bash and javascript that attack the sandbox the way users' code
 * and attackers do. Each case asserts containment (the attack fails, the
 * limit that should stop it stops it and is reported) and then that the
 * server is healthy and the host clean: a normal run succeeds, and no
 * process in the sandbox uid range, no cgroup of the supervisor, no new
 * mount, temp entry or state-dir entry is left.
 *
 * Every case prints "case FAMILY/NAME: contained" or what went wrong; each
 * test ends with "family X: N cases, N contained" and fails unless all
 * were; main prints the whole summary.
 *
 * The daemon runs with --tmpfs-mb 32 so disk fills are quick. Sandbox host
 * uids: slot 5 of the harness's ranges (tests/integration uses 0-4).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "hostile.h"

#define MIB (1024ULL * 1024ULL)
#define EXECUTE "/capibox.v1.SandboxService/Execute"

static struct daemon daemon_;
static char canary_path[64];
static char canary_token[96];

/* A world-readable file in the host's /tmp: only isolation keeps it from the sandbox. */
static void plant_canary(void)
{
	int fd;

	snprintf(canary_path, sizeof(canary_path), "/tmp/capibox-sec-canary-XXXXXX");
	fd = mkstemp(canary_path);
	assert_true(fd >= 0);
	snprintf(canary_token, sizeof(canary_token), "capibox-canary-%ld-%ld", (long)getpid(),
		 (long)time(NULL));
	assert_int_equal(write(fd, canary_token, strlen(canary_token)),
			 (ssize_t)strlen(canary_token));
	assert_int_equal(fchmod(fd, 0644), 0);
	close(fd);
}

static int setup(void **state)
{
	static const char *const extra[] = {"--tmpfs-mb", "32", NULL};
	static const struct daemon_opts opts = {.uid_slot = 5, .extra = extra};
	struct run r = {0};

	harness_group_setup(state, &daemon_, &opts);
	if (daemon_.client == NULL)
		return 0;
	plant_canary();
	/* a first run creates whatever the daemon makes lazily */
	harness_run_code(&daemon_, "python", "print(1)\n", &r);
	hostile_note_sandbox_id(r.sandbox_id);
	harness_run_free(&r);
	if (hostile_supervisor_pid(&daemon_) == 0)
		printf("note: no \"capiboxd: supervisor\" child of capiboxd found\n");
	hostile_set_baseline(&daemon_);
	printf("baseline: supervisor pid %ld, %zu idle warm sandboxes (pool target %zu), "
	       "%zu other sandbox processes, %zu other sandbox cgroups, %zu temp entries, "
	       "%zu state-dir entries\n",
	       (long)hostile_supervisor_pid(&daemon_), hostile_baseline()->warm,
	       hostile_baseline()->warm_target, hostile_baseline()->procs,
	       hostile_baseline()->cgroups, hostile_baseline()->temp.n,
	       hostile_baseline()->state.n);
	return 0;
}

static int teardown(void **state)
{
	if (canary_path[0] != '\0')
		unlink(canary_path);
	return harness_group_teardown(state);
}

/* Reads a file of the host into buf (NUL-terminated); -1 when it cannot. */
static int host_read(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return (int)n;
}

/* --- fork bomb ------------------------------------------------------------------ */

static void fork_case(struct daemon *d, const char *lang, const char *prog)
{
	const struct capibox_limits lim = {.wall_time_ms = 2000, .max_processes = 16};
	struct run r = {0};
	struct verdict v;
	struct sampler *s;
	size_t most;

	verdict_init(&v);
	s = hostile_sampler_start(d);
	hostile_run_program(d, lang, prog, &lim, NULL, 0, &r);
	most = hostile_sampler_stop(s);
	verdict_one_finished(&v, &r);
	if (r.n_finished == 1 && r.reason != CAPIBOX_REASON_WALL_TIMEOUT &&
	    r.reason != CAPIBOX_REASON_CPU_TIMEOUT && r.reason != CAPIBOX_REASON_EXITED)
		verdict_fail(
			&v, "expected the run to end by its wall or CPU time or by exiting, got %s",
			capibox_reason_name(r.reason));
	if (r.t_end > 5.0)
		verdict_fail(&v, "the call took %.1f s with a 2 s wall limit", r.t_end);
	/* the pids limit counts the sandbox's init too */
	if (most > lim.max_processes + 1)
		verdict_fail(&v, "%zu host processes of one sandbox (uid) at once; limit %u + init",
			     most, lim.max_processes);
	if (strcmp(prog, "fork_bomb.py") == 0) {
		unsigned ok = 0, failed = 0;
		char err[32] = "";

		if (sscanf((const char *)r.out, "forked %u failed %u %31s", &ok, &failed, err) != 3)
			verdict_fail(&v, "no \"forked N failed M ERR\" line");
		else if (ok > lim.max_processes || failed == 0 || strcmp(err, "EAGAIN") != 0)
			verdict_fail(&v,
				     "forked %u, failed %u (%s): expected forks to fail with "
				     "EAGAIN at %u processes",
				     ok, failed, err, lim.max_processes);
	} else if (strcmp(prog, "fork_bomb.js") == 0) {
		unsigned ok = 0, failed = 0;
		char err[32] = "";

		if (sscanf((const char *)r.out, "spawned %u failed %u %31s", &ok, &failed, err) !=
		    3)
			verdict_fail(&v, "no \"spawned N failed M CODE\" line");
		else if (failed == 0 || strcmp(err, "EAGAIN") != 0)
			verdict_fail(&v, "spawned %u, failed %u (%s): expected EAGAIN", ok, failed,
				     err);
	}
	printf("%s: at most %zu processes at once (limit %u), ended %s after %.2f s\n", prog, most,
	       lim.max_processes, capibox_reason_name(r.reason), r.t_end);
	hostile_case_end(d, "fork_bomb", prog, &r, &v);
	harness_run_free(&r);
}

static void test_fork_bomb(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	fork_case(d, "python", "fork_bomb.py");
	fork_case(d, "bash", "fork_bomb.sh");
	fork_case(d, "javascript", "fork_bomb.js");
	hostile_family_require("fork_bomb");
}

/* --- memory bomb ------------------------------------------------------------------ */

static void memory_case(struct daemon *d, const char *lang, const char *prog)
{
	const struct capibox_limits lim = {.wall_time_ms = 20000, .memory_bytes = 96 * MIB};
	struct run r = {0};
	struct verdict v;

	verdict_init(&v);
	hostile_run_program(d, lang, prog, &lim, NULL, 0, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_MEMORY_LIMIT);
	verdict_output_lacks(&v, &r, "allocated");
	if (r.peak_memory_bytes < lim.memory_bytes / 2 ||
	    r.peak_memory_bytes > lim.memory_bytes + 4 * MIB)
		verdict_fail(&v, "peak memory reported %llu bytes; expected about the limit %llu",
			     (unsigned long long)r.peak_memory_bytes,
			     (unsigned long long)lim.memory_bytes);
	printf("%s: %s after %.2f s, peak %.1f MiB (limit %llu MiB)\n", prog,
	       capibox_reason_name(r.reason), r.t_end, r.peak_memory_bytes / (double)MIB,
	       (unsigned long long)(lim.memory_bytes / MIB));
	hostile_case_end(d, "memory_bomb", prog, &r, &v);
	harness_run_free(&r);
}

static void test_memory_bomb(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	memory_case(d, "python", "mem_big.py");
	memory_case(d, "python", "mem_creep.py");
	memory_case(d, "bash", "mem_big.sh");
	memory_case(d, "bash", "mem_creep.sh");
	memory_case(d, "javascript", "mem_big.js");
	memory_case(d, "javascript", "mem_creep.js");
	hostile_family_require("memory_bomb");
}

/* --- disk fill ---------------------------------------------------------------------- */

static void disk_case(struct daemon *d, const char *lang, const char *prog, const char *expect)
{
	/* a file-size limit above the tmpfs size: the device must fill first */
	const struct capibox_limits lim = {.wall_time_ms = 30000, .max_file_bytes = 1024 * MIB};
	struct run r = {0};
	struct verdict v;

	verdict_init(&v);
	hostile_run_program(d, lang, prog, &lim, NULL, 0, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	if (r.exit_code != 0)
		verdict_fail(&v, "exit code %d", r.exit_code);
	verdict_stdout_is(&v, &r, expect);
	hostile_case_end(d, "disk_fill", prog, &r, &v);
	harness_run_free(&r);
}

static void test_disk_fill(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	disk_case(d, "python", "disk_fill.py",
		  "/home/user files ENOSPC big ENOSPC\n/tmp files ENOSPC big ENOSPC\ncontinued\n");
	disk_case(d, "bash", "disk_fill.sh", "/home/user ENOSPC\n/tmp ENOSPC\ncontinued\n");
	disk_case(d, "javascript", "disk_fill.js", "/home/user ENOSPC\n/tmp ENOSPC\ncontinued\n");
	hostile_family_require("disk_fill");
}

/* --- endless output ------------------------------------------------------------------ */

static void output_case(struct daemon *d, const char *lang, const char *prog)
{
	/* not a multiple of any write size the programs use */
	const struct capibox_limits lim = {.wall_time_ms = 20000, .max_output_bytes = 100000};
	struct run r = {0};
	struct verdict v;

	verdict_init(&v);
	hostile_run_program(d, lang, prog, &lim, NULL, 0, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_OUTPUT_LIMIT);
	if (r.out_len + r.err_len != lim.max_output_bytes)
		verdict_fail(&v, "the client got %zu + %zu bytes; expected exactly the limit %llu",
			     r.out_len, r.err_len, (unsigned long long)lim.max_output_bytes);
	if (r.stdout_bytes + r.stderr_bytes != lim.max_output_bytes)
		verdict_fail(&v, "Finished reports %llu + %llu bytes; expected the limit %llu",
			     (unsigned long long)r.stdout_bytes, (unsigned long long)r.stderr_bytes,
			     (unsigned long long)lim.max_output_bytes);
	printf("%s: %s, client got %zu stdout + %zu stderr bytes\n", prog,
	       capibox_reason_name(r.reason), r.out_len, r.err_len);
	hostile_case_end(d, "endless_output", prog, &r, &v);
	harness_run_free(&r);
}

static void test_endless_output(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	output_case(d, "bash", "output.sh");
	output_case(d, "python", "output.py");
	output_case(d, "javascript", "output.js");
	hostile_family_require("endless_output");
}

/* --- busy loop ------------------------------------------------------------------------- */

static void busy_cpu_case(struct daemon *d, const char *lang, const char *prog)
{
	const struct capibox_limits lim = {.cpu_time_ms = 1000, .wall_time_ms = 8000};
	struct run r = {0};
	struct verdict v;
	char name[64];

	verdict_init(&v);
	hostile_run_program(d, lang, prog, &lim, NULL, 0, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_CPU_TIMEOUT);
	if (r.cpu_time_us < 900000)
		verdict_fail(&v, "cpu_time reported %llu us; expected at least ~ the limit 1 s",
			     (unsigned long long)r.cpu_time_us);
	/* the sandbox's total is what is limited: several busy processes must
	 * not get the limit each */
	if (r.cpu_time_us > 1600000)
		verdict_fail(&v, "cpu_time reported %llu us: the 1 s limit was overshot by far",
			     (unsigned long long)r.cpu_time_us);
	if (r.wall_time_us >= 5000000)
		verdict_fail(&v, "wall_time %llu us: the CPU limit did not end it",
			     (unsigned long long)r.wall_time_us);
	printf("%s (cpu limit): %s, cpu %.3f s, wall %.3f s\n", prog, capibox_reason_name(r.reason),
	       r.cpu_time_us / 1e6, r.wall_time_us / 1e6);
	snprintf(name, sizeof(name), "%s cpu", prog);
	hostile_case_end(d, "busy_loop", name, &r, &v);
	harness_run_free(&r);
}

static void busy_wall_case(struct daemon *d, const char *lang, const char *prog)
{
	const struct capibox_limits lim = {.cpu_time_ms = 30000, .wall_time_ms = 1000};
	struct run r = {0};
	struct verdict v;
	char name[64];

	verdict_init(&v);
	hostile_run_program(d, lang, prog, &lim, NULL, 0, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_WALL_TIMEOUT);
	if (r.wall_time_us < 1000000 || r.wall_time_us > 2500000)
		verdict_fail(&v, "wall_time reported %llu us; expected about the 1 s limit",
			     (unsigned long long)r.wall_time_us);
	if (r.t_end > 4.0)
		verdict_fail(&v, "the call took %.1f s with a 1 s wall limit", r.t_end);
	printf("%s (wall limit): %s, cpu %.3f s, wall %.3f s\n", prog,
	       capibox_reason_name(r.reason), r.cpu_time_us / 1e6, r.wall_time_us / 1e6);
	snprintf(name, sizeof(name), "%s wall", prog);
	hostile_case_end(d, "busy_loop", name, &r, &v);
	harness_run_free(&r);
}

static void test_busy_loop(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	busy_cpu_case(d, "python", "busy.py");
	busy_cpu_case(d, "bash", "busy.sh");
	busy_cpu_case(d, "javascript", "busy.js");
	busy_cpu_case(d, "bash", "busy_multi.sh");
	busy_wall_case(d, "python", "busy.py");
	busy_wall_case(d, "bash", "busy.sh");
	busy_wall_case(d, "javascript", "busy.js");
	hostile_family_require("busy_loop");
}

/* --- sleep ------------------------------------------------------------------------------- */

static void sleep_case(struct daemon *d, const char *lang, const char *prog)
{
	const struct capibox_limits lim = {.wall_time_ms = 1000};
	struct run r = {0};
	struct verdict v;

	verdict_init(&v);
	hostile_run_program(d, lang, prog, &lim, NULL, 0, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_WALL_TIMEOUT);
	verdict_stdout_is(&v, &r, "sleeping\n");
	if (r.wall_time_us < 1000000 || r.wall_time_us > 2500000)
		verdict_fail(&v, "wall_time reported %llu us; expected about the 1 s limit",
			     (unsigned long long)r.wall_time_us);
	if (r.t_end > 4.0)
		verdict_fail(&v, "the call took %.1f s with a 1 s wall limit", r.t_end);
	hostile_case_end(d, "sleep", prog, &r, &v);
	harness_run_free(&r);
}

static void test_sleep(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	sleep_case(d, "python", "sleep.py");
	sleep_case(d, "bash", "sleep.sh");
	sleep_case(d, "javascript", "sleep.js");
	hostile_family_require("sleep");
}

/* --- daemons -------------------------------------------------------------------------------- */

struct daemon_watch {
	const char *marker;
	bool done, seen;
};

/* Once "daemonised" is printed, the daemon's marker process must be on the host. */
static int daemon_hook(const struct capibox_event *ev, struct run *r, void *arg)
{
	struct daemon_watch *w = arg;
	double end;

	if (w->done || ev->kind != CAPIBOX_EVENT_STDOUT ||
	    strstr((const char *)r->out, "daemonised") == NULL)
		return 0;
	w->done = true;
	end = harness_now() + 1.0;
	do {
		if (harness_find_procs(w->marker, NULL, 0) > 0) {
			w->seen = true;
			break;
		}
		harness_sleep_ms(10);
	} while (harness_now() < end);
	return 0;
}

static void daemon_case(struct daemon *d, const char *lang, const char *prog, unsigned n)
{
	const struct capibox_limits lim = {.wall_time_ms = 10000};
	char mark[32], marker[48];
	const struct capibox_env env[] = {{"DAEMON_MARK", mark}};
	struct daemon_watch w = {.marker = marker};
	struct run r = {.hook = daemon_hook, .hook_arg = &w};
	struct verdict v;

	/*
	 * A sleep length of this test process's own, so runs of other test
	 * binaries at the same time (ctest -j) never match; the trailing space
	 * ends the joined argv, so "sleep 123" does not match "sleep 1234".
	 */
	snprintf(mark, sizeof(mark), "%lu", 7000000UL + (unsigned long)getpid() * 4UL + n);
	snprintf(marker, sizeof(marker), "sleep %s ", mark);
	verdict_init(&v);
	hostile_run_program(d, lang, prog, &lim, env, 1, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	verdict_stdout_has(&v, &r, "daemonised");
	if (!w.seen)
		verdict_fail(&v,
			     "never saw the daemon (\"%s\") on the host while the run was on: "
			     "the case proves nothing",
			     marker);
	/* the run ends when the program exits, not when its daemon does */
	if (r.t_end > 5.0)
		verdict_fail(&v, "the call took %.1f s: it waited for the daemon", r.t_end);
	if (!harness_wait_no_procs(marker, 2000))
		verdict_fail(&v, "the daemon (\"%s\") outlived its run by 2 s", marker);
	hostile_case_end(d, "daemons", prog, &r, &v);
	harness_run_free(&r);
}

static void test_daemons(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	daemon_case(d, "python", "daemon.py", 1);
	daemon_case(d, "bash", "daemon.sh", 2);
	daemon_case(d, "javascript", "daemon.js", 3);
	hostile_family_require("daemons");
}

/* --- network ------------------------------------------------------------------------------- */

/* First non-loopback IPv4 address of the host, or "" when there is none. */
static void host_ipv4(char *buf, size_t len)
{
	struct ifaddrs *ifa, *p;

	buf[0] = '\0';
	if (getifaddrs(&ifa) == -1)
		return;
	for (p = ifa; p != NULL; p = p->ifa_next)
		if (p->ifa_addr != NULL && p->ifa_addr->sa_family == AF_INET &&
		    !(p->ifa_flags & IFF_LOOPBACK) && (p->ifa_flags & IFF_UP)) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)p->ifa_addr)->sin_addr, buf,
				  (socklen_t)len);
			break;
		}
	freeifaddrs(ifa);
}

struct listeners {
	int tcp, udp, unix_fd;
	unsigned tcp_port, udp_port;
	char abstract[64];
};

static unsigned bound_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	return ntohs(sa.sin_port);
}

/* Listeners on every host address (TCP, UDP) and an abstract Unix socket. */
static void listeners_open(struct listeners *l)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
	struct sockaddr_un su = {.sun_family = AF_UNIX};
	socklen_t sul;

	l->tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	l->udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	l->unix_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(l->tcp >= 0 && l->udp >= 0 && l->unix_fd >= 0);
	assert_int_equal(bind(l->tcp, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l->tcp, 16), 0);
	assert_int_equal(bind(l->udp, (struct sockaddr *)&sa, sizeof(sa)), 0);
	l->tcp_port = bound_port(l->tcp);
	l->udp_port = bound_port(l->udp);
	snprintf(l->abstract, sizeof(l->abstract), "capibox-sec-%ld", (long)getpid());
	memcpy(su.sun_path + 1, l->abstract, strlen(l->abstract));
	sul = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(l->abstract));
	assert_int_equal(bind(l->unix_fd, (struct sockaddr *)&su, sul), 0);
	assert_int_equal(listen(l->unix_fd, 16), 0);
}

static void listeners_close(struct listeners *l)
{
	close(l->tcp);
	close(l->udp);
	close(l->unix_fd);
}

/* True when anything reached one of the listeners (and drains it). */
static bool listeners_reached(struct listeners *l, char *what, size_t len)
{
	char buf[256];
	int fd;

	what[0] = '\0';
	if ((fd = accept4(l->tcp, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		close(fd);
		snprintf(what, len, "a TCP connection reached the host listener");
		return true;
	}
	if (recv(l->udp, buf, sizeof(buf), 0) >= 0) {
		snprintf(what, len, "a UDP datagram reached the host socket");
		return true;
	}
	if ((fd = accept4(l->unix_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		close(fd);
		snprintf(what, len, "a connection reached the host's abstract Unix socket");
		return true;
	}
	return false;
}

/* The host itself reaches the listeners (so a refusal inside is the sandbox's doing). */
static void listeners_sanity(struct listeners *l, const char *ip)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)l->tcp_port)};
	struct sockaddr_un su = {.sun_family = AF_UNIX};
	socklen_t sul =
		(socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(l->abstract));
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char what[128];

	assert_int_equal(inet_pton(AF_INET, ip[0] ? ip : "127.0.0.1", &sa.sin_addr), 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	harness_sleep_ms(50);
	assert_true(listeners_reached(l, what, sizeof(what)));
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	sa.sin_port = htons((uint16_t)l->udp_port);
	assert_int_equal(sendto(fd, "x", 1, 0, (struct sockaddr *)&sa, sizeof(sa)), 1);
	close(fd);
	harness_sleep_ms(50);
	assert_true(listeners_reached(l, what, sizeof(what)));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memcpy(su.sun_path + 1, l->abstract, strlen(l->abstract));
	assert_int_equal(connect(fd, (struct sockaddr *)&su, sul), 0);
	close(fd);
	harness_sleep_ms(50);
	assert_true(listeners_reached(l, what, sizeof(what)));
	assert_false(listeners_reached(l, what, sizeof(what)));
}

static void network_case(struct daemon *d, struct listeners *l, const char *lang, const char *prog,
			 const struct capibox_env *env, size_t n_env, const char *expect)
{
	const struct capibox_limits lim = {.wall_time_ms = 20000};
	struct run r = {0};
	struct verdict v;
	char what[128];

	verdict_init(&v);
	hostile_run_program(d, lang, prog, &lim, env, n_env, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	verdict_stdout_is(&v, &r, expect);
	verdict_output_lacks(&v, &r, "CONNECTED");
	harness_sleep_ms(100);
	if (listeners_reached(l, what, sizeof(what)))
		verdict_fail(&v, "%s", what);
	hostile_case_end(d, "network", prog, &r, &v);
	harness_run_free(&r);
}

static void test_network(void **state)
{
	struct daemon *d = *state;
	struct listeners l;
	char ip[64], sport[16], lport[16], uport[16], expect[2048];
	struct capibox_env env[5];
	size_t off;

	HARNESS_REQUIRE(d);
	assert_true(d->port > 0);
	host_ipv4(ip, sizeof(ip));
	listeners_open(&l);
	listeners_sanity(&l, ip);
	if (ip[0] == '\0')
		printf("note: the host has no non-loopback IPv4 address; probing loopback only\n");
	snprintf(sport, sizeof(sport), "%u", d->port);
	snprintf(lport, sizeof(lport), "%u", l.tcp_port);
	snprintf(uport, sizeof(uport), "%u", l.udp_port);
	env[0] = (struct capibox_env){"SERVER_PORT", sport};
	env[1] = (struct capibox_env){"LISTEN_PORT", lport};
	env[2] = (struct capibox_env){"UDP_PORT", uport};
	env[3] = (struct capibox_env){"HOST_IP", ip};
	env[4] = (struct capibox_env){"ABSTRACT", l.abstract};

	/*
	 * Documentation addresses only (TEST-NET-2 and -3): this machine's
	 * own address may sit in TEST-NET-1 (192.0.2.0/24), where .1 can be
	 * its real gateway, so that range is not probed.
	 */
	off = (size_t)snprintf(expect, sizeof(expect),
			       "interfaces ['lo']\n"
			       "tcp 127.0.0.1 %s blocked\ntcp 127.0.0.1 %s blocked\n",
			       sport, lport);
	if (ip[0])
		off += (size_t)snprintf(expect + off, sizeof(expect) - off,
					"tcp %s %s blocked\ntcp %s %s blocked\n", ip, lport, ip,
					sport);
	off += (size_t)snprintf(expect + off, sizeof(expect) - off,
				"tcp 198.51.100.1 80 blocked\ntcp 203.0.113.1 443 blocked\n"
				/* the sandbox's own loopback: sent, to nobody */
				"udp 127.0.0.1 %s sent\n",
				uport);
	if (ip[0])
		off += (size_t)snprintf(expect + off, sizeof(expect) - off, "udp %s %s blocked\n",
					ip, uport);
	snprintf(expect + off, sizeof(expect) - off,
		 "udp 198.51.100.1 53 blocked\nabstract blocked\n"
		 "dns example.com failed\ndns localhost RESOLVED 127.0.0.1\n");
	network_case(d, &l, "python", "net.py", env, 5, expect);

	off = (size_t)snprintf(expect, sizeof(expect),
			       "tcp 127.0.0.1 %s blocked\ntcp 127.0.0.1 %s blocked\n", sport,
			       lport);
	if (ip[0])
		off += (size_t)snprintf(expect + off, sizeof(expect) - off, "tcp %s %s blocked\n",
					ip, lport);
	snprintf(expect + off, sizeof(expect) - off,
		 "tcp 198.51.100.1 80 blocked\ndns example.com failed\n");
	network_case(d, &l, "bash", "net.sh", env, 5, expect);

	off = (size_t)snprintf(expect, sizeof(expect),
			       "tcp 127.0.0.1 %s blocked\ntcp 127.0.0.1 %s blocked\n"
			       "tcp 198.51.100.1 80 blocked\n",
			       sport, lport);
	if (ip[0])
		off += (size_t)snprintf(expect + off, sizeof(expect) - off, "tcp %s %s blocked\n",
					ip, lport);
	snprintf(expect + off, sizeof(expect) - off,
		 "dns lookup example.com failed\ndns resolve example.com failed\n");
	network_case(d, &l, "javascript", "net.js", env, 5, expect);
	listeners_close(&l);
	hostile_family_require("network");
}

/* --- host secrets ------------------------------------------------------------------------------ */

static void secrets_case(struct daemon *d, const char *lang, const char *prog, const char *expect,
			 const char *tail)
{
	const struct capibox_limits lim = {.wall_time_ms = 20000};
	const struct capibox_env env[] = {{"CANARY", canary_path}};
	struct run r = {0};
	struct verdict v;

	verdict_init(&v);
	hostile_run_program(d, lang, prog, &lim, env, 1, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	if (tail == NULL)
		verdict_stdout_is(&v, &r, expect);
	else if (r.out_len < strlen(expect) || memcmp(r.out, expect, strlen(expect)) != 0)
		verdict_fail(&v, "stdout does not start with:\n---\n%s---", expect);
	if (tail != NULL)
		verdict_stdout_has(&v, &r, tail);
	/* whatever it dumped must hold neither the server's secret nor the canary */
	verdict_output_lacks(&v, &r, d->secret);
	verdict_output_lacks(&v, &r, canary_token);
	verdict_output_lacks(&v, &r, "READABLE");
	hostile_case_end(d, "host_secrets", prog, &r, &v);
	harness_run_free(&r);
}

static void test_host_secrets(void **state)
{
	struct daemon *d = *state;
	char expect[2048], buf[256];

	HARNESS_REQUIRE(d);
	/* sanity: the secrets exist on the host and are readable there */
	assert_true(host_read(canary_path, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, canary_token);
	assert_true(d->secret[0] != '\0');

	snprintf(expect, sizeof(expect),
		 "/etc/shadow denied\n/etc/gshadow denied\n/root denied\n/root/.bashrc denied\n"
		 "%s denied\n/proc/1/environ denied\n/proc/1/mem denied\n"
		 "/proc/1/root/etc/shadow denied\nown env has server secret: False\n",
		 canary_path);
	/* then one "dump" line per readable environ and cmdline, then the verdict */
	secrets_case(d, "python", "secrets.py", expect, "\nserver secret in /proc: False\n");
	snprintf(expect, sizeof(expect),
		 "/etc/shadow denied\n/etc/gshadow denied\n/root/.bashrc denied\n%s denied\n"
		 "/proc/1/environ denied\n/root denied\n0\n0\n",
		 canary_path);
	secrets_case(d, "bash", "secrets.sh", expect, NULL);
	snprintf(expect, sizeof(expect),
		 "/etc/shadow denied\n/root/.bashrc denied\n%s denied\n/proc/1/environ denied\n"
		 "/root denied\nown env has server secret: false\n",
		 canary_path);
	secrets_case(d, "javascript", "secrets.js", expect, NULL);
	hostile_family_require("host_secrets");
}

/* --- writing to the system ------------------------------------------------------------------- */

static const char *const probe_paths[] = {
	"/usr/capibox-probe",
	"/usr/bin/capibox-probe",
	"/usr/lib/capibox-probe",
	"/etc/capibox-probe",
	"/bin/capibox-probe",
	"/capibox-probe",
	"/usr/capibox-probe-dir",
	"/etc/capibox-probe-link",
	"/usr/lib/python3/capibox-probe.py",
	"/etc/profile.d/capibox-probe.sh",
};

struct file_id {
	bool exists;
	struct stat st;
};

static void file_id_of(const char *path, struct file_id *f)
{
	f->exists = lstat(path, &f->st) == 0;
}

static bool file_id_same(const struct file_id *a, const struct file_id *b)
{
	return a->exists == b->exists &&
	       (!a->exists ||
		(a->st.st_ino == b->st.st_ino && a->st.st_size == b->st.st_size &&
		 a->st.st_mode == b->st.st_mode && a->st.st_mtim.tv_sec == b->st.st_mtim.tv_sec &&
		 a->st.st_mtim.tv_nsec == b->st.st_mtim.tv_nsec));
}

static const char *const watched_files[] = {"/etc/passwd",  "/etc/hosts",    "/usr/bin/python3",
					    "/usr/bin/env", "/usr/bin/bash", "/etc/ld.so.cache"};
#define N_WATCHED (sizeof(watched_files) / sizeof(watched_files[0]))

static void write_case(struct daemon *d, const char *lang, const char *prog)
{
	const struct capibox_limits lim = {.wall_time_ms = 20000};
	struct file_id before[N_WATCHED], after;
	struct run r = {0};
	struct verdict v;

	verdict_init(&v);
	for (size_t i = 0; i < N_WATCHED; i++)
		file_id_of(watched_files[i], &before[i]);
	hostile_run_program(d, lang, prog, &lim, NULL, 0, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	verdict_stdout_has(&v, &r, "denied");
	verdict_output_lacks(&v, &r, "WRITABLE");
	verdict_output_lacks(&v, &r, "ALLOWED");
	for (size_t i = 0; i < sizeof(probe_paths) / sizeof(probe_paths[0]); i++)
		if (access(probe_paths[i], F_OK) == 0) {
			verdict_fail(&v, "%s appeared on the host (removed now)", probe_paths[i]);
			unlink(probe_paths[i]);
			rmdir(probe_paths[i]);
		}
	for (size_t i = 0; i < N_WATCHED; i++) {
		file_id_of(watched_files[i], &after);
		if (!file_id_same(&before[i], &after))
			verdict_fail(&v, "host file %s changed", watched_files[i]);
	}
	hostile_case_end(d, "write_system", prog, &r, &v);
	harness_run_free(&r);
}

static void test_write_system(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	write_case(d, "bash", "write_system.sh");
	write_case(d, "python", "write_system.py");
	write_case(d, "javascript", "write_system.js");
	hostile_family_require("write_system");
}

/* --- raw system calls ----------------------------------------------------------------------- */

static void test_syscalls(void **state)
{
	static const char *const eperm[] = {
		"ptrace",
		"mount",
		"umount2",
		"pivot_root",
		"chroot",
		"unshare",
		"unshare_net",
		"setns",
		"clone_newuser",
		"clone_newpid",
		"bpf",
		"keyctl",
		"add_key",
		"request_key",
		"io_uring_setup",
		"perf_event_open",
		"userfaultfd",
		"process_vm_readv",
		"kcmp",
		"open_by_handle_at",
		"init_module",
		"finit_module",
		"kexec_load",
		"reboot",
		"swapon",
		"acct",
		"syslog",
		"quotactl",
	};
	const struct capibox_limits lim = {.wall_time_ms = 20000};
	struct daemon *d = *state;
	struct utsname u;
	struct run r = {0};
	struct verdict v;
	char expect[4096];
	size_t off = 0;

	HARNESS_REQUIRE(d);
	assert_int_equal(uname(&u), 0);
	if (strcmp(u.machine, "x86_64") != 0) {
		printf("note: syscalls.py knows x86_64 numbers only; skipped on %s\n", u.machine);
	} else {
		for (size_t i = 0; i < sizeof(eperm) / sizeof(eperm[0]); i++)
			off += (size_t)snprintf(expect + off, sizeof(expect) - off, "%s -1 EPERM\n",
						eperm[i]);
		snprintf(expect + off, sizeof(expect) - off, "clone3 -1 ENOSYS\nstill running\n");
		verdict_init(&v);
		hostile_run_program(d, "python", "syscalls.py", &lim, NULL, 0, &r);
		verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
		verdict_stdout_is(&v, &r, expect);
		hostile_case_end(d, "syscalls", "syscalls.py", &r, &v);
		harness_run_free(&r);
	}

	verdict_init(&v);
	hostile_run_program(d, "bash", "syscalls.sh", &lim, NULL, 0, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	verdict_stdout_is(&v, &r,
			  "unshare refused\nunshare refused\nnsenter refused\nmount refused\n"
			  "umount refused\nchroot refused\nstill running\n");
	hostile_case_end(d, "syscalls", "syscalls.sh", &r, &v);
	harness_run_free(&r);
	hostile_family_require("syscalls");
}

/* --- signals at other sandboxes -------------------------------------------------------------- */

struct victim {
	struct daemon *d;
	struct run r;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool up, done;
};

static int victim_hook(const struct capibox_event *ev, struct run *r, void *arg)
{
	struct victim *vi = arg;

	if (ev->kind == CAPIBOX_EVENT_STDOUT && strstr((const char *)r->out, "up") != NULL) {
		pthread_mutex_lock(&vi->mu);
		vi->up = true;
		pthread_cond_broadcast(&vi->cv);
		pthread_mutex_unlock(&vi->mu);
	}
	return 0;
}

static void *victim_main(void *arg)
{
	struct victim *vi = arg;
	const struct capibox_exec_request req = {
		.language = "bash",
		.code = "echo up\nsleep 3.01\necho survived\n",
		.limits = {.wall_time_ms = 20000},
	};

	vi->r.hook = victim_hook;
	vi->r.hook_arg = vi;
	harness_run(vi->d, &req, &vi->r);
	pthread_mutex_lock(&vi->mu);
	vi->done = true;
	pthread_cond_broadcast(&vi->cv);
	pthread_mutex_unlock(&vi->mu);
	return NULL;
}

static void signal_case(struct daemon *d, const char *lang, const char *prog)
{
	const struct capibox_limits lim = {.wall_time_ms = 20000};
	struct victim vi = {.d = d};
	struct capibox_env env[1];
	struct run r = {0};
	struct verdict v;
	pthread_t th;
	pid_t victim_pid = 0, sup_before, sup_after;
	char vpid[16];
	struct timespec until;

	verdict_init(&v);
	sup_before = hostile_supervisor_pid(d);
	pthread_mutex_init(&vi.mu, NULL);
	pthread_cond_init(&vi.cv, NULL);
	assert_int_equal(pthread_create(&th, NULL, victim_main, &vi), 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 15;
	pthread_mutex_lock(&vi.mu);
	while (!vi.up && !vi.done)
		if (pthread_cond_timedwait(&vi.cv, &vi.mu, &until) != 0)
			break;
	pthread_mutex_unlock(&vi.mu);
	if (!vi.up)
		verdict_fail(&v, "the victim never printed \"up\"");
	harness_find_procs("sleep 3.01", &victim_pid, 1);
	snprintf(vpid, sizeof(vpid), "%ld", (long)(victim_pid > 0 ? victim_pid : 1));
	env[0] = (struct capibox_env){"VICTIM_PID", vpid};

	hostile_run_program(d, lang, prog, &lim, env, 1, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	verdict_stdout_has(&v, &r, "attacker done");
	pthread_join(th, NULL);
	if (vi.r.rc != 0 || vi.r.n_finished != 1 || vi.r.reason != CAPIBOX_REASON_EXITED ||
	    vi.r.exit_code != 0 || strcmp((const char *)vi.r.out, "up\nsurvived\n") != 0) {
		verdict_fail(&v, "the victim sandbox did not finish REASON_EXITED 0 with "
				 "\"up\\nsurvived\\n\" (its run follows)");
		harness_run_print(&vi.r);
	} else if (vi.r.t_finished < r.t_end) {
		/* the attack must have happened while the victim lived */
		verdict_fail(&v, "the victim ended before the attacker did: no overlap");
	}
	sup_after = hostile_supervisor_pid(d);
	if (sup_before != sup_after)
		verdict_fail(&v, "the supervisor changed from pid %ld to %ld", (long)sup_before,
			     (long)sup_after);
	printf("%s: victim host pid %ld, victim %s \"%.*s\"\n", prog, (long)victim_pid,
	       capibox_reason_name(vi.r.reason), (int)vi.r.out_len - 1, (const char *)vi.r.out);
	harness_run_free(&vi.r);
	pthread_mutex_destroy(&vi.mu);
	pthread_cond_destroy(&vi.cv);
	hostile_case_end(d, "signals", prog, &r, &v);
	harness_run_free(&r);
}

static void test_signals(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	signal_case(d, "python", "kill.py");
	signal_case(d, "bash", "kill.sh");
	signal_case(d, "javascript", "kill.js");
	hostile_family_require("signals");
}

/* --- setuid binaries ------------------------------------------------------------------------- */

static void test_setuid(void **state)
{
	static const char *const want[] = {
		"newgrp shell uid: 1000\n",
		"newgrp group shell uid: 1000\n",
		"passwd refused\n",
		"mount refused\n",
		"chsh refused\n",
		"NoNewPrivs:\t1\n",
		"CapBnd:\t0000000000000000\n",
		"CapEff:\t0000000000000000\n",
		"uid 1000 euid 1000 groups 1000\n",
		"setuid binary /usr/bin/",
	};
	static const char *const py_calls[] = {
		"setuid(0) E", "seteuid(0) E",	   "setresuid(0) E",
		"setgid(0) E", "setgroups([0]) E", "chown /home/user to 0 E",
	};
	const struct capibox_limits lim = {.wall_time_ms = 20000};
	struct daemon *d = *state;
	struct run r = {0};
	struct verdict v;

	HARNESS_REQUIRE(d);
	verdict_init(&v);
	hostile_run_program(d, "bash", "setuid.sh", &lim, NULL, 0, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		verdict_stdout_has(&v, &r, want[i]);
	verdict_output_lacks(&v, &r, "uid: 0\n");
	verdict_output_lacks(&v, &r, "SUCCEEDED");
	hostile_case_end(d, "setuid", "setuid.sh", &r, &v);
	harness_run_free(&r);

	verdict_init(&v);
	hostile_run_program(d, "python", "setuid.py", &lim, NULL, 0, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	/* EINVAL where uid 0 is not even mapped in the sandbox, EPERM elsewhere */
	for (size_t i = 0; i < sizeof(py_calls) / sizeof(py_calls[0]); i++)
		verdict_stdout_has(&v, &r, py_calls[i]);
	verdict_output_lacks(&v, &r, "SUCCEEDED");
	verdict_stdout_has(&v, &r, "\nids (1000, 1000, 1000) (1000, 1000, 1000)\n");
	hostile_case_end(d, "setuid", "setuid.py", &r, &v);
	harness_run_free(&r);
	hostile_family_require("setuid");
}

/* --- device files ------------------------------------------------------------------------------ */

static void test_devices(void **state)
{
	static const char *const want[] = {
		"/dev/mem absent\n",	 "/dev/kmem absent\n",	  "/dev/port absent\n",
		"/dev/sda absent\n",	 "/dev/vda absent\n",	  "/dev/nvme0 absent\n",
		"/dev/kmsg absent\n",	 "/dev/net/tun absent\n", "/dev/fuse absent\n",
		"mknod block refused\n", "mknod char refused\n",  "mkfifo ok\n",
		"/dev/full ENOSPC\n",	 "urandom ok\n",	  "/sys absent\n",
		"kcore bytes: 0\n",	 "masked dirs: 0 0 0 \n",
	};
	const struct capibox_limits lim = {.wall_time_ms = 20000};
	struct daemon *d = *state;
	struct run r = {0};
	struct verdict v;

	HARNESS_REQUIRE(d);
	verdict_init(&v);
	hostile_run_program(d, "bash", "devices.sh", &lim, NULL, 0, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		verdict_stdout_has(&v, &r, want[i]);
	verdict_output_lacks(&v, &r, "PRESENT");
	verdict_output_lacks(&v, &r, "SUCCEEDED");
	hostile_case_end(d, "devices", "devices.sh", &r, &v);
	harness_run_free(&r);

	verdict_init(&v);
	hostile_run_program(d, "python", "devices.py", &lim, NULL, 0, &r);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	verdict_stdout_has(
		&v, &r,
		"mknod /tmp/mem EPERM\nmknod /home/user/sda EPERM\nopen /dev/mem ENOENT\n"
		"open /dev/sda ENOENT\nopen /dev/kmsg ENOENT\nopen /dev/port ENOENT\n");
	hostile_case_end(d, "devices", "devices.py", &r, &v);
	harness_run_free(&r);
	hostile_family_require("devices");
}

/* --- clock and host name ----------------------------------------------------------------------- */

/* CLOCK_REALTIME minus CLOCK_MONOTONIC, in seconds: changes only when someone sets the clock. */
static double clock_offset(void)
{
	struct timespec rt, mono;

	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	return (double)(rt.tv_sec - mono.tv_sec) + (double)(rt.tv_nsec - mono.tv_nsec) / 1e9;
}

static void clock_case(struct daemon *d, const char *lang, const char *prog, const char *expect)
{
	const struct capibox_limits lim = {.wall_time_ms = 20000};
	char host_before[256], host_after[256];
	struct run r = {0};
	struct verdict v;
	double off_before, off_after;

	verdict_init(&v);
	assert_int_equal(gethostname(host_before, sizeof(host_before)), 0);
	off_before = clock_offset();
	hostile_run_program(d, lang, prog, &lim, NULL, 0, &r);
	off_after = clock_offset();
	assert_int_equal(gethostname(host_after, sizeof(host_after)), 0);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	verdict_stdout_has(&v, &r, expect);
	verdict_output_lacks(&v, &r, "SUCCEEDED");
	verdict_output_lacks(&v, &r, "year 2001");
	if (strcmp(host_before, host_after) != 0)
		verdict_fail(&v, "the host name changed from \"%s\" to \"%s\"", host_before,
			     host_after);
	/* NTP slews by far less than a second in a few seconds */
	if (off_after - off_before > 1.0 || off_before - off_after > 1.0)
		verdict_fail(&v, "the host clock jumped by %.3f s", off_after - off_before);
	hostile_case_end(d, "clock_hostname", prog, &r, &v);
	harness_run_free(&r);
}

static void test_clock_hostname(void **state)
{
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	clock_case(d, "bash", "clock.sh",
		   "date -s refused\nhostname refused\nhostname is sandbox\n");
	clock_case(d, "python", "clock.py",
		   "clock_settime EPERM\nsethostname EPERM\nhostname is sandbox\n");
	hostile_family_require("clock_hostname");
}

/* --- symlinks and paths ------------------------------------------------------------------------ */

/*
 * Today the server reads nothing back from the sandbox, so symlinks planted
 * by the code can only matter inside it; the test checks that nothing of
 * the host changed. Artifact collection (issue 6) must extend this: files
 * collected after a run must be read without following symlinks out of the
 * working directory (a planted "out.png -> /etc/shadow" or "-> the state
 * dir"), e.g. from inside the sandbox's mount namespace or with openat2
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, and this test must collect them.
 */
static void symlink_case(struct daemon *d, const char *lang, const char *prog,
			 const char *const *want, const char *const *unwanted)
{
	static const uint8_t input[] = "uploaded input\n";
	static const uint8_t fake_passwd[] = "not the host's passwd\n";
	const struct capibox_file files[] = {
		{.path = "data/in/input.txt", .data = input, .len = sizeof(input) - 1},
		{.path = "etc/passwd", .data = fake_passwd, .len = sizeof(fake_passwd) - 1},
	};
	const struct capibox_env env[] = {{"CANARY", canary_path}, {"STATE_DIR", d->state_dir}};
	struct capibox_exec_request req = {
		.language = lang,
		.files = files,
		.n_files = 2,
		.env = env,
		.n_env = 2,
		.limits = {.wall_time_ms = 20000},
	};
	struct file_id before[N_WATCHED], after;
	char *code = hostile_program(prog);
	char buf[256];
	struct run r = {0};
	struct verdict v;

	verdict_init(&v);
	for (size_t i = 0; i < N_WATCHED; i++)
		file_id_of(watched_files[i], &before[i]);
	req.code = code;
	harness_run(d, &req, &r);
	free(code);
	verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
	for (; *want != NULL; want++)
		verdict_stdout_has(&v, &r, *want);
	for (; *unwanted != NULL; unwanted++)
		verdict_output_lacks(&v, &r, *unwanted);
	for (size_t i = 0; i < N_WATCHED; i++) {
		file_id_of(watched_files[i], &after);
		if (!file_id_same(&before[i], &after))
			verdict_fail(&v, "host file %s changed", watched_files[i]);
	}
	if (host_read(canary_path, buf, sizeof(buf)) < 0 || strcmp(buf, canary_token) != 0)
		verdict_fail(&v, "the host canary %s changed: \"%s\"", canary_path, buf);
	if (access("/pwned", F_OK) == 0 || access("/etc/pwned", F_OK) == 0)
		verdict_fail(&v, "a \"pwned\" file appeared on the host");
	/* new entries in the state dir are reported by the leftover check */
	hostile_case_end(d, "symlinks", prog, &r, &v);
	harness_run_free(&r);
}

static void path_refused_case(struct daemon *d, const char *path)
{
	static const uint8_t data[] = "x";
	const struct capibox_file file = {.path = path, .data = data, .len = 1};
	const struct capibox_exec_request req = {
		.language = "bash", .code = "echo ran\n", .files = &file, .n_files = 1};
	struct run r = {0};
	struct verdict v;
	char name[128];

	verdict_init(&v);
	harness_run(d, &req, &r);
	if (r.rc != CAPIBOX_INVALID_ARGUMENT)
		verdict_fail(&v, "expected INVALID_ARGUMENT, got %s \"%s\"",
			     capibox_code_name(r.rc), r.st.message);
	if (r.n_events != 0)
		verdict_fail(&v, "a refused request produced %d events", r.n_events);
	verdict_status_utf8(&v, r.st.message);
	snprintf(name, sizeof(name), "upload \"%s\" refused", path);
	hostile_case_end(d, "symlinks", name, &r, &v);
	harness_run_free(&r);
}

static void test_symlinks(void **state)
{
	static const char *const py_want[] = {
		"append passwd EROFS\n",
		"write canary ok\n", /* the sandbox's own /tmp: harmless */
		"mkdir state/pwned ENOENT\n",
		"write root/pwned EROFS\n",
		"write up/pwned EROFS\n",
		"data/in/input.txt regular uploaded input\n",
		"etc/passwd regular not the host's passwd\n",
		NULL,
	};
	static const char *const py_unwanted[] = {"append passwd ok",	"state/pwned ok",
						  "root/pwned ok",	"up/pwned ok",
						  "proc-root/pwned ok", NULL};
	static const char *const sh_want[] = {
		"append passwd refused\n",
		"mkdir state refused\n",
		"uploaded input\n",
		NULL,
	};
	static const char *const sh_unwanted[] = {"append passwd ok", "mkdir state ok", NULL};
	static const char *const js_want[] = {"append passwd EROFS\n", "write canary ok\n",
					      "mkdir state/pwned ENOENT\n", "uploaded input\n",
					      NULL};
	static const char *const js_unwanted[] = {"append passwd ok", "state/pwned ok", NULL};
	static const char *const bad_paths[] = {
		"../escape.txt", "/etc/escape.txt", "a/../../escape.txt", "./a", "a//b", "a/."};
	struct daemon *d = *state;

	HARNESS_REQUIRE(d);
	symlink_case(d, "python", "symlinks.py", py_want, py_unwanted);
	symlink_case(d, "bash", "symlinks.sh", sh_want, sh_unwanted);
	symlink_case(d, "javascript", "symlinks.js", js_want, js_unwanted);
	for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++)
		path_refused_case(d, bad_paths[i]);
	hostile_family_require("symlinks");
}

/* --- unusual environment and file names -------------------------------------------------------- */

#define FAMILY_NAMES "unusual_names"

/* A raw Execute that must be refused with INVALID_ARGUMENT and no events. */
static void raw_refused_case(struct daemon *d, const char *name, struct pb *p)
{
	struct raw_result res;
	struct verdict v;

	verdict_init(&v);
	harness_raw_call(d->addr, EXECUTE, p->b, p->n, 20000, &res);
	if (res.code != CAPIBOX_INVALID_ARGUMENT)
		verdict_fail(&v, "expected INVALID_ARGUMENT, got %s \"%s\"",
			     capibox_code_name(res.code), res.message);
	if (res.n_messages != 0)
		verdict_fail(&v, "a refused request produced %d messages", res.n_messages);
	verdict_status_utf8(&v, res.message);
	printf("%s: %s \"%s\"\n", name, capibox_code_name(res.code), res.message);
	harness_raw_free(&res);
	pb_free(p);
	hostile_case_end(d, FAMILY_NAMES, name, NULL, &v);
}

/*
 * A raw Execute with odd bytes: the server must answer with a clean status
 * (INVALID_ARGUMENT) or run it (OK, with Started ... Finished), never fail
 * otherwise or crash (hostile_case_end checks the daemon).
 */
static void raw_clean_case(struct daemon *d, const char *name, struct pb *p)
{
	struct raw_result res;
	struct verdict v;

	verdict_init(&v);
	harness_raw_call(d->addr, EXECUTE, p->b, p->n, 20000, &res);
	if (res.code == CAPIBOX_OK) {
		if (res.n_messages < 2)
			verdict_fail(&v, "OK with %d messages: expected Started ... Finished",
				     res.n_messages);
	} else if (res.code == CAPIBOX_INVALID_ARGUMENT) {
		if (res.n_messages != 0)
			verdict_fail(&v, "a refused request produced %d messages", res.n_messages);
	} else {
		verdict_fail(&v, "expected OK or INVALID_ARGUMENT, got %s \"%s\"",
			     capibox_code_name(res.code), res.message);
	}
	verdict_status_utf8(&v, res.message);
	printf("%s: %s \"%s\", %d messages\n", name, capibox_code_name(res.code), res.message,
	       res.n_messages);
	harness_raw_free(&res);
	pb_free(p);
	hostile_case_end(d, FAMILY_NAMES, name, NULL, &v);
}

static void raw_start(struct pb *p, const char *code)
{
	memset(p, 0, sizeof(*p));
	pb_bytes(p, 1, "python", 6);
	pb_bytes(p, 2, code, strlen(code));
}

/* Appends the hex of b[0..n) to out (of size len, NUL-terminated). */
static void hex_append(char *out, size_t len, const void *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t *p = b;
	size_t off = strlen(out);

	for (size_t i = 0; i < n && off + 2 < len; i++) {
		out[off++] = digits[p[i] >> 4];
		out[off++] = digits[p[i] & 15];
	}
	out[off] = '\0';
}

/*
 * Runs env_dump.py with env and files through libcapibox. want_ok: the
 * request is within the limits and must run, and the program must see
 * every env value and file name byte for byte; else it must be refused
 * with INVALID_ARGUMENT.
 */
static void names_case(struct daemon *d, const char *name, const struct capibox_env *env,
		       size_t n_env, const struct capibox_file *files, size_t n_files, bool want_ok)
{
	struct capibox_exec_request req = {
		.language = "python",
		.env = env,
		.n_env = n_env,
		.files = files,
		.n_files = n_files,
		.limits = {.wall_time_ms = 20000},
	};
	char *code = hostile_program("env_dump.py");
	struct run r = {0};
	struct verdict v;

	verdict_init(&v);
	req.code = code;
	harness_run(d, &req, &r);
	free(code);
	if (!want_ok) {
		if (r.rc != CAPIBOX_INVALID_ARGUMENT)
			verdict_fail(&v, "expected INVALID_ARGUMENT, got %s \"%s\"",
				     capibox_code_name(r.rc), r.st.message);
		if (r.n_events != 0)
			verdict_fail(&v, "a refused request produced %d events", r.n_events);
		verdict_status_utf8(&v, r.st.message);
		printf("%s: %s \"%s\"\n", name, capibox_code_name(r.rc), r.st.message);
	} else {
		verdict_reason(&v, &r, CAPIBOX_REASON_EXITED);
		for (size_t i = 0; i < n_env; i++) {
			size_t vl = strlen(env[i].value);
			char line[1024];

			/* as env_dump.py prints it: name, length, first 64 bytes, in hex */
			snprintf(line, sizeof(line), "env ");
			hex_append(line, sizeof(line), env[i].name, strlen(env[i].name));
			snprintf(line + strlen(line), sizeof(line) - strlen(line), " %zu ", vl);
			hex_append(line, sizeof(line), env[i].value, vl < 64 ? vl : 64);
			snprintf(line + strlen(line), sizeof(line) - strlen(line), "\n");
			verdict_stdout_has(&v, &r, line);
		}
		for (size_t i = 0; i < n_files; i++) {
			char line[3072];

			snprintf(line, sizeof(line), "file ");
			hex_append(line, sizeof(line), files[i].path, strlen(files[i].path));
			snprintf(line + strlen(line), sizeof(line) - strlen(line), " ");
			hex_append(line, sizeof(line), files[i].data, files[i].len);
			snprintf(line + strlen(line), sizeof(line) - strlen(line), "\n");
			verdict_stdout_has(&v, &r, line);
		}
		printf("%s: ran, %s\n", name, capibox_reason_name(r.reason));
	}
	hostile_case_end(d, FAMILY_NAMES, name, &r, &v);
	harness_run_free(&r);
}

/* out = four times the first 254 bytes of part, each followed by '/', then last. */
static void deep_path(char *out, const char *part, const char *last)
{
	size_t off = 0;

	for (int i = 0; i < 4; i++) {
		memcpy(out + off, part, 254);
		off += 254;
		out[off++] = '/';
	}
	memcpy(out + off, last, strlen(last) + 1);
}

static void test_unusual_names(void **state)
{
	static const uint8_t data[] = "data";
	struct daemon *d = *state;
	struct pb p;
	char *long_value, *too_long, name255[256], name256[257], seg255[256], seg256[257];
	char path1024[1025], path1025[1026];
	struct capibox_env env[2];
	struct capibox_file file;

	HARNESS_REQUIRE(d);
	/* NUL bytes: refused wherever they would reach the sandbox */
	raw_start(&p, "print(1)");
	pb_env(&p, "CBX_A\0B", 7, "x", 1);
	raw_refused_case(d, "env name with NUL", &p);
	raw_start(&p, "print(1)");
	pb_env(&p, "CBX_A", 5, "x\0y", 3);
	raw_refused_case(d, "env value with NUL", &p);
	raw_start(&p, "print(1)");
	pb_file(&p, "a\0b.txt", 7, "x", 1);
	raw_refused_case(d, "file name with NUL", &p);
	memset(&p, 0, sizeof(p));
	pb_bytes(&p, 1, "python", 6);
	pb_bytes(&p, 2, "print(1)\0print(2)", 17);
	raw_refused_case(d, "code with NUL", &p);
	raw_start(&p, "print(1)");
	pb_env(&p, "CBX_\xff\xfe", 6, "x", 1);
	raw_refused_case(d, "env name not UTF-8", &p);

	/* non-UTF-8 through a raw call: a clean status or a run */
	raw_start(&p, "import os; print(os.environb[b'CBX_BIN'].hex())");
	pb_env(&p, "CBX_BIN", 7, "\xff\xfe\xc3\x28\x80", 5);
	raw_clean_case(d, "raw env value not UTF-8", &p);
	raw_start(&p, "import os; print(os.listdir(b'.'))");
	pb_file(&p, "caf\xe9-\xff.txt", 10, "x", 1);
	raw_clean_case(d, "raw file name not UTF-8", &p);
	raw_start(&p, "print('\xff\xfe')");
	raw_clean_case(d, "raw code not UTF-8", &p);
	memset(&p, 0, sizeof(p));
	pb_bytes(&p, 1, "pyth\xc3\x28n", 7);
	pb_bytes(&p, 2, "print(1)", 8);
	raw_clean_case(d, "raw language not UTF-8", &p);

	/* the same bytes through libcapibox: when it runs, the program sees them unchanged */
	env[0] = (struct capibox_env){"CBX_BIN", "\xff\xfe\xc3\x28\x80"};
	names_case(d, "env value not UTF-8", env, 1, NULL, 0, true);
	file = (struct capibox_file){.path = "caf\xe9-\xff.txt", .data = data, .len = 4};
	names_case(d, "file name not UTF-8", NULL, 0, &file, 1, true);

	/* newlines */
	env[0] = (struct capibox_env){"CBX_NL", "line one\nline two\n"};
	names_case(d, "env value with newline", env, 1, NULL, 0, true);
	env[0] = (struct capibox_env){"CBX_A\nB", "x"};
	names_case(d, "env name with newline", env, 1, NULL, 0, false);
	file = (struct capibox_file){.path = "new\nline.txt", .data = data, .len = 4};
	names_case(d, "file name with newline", NULL, 0, &file, 1, true);

	/* very long values and names, within and above the limits (64 KiB of env) */
	long_value = malloc(60001);
	too_long = malloc(70001);
	assert_non_null(long_value);
	assert_non_null(too_long);
	memset(long_value, 'v', 60000);
	long_value[60000] = '\0';
	memset(too_long, 'w', 70000);
	too_long[70000] = '\0';
	env[0] = (struct capibox_env){"CBX_LONG", long_value};
	names_case(d, "env value of 60000 bytes", env, 1, NULL, 0, true);
	env[0] = (struct capibox_env){"CBX_LONG", too_long};
	names_case(d, "env value of 70000 bytes", env, 1, NULL, 0, false);
	free(long_value);
	free(too_long);
	memcpy(name255, "CBX_", 4);
	memset(name255 + 4, 'N', 251);
	name255[255] = '\0';
	memcpy(name256, "CBX_", 4);
	memset(name256 + 4, 'N', 252);
	name256[256] = '\0';
	env[0] = (struct capibox_env){name255, "x"};
	names_case(d, "env name of 255 bytes", env, 1, NULL, 0, true);
	env[0] = (struct capibox_env){name256, "x"};
	names_case(d, "env name of 256 bytes", env, 1, NULL, 0, false);
	memset(seg255, 'f', 255);
	seg255[255] = '\0';
	memset(seg256, 'f', 256);
	seg256[256] = '\0';
	file = (struct capibox_file){.path = seg255, .data = data, .len = 4};
	names_case(d, "file name of 255 bytes", NULL, 0, &file, 1, true);
	file = (struct capibox_file){.path = seg256, .data = data, .len = 4};
	names_case(d, "file name of 256 bytes", NULL, 0, &file, 1, false);
	/* four 254-byte parts and a 4-byte name: 1024 bytes; one more is too long */
	deep_path(path1024, seg255, "abcd");
	deep_path(path1025, seg255, "abcde");
	assert_int_equal(strlen(path1024), 1024);
	file = (struct capibox_file){.path = path1024, .data = data, .len = 4};
	names_case(d, "file path of 1024 bytes", NULL, 0, &file, 1, true);
	file = (struct capibox_file){.path = path1025, .data = data, .len = 4};
	names_case(d, "file path of 1025 bytes", NULL, 0, &file, 1, false);
	hostile_family_require(FAMILY_NAMES);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fork_bomb),      cmocka_unit_test(test_memory_bomb),
		cmocka_unit_test(test_disk_fill),      cmocka_unit_test(test_endless_output),
		cmocka_unit_test(test_busy_loop),      cmocka_unit_test(test_sleep),
		cmocka_unit_test(test_daemons),	       cmocka_unit_test(test_network),
		cmocka_unit_test(test_host_secrets),   cmocka_unit_test(test_write_system),
		cmocka_unit_test(test_syscalls),       cmocka_unit_test(test_signals),
		cmocka_unit_test(test_setuid),	       cmocka_unit_test(test_devices),
		cmocka_unit_test(test_clock_hostname), cmocka_unit_test(test_symlinks),
		cmocka_unit_test(test_unusual_names),  cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	harness_init();
	rc = cmocka_run_group_tests_name("security", tests, setup, teardown);
	hostile_print_summary();
	return harness_finish(rc);
}
