/*
 * Shutdown: SIGTERM or SIGINT stops accepting, lets running executions
 * finish for the grace period, then ends them as REASON_CANCELLED (their
 * Finished still arrives) and exits 0 with nothing left running. Each test
 * starts its own daemon.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static struct daemon daemon_;

struct bg {
	struct daemon *d;
	struct capibox_exec_request req;
	struct run r;
	atomic_bool ready; /* "ready" seen on stdout */
	atomic_bool done;
	bool running; /* thread started, not joined */
	pthread_t thread;
};

/* Static: a failed test leaves through longjmp while the thread may still run. */
static struct bg bg_;

static void bg_join(struct bg *b)
{
	if (b->running) {
		pthread_join(b->thread, NULL);
		b->running = false;
	}
}

static int ready_hook(const struct capibox_event *ev, struct run *r, void *arg)
{
	struct bg *b = arg;

	if (ev->kind == CAPIBOX_EVENT_STDOUT && strstr((const char *)r->out, "ready") != NULL)
		atomic_store(&b->ready, true);
	return 0;
}

static void *bg_main(void *arg)
{
	struct bg *b = arg;

	b->r.hook = ready_hook;
	b->r.hook_arg = b;
	harness_run(b->d, &b->req, &b->r);
	atomic_store(&b->done, true);
	return NULL;
}

static void bg_start(struct bg *b)
{
	assert_int_equal(pthread_create(&b->thread, NULL, bg_main, b), 0);
	b->running = true;
}

static bool bg_wait_ready(struct bg *b, int timeout_ms)
{
	double end = harness_now() + timeout_ms / 1000.0;

	while (!atomic_load(&b->ready) && !atomic_load(&b->done) && harness_now() < end)
		harness_sleep_ms(10);
	return atomic_load(&b->ready);
}

static void start(struct daemon *d, unsigned grace_s)
{
	struct daemon_opts opts = {.grace_s = grace_s, .uid_slot = 4};

	if (!harness_init()) {
		print_message("SKIP: %s\n", harness_skip_reason());
		skip();
	}
	if (harness_daemon_start(d, &opts) != 0)
		fail_msg("capiboxd did not start");
}

/* The daemon exited 0 and left no process in its uid range. */
static void assert_clean_exit(struct daemon *d, int timeout_ms)
{
	pid_t left[8];
	size_t n;
	double end;

	if (harness_daemon_wait(d, timeout_ms) != 0)
		fail_msg("capiboxd still runs %d ms after the signal", timeout_ms);
	if (!WIFEXITED(d->status) || WEXITSTATUS(d->status) != 0)
		fail_msg("capiboxd ended with wait status 0x%x; expected exit 0", d->status);
	d->pid = 0;
	end = harness_now() + 1.0;
	while ((n = harness_procs_in_uid_range(d->uid_base, d->uid_base + HARNESS_UID_COUNT, left,
					       8)) > 0 &&
	       harness_now() < end)
		harness_sleep_ms(20);
	if (n > 0)
		fail_msg("%zu sandbox processes (e.g. pid %ld) remain after capiboxd exited", n,
			 (long)left[0]);
}

static void test_grace_then_cancel(void **state)
{
	struct daemon *d = &daemon_;
	struct bg *b = &bg_;
	double t_sig, t_fin;

	(void)state;
	memset(b, 0, sizeof(*b));
	b->d = d;
	start(d, 1);
	b->req.language = "bash";
	b->req.code = "echo ready\nsleep 31361\n";
	b->req.deadline_ms = 30000; /* only so a broken server cannot hang the test */
	bg_start(b);
	if (!bg_wait_ready(b, 10000))
		fail_msg("the run never printed \"ready\"");
	t_sig = harness_now() - b->r.t0;
	harness_daemon_signal(d, SIGTERM);
	bg_join(b);
	if (b->r.n_finished != 1 || b->r.reason != CAPIBOX_REASON_CANCELLED) {
		harness_run_print(&b->r);
		fail_msg("expected the stream to end with one Finished REASON_CANCELLED");
	}
	t_fin = b->r.t_finished - t_sig;
	/* The run got its grace second, and was then ended (not left to its deadline). */
	if (t_fin < 0.8 || t_fin > 10.0)
		fail_msg(
			"Finished came %.2f s after SIGTERM; expected after the 1 s grace, well before 10 s",
			t_fin);
	assert_clean_exit(d, 20000);
	if (!harness_wait_no_procs("sleep 31361", 1000))
		fail_msg("sleep 31361 survived the shutdown");
	harness_run_free(&b->r);
}

