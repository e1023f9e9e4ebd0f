/*
 * The configuration file (--config FILE, INI) and --check-config.
 *
 * A daemon started with a config file serves with the file's values, and
 * flags win over the file even when they come before --config on the
 * command line (checked through Health: max_running, max_queued and the
 * pool targets). Bad files are refused naming file, line and key, by the
 * daemon and by --check-config alike; --check-config's output fed back as
 * a config file gives the same output; the sample deploy/capiboxd.conf
 * lists every key and parses to the defaults; --check-config needs no
 * root and checks the files the configuration names.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "capibox/v1/sandbox.pb-c.h"
#include "harness.h"

static struct daemon daemon_;
static char dir[64];
static char conf_path[128]; /* the running daemon's config file */
static char keys_path[128];
static bool keys_ok;

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "we");

	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
		fail_msg("writing %s: %s", path, strerror(errno));
	if (chmod(path, mode) != 0)
		fail_msg("chmod %s: %s", path, strerror(errno));
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (f == NULL)
		fail_msg("reading %s: %s", path, strerror(errno));
	do {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap + 1);
			assert_non_null(buf);
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	buf[len] = '\0';
	return buf;
}

struct result {
	int status; /* exit status, -1 when killed */
	char *out, *err;
};

static void result_free(struct result *r)
{
	free(r->out);
	free(r->err);
}

/*
 * Runs capiboxd with args (NULL-terminated), as uid unless it is
 * (uid_t)-1, with stdout and stderr kept apart. Killed after 15 s: a
 * configuration that should have been refused must not leave a daemon.
 */
static void capiboxd_run(const char *const *args, uid_t uid, struct result *r)
{
	const char *argv[32];
	char out_path[128], err_path[128];
	size_t n = 0;
	int status, waited = 0;
	pid_t pid;

	argv[n++] = CAPIBOXD_PATH;
	for (size_t i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	snprintf(out_path, sizeof(out_path), "%s/run.out", dir);
	snprintf(err_path, sizeof(err_path), "%s/run.err", dir);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (o < 0 || e < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(o, 1) < 0 ||
		    dup2(e, 2) < 0)
			_exit(125);
		if (uid != (uid_t)-1 &&
		    (setgroups(0, NULL) != 0 || setgid(uid) != 0 || setuid(uid) != 0))
			_exit(125);
		execv(argv[0], (char *const *)argv);
		_exit(126);
	}
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (waited++ > 1500) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		harness_sleep_ms(10);
	}
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	r->out = read_file(out_path);
	r->err = read_file(err_path);
}

/* Fails, printing what capiboxd said, unless it exited with status and err contains needle. */
static void expect_run(const struct result *r, int status, const char *needle)
{
	if (r->status != status || (needle && strstr(r->err, needle) == NULL)) {
		print_message("capiboxd exited %d\nstdout:\n%s\nstderr:\n%s\n", r->status, r->out,
			      r->err);
		fail_msg("expected exit status %d%s%s%s", status, needle ? " and \"" : "",
			 needle ? needle : "", needle ? "\" on stderr" : "");
	}
}

/*
 * --check-config's output without comments: each "key = value" cut at its
 * " ; origin" comment, header lines dropped. Values are what round-trips;
 * origins change with where they came from.
 */
static char *values_of(const char *ini)
{
	char *v = malloc(strlen(ini) + 1), *o = v;
	const char *line = ini;

	assert_non_null(v);
	while (*line) {
		const char *nl = strchr(line, '\n'), *end = nl ? nl : line + strlen(line);
		const char *cut = line;

		while (cut < end && !(cut[0] == ' ' && cut + 1 < end && cut[1] == ';'))
			cut++;
		while (cut > line && cut[-1] == ' ')
			cut--;
		if (line[0] != '#' && cut > line) {
			memcpy(o, line, (size_t)(cut - line));
			o += cut - line;
			*o++ = '\n';
		}
		line = nl ? nl + 1 : end;
	}
	*o = '\0';
	return v;
}

/* --- the daemon -------------------------------------------------------------- */

static int setup(void **state)
{
	/* the flags come before --config and still win over the file */
	static const char *extra[] = {"--pool",	  "javascript=0", "--max-queue", "9",
				      "--config", conf_path,	  NULL};
	static struct daemon_opts opts = {.uid_slot = 2, .extra = extra};

	*state = &daemon_;
	if (!harness_init())
		return 0;
	return harness_group_setup(state, &daemon_, &opts);
}

static const Capibox__V1__RuntimePool *pool_of(const Capibox__V1__HealthResponse *h,
					       const char *lang)
{
	for (size_t b = 0; b < h->n_backends; b++)
		for (size_t p = 0; p < h->backends[b]->n_pools; p++)
			if (strcmp(h->backends[b]->pools[p]->language, lang) == 0)
				return h->backends[b]->pools[p];
	return NULL;
}

