#include "ipc.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

void ipc_socketpair(int sv[2])
{
	int size = (int)(IPC_MAX_PACKET * 4);

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		fatal("socketpair");
	for (int i = 0; i < 2; i++) {
		if (setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) < 0 ||
		    setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) < 0)
			fatal("setsockopt");
	}
}

int ipc_send_packet(int sock, const void *buf, size_t len, const int *fds, size_t nfds)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	union {
		char buf[CMSG_SPACE(sizeof(int) * IPC_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (nfds > IPC_MAX_FDS) {
		errno = EINVAL;
		return -1;
	}
	if (nfds > 0) {
		struct cmsghdr *c;
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if ((size_t)n != len) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

int ipc_send(int sock, const void *msg, size_t len, const int *fds, size_t nfds)
{
	if (nfds > IPC_SPAWN_FDS || len > IPC_MAX_PACKET) {
		errno = EINVAL;
		return -1;
	}
	return ipc_send_packet(sock, msg, len, fds, nfds);
}

/* n "NAME=value\0" entries filling exactly len bytes (of avail that follow). */
static const char *check_env(const char *env, uint32_t len, uint32_t n, size_t avail)
{
	const char *p = env, *end;
	uint32_t count = 0;

	if (len > IPC_ENV_MAX || avail != len)
		return "bad environment length";
	end = p + len;
	while (p < end) {
		const char *z = memchr(p, '\0', (size_t)(end - p));
		if (z == NULL || z == p || memchr(p, '=', (size_t)(z - p)) == NULL)
			return "bad environment entry";
		count++;
		p = z + 1;
	}
	return count == n ? NULL : "bad environment count";
}

const char *ipc_check(const union ipc_msg *m, size_t len, size_t nfds)
{
	if (len < sizeof(uint32_t))
		return "short packet";
	switch (m->type) {
	case IPC_HELLO:
		if (len != sizeof(struct ipc_hello) || nfds != 0)
			return "bad HELLO size";
		if (m->hello.n_runtimes > IPC_MAX_RUNTIMES)
			return "bad HELLO runtime count";
		for (size_t i = 0; i < IPC_MAX_RUNTIMES; i++)
			if (memchr(m->hello.versions[i], '\0', IPC_VERSION_LEN) == NULL)
				return "unterminated HELLO version";
		if (memchr(m->hello.cgroup, '\0', sizeof(m->hello.cgroup)) == NULL ||
		    m->hello.cgroup_mode > 2)
			return "bad HELLO cgroup";
		return NULL;
	case IPC_SPAWN:
		if (len < sizeof(struct ipc_spawn) || nfds != IPC_SPAWN_FDS)
			return "bad SPAWN size or descriptors";
		if (m->spawn.warm > 1 || m->spawn.preloaded > 1)
			return "bad SPAWN mode";
		return check_env(m->spawn.env, m->spawn.env_len, m->spawn.n_env,
				 len - sizeof(struct ipc_spawn));
	case IPC_TAKE:
		if (len < sizeof(struct ipc_take) || nfds != 1)
			return "bad TAKE size or descriptors";
		return check_env(m->take.env, m->take.env_len, m->take.n_env,
				 len - sizeof(struct ipc_take));
	case IPC_WARM:
		if (len != sizeof(struct ipc_warm) || nfds != 0)
			return "bad WARM size";
		return NULL;
	case IPC_ZYGOTE:
		if (len != sizeof(struct ipc_zygote) || nfds != 0)
			return "bad ZYGOTE size";
		if (m->zygote.preloaded_serves > 1)
			return "bad ZYGOTE state";
		return NULL;
	case IPC_KILL:
		if (len != sizeof(struct ipc_kill) || nfds != 0)
			return "bad KILL size";
		if (m->kill.reason > EXEC_REASON_SANDBOX_ERROR)
			return "bad KILL reason";
		return NULL;
	case IPC_STARTED:
		if (len != sizeof(struct ipc_started) || nfds != 0)
			return "bad STARTED size";
		return NULL;
	case IPC_EXITED:
		if (len != sizeof(struct ipc_exited) || nfds != 0)
			return "bad EXITED size";
		if (m->exited.reason > EXEC_REASON_SANDBOX_ERROR)
			return "bad EXITED reason";
		if (memchr(m->exited.message, '\0', sizeof(m->exited.message)) == NULL)
			return "unterminated EXITED message";
		return NULL;
	}
	return "unknown packet type";
}

ssize_t ipc_recv_packet(int sock, void *buf, size_t len, int *fds, size_t maxfds, size_t *nfds,
			const char **bad)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	union {
		char buf[CMSG_SPACE(sizeof(int) * (IPC_MAX_FDS + 1))];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf)};
	ssize_t n;

	*nfds = 0;
	*bad = NULL;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t k;
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
			*bad = "unexpected control message";
			continue;
		}
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t j = 0; j < k; j++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + j * sizeof(int), sizeof(int));
			if (*nfds < maxfds) {
				fds[(*nfds)++] = fd;
			} else {
				close(fd);
				*bad = "too many descriptors";
			}
		}
	}
	if (*bad == NULL && (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		*bad = "truncated packet";
	return n;
}

ssize_t ipc_read(int sock, union ipc_msg *buf, int fds[IPC_SPAWN_FDS], const char **why)
{
	const char *bad;
	size_t nfds;
	ssize_t n = ipc_recv_packet(sock, buf, IPC_MAX_PACKET, fds, IPC_SPAWN_FDS, &nfds, &bad);

	if (n < 0) {
		if (errno == ECONNRESET)
			return 0; /* the peer is gone: same as EOF */
		*why = strerror(errno);
		return -1;
	}
	if (n == 0) {
		/* EOF, or an empty packet that carried descriptors: either way
		 * nothing of it is kept (found by tests/fuzz/fuzz_ipc) */
		for (size_t j = 0; j < nfds; j++)
			close(fds[j]);
		return 0;
	}
	if (bad == NULL)
		bad = ipc_check(buf, (size_t)n, nfds);
	if (bad != NULL) {
		/* nothing of a malformed packet is used, its descriptors included */
		for (size_t j = 0; j < nfds; j++)
			close(fds[j]);
		*why = bad;
		return -1;
	}
	return n;
}

size_t ipc_recv(int sock, union ipc_msg *buf, int fds[IPC_SPAWN_FDS])
{
	const char *why = NULL;
	ssize_t n = ipc_read(sock, buf, fds, &why);

	if (n < 0)
		fatalx("ipc: malformed packet from peer: %s", why);
	return (size_t)n;
}