static void test_grace_lets_run_finish(void **state)
{
	struct daemon *d = &daemon_;
	struct bg *b = &bg_;
	struct run r = {0};
	struct capibox_exec_request req = {
		.language = "python", .code = "print(2)\n", .deadline_ms = 5000};

	(void)state;
	memset(b, 0, sizeof(*b));
	b->d = d;
	start(d, 5);
	b->req.language = "bash";
	b->req.code = "echo ready\nsleep 1\necho done\n";
	b->req.deadline_ms = 30000;
	bg_start(b);
	if (!bg_wait_ready(b, 10000))
		fail_msg("the run never printed \"ready\"");
	harness_daemon_signal(d, SIGTERM);
	/* While draining, new work is refused. */
	harness_sleep_ms(100);
	harness_run(d, &req, &r);
	if (r.rc != CAPIBOX_UNAVAILABLE) {
		harness_run_print(&r);
		fail_msg("a new Execute after SIGTERM: expected UNAVAILABLE, got %d", r.rc);
	}
	harness_run_free(&r);
	bg_join(b);
	assert_run_exited(&b->r, 0);
	assert_run_stdout(&b->r, "ready\ndone\n");
	harness_run_free(&b->r);
	capibox_close(d->client);
	d->client = NULL;
	assert_clean_exit(d, 20000);
}

static void test_sigint(void **state)
{
	struct daemon *d = &daemon_;
	struct run r = {0};

	(void)state;
	start(d, 2);
	harness_run_code(d, "bash", "echo up\n", &r);
	assert_run_exited(&r, 0);
	harness_run_free(&r);
	capibox_close(d->client);
	d->client = NULL;
	harness_daemon_signal(d, SIGINT);
	assert_clean_exit(d, 20000);
}

/*
 * A non-loopback address needs --allow-remote; with it the daemon warns that
 * requests are not authenticated.
 */
static void test_remote_listen_needs_flag(void **state)
{
	struct daemon *d = &daemon_;
	static const char *const refused[] = {"--listen", "0.0.0.0:0", NULL};
	static const char *const allowed[] = {"--listen", "0.0.0.0:0", "--allow-remote", NULL};
	struct daemon_opts opts = {.uid_slot = 4, .extra = refused};
	char *log;

	(void)state;
	if (!harness_init()) {
		print_message("SKIP: %s\n", harness_skip_reason());
		skip();
	}
	print_message("(a refused start is expected next; its log follows)\n");
	if (harness_daemon_start(d, &opts) == 0)
		fail_msg("capiboxd served on 0.0.0.0 without --allow-remote");
	if (!d->exited || !WIFEXITED(d->status) || WEXITSTATUS(d->status) == 0)
		fail_msg("without --allow-remote capiboxd must exit non-zero (wait status 0x%x)",
			 d->status);
	log = harness_daemon_log(d);
	if (strstr(log, "allow-remote") == NULL)
		fail_msg("the refusal does not mention --allow-remote:\n%s", log);
	free(log);

	opts.extra = allowed;
	if (harness_daemon_start(d, &opts) != 0)
		fail_msg("capiboxd --allow-remote did not start");
	log = harness_daemon_log(d);
	if (strstr(log, "WARNING") == NULL || strstr(log, "authenticated") == NULL)
		fail_msg("no warning that requests are not authenticated:\n%s", log);
	free(log);
	capibox_close(d->client);
	d->client = NULL;
	harness_daemon_signal(d, SIGTERM);
	assert_clean_exit(d, 20000);
}

/*
 * Without usable cgroups memory and process limits cannot be enforced: the
 * daemon refuses to start unless --allow-rlimit-only says so, and then
 * Health reports DEGRADED with the reason. (An empty directory stands in
 * for a machine without cgroups.)
 */