static void test_file_applied_flags_win(void **state)
{
	struct daemon *d = *state;
	Capibox__V1__HealthRequest req = CAPIBOX__V1__HEALTH_REQUEST__INIT;
	Capibox__V1__HealthResponse *h;
	const Capibox__V1__RuntimePool *py, *js;
	struct raw_result res;
	uint8_t buf[64];
	size_t len;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	len = capibox__v1__health_request__pack(&req, buf);
	assert_int_equal(harness_raw_call(d->addr, "/capibox.v1.SandboxService/Health", buf, len,
					  5000, &res),
			 0);
	assert_non_null(res.first);
	h = capibox__v1__health_response__unpack(NULL, res.first_len, res.first);
	assert_non_null(h);
	/* from the file */
	assert_int_equal(h->max_running, 7);
	/* the file says 5, the flag 9 */
	assert_int_equal(h->max_queued, 9);
	py = pool_of(h, "python");
	js = pool_of(h, "javascript");
	assert_non_null(py);
	assert_non_null(js);
	assert_int_equal(py->target, 1); /* the file's (the default is 2) */
	assert_int_equal(js->target, 0); /* the flag's over the file's 1 */
	capibox__v1__health_response__free_unpacked(h, NULL);
	harness_raw_free(&res);

	/* and it serves */
	harness_run_code(d, "python", "print(6 * 7)", &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "42\n");
	harness_run_free(&r);
}

/* --- refused files ------------------------------------------------------------- */

struct bad_case {
	const char *text;
	const char *expect; /* after "FILE:" */
};

static void test_bad_files_refused(void **state)
{
	static const struct bad_case cases[] = {
		{"[server]\nthreads = 2\n\n[limits]\nmax_lvie = 3\n",
		 ":5: [limits] max_lvie: unknown key"},
		{"[limits]\nmax_live = abc\n",
		 ":2: [limits] max_live: \"abc\" is not a number between 1 and 4096"},
		{"[limits]\nmax_live = 0\n",
		 ":2: [limits] max_live: \"0\" is not a number between 1 and 4096"},
		{"; a comment\n[tsl]\ncert = x\n", ":2: unknown section [tsl]"},
		{"threads = 2\n", ":1: threads: a key before any [section]"},
		{"[server]\nthreads = 2\nthreads = 3\n",
		 ":3: [server] threads: given twice (first on line 2)"},
		{"[server]\njust words\n", ":2: not a \"[section]\" or \"key = value\" line"},
		{"[pool]\nbash = 1\n", ":2: [pool] bash: bash has no warm runner"},
		{"[pool]\ncobol = 1\n", ":2: [pool] cobol: unknown language \"cobol\""},
		{"[auth]\ninsecure_no_auth = maybe\n",
		 ":2: [auth] insecure_no_auth: \"maybe\" is not true or false"},
		{"[log]\nformat = xml\n", ":2: [log] format: \"xml\" is neither text nor json"},
	};
	char path[128], expect[256];

	(void)state;
	snprintf(path, sizeof(path), "%s/bad.conf", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *check[] = {"--check-config", "--config", path, NULL};
		/* the daemon proper refuses it the same way, before it needs root */
		const char *serve[] = {"--config",    path,	      "--listen",
				       "127.0.0.1:0", "--no-metrics", NULL};
		struct result r;

		write_file(path, cases[i].text, 0644);
		snprintf(expect, sizeof(expect), "capiboxd: %s%s", path, cases[i].expect);
		capiboxd_run(check, (uid_t)-1, &r);
		expect_run(&r, 1, expect);
		assert_string_equal(r.out, "");
		result_free(&r);
		capiboxd_run(serve, (uid_t)-1, &r);
		expect_run(&r, 1, strstr(expect, path));
		result_free(&r);
	}
}

static void test_bad_flags_and_files(void **state)
{
	char path[128], missing[128];
	const char *flag[] = {"--check-config", "--max-live", "abc", NULL};
	const char *usage[] = {"--check-config", "--no-such-flag", NULL};
	const char *nofile[] = {"--check-config", "--config", missing, NULL};
	const char *writable[] = {"--check-config", "--config", path, NULL};
	struct result r;

	(void)state;
	capiboxd_run(flag, (uid_t)-1, &r);
	expect_run(&r, 1, "capiboxd: --max-live: \"abc\" is not a number between 1 and 4096");
	result_free(&r);
	capiboxd_run(usage, (uid_t)-1, &r);
	expect_run(&r, 64, "usage:");
	result_free(&r);
	snprintf(missing, sizeof(missing), "%s/missing.conf", dir);
	capiboxd_run(nofile, (uid_t)-1, &r);
	expect_run(&r, 1, "missing.conf: No such file or directory");
	result_free(&r);
	/* whoever can write the file can turn authentication off */
	snprintf(path, sizeof(path), "%s/writable.conf", dir);
	write_file(path, "[server]\nthreads = 2\n", 0664);
	capiboxd_run(writable, (uid_t)-1, &r);
	expect_run(&r, 1, "writable by group or others");
	result_free(&r);
}

