/*
 * cgroup v2 mechanics of a sandbox, on any cgroup2 mount (the dev machine's
 * hybrid /sys/fs/cgroup/unified has no controllers, but placement and
 * cgroup.kill work there): clone3 with CLONE_INTO_CGROUP puts the sandbox's
 * init into the group from its first instruction, and cgroup.kill ends it.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "runtime.h"
#include "sandbox/payload.h"
#include "sandbox/sandbox.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static char mnt[64], group[160];

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;
	if (fd < 0)
		return -1;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

static bool is_cgroup2(const char *path)
{
	struct statfs sf;
	return statfs(path, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC;
}

static void test_clone_into_cgroup_and_kill(void **state)
{
	struct exec_request req = {.code = "sleep 1000\n", .code_len = 11};
	struct sandbox_spec spec;
	struct config cfg;
	char err[256], path[256], buf[512], want[200];
	int out[2], cgfd, report_fd, status, fd;
	bool into = false;
	pid_t pid;
	ssize_t n;
	(void)state;

	config_defaults(&cfg);
	assert_int_equal(mkdir("/run/capibox-unit-cg2", 0711) < 0 && errno != EEXIST, 0);
	assert_int_equal(mkdir("/run/capibox-unit-cg2/root", 0755) < 0 && errno != EEXIST, 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	cgfd = open(group, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(cgfd >= 0);

	memset(&spec, 0, sizeof(spec));
	spec.rt = runtime_at((size_t)runtime_find("bash"));
	spec.limits = cfg.defaults;
	spec.tmpfs_bytes = 1 << 20;
	spec.host_uid = 3900000;
	spec.root_dir = "/run/capibox-unit-cg2/root";
	spec.payload_fd = payload_create(&req);
	spec.stdin_fd = payload_blob("stdin", NULL, 0);
	spec.stdout_fd = out[1];
	spec.stderr_fd = out[1];
	spec.events_fd = -1; /* no events pipe */
	spec.cgroup_fd = cgfd;
	pid = sandbox_spawn(&spec, &report_fd, &into, err, sizeof(err));
	assert_true(pid > 0);
	assert_true(into);

	/* the host sees init in the group */
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = '\0';
	snprintf(want, sizeof(want), "0::%s\n", group + strlen(mnt));
	assert_non_null(strstr(buf, want));

	/* cgroup.kill ends the whole sandbox */
	snprintf(path, sizeof(path), "%s/cgroup.kill", group);
	if (access(path, F_OK) == 0) {
		assert_int_equal(write_str(path, "1"), 0);
	} else {
		print_message("note: no cgroup.kill (Linux < 5.14): killing init\n");
		kill(pid, SIGKILL);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);

	close(report_fd);
	close(cgfd);
	close(out[0]);
	close(out[1]);
	close(spec.payload_fd);
	close(spec.stdin_fd);
	for (int i = 0; i < 100 && rmdir(group) < 0; i++)
		usleep(10000);
	assert_int_equal(access(group, F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clone_into_cgroup_and_kill),
	};
	sigset_t m;

	if (geteuid() != 0) {
		fprintf(stderr, "SKIP: needs root\n");
		return 77;
	}
	if (is_cgroup2("/sys/fs/cgroup"))
		snprintf(mnt, sizeof(mnt), "/sys/fs/cgroup");
	else if (is_cgroup2("/sys/fs/cgroup/unified"))
		snprintf(mnt, sizeof(mnt), "/sys/fs/cgroup/unified");
	else {
		fprintf(stderr,
			"SKIP: no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified\n");
		return 77;
	}
	snprintf(group, sizeof(group), "%s/capibox-unit-%d", mnt, (int)getpid());
	if (mkdir(group, 0755) < 0) {
		fprintf(stderr, "SKIP: cannot create %s: %s\n", group, strerror(errno));
		return 77;
	}
	sigemptyset(&m);
	sigaddset(&m, SIGCHLD);
	sigprocmask(SIG_BLOCK, &m, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