static void test_no_cgroups_needs_flag(void **state)
{
	struct daemon *d = &daemon_;
	char root[128], *log;
	const char *refused[] = {"--cgroup-root", root, NULL};
	const char *allowed[] = {"--cgroup-root", root, "--allow-rlimit-only", NULL};
	struct daemon_opts opts = {.uid_slot = 5, .extra = refused};
	struct capibox_health *h = NULL;
	struct capibox_status st;

	(void)state;
	if (!harness_init()) {
		print_message("SKIP: %s\n", harness_skip_reason());
		skip();
	}
	snprintf(root, sizeof(root), "/tmp/capibox-nocg-%d", (int)getpid());
	assert_int_equal(mkdir(root, 0755), 0);
	harness_remove_at_finish(root);
	print_message("(a refused start is expected next; its log follows)\n");
	if (harness_daemon_start(d, &opts) == 0)
		fail_msg("capiboxd served without cgroups and without --allow-rlimit-only");
	if (!d->exited || !WIFEXITED(d->status) || WEXITSTATUS(d->status) == 0)
		fail_msg("without cgroups capiboxd must exit non-zero (wait status 0x%x)",
			 d->status);
	log = harness_daemon_log(d);
	if (strstr(log, "--allow-rlimit-only") == NULL)
		fail_msg("the refusal does not mention --allow-rlimit-only:\n%s", log);
	free(log);

	opts.extra = allowed;
	if (harness_daemon_start(d, &opts) != 0)
		fail_msg("capiboxd --allow-rlimit-only did not start");
	assert_int_equal(capibox_health(d->client, false, 10000, &h, &st), CAPIBOX_OK);
	assert_int_equal(h->status, 2); /* DEGRADED */
	assert_int_equal(h->n_backends, 1);
	assert_int_equal(h->backends[0].status, 2);
	assert_non_null(strstr(h->backends[0].message, "no usable cgroups"));
	capibox_health_free(h);
	capibox_close(d->client);
	d->client = NULL;
	harness_daemon_signal(d, SIGTERM);
	assert_clean_exit(d, 20000);
}

/*
 * A state dir the sandbox's uid cannot traverse (its parent is 0700): the
 * daemon must either refuse to start or end each run (Finished or an RPC
 * error), and still stop on SIGTERM. (An early build hung here forever and
 * then ignored SIGTERM.)
 */
static void test_unusable_state_dir(void **state)
{
	struct daemon *d = &daemon_;
	char priv[160], sdir[192];
	const char *extra[] = {"--state-dir", sdir, NULL};
	struct daemon_opts opts = {.uid_slot = 4, .extra = extra};
	struct run r = {0};
	struct capibox_exec_request req = {
		.language = "python", .code = "print(1)\n", .deadline_ms = 10000};
	char tmpl[] = "/tmp/capibox-integ-priv-XXXXXX";

	(void)state;
	if (!harness_init()) {
		print_message("SKIP: %s\n", harness_skip_reason());
		skip();
	}
	assert_non_null(mkdtemp(tmpl));
	harness_remove_at_finish(tmpl);
	snprintf(priv, sizeof(priv), "%s", tmpl); /* mkdtemp: 0700 */
	snprintf(sdir, sizeof(sdir), "%s/state", priv);
	if (harness_daemon_start(d, &opts) != 0) {
		/* Refusing to start with a clear error is a fine answer. */
		if (!d->exited || !WIFEXITED(d->status) || WEXITSTATUS(d->status) == 0)
			fail_msg("capiboxd neither served nor exited non-zero");
		return;
	}
	harness_run(d, &req, &r);
	if (r.rc == CAPIBOX_DEADLINE_EXCEEDED || (r.rc == 0 && r.n_finished != 1)) {
		harness_run_print(&r);
		fail_msg(
			"with an unusable state dir the run hung until the client's 10 s deadline");
	}
	print_message(
		"run with an unusable state dir: status %d \"%s\", finished reason %s \"%s\"\n",
		r.rc, r.st.message, r.n_finished ? capibox_reason_name(r.reason) : "-", r.message);
	harness_run_free(&r);
	capibox_close(d->client);
	d->client = NULL;
	harness_daemon_signal(d, SIGTERM);
	assert_clean_exit(d, 20000);
}

static int teardown_each(void **state)
{
	(void)state;
	/* Kill first so a running call ends, then join, then close the client. */
	if (daemon_.pid > 0 && !daemon_.exited)
		kill(daemon_.pid, SIGKILL);
	bg_join(&bg_);
	harness_run_free(&bg_.r);
	harness_daemon_kill(&daemon_);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_grace_then_cancel, teardown_each),
		cmocka_unit_test_teardown(test_grace_lets_run_finish, teardown_each),
		cmocka_unit_test_teardown(test_sigint, teardown_each),
		cmocka_unit_test_teardown(test_remote_listen_needs_flag, teardown_each),
		cmocka_unit_test_teardown(test_no_cgroups_needs_flag, teardown_each),
		cmocka_unit_test_teardown(test_unusable_state_dir, teardown_each),
	};
	int rc;

	harness_init();
	rc = cmocka_run_group_tests_name("shutdown", tests, NULL, NULL);
	return harness_finish(rc);
}