/* --- --check-config ----------------------------------------------------------- */

static void test_check_config_origins_round_trip(void **state)
{
	char path[128], again[128];
	const char *first[] = {"--check-config", "--max-live", "5", "--config", path,
			       "--audit-code",	 NULL};
	const char *second[] = {"--check-config", "--config", again, NULL};
	struct result r1, r2, r3;
	char *v1, *v2, origin[160];

	(void)state;
	snprintf(path, sizeof(path), "%s/first.conf", dir);
	snprintf(again, sizeof(again), "%s/again.conf", dir);
	write_file(path,
		   "# a comment\n"
		   "[limits]\n"
		   "max_live = 3\n"
		   "max_queue = 17\n"
		   "[default_limits]\n"
		   "memory_mb = 256\n"
		   "[pool]\n"
		   "python = 4\n"
		   "[metrics]\n"
		   "listen = 127.0.0.1:9999\n",
		   0600);
	capiboxd_run(first, (uid_t)-1, &r1);
	expect_run(&r1, 0, NULL);
	/* each value and where it came from */
	snprintf(origin, sizeof(origin), "; %s:4\n", path);
	assert_non_null(strstr(r1.out, "max_queue = 17"));
	assert_non_null(strstr(strstr(r1.out, "max_queue = 17"), origin));
	assert_non_null(strstr(r1.out, "max_live = 5"));
	assert_non_null(strstr(strstr(r1.out, "max_live = 5"), "; flag --max-live\n"));
	assert_non_null(strstr(r1.out, "\n[default_limits]\nwall_time_ms = 30000"));
	assert_non_null(strstr(r1.out, "memory_mb = 256"));
	assert_non_null(strstr(r1.out, "python = 4"));
	assert_non_null(strstr(r1.out, "code = true"));
	assert_non_null(strstr(r1.out, "listen = 127.0.0.1:9999"));
	assert_non_null(strstr(r1.out, "threads = 2                          ; default\n"));

	/* fed back, the same values; fed back again, the very same text */
	write_file(again, r1.out, 0600);
	capiboxd_run(second, (uid_t)-1, &r2);
	expect_run(&r2, 0, NULL);
	v1 = values_of(r1.out);
	v2 = values_of(r2.out);
	assert_string_equal(v1, v2);
	write_file(again, r2.out, 0600);
	capiboxd_run(second, (uid_t)-1, &r3);
	expect_run(&r3, 0, NULL);
	assert_string_equal(r2.out, r3.out);
	free(v1);
	free(v2);
	result_free(&r1);
	result_free(&r2);
	result_free(&r3);
}

/* deploy/capiboxd.conf: every key, commented out, with its default. */
static void test_sample_config(void **state)
{
	const char *defaults[] = {"--check-config", NULL};
	const char *sample[] = {"--check-config", "--config",
				CAPIBOX_SOURCE_DIR "/deploy/capiboxd.conf", NULL};
	struct result rd, rs;
	char *text, *vd, *vs, *line;

	(void)state;
	capiboxd_run(defaults, (uid_t)-1, &rd);
	expect_run(&rd, 0, NULL);
	capiboxd_run(sample, (uid_t)-1, &rs);
	expect_run(&rs, 0, NULL);
	vd = values_of(rd.out);
	vs = values_of(rs.out);
	assert_string_equal(vd, vs);
	text = read_file(CAPIBOX_SOURCE_DIR "/deploy/capiboxd.conf");
	for (line = strtok(vd, "\n"); line; line = strtok(NULL, "\n")) {
		char want[512];

		if (line[0] == '[') {
			snprintf(want, sizeof(want), "\n%s\n", line);
		} else {
			/* "key = value", or ";key =" for a key without a value */
			snprintf(want, sizeof(want), "\n;%s\n", line[0] == ';' ? line + 1 : line);
		}
		if (strstr(text, want) == NULL)
			fail_msg("deploy/capiboxd.conf lacks the line \"%s\"", want + 1);
	}
	free(text);
	free(vd);
	free(vs);
	result_free(&rd);
	result_free(&rs);
}

