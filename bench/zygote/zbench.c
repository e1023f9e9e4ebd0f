/*
 * zbench: starts the zygote prototype and drives it as the supervisor
 * would, measuring each execution.
 *
 *   zbench LIBDIR STATEDIR none|pandas [-n N] [-j J] [-w WARM] [-c CODE]
 *          [--cg] [--idle M] [--expect TEXT]
 *
 * The zygote (python3 -u LIBDIR/zygote.py, with LIBDIR/_zyg.so) runs in its
 * own user namespace (uid 0..64 inside = host 6100000..6100064), mount
 * namespace (the sandbox's read-only root, built here like
 * server/sandbox/mounts.c, with LIBDIR bound read-only on /.zyg and an
 * unmasked proc of its own pid namespace, which the children need to be
 * allowed to mount theirs), pid, ipc, uts and net namespaces.
 *
 * Each execution: a memfd with the code, a pipe for stdout+stderr, one for
 * init's report and one for "go"; the request goes to the zygote, whose
 * answer carries the child's pidfd; with --cg the driver then makes the
 * child's cgroup v1 groups (memory, pids, cpuacct under capibox-zygote/)
 * and attaches it, as the supervisor would, before "go". -j J runs J
 * workers (processes), each with its own socket to the zygote, each doing
 * executions back to back. --idle M starts M sandboxes that block reading
 * stdin and prints their and the zygote's RSS/PSS instead.
 *
 * Not product code: a bench prototype.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define UID_BASE 6100000u
#define NIDS 65
#define MAXJ 16
#define MAXN 20000

struct zyg_report { /* _zyg.c */
	int32_t type;
	int32_t wstatus;
	int64_t setup_us;
	int64_t setup_cpu;
	int64_t utime_us;
	int64_t stime_us;
	int64_t maxrss_kb;
	int64_t run_us;
	char msg[128];
};

struct rec {		  /* one execution, worker -> main */
	int64_t total;	  /* request sent -> output EOF and report read */
	int64_t reply;	  /* request sent -> zygote's answer */
	int64_t clone_us; /* zygote: clone() */
	int64_t maps_us;  /* zygote: writing the maps */
	int64_t cg_us;	  /* driver: mkdir + limits + attach */
	int64_t setup_us; /* init: go -> runner forked */
	int64_t setup_cpu;
	int64_t run_cpu; /* runner's utime + stime */
	int64_t cg_cpu;	 /* cpuacct.usage of the sandbox (us), --cg only */
	int64_t rmdir_us;
	int64_t first_out; /* request sent -> first output byte */
	int64_t report_at; /* request sent -> init's report */
	int64_t run_us;	   /* init: runner forked -> reaped */
	int32_t ok;
};

static const char *const ctrls[] = {"memory", "pids", "cpuacct"};

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static void die(const char *what)
{
	fprintf(stderr, "zbench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

static int read_file(const char *path, char *buf, size_t len)
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
	return 0;
}

/* ---- the zygote's root: the sandbox's filesystem, as mounts.c builds it ---- */

static void bind_ro(const char *src, const char *dst)
{
	if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
		die(src);
	if (mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) <
	    0)
		die(dst);
}

static void put(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die(path);
	close(fd);
}

