/*
 * Fuzz target: the packets between the front and the supervisor. Every
 * packet passes ipc_check() (its layout) inside ipc_read() (the socket, the
 * descriptors) before either side looks at it; a malformed one is fatal to
 * the receiver (ipc_recv) or makes the front restart the supervisor
 * (ipc_read).
 *
 * Input: byte 0 is the number of descriptors that come with the packet
 * (0..5: one more than any packet may carry), the rest is the packet. Each
 * input is checked twice:
 *  - ipc_check() on a copy of exactly the packet's length, so a check that
 *    reads past what was received is an ASan report here (in the daemon the
 *    receive buffer is IPC_MAX_PACKET bytes and such a read would silently
 *    see stale bytes). An accepted packet is then read the way the
 *    receivers do (every string, every environment entry);
 *  - sent with its descriptors over a real ipc_socketpair() and received
 *    with ipc_read(): it must agree with ipc_check, return the descriptors
 *    of a good packet and close those of a bad one (a leaked descriptor
 *    shows as the next free descriptor number moving).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "ipc.h"

static int sv[2];
static int devnull;
static int lowest_free;

/* The receive buffer ipc_read wants: IPC_MAX_PACKET bytes, aligned. */
static union {
	union ipc_msg m;
	char raw[IPC_MAX_PACKET];
} rbuf;

static int next_free_fd(void)
{
	int fd = dup(devnull);

	if (fd < 0)
		abort();
	close(fd);
	return fd;
}

/*
 * True when a descriptor stays open past the input. libFuzzer's RSS thread
 * opens /proc files now and then: a number taken only for a moment is that,
 * so look again for a while before calling it a leak.
 */
static int fd_leaked(void)
{
	for (int i = 0; i < 200; i++) {
		if (next_free_fd() == lowest_free)
			return 0;
		usleep(1000);
	}
	return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	ipc_socketpair(sv);
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0)
		abort();
	lowest_free = next_free_fd();
	return 0;
}

/* strlen bounded by the field; the field must hold a terminator. */
static size_t field_strlen(const char *s, size_t cap)
{
	const char *z = memchr(s, '\0', cap);

	FUZZ_CHECK(z != NULL, "accepted an unterminated string field");
	return (size_t)(z - s);
}

/* What the supervisor does with SPAWN's and TAKE's environment: hand the
 * entries to execve as they are. */
static void read_env(const char *env, uint32_t env_len, uint32_t n_env, size_t avail)
{
	const char *p = env, *end = env + env_len;
	uint32_t n = 0;

	FUZZ_CHECK(env_len == avail && env_len <= IPC_ENV_MAX, "env_len %u of %zu", env_len, avail);
	while (p < end) {
		size_t l = strlen(p); /* must stop inside the packet: ASan checks */

		FUZZ_CHECK(l > 0 && memchr(p, '=', l) != NULL, "entry %u has no '='", n);
		p += l + 1;
		n++;
	}
	FUZZ_CHECK(p == end, "environment overruns env_len");
	FUZZ_CHECK(n == n_env, "n_env %u, found %u", n_env, n);
}