static void test_check_config_files(void **state)
{
	char bad_keys[128], cert[128];
	const char *keys[] = {"--check-config", "--keys", bad_keys, NULL};
	const char *good[] = {"--check-config", "--keys",	keys_path,
			      "--listen",	"0.0.0.0:7000", NULL};
	const char *unauth[] = {"--check-config", "--listen", "0.0.0.0:7000", NULL};
	const char *half[] = {"--check-config", "--tls-cert", cert, NULL};
	const char *nocert[] = {"--check-config", "--tls-cert", cert, "--tls-key", cert, NULL};
	struct result r;

	(void)state;
	snprintf(bad_keys, sizeof(bad_keys), "%s/bad.keys", dir);
	write_file(bad_keys, "router not-a-hash\n", 0600);
	capiboxd_run(keys, (uid_t)-1, &r);
	expect_run(&r, 1, "capiboxd: [auth] keys: ");
	assert_non_null(strstr(r.err, "bad.keys"));
	result_free(&r);

	if (keys_ok) {
		char *text = read_file(keys_path), *hash;

		/* a valid file: accepted, with a warning for keys in clear text */
		capiboxd_run(good, (uid_t)-1, &r);
		expect_run(&r, 0, "without TLS");
		hash = strrchr(text, ' ');
		assert_non_null(hash);
		hash[strcspn(hash, "\n")] = '\0';
		/* the keys file holds hashes; not even those are printed */
		assert_null(strstr(r.out, hash + 1));
		assert_null(strstr(r.err, hash + 1));
		free(text);
		result_free(&r);
	}

	capiboxd_run(unauth, (uid_t)-1, &r);
	expect_run(&r, 1, "refusing to listen on 0.0.0.0:7000");
	result_free(&r);

	snprintf(cert, sizeof(cert), "%s/missing.pem", dir);
	capiboxd_run(half, (uid_t)-1, &r);
	expect_run(&r, 1, "[tls] cert and key (--tls-cert and --tls-key) go together");
	result_free(&r);
	capiboxd_run(nocert, (uid_t)-1, &r);
	expect_run(&r, 1, "capiboxd: [tls]: ");
	assert_non_null(strstr(r.err, "missing.pem"));
	result_free(&r);
}

/* --check-config runs without root, binds nothing, starts no supervisor. */
static void test_check_config_unprivileged(void **state)
{
	const char *args[] = {"--check-config", "--listen", "127.0.0.1:1", NULL};
	struct result r;

	(void)state;
	capiboxd_run(args, geteuid() == 0 ? 65534 : (uid_t)-1, &r);
	if (r.status == 126) {
		print_message("SKIP: user 65534 cannot execute %s\n", CAPIBOXD_PATH);
		result_free(&r);
		skip();
	}
	expect_run(&r, 0, NULL);
	assert_non_null(strstr(r.out, "listen = 127.0.0.1:1"));
	result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_applied_flags_win),
		cmocka_unit_test(test_bad_files_refused),
		cmocka_unit_test(test_bad_flags_and_files),
		cmocka_unit_test(test_check_config_origins_round_trip),
		cmocka_unit_test(test_sample_config),
		cmocka_unit_test(test_check_config_files),
		cmocka_unit_test(test_check_config_unprivileged),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	char line[256], secret[128];
	int rc;

	/* before any gRPC thread: keygen runs as a child process */
	harness_init();
	snprintf(dir, sizeof(dir), "/tmp/capibox-config-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	/* 65534 runs capiboxd here in the unprivileged test */
	chmod(dir, 0755);
	harness_remove_at_finish(dir);
	snprintf(conf_path, sizeof(conf_path), "%s/capiboxd.conf", dir);
	snprintf(keys_path, sizeof(keys_path), "%s/keys", dir);
	{
		FILE *f = fopen(conf_path, "we");

		if (f == NULL ||
		    fputs("# the daemon of this test\n"
			  "[limits]\n"
			  "max_live = 7\n"
			  "max_queue = 5\n"
			  "[pool]\n"
			  "python = 1\n"
			  "javascript = 1\n"
			  "[metrics]\n"
			  "enabled = false\n",
			  f) < 0 ||
		    fclose(f) != 0)
			return 1;
	}
	if (harness_keygen("config-test", secret, sizeof(secret), line, sizeof(line))) {
		FILE *f = fopen(keys_path, "we");

		keys_ok = f != NULL && fprintf(f, "%s\n", line) > 0 && fclose(f) == 0 &&
			  chmod(keys_path, 0600) == 0;
	}
	explicit_bzero(secret, sizeof(secret));
	rc = cmocka_run_group_tests_name("config", tests, setup, harness_group_teardown);
	return harness_finish(rc);
}