static void build_root(const char *root, const char *libdir)
{
	static const char *const usr_dirs[] = {"usr",	"bin",	 "sbin",  "lib",
					       "lib32", "lib64", "libx32"};
	static const char *const etc_binds[] = {
		"ld.so.cache",	"ld.so.conf", "ld.so.conf.d", "alternatives", "fonts",
		"matplotlibrc", "localtime",  "python3",      "python3.11",   "mime.types",
	};
	static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom"};

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("private /");
	if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755") < 0)
		die("root tmpfs");
	if (chdir(root) < 0)
		die("chdir root");
	for (size_t i = 0; i < sizeof(usr_dirs) / sizeof(usr_dirs[0]); i++) {
		char host[64], target[256];
		struct stat st;
		ssize_t n;
		snprintf(host, sizeof(host), "/%s", usr_dirs[i]);
		if (lstat(host, &st) < 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			n = readlink(host, target, sizeof(target) - 1);
			if (n < 0)
				die("readlink");
			target[n] = '\0';
			if (symlink(target, usr_dirs[i]) < 0)
				die("symlink");
		} else if (S_ISDIR(st.st_mode)) {
			if (mkdir(usr_dirs[i], 0755) < 0)
				die("mkdir usr");
			bind_ro(host, usr_dirs[i]);
		}
	}
	if (mkdir("etc", 0755) < 0)
		die("mkdir etc");
	put("etc/passwd", "root:x:0:0:root:/root:/usr/sbin/nologin\n"
			  "user:x:1000:1000:user:/home/user:/bin/bash\n"
			  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
	put("etc/group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n");
	put("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tsandbox\n");
	put("etc/hostname", "sandbox\n");
	put("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n");
	put("etc/resolv.conf", "# no network in the sandbox\n");
	for (size_t i = 0; i < sizeof(etc_binds) / sizeof(etc_binds[0]); i++) {
		char host[128], dst[128];
		struct stat st;
		snprintf(host, sizeof(host), "/etc/%s", etc_binds[i]);
		snprintf(dst, sizeof(dst), "etc/%s", etc_binds[i]);
		if (stat(host, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (mkdir(dst, 0755) < 0)
				die(dst);
		} else if (S_ISREG(st.st_mode)) {
			put(dst, "");
		} else {
			continue;
		}
		bind_ro(host, dst);
	}
	/* a proc of the zygote's pid namespace, deliberately unmasked: a child
	 * in a less privileged user namespace may mount its own proc only if
	 * one is fully visible in its mount namespace. Each child covers it
	 * with its own, masked, proc before anything runs. */
	if (mkdir("proc", 0555) < 0 ||
	    mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die("proc");
	if (mkdir("dev", 0755) < 0 ||
	    mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755") < 0)
		die("dev");
	for (size_t i = 0; i < sizeof(dev_nodes) / sizeof(dev_nodes[0]); i++) {
		char host[64], dst[64];
		snprintf(host, sizeof(host), "/dev/%s", dev_nodes[i]);
		snprintf(dst, sizeof(dst), "dev/%s", dev_nodes[i]);
		put(dst, "");
		if (mount(host, dst, NULL, MS_BIND, NULL) < 0)
			die(host);
	}
	if (symlink("/proc/self/fd", "dev/fd") < 0 || symlink("/tmp", "dev/shm") < 0 ||
	    symlink("/proc/self/fd/0", "dev/stdin") < 0 ||
	    symlink("/proc/self/fd/1", "dev/stdout") < 0 ||
	    symlink("/proc/self/fd/2", "dev/stderr") < 0)
		die("dev symlinks");
	if (mount(NULL, "dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
		  NULL) < 0)
		die("dev ro");
	/* mount points the children cover with their own tmpfs */
	if (mkdir("tmp", 01777) < 0 || mkdir("home", 0755) < 0 || mkdir("home/user", 0755) < 0 ||
	    mkdir(".capibox", 0755) < 0 || mkdir(".zyg", 0755) < 0)
		die("mkdir");
	bind_ro(libdir, ".zyg");
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		die("pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		die("detach old root");
	if (chdir("/") < 0)
		die("chdir /");
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) <
	    0)
		die("seal /");
}

/* Starts the zygote; returns its host pid. socks[i] are its ends (fds 3..). */
static pid_t start_zygote(const char *libdir, const char *state, const char *mode, int *socks,
			  int nsocks, const char *log)
{
	int sync[2], logfd;
	char path[256], map[64], b;
	pid_t pid;

	if (pipe2(sync, O_CLOEXEC) < 0)
		die("pipe");
	/* the mount point: made by host root (the zygote's uid cannot write
	 * STATEDIR), only mounted on inside the zygote's mount namespace */
	snprintf(path, sizeof(path), "%s/zroot", state);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		die(path);
	logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (logfd < 0)
		die(log);
	if (setgroups(0, NULL) < 0)
		die("setgroups");
	pid = (pid_t)syscall(SYS_clone,
			     CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC |
				     CLONE_NEWUTS | CLONE_NEWNET | SIGCHLD,
			     NULL, NULL, NULL, NULL);
	if (pid < 0)
		die("clone zygote");
	if (pid == 0) {
		char root[256],
			*argv[] = {"/usr/bin/python3", "-u", "/.zyg/zygote.py", (char *)mode, NULL};
		char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin",
				"HOME=/home/user",
				"LANG=C.UTF-8",
				"OPENBLAS_NUM_THREADS=1",
				"OMP_NUM_THREADS=1",
				"MKL_NUM_THREADS=1",
				"PYTHONDONTWRITEBYTECODE=1",
				NULL};
		close(sync[1]);
		if (read(sync[0], &b, 1) != 1)
			_exit(1);
		if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
			die("setresuid 0");
		snprintf(root, sizeof(root), "%s/zroot", state);
		build_root(root, libdir);
		int nul = open("/dev/null", O_RDWR);
		if (nul < 0 || dup2(nul, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
			die("stdio");
		/* the sockets become 3, 4, ... in order (dup first: the targets
		 * may hold other descriptors) */
		int tmp[MAXJ];
		for (int i = 0; i < nsocks; i++)
			if ((tmp[i] = fcntl(socks[i], F_DUPFD_CLOEXEC, 100)) < 0)
				die("dup");
		for (int i = 0; i < nsocks; i++)
			if (dup2(tmp[i], 3 + i) < 0)
				die("dup2");
		syscall(SYS_close_range, 3 + nsocks, ~0U, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execve(argv[0], argv, envp);
		die("exec python3");
	}
	close(sync[0]);
	close(logfd);
	snprintf(map, sizeof(map), "0 %u %d\n", UID_BASE, NIDS);
	snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
	if (write_file(path, map) < 0)
		die(path);
	snprintf(path, sizeof(path), "/proc/%d/setgroups", pid);
	if (write_file(path, "deny") < 0)
		die(path);
	snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
	if (write_file(path, map) < 0)
		die(path);
	if (write(sync[1], "g", 1) != 1)
		die("release zygote");
	close(sync[1]);
	for (int i = 0; i < 600; i++) { /* until "zygote ready" (60 s) */
		char buf[4096];
		if (read_file(log, buf, sizeof(buf)) == 0 && strstr(buf, "zygote ready"))
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			fprintf(stderr, "zygote died:\n%s\n", buf);
			exit(1);
		}
		usleep(100000);
	}
	fprintf(stderr, "zygote not ready after 60 s\n");
	kill(pid, SIGKILL);
	exit(1);
}

/* ---- one execution ---------------------------------------------------------- */

struct opts {
	const char *code;
	const char *expect;
	int cg;
	int idle_stdin; /* keep stdin open: the code blocks (idle measurement) */
	int show;	/* print every run's output */
	int pause_ms;	/* unmeasured think time before each run */
	int prefork;	/* sandboxes spawned ahead per worker */
};

static pid_t pid_of_pidfd(int pidfd)
{
	char path[64], buf[1024], *p;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	if (read_file(path, buf, sizeof(buf)) < 0 || (p = strstr(buf, "\nPid:")) == NULL)
		return -1;
	return (pid_t)strtol(p + 5, NULL, 10);
}

static int send_req(int sock, int id, int k, int *fds)
{
	char msg[64], cbuf[CMSG_SPACE(6 * sizeof(int))];
	struct iovec iov = {.iov_base = msg};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm;

	iov.iov_len = (size_t)snprintf(msg, sizeof(msg), "%d %d 128", id, k);
	memset(cbuf, 0, sizeof(cbuf));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(6 * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, 6 * sizeof(int));
	return sendmsg(sock, &mh, 0) < 0 ? -1 : 0;
}

static int recv_reply(int sock, long *vals, int *pidfd)
{
	char msg[128], cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = msg, .iov_len = sizeof(msg) - 1};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm;
	ssize_t n;

	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n <= 0)
		return -1;
	msg[n] = '\0';
	cm = CMSG_FIRSTHDR(&mh);
	if (cm == NULL || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(pidfd, CMSG_DATA(cm), sizeof(int));
	if (sscanf(msg, "%ld %ld %ld %ld", &vals[0], &vals[1], &vals[2], &vals[3]) != 4)
		return -1;
	return 0;
}

static void cg_path(char *buf, size_t len, const char *ctrl, int id, const char *file)
{
	snprintf(buf, len, "/sys/fs/cgroup/%s/capibox-zygote/z-%d-%d%s%s", ctrl, (int)getpid(), id,
		 file ? "/" : "", file ? file : "");
}

/* A sandbox the zygote has made: spawned (and attached), maybe not yet running. */
struct sbx {
	int id, out, rep, go, in_w, code, pidfd;
	pid_t hp;
	struct rec r; /* reply, clone, maps, cg figures of the spawn */
};

/* Asks the zygote for a sandbox and attaches it to its cgroups; the code
 * memfd stays empty (written at start_sbx: a prefork pool can hold it). */
static void spawn_sbx(int sock, int id, int k, const struct opts *o, struct sbx *sb)
{
	int out[2], rep[2], go[2], in[2] = {-1, -1}, fds[6];
	long vals[4];
	char path[256];
	int64_t t0, t1;

	memset(sb, 0, sizeof(*sb));
	sb->id = id;
	sb->in_w = -1;
	sb->code = memfd_create("code", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (sb->code < 0)
		die("memfd");
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)
		die("pipe");
	if (o->idle_stdin) {
		if (pipe2(in, O_CLOEXEC) < 0)
			die("pipe");
		sb->in_w = in[1];
	} else {
		in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	fds[0] = in[0], fds[1] = out[1], fds[2] = out[1], fds[3] = rep[1], fds[4] = go[0];
	fds[5] = sb->code;
	t0 = mono_us();
	if (send_req(sock, id, k, fds) < 0)
		die("send");
	close(in[0]), close(out[1]), close(rep[1]), close(go[0]);
	if (recv_reply(sock, vals, &sb->pidfd) < 0)
		die("reply");
	t1 = mono_us();
	sb->r.reply = t1 - t0, sb->r.clone_us = vals[2], sb->r.maps_us = vals[3];
	sb->hp = pid_of_pidfd(sb->pidfd);
	sb->out = out[0], sb->rep = rep[0], sb->go = go[1];
	if (o->cg) {
		char pidstr[32];
		for (size_t i = 0; i < 3; i++) {
			cg_path(path, sizeof(path), ctrls[i], id, NULL);
			if (mkdir(path, 0755) < 0)
				die(path);
		}
		cg_path(path, sizeof(path), "memory", id, "memory.limit_in_bytes");
		if (write_file(path, "536870912") < 0)
			die(path);
		cg_path(path, sizeof(path), "pids", id, "pids.max");
		if (write_file(path, "65") < 0)
			die(path);
		snprintf(pidstr, sizeof(pidstr), "%d", (int)sb->hp);
		for (size_t i = 0; i < 3; i++) {
			cg_path(path, sizeof(path), ctrls[i], id, "cgroup.procs");
			if (write_file(path, pidstr) < 0)
				die(path);
		}
		sb->r.cg_us = mono_us() - t1;
	}
}

/* Gives a spawned sandbox its code and lets it go; with hold, leaves it
 * running; otherwise reads its output and report until the end. t0 is
 * when the execution was asked for. */
static void run_sbx(struct sbx *sb, const struct opts *o, struct rec *r, int64_t t0, int *hold)
{
	char path[256], buf[65536], got[8192];
	size_t gotlen = 0;
	struct zyg_report zr;
	int out_open = 1, rep_open = 1;

	*r = sb->r;
	if (write(sb->code, o->code, strlen(o->code)) != (ssize_t)strlen(o->code) ||
	    fcntl(sb->code, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) <
		    0)
		die("code");
	close(sb->code);
	if (write(sb->go, "g", 1) != 1)
		die("go");
	close(sb->go);
	if (hold) {
		*hold = sb->in_w;
		close(sb->out), close(sb->rep), close(sb->pidfd);
		return;
	}
	memset(&zr, 0, sizeof(zr));
	while (out_open || rep_open) {
		struct pollfd p[2] = {{.fd = out_open ? sb->out : -1, .events = POLLIN},
				      {.fd = rep_open ? sb->rep : -1, .events = POLLIN}};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			die("poll");
		if (p[0].revents) {
			ssize_t n = read(sb->out, buf, sizeof(buf));
			if (n > 0 && r->first_out == 0)
				r->first_out = mono_us() - t0;
			if (n <= 0)
				out_open = 0;
			else if (gotlen + (size_t)n < sizeof(got)) {
				memcpy(got + gotlen, buf, (size_t)n);
				gotlen += (size_t)n;
			}
		}
		if (p[1].revents) {
			ssize_t n = read(sb->rep, &zr, sizeof(zr));
			if (n != sizeof(zr)) {
				fprintf(stderr, "no report from %d\n", sb->id);
				memset(&zr, 0, sizeof(zr));
			}
			rep_open = 0;
			r->report_at = mono_us() - t0;
		}
	}
	r->total = mono_us() - t0;
	close(sb->out), close(sb->rep);
	got[gotlen] = '\0';
	r->setup_us = zr.setup_us, r->setup_cpu = zr.setup_cpu, r->run_us = zr.run_us;
	r->run_cpu = zr.utime_us + zr.stime_us;
	r->ok = zr.type == 1 && WIFEXITED(zr.wstatus) && WEXITSTATUS(zr.wstatus) == 0 &&
		(o->expect == NULL || strcmp(got, o->expect) == 0);
	if (o->show)
		printf("--- run %d (host pid %d):\n%s", sb->id, (int)sb->hp, got);
	if (!r->ok)
		fprintf(stderr, "run %d: type %d status %#x msg '%s' output '%s'\n", sb->id,
			zr.type, zr.wstatus, zr.msg, got);
	if (o->cg) {
		struct pollfd p = {.fd = sb->pidfd, .events = POLLIN};
		int64_t t3;
		/* the group can go once init has exited */
		while (poll(&p, 1, -1) < 0 && errno == EINTR)
			;
		cg_path(path, sizeof(path), "cpuacct", sb->id, "cpuacct.usage");
		if (read_file(path, buf, sizeof(buf)) == 0)
			r->cg_cpu = (int64_t)(strtoull(buf, NULL, 10) / 1000);
		t3 = mono_us();
		for (size_t i = 0; i < 3; i++) {
			cg_path(path, sizeof(path), ctrls[i], sb->id, NULL);
			while (rmdir(path) < 0) {
				if (errno != EBUSY)
					die(path);
				usleep(50);
			}
		}
		r->rmdir_us = mono_us() - t3;
	}
	close(sb->pidfd);
}

/* One execution on request: spawn, then run (everything on the clock). */
static void run_one(int sock, int id, int k, const struct opts *o, struct rec *r, int *hold,
		    pid_t *hostpid)
{
	struct sbx sb;
	int64_t t0 = mono_us();

	spawn_sbx(sock, id, k, o, &sb);
	if (hostpid)
		*hostpid = sb.hp;
	run_sbx(&sb, o, r, t0, hold);
}

/* ---- statistics ------------------------------------------------------------- */

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int64_t q(int64_t *v, int n, double f)
{
	qsort(v, (size_t)n, sizeof(*v), cmp64);
	return v[(int)(f * (n - 1) + 0.5)];
}

static void stat_line(const char *name, struct rec *rs, int n, size_t off)
{
	static int64_t v[MAXN];
	for (int i = 0; i < n; i++)
		v[i] = *(int64_t *)((char *)&rs[i] + off);
	printf("  %-28s p50 %8.3f  p90 %8.3f  p99 %8.3f ms\n", name, q(v, n, 0.5) / 1000.0,
	       q(v, n, 0.9) / 1000.0, q(v, n, 0.99) / 1000.0);
}

static int64_t proc_cpu_us(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_file(path, buf, sizeof(buf)) < 0 || (p = strrchr(buf, ')')) == NULL)
		return 0;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return 0;
	return (int64_t)(ut + st) * 1000000 / sysconf(_SC_CLK_TCK);
}

/* machine-wide busy CPU time (all cores), us */
static int64_t machine_busy_us(void)
{
	char buf[512];
	unsigned long long v[10] = {0};

	if (read_file("/proc/stat", buf, sizeof(buf)) < 0)
		return 0;
	sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
	       &v[4], &v[5], &v[6], &v[7]);
	return (int64_t)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * 1000000 / sysconf(_SC_CLK_TCK);
}

static long priv_kb; /* Private_Clean + Private_Dirty of the last rollup() */

static void rollup(pid_t pid, long *rss, long *pss)
{
	char path[64], buf[4096], *p;

	*rss = *pss = 0;
	priv_kb = 0;
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	if (read_file(path, buf, sizeof(buf)) < 0)
		return;
	if ((p = strstr(buf, "\nRss:")))
		*rss = strtol(p + 5, NULL, 10);
	if ((p = strstr(buf, "\nPss:")))
		*pss = strtol(p + 5, NULL, 10);
	if ((p = strstr(buf, "\nPrivate_Clean:")))
		priv_kb += strtol(p + 15, NULL, 10);
	if ((p = strstr(buf, "\nPrivate_Dirty:")))
		priv_kb += strtol(p + 15, NULL, 10);
}

/* Removes the groups this zbench made (idle sandboxes leave theirs). */
static void cg_sweep(void)
{
	char prefix[32];

	snprintf(prefix, sizeof(prefix), "z-%d-", (int)getpid());
	for (size_t i = 0; i < 3; i++) {
		char dir[128], path[512];
		struct dirent *de;
		DIR *d;
		snprintf(dir, sizeof(dir), "/sys/fs/cgroup/%s/capibox-zygote", ctrls[i]);
		if ((d = opendir(dir)) == NULL)
			continue;
		while ((de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			for (int t = 0; t < 2000 && rmdir(path) < 0 && errno == EBUSY; t++)
				usleep(1000); /* its processes are still dying */
		}
		closedir(d);
		rmdir(dir); /* only if empty: another zbench may be running */
	}
}

static pid_t child_of(pid_t parent)
{
	char path[128], buf[256];

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)parent, (int)parent);
	if (read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	return (pid_t)strtol(buf, NULL, 10);
}

int main(int argc, char **argv)
{
	struct opts o = {.code = "print(1)\n", .expect = "1\n"};
	int n = 100, j = 1, warm = 5, idle = 0, socks[MAXJ][2];
	const char *libdir, *state, *mode;
	char log[512];
	pid_t zpid;
	static struct rec rs[MAXN];

	if (argc < 4) {
		fprintf(stderr,
			"usage: zbench LIBDIR STATEDIR none|pandas [-n N] [-j J] [-w W] "
			"[-c CODE] [--expect TEXT|-] [--show] [--cg] [--pause MS] [--prefork P] "
			"[--idle M]\n");
		return 2;
	}
	libdir = argv[1], state = argv[2], mode = argv[3];
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			n = (int)strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-j") && i + 1 < argc)
			j = (int)strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-w") && i + 1 < argc)
			warm = (int)strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-c") && i + 1 < argc)
			o.code = argv[++i];
		else if (!strcmp(argv[i], "--expect") && i + 1 < argc) {
			o.expect = argv[++i];
			if (!strcmp(o.expect, "-"))
				o.expect = NULL;
		} else if (!strcmp(argv[i], "--show"))
			o.show = 1;
		else if (!strcmp(argv[i], "--cg"))
			o.cg = 1;
		else if (!strcmp(argv[i], "--prefork") && i + 1 < argc)
			o.prefork = (int)strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--pause") && i + 1 < argc)
			o.pause_ms = (int)strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--idle") && i + 1 < argc)
			idle = (int)strtol(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "bad argument %s\n", argv[i]);
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (n < 1 || n > MAXN || j < 1 || j > MAXJ || idle > 16 || o.prefork < 0 || o.prefork > 8 ||
	    (o.prefork && j * 8 > NIDS - 1))
		return 2;
	if (o.cg)
		for (size_t i = 0; i < 3; i++) {
			char p[128];
			snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/capibox-zygote", ctrls[i]);
			if (mkdir(p, 0755) < 0 && errno != EEXIST)
				die(p);
		}
	for (int i = 0; i < j; i++)
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, socks[i]) < 0)
			die("socketpair");
	{
		int zs[MAXJ];
		for (int i = 0; i < j; i++)
			zs[i] = socks[i][1];
		snprintf(log, sizeof(log), "%s/zygote-%d.log", state, (int)getpid());
		int64_t t = mono_us();
		zpid = start_zygote(libdir, state, mode, zs, j, log);
		printf("zygote (%s) pid %d ready in %.1f ms\n", mode, (int)zpid,
		       (mono_us() - t) / 1000.0);
		for (int i = 0; i < j; i++)
			close(socks[i][1]);
	}
	{
		long rss, pss;
		rollup(zpid, &rss, &pss);
		printf("zygote idle: RSS %.1f MiB, PSS %.1f MiB\n", rss / 1024.0, pss / 1024.0);
	}
	for (int i = 0; i < warm; i++) {
		struct rec r;
		run_one(socks[0][0], 900000 + i, 1, &o, &r, NULL, NULL);
	}
	if (idle) {
		int holds[16];
		pid_t hp[16];
		struct opts io = o;
		io.code = "import sys\nsys.stdin.read()\n";
		io.idle_stdin = 1;
		for (int i = 0; i < idle; i++) {
			struct rec r;
			run_one(socks[0][0], 800000 + i, 1 + i, &io, &r, &holds[i], &hp[i]);
		}
		sleep(2);
		for (int i = 0; i < idle; i++) {
			long r1, p1, r2, p2;
			pid_t runner = child_of(hp[i]);
			long v1, v2;
			rollup(hp[i], &r1, &p1);
			v1 = priv_kb;
			rollup(runner, &r2, &p2);
			v2 = priv_kb;
			{
				char path[64], st[4096], *u;
				snprintf(path, sizeof(path), "/proc/%d/status", (int)runner);
				if (read_file(path, st, sizeof(st)) == 0 &&
				    (u = strstr(st, "\nUid:")))
					printf("idle sandbox %d: runner host %.*s\n", i,
					       (int)strcspn(u + 1, "\n"), u + 1);
			}
			printf("idle sandbox %d: init %d RSS %.1f PSS %.1f private %.1f MiB; runner %d "
			       "RSS %.1f PSS %.1f private %.1f MiB; together PSS %.1f private %.1f "
			       "MiB\n",
			       i, (int)hp[i], r1 / 1024.0, p1 / 1024.0, v1 / 1024.0, (int)runner,
			       r2 / 1024.0, p2 / 1024.0, v2 / 1024.0, (p1 + p2) / 1024.0,
			       (v1 + v2) / 1024.0);
		}
		{
			long rss, pss;
			rollup(zpid, &rss, &pss);
			printf("zygote with %d idle children: RSS %.1f MiB, PSS %.1f MiB\n", idle,
			       rss / 1024.0, pss / 1024.0);
		}
		for (int i = 0; i < idle; i++)
			close(holds[i]);
		sleep(1);
	} else {
		int res[2];
		int64_t t0, wall, z0, busy0, busy;
		struct rusage ru;
		int got = 0, per = (n + j - 1) / j;

		if (pipe2(res, O_CLOEXEC) < 0)
			die("pipe");
		z0 = proc_cpu_us(zpid);
		busy0 = machine_busy_us();
		t0 = mono_us();
		pid_t workers[MAXJ];
		for (int w = 0; w < j; w++) {
			pid_t p = fork();
			if (p < 0)
				die("fork");
			if (p == 0) {
				close(res[0]);
				/* --prefork P: P sandboxes spawned ahead (a pool refilled
				 * by the zygote); a replacement is spawned after each run */
				struct sbx pool[8];
				int head = 0, next_id = w * per + 500000;
				for (int i = 0; i < o.prefork; i++)
					spawn_sbx(socks[w][0], next_id++, 1 + w * 8 + i % 8, &o,
						  &pool[i]);
				for (int i = 0; i < per && w * per + i < n; i++) {
					struct rec r;
					int id = w * per + i;
					if (o.pause_ms)
						usleep((useconds_t)o.pause_ms * 1000);
					if (o.prefork) {
						run_sbx(&pool[head], &o, &r, mono_us(), NULL);
						spawn_sbx(socks[w][0], next_id,
							  1 + w * 8 + next_id % 8, &o, &pool[head]);
						next_id++;
						head = (head + 1) % o.prefork;
					} else {
						run_one(socks[w][0], id, 1 + w * 4 + i % 4, &o, &r,
							NULL, NULL);
					}
					if (write(res[1], &r, sizeof(r)) != sizeof(r))
						_exit(1);
				}
				for (int i = 0; i < o.prefork; i++) { /* let the spares go */
					struct rec r;
					run_sbx(&pool[i], &o, &r, mono_us(), NULL);
				}
				_exit(0);
			}
			workers[w] = p;
		}
		close(res[1]);
		while (got < n && read(res[0], &rs[got], sizeof(rs[0])) == sizeof(rs[0]))
			got++;
		for (int w = 0; w < j; w++) /* not wait(): the zygote is our child too */
			while (waitpid(workers[w], NULL, 0) < 0 && errno == EINTR)
				;
		wall = mono_us() - t0;
		busy = machine_busy_us() - busy0;
		getrusage(RUSAGE_CHILDREN, &ru);
		int ok = 0;
		for (int i = 0; i < got; i++)
			ok += rs[i].ok;
		printf("%d executions (%d ok), -j %d, %s%.2f s: %.1f executions/s\n", got, ok, j,
		       o.cg ? "cgroup v1 attach, " : "", wall / 1e6, got / (wall / 1e6));
		stat_line("end to end (driver)", rs, got, offsetof(struct rec, total));
		stat_line("request -> zygote answer", rs, got, offsetof(struct rec, reply));
		stat_line("zygote clone()", rs, got, offsetof(struct rec, clone_us));
		stat_line("zygote id maps", rs, got, offsetof(struct rec, maps_us));
		if (o.cg) {
			stat_line("cgroup mkdir+attach", rs, got, offsetof(struct rec, cg_us));
			stat_line("cgroup rmdir (after)", rs, got, offsetof(struct rec, rmdir_us));
			stat_line("sandbox CPU (cpuacct)", rs, got, offsetof(struct rec, cg_cpu));
		}
		stat_line("init setup (go->runner)", rs, got, offsetof(struct rec, setup_us));
		stat_line("init setup CPU", rs, got, offsetof(struct rec, setup_cpu));
		stat_line("request -> first output", rs, got, offsetof(struct rec, first_out));
		stat_line("request -> init's report", rs, got, offsetof(struct rec, report_at));
		stat_line("runner wall (fork->reaped)", rs, got, offsetof(struct rec, run_us));
		stat_line("runner CPU (utime+stime)", rs, got, offsetof(struct rec, run_cpu));
		printf("  zygote CPU per execution %.3f ms; driver workers %.3f ms; machine busy "
		       "%.3f ms (all processes, incl. others')\n",
		       (proc_cpu_us(zpid) - z0) / 1000.0 / got,
		       (ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 +
			ru.ru_stime.tv_usec) /
			       1000.0 / got,
		       busy / 1000.0 / got);
	}
	for (int i = 0; i < j; i++)
		close(socks[i][0]);
	kill(zpid, SIGKILL);
	waitpid(zpid, NULL, 0);
	if (o.cg)
		cg_sweep();
	return 0;
}
