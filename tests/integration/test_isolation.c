/*
 * Isolation as the user's code sees it: identity and capabilities, secrets
 * and the daemon's files, processes, network, writable places and the
 * tmpfs size cap. Each probe prints a verdict line and the test compares
 * the whole output, so a failure shows every probe at once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static struct daemon daemon_;

static int setup(void **state)
{
	static const struct daemon_opts opts = {.uid_slot = 1};

	return harness_group_setup(state, &daemon_, &opts);
}

/* Fails unless stdout contains every needle (printing the run first). */
static void expect_lines(const struct run *r, const char *const *needles)
{
	for (; *needles != NULL; needles++)
		if (strstr((const char *)r->out, *needles) == NULL) {
			harness_run_print(r);
			fail_msg("stdout lacks \"%s\"", *needles);
		}
}

static void test_identity_and_capabilities(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	static const char *const want[] = {
		"uid=1000\n",
		"gid=1000\n",
		"user=user\n",
		"CapEff:\t0000000000000000\n",
		"CapPrm:\t0000000000000000\n",
		"CapAmb:\t0000000000000000\n",
		NULL,
	};

	HARNESS_REQUIRE(d);
	harness_run_code(d, "bash",
			 "echo uid=$(id -u)\necho gid=$(id -g)\necho user=$(id -un)\n"
			 "grep -E '^(CapEff|CapPrm|CapAmb):' /proc/self/status\n",
			 &r);
	assert_run_exited(&r, 0);
	expect_lines(&r, want);
	harness_run_free(&r);

	/* The same from python: the runtime does not change the identity. */
	harness_run_code(d, "python",
			 "import os\nprint(os.getuid(), os.getgid(), os.geteuid(), os.getegid())\n",
			 &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "1000 1000 1000 1000\n");
	harness_run_free(&r);
}

static void test_secrets_unreadable(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	harness_run_code(d, "python",
			 "def probe(name, f):\n"
			 "    try:\n"
			 "        f()\n"
			 "        print(name, 'READABLE')\n"
			 "    except OSError as e:\n"
			 "        print(name, 'denied')\n"
			 "probe('/etc/shadow', lambda: open('/etc/shadow').read())\n"
			 "probe('/etc/gshadow', lambda: open('/etc/gshadow').read())\n"
			 "probe('/root', lambda: __import__('os').listdir('/root'))\n"
			 "probe('/root/.bashrc', lambda: open('/root/.bashrc').read())\n",
			 &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(
		&r,
		"/etc/shadow denied\n/etc/gshadow denied\n/root denied\n/root/.bashrc denied\n");
	harness_run_free(&r);
}

static void test_daemon_files_invisible(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	char code[2048], expect[2048];

	HARNESS_REQUIRE(d);
	/* The host paths exist (sanity), so "absent" inside means isolation. */
	assert_int_equal(access(d->log_file, R_OK), 0);
	assert_int_equal(access(CAPIBOXD_PATH, X_OK), 0);
	snprintf(
		code, sizeof(code),
		"import os\n"
		"for p in ['%s', '%s', '%s', '%s', '%s']:\n"
		"    print(p, 'VISIBLE' if os.path.exists(p) else 'absent')\n"
		"print('capiboxd in /proc:', any(b'capiboxd' in open('/proc/%%s/cmdline' %% p, 'rb').read()\n"
		"      for p in os.listdir('/proc') if p.isdigit() and os.path.exists('/proc/%%s/cmdline' %% p)))\n",
		d->tmpdir, d->log_file, d->ready_file, d->state_dir, CAPIBOXD_PATH);
	snprintf(
		expect, sizeof(expect),
		"%s absent\n%s absent\n%s absent\n%s absent\n%s absent\ncapiboxd in /proc: False\n",
		d->tmpdir, d->log_file, d->ready_file, d->state_dir, CAPIBOXD_PATH);
	harness_run_code(d, "python", code, &r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, expect);
	harness_run_free(&r);
}

static void test_processes_only_own(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	long mypid = -1, maxpid = -1, count = -1;
	char host_self[64];

	HARNESS_REQUIRE(d);
	snprintf(host_self, sizeof(host_self), "%ld", (long)getpid());
	harness_run_code(
		d, "python",
		"import os\n"
		"pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
		"print(os.getpid(), max(pids), len(pids))\n"
		"for p in pids:\n"
		"    try:\n"
		"        print(p, open('/proc/%d/cmdline' % p, 'rb').read().replace(b'\\0', b' ').decode())\n"
		"    except OSError as e:\n"
		"        print(p, '?', e)\n",
		&r);
	assert_run_exited(&r, 0);
	if (sscanf((const char *)r.out, "%ld %ld %ld", &mypid, &maxpid, &count) != 3) {
		harness_run_print(&r);
		fail_msg("cannot parse the probe's output");
	}
	/*
	 * A fresh pid namespace: the program has a small pid and sees only a
	 * handful of processes (init, the runtime), none of the host's.
	 */
	if (mypid > 20 || maxpid > 50 || count > 8) {
		harness_run_print(&r);
		fail_msg(
			"sandbox sees pid %ld, max pid %ld, %ld processes: expected a fresh pid namespace",
			mypid, maxpid, count);
	}
	harness_run_free(&r);

	/* ps (procps) agrees. */
	harness_run_code(d, "bash",
			 "ps -e -o pid=,comm= | wc -l\nps -e -o comm= | grep -c capiboxd\n", &r);
	if (r.reason != CAPIBOX_REASON_EXITED || strstr((const char *)r.out, "\n0\n") == NULL) {
		harness_run_print(&r);
		fail_msg("ps inside the sandbox must not list capiboxd");
	}
	harness_run_free(&r);
}

/* First non-loopback IPv4 address of the host, or "" when there is none. */
static void host_ipv4(char *buf, size_t len)
{
	struct ifaddrs *ifa, *p;

	buf[0] = '\0';
	if (getifaddrs(&ifa) == -1)
		return;
	for (p = ifa; p != NULL; p = p->ifa_next)
		if (p->ifa_addr != NULL && p->ifa_addr->sa_family == AF_INET &&
		    !(p->ifa_flags & IFF_LOOPBACK)) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)p->ifa_addr)->sin_addr, buf,
				  (socklen_t)len);
			break;
		}
	freeifaddrs(ifa);
}