static void read_accepted(const union ipc_msg *m, size_t len, size_t nfds)
{
	switch (m->type) {
	case IPC_HELLO:
		FUZZ_CHECK(len == sizeof(m->hello) && nfds == 0, "HELLO len %zu fds %zu", len,
			   nfds);
		FUZZ_CHECK(m->hello.n_runtimes <= IPC_MAX_RUNTIMES, "n_runtimes %u",
			   m->hello.n_runtimes);
		for (size_t i = 0; i < IPC_MAX_RUNTIMES; i++)
			(void)field_strlen(m->hello.versions[i], IPC_VERSION_LEN);
		(void)field_strlen(m->hello.cgroup, sizeof(m->hello.cgroup));
		FUZZ_CHECK(m->hello.cgroup_mode <= 2, "cgroup_mode %u", m->hello.cgroup_mode);
		break;
	case IPC_SPAWN:
		FUZZ_CHECK(len >= sizeof(m->spawn) && nfds == IPC_SPAWN_FDS,
			   "SPAWN len %zu fds %zu", len, nfds);
		FUZZ_CHECK(m->spawn.warm <= 1, "warm %u", m->spawn.warm);
		FUZZ_CHECK(m->spawn.preloaded <= 1, "preloaded %u", m->spawn.preloaded);
		read_env(m->spawn.env, m->spawn.env_len, m->spawn.n_env, len - sizeof(m->spawn));
		break;
	case IPC_TAKE:
		FUZZ_CHECK(len >= sizeof(m->take) && nfds == 1, "TAKE len %zu fds %zu", len, nfds);
		read_env(m->take.env, m->take.env_len, m->take.n_env, len - sizeof(m->take));
		break;
	case IPC_WARM:
		FUZZ_CHECK(len == sizeof(m->warm) && nfds == 0, "WARM len %zu fds %zu", len, nfds);
		break;
	case IPC_ZYGOTE:
		FUZZ_CHECK(len == sizeof(m->zygote) && nfds == 0, "ZYGOTE len %zu fds %zu", len,
			   nfds);
		FUZZ_CHECK(m->zygote.preloaded_serves <= 1, "serves %u",
			   m->zygote.preloaded_serves);
		break;
	case IPC_KILL:
		FUZZ_CHECK(len == sizeof(m->kill) && nfds == 0, "KILL len %zu fds %zu", len, nfds);
		FUZZ_CHECK(m->kill.reason <= EXEC_REASON_SANDBOX_ERROR, "reason %u",
			   m->kill.reason);
		break;
	case IPC_STARTED:
		FUZZ_CHECK(len == sizeof(m->started) && nfds == 0, "STARTED len %zu fds %zu", len,
			   nfds);
		break;
	case IPC_EXITED:
		FUZZ_CHECK(len == sizeof(m->exited) && nfds == 0, "EXITED len %zu fds %zu", len,
			   nfds);
		FUZZ_CHECK(m->exited.reason <= EXEC_REASON_SANDBOX_ERROR, "reason %u",
			   m->exited.reason);
		(void)field_strlen(m->exited.message, sizeof(m->exited.message));
		(void)exec_reason_name((enum exec_reason)m->exited.reason);
		break;
	default: FUZZ_CHECK(0, "accepted unknown type %u", m->type);
	}
}

/* Sends data as one packet with nfds copies of /dev/null (not ipc_send: it
 * refuses more than IPC_SPAWN_FDS, and the receiver must cope with more). */
static void send_raw(const uint8_t *data, size_t size, size_t nfds)
{
	struct iovec iov = {.iov_base = (void *)data, .iov_len = size};
	union {
		char buf[CMSG_SPACE(sizeof(int) * (IPC_SPAWN_FDS + 1))];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (nfds > 0) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		for (size_t i = 0; i < nfds; i++)
			memcpy(CMSG_DATA(c) + i * sizeof(int), &devnull, sizeof(int));
	}
	do {
		n = sendmsg(sv[0], &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)size) {
		perror("sendmsg");
		abort();
	}
}

static void check_socket(const uint8_t *data, size_t size, size_t nfds, const char *bad_direct)
{
	int fds[IPC_SPAWN_FDS] = {-1, -1, -1, -1, -1};
	const char *why = NULL;
	ssize_t n;

	send_raw(data, size, nfds);
	n = ipc_read(sv[1], &rbuf.m, fds, &why);
	if (size == 0) {
		/* an empty packet reads as the peer's EOF: the receiver ends either way */
		FUZZ_CHECK(n == 0, "empty packet: %zd", n);
	} else if (n < 0) {
		FUZZ_CHECK(why != NULL && why[0] != '\0', "refused without a reason");
		FUZZ_CHECK(bad_direct != NULL || nfds > IPC_SPAWN_FDS,
			   "ipc_read refused what ipc_check accepts: %s", why);
	} else {
		FUZZ_CHECK((size_t)n == size && bad_direct == NULL && nfds <= IPC_SPAWN_FDS,
			   "ipc_read accepted %zd bytes, %zu fds, ipc_check: %s", n, nfds,
			   bad_direct ? bad_direct : "ok");
		for (size_t i = 0; i < nfds; i++) {
			FUZZ_CHECK(fcntl(fds[i], F_GETFD) == FD_CLOEXEC, "fds[%zu] not CLOEXEC", i);
			close(fds[i]);
		}
	}
	FUZZ_CHECK(!fd_leaked(), "a received descriptor was left open");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	union ipc_msg *m;
	const char *bad;
	size_t nfds;

	if (size < 1)
		return 0;
	nfds = data[0] % (IPC_SPAWN_FDS + 2);
	data++;
	size--;
	/* Longer packets never reach ipc_check: ipc_read sees MSG_TRUNC. */
	if (size > IPC_MAX_PACKET)
		return 0;
	/* exactly size bytes (malloc(0) may return NULL: ask for one then) */
	m = malloc(size ? size : 1);
	if (m == NULL)
		abort();
	memcpy(m, data, size);
	bad = ipc_check(m, size, nfds);
	if (bad == NULL)
		read_accepted(m, size, nfds);
	else
		FUZZ_CHECK(bad[0] != '\0', "empty reason");
	free(m);
	check_socket(data, size, nfds, bad);
	return 0;
}