/* A TCP listener on 0.0.0.0 (any port) the sandbox must not reach. Returns the fd. */
static int listen_any(unsigned *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* The host itself can reach addr:port (so a refusal inside is the sandbox's doing). */
static bool host_can_connect(const char *addr, unsigned port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return false;
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static void test_network_isolated(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	char ip[64], code[4096], expect[1024], extra[128] = "";
	unsigned lport;
	int lfd;
	size_t off = 0;

	HARNESS_REQUIRE(d);
	assert_true(d->port > 0);
	host_ipv4(ip, sizeof(ip));
	lfd = listen_any(&lport);
	assert_true(host_can_connect("127.0.0.1", d->port));
	assert_true(host_can_connect("127.0.0.1", lport));
	if (ip[0])
		assert_true(host_can_connect(ip, lport));
	else
		print_message(
			"note: the host has no non-loopback IPv4 address; probing 127.0.0.1 and 198.51.100.1 only\n");

	if (ip[0])
		snprintf(extra, sizeof(extra), "probe('%s', %u)\n", ip, lport);
	snprintf(code, sizeof(code),
		 "import socket\n"
		 "print('interfaces', sorted(n for i, n in socket.if_nameindex()))\n"
		 "def probe(host, port):\n"
		 "    s = socket.socket()\n"
		 "    s.settimeout(3)\n"
		 "    try:\n"
		 "        s.connect((host, port))\n"
		 "        print(host, port, 'CONNECTED')\n"
		 "    except OSError:\n"
		 "        print(host, port, 'blocked')\n"
		 "    finally:\n"
		 "        s.close()\n"
		 "probe('127.0.0.1', %u)\n"
		 "probe('127.0.0.1', %u)\n"
		 "probe('198.51.100.1', 53)\n"
		 "%s",
		 d->port, lport, extra);
	off += (size_t)snprintf(
		expect + off, sizeof(expect) - off,
		"interfaces ['lo']\n127.0.0.1 %u blocked\n127.0.0.1 %u blocked\n198.51.100.1 53 blocked\n",
		d->port, lport);
	if (ip[0])
		snprintf(expect + off, sizeof(expect) - off, "%s %u blocked\n", ip, lport);
	harness_run_code(d, "python", code, &r);
	close(lfd);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, expect);
	harness_run_free(&r);
}

static void test_filesystem_writable_places(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	harness_run_code(
		d, "bash",
		"for p in /usr/capibox-probe /usr/bin/capibox-probe /etc/capibox-probe /capibox-probe "
		"/var/capibox-probe /var/tmp/capibox-probe /proc/capibox-probe /sys/capibox-probe; do\n"
		"  if (echo x > $p) 2>/dev/null; then echo \"WRITABLE $p\"; else echo \"denied $p\"; fi\n"
		"done\n"
		"for p in /home/user/probe /tmp/probe; do\n"
		"  if echo x > $p && [ \"$(cat $p)\" = x ]; then echo \"ok $p\"; else echo \"FAILED $p\"; fi\n"
		"done\n"
		"pwd\n",
		&r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "denied /usr/capibox-probe\n"
			      "denied /usr/bin/capibox-probe\n"
			      "denied /etc/capibox-probe\n"
			      "denied /capibox-probe\n"
			      "denied /var/capibox-probe\n"
			      "denied /var/tmp/capibox-probe\n"
			      "denied /proc/capibox-probe\n"
			      "denied /sys/capibox-probe\n"
			      "ok /home/user/probe\n"
			      "ok /tmp/probe\n"
			      "/home/user\n");
	/* Nothing reached the host's files. */
	assert_int_not_equal(access("/usr/capibox-probe", F_OK), 0);
	assert_int_not_equal(access("/etc/capibox-probe", F_OK), 0);
	harness_run_free(&r);
}

/*
 * The issue: the code "can write only to a size-capped tmpfs /home/user ...
 * and /tmp". POSIX shared memory (python multiprocessing) needs /dev/shm:
 * it is a symlink into /tmp, so a write there lands in /tmp's capped tmpfs
 * and nowhere else.
 */
static void test_dev_shm_is_tmp(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};

	HARNESS_REQUIRE(d);
	harness_run_code(
		d, "bash",
		"readlink -f /dev/shm\n"
		"echo x > /dev/shm/capibox-probe && cat /tmp/capibox-probe\n"
		"[ \"$(stat -f -c %i /dev/shm/)\" = \"$(stat -f -c %i /tmp)\" ] && echo same-fs\n",
		&r);
	assert_run_exited(&r, 0);
	assert_run_stdout(&r, "/tmp\nx\nsame-fs\n");
	/* Never the host's /dev/shm. */
	assert_int_not_equal(access("/dev/shm/capibox-probe", F_OK), 0);
	harness_run_free(&r);
}

static void test_tmpfs_size_capped(void **state)
{
	struct daemon *d = *state;
	struct run r = {0};
	char dir[2][32];
	unsigned long mib[2];
	int i;

	HARNESS_REQUIRE(d);
	/*
	 * Fill /home/user, then /tmp, with 1 MiB files until the kernel says no
	 * (files are small so a per-file size limit does not stop it first).
	 * Give up at 4 GiB: no cap.
	 */
	harness_run_code(d, "python",
			 "import errno, os, signal\n"
			 "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
			 "chunk = b'x' * (1 << 20)\n"
			 "for top in ['/home/user', '/tmp']:\n"
			 "    d = os.path.join(top, 'fill')\n"
			 "    os.mkdir(d)\n"
			 "    n = 0\n"
			 "    err = 'none'\n"
			 "    while n < 4096:\n"
			 "        try:\n"
			 "            with open(os.path.join(d, str(n)), 'wb') as f:\n"
			 "                f.write(chunk)\n"
			 "        except OSError as e:\n"
			 "            err = errno.errorcode.get(e.errno, str(e.errno))\n"
			 "            break\n"
			 "        n += 1\n"
			 "    print(top, n, err)\n"
			 "    for name in os.listdir(d):\n"
			 "        os.unlink(os.path.join(d, name))\n"
			 "    os.rmdir(d)\n",
			 &r);
	assert_run_exited(&r, 0);
	if (sscanf((const char *)r.out, "/home/user %lu %31s\n/tmp %lu %31s", &mib[0], dir[0],
		   &mib[1], dir[1]) != 4) {
		harness_run_print(&r);
		fail_msg("cannot parse the probe's output");
	}
	for (i = 0; i < 2; i++)
		if (strcmp(dir[i], "ENOSPC") != 0 && strcmp(dir[i], "EDQUOT") != 0) {
			harness_run_print(&r);
			fail_msg(
				"%s: wrote %lu MiB and got %s; expected the tmpfs to fill up with ENOSPC",
				i == 0 ? "/home/user" : "/tmp", mib[i], dir[i]);
		}
	print_message("tmpfs filled after %lu MiB (/home/user) and %lu MiB (/tmp)\n", mib[0],
		      mib[1]);
	harness_run_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_and_capabilities),
		cmocka_unit_test(test_secrets_unreadable),
		cmocka_unit_test(test_daemon_files_invisible),
		cmocka_unit_test(test_processes_only_own),
		cmocka_unit_test(test_network_isolated),
		cmocka_unit_test(test_filesystem_writable_places),
		cmocka_unit_test(test_dev_shm_is_tmp),
		cmocka_unit_test(test_tmpfs_size_capped),
		cmocka_unit_test(harness_test_daemon_stops),
	};
	int rc;

	harness_init();
	rc = cmocka_run_group_tests_name("isolation", tests, setup, harness_group_teardown);
	return harness_finish(rc);
}
