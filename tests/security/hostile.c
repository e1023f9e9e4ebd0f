/*
 * Helpers of the hostile-code suite; see hostile.h.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "hostile.h"

#define MAX_FAMILIES 32
#define MAX_SUPERVISORS 16

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "hostile: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	abort();
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		die("out of memory (%zu bytes)", n);
	return q;
}

/* Whole file as a NUL-terminated string, or NULL when it cannot be read. */
static char *slurp(const char *path, size_t *len_out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	size_t len = 0, cap = 0;
	ssize_t n;

	if (fd == -1)
		return NULL;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = (len + 4096 + 1) * 2;
			buf = xrealloc(buf, cap);
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (buf == NULL)
		buf = xrealloc(NULL, 1);
	buf[len] = '\0';
	if (len_out != NULL)
		*len_out = len;
	return buf;
}

/* --- programs --------------------------------------------------------------- */

char *hostile_program(const char *name)
{
	char path[512];
	char *text;

	snprintf(path, sizeof(path), "%s/%s", SECURITY_PROGRAMS_DIR, name);
	text = slurp(path, NULL);
	if (text == NULL)
		die("cannot read hostile program %s: %s", path, strerror(errno));
	return text;
}

int hostile_run_program(struct daemon *d, const char *language, const char *name,
			const struct capibox_limits *limits, const struct capibox_env *env,
			size_t n_env, struct run *r)
{
	struct capibox_exec_request req = {.language = language, .env = env, .n_env = n_env};
	char *code = hostile_program(name);
	int rc;

	req.code = code;
	if (limits != NULL)
		req.limits = *limits;
	rc = harness_run(d, &req, r);
	free(code);
	return rc;
}

/* --- verdicts ----------------------------------------------------------------- */

void verdict_init(struct verdict *v)
{
	v->ok = true;
	v->off = 0;
	v->text[0] = '\0';
}

void verdict_fail(struct verdict *v, const char *fmt, ...)
{
	/* room for "  ", the text, '\n' and the NUL */
	size_t room = sizeof(v->text) - v->off;
	va_list ap;
	int n;

	v->ok = false;
	if (room < 8)
		return;
	v->text[v->off++] = ' ';
	v->text[v->off++] = ' ';
	room -= 4;
	va_start(ap, fmt);
	n = vsnprintf(v->text + v->off, room + 1, fmt, ap);
	va_end(ap);
	if (n > 0)
		v->off += (size_t)n < room ? (size_t)n : room;
	v->text[v->off++] = '\n';
	v->text[v->off] = '\0';
}

void verdict_one_finished(struct verdict *v, const struct run *r)
{
	if (r->rc != 0)
		verdict_fail(v, "expected status OK, got %s \"%s\"", capibox_code_name(r->rc),
			     r->st.message);
	if (r->n_finished != 1)
		verdict_fail(v, "expected exactly one Finished, got %d", r->n_finished);
	if (!r->order_ok)
		verdict_fail(v, "events out of order (Started first, Finished last)");
}

void verdict_reason(struct verdict *v, const struct run *r, int reason)
{
	verdict_one_finished(v, r);
	if (r->n_finished == 1 && r->reason != reason)
		verdict_fail(v, "expected reason %s, got %s (exit %d, signal %d, \"%s\")",
			     capibox_reason_name(reason), capibox_reason_name(r->reason),
			     r->exit_code, r->signal, r->message);
}

void verdict_stdout_has(struct verdict *v, const struct run *r, const char *needle)
{
	if (r->out == NULL || memmem(r->out, r->out_len, needle, strlen(needle)) == NULL)
		verdict_fail(v, "stdout lacks \"%s\"", needle);
}

void verdict_output_lacks(struct verdict *v, const struct run *r, const char *needle)
{
	size_t n = strlen(needle);

	if (r->out != NULL && memmem(r->out, r->out_len, needle, n) != NULL)
		verdict_fail(v, "stdout contains \"%s\"", needle);
	if (r->err != NULL && memmem(r->err, r->err_len, needle, n) != NULL)
		verdict_fail(v, "stderr contains \"%s\"", needle);
}

void verdict_stdout_is(struct verdict *v, const struct run *r, const char *s)
{
	if (r->out_len != strlen(s) || memcmp(r->out, s, r->out_len) != 0)
		verdict_fail(v, "stdout differs from the expected:\n---\n%s---", s);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	/* overlong forms, UTF-16 surrogates and code points above U+10FFFF */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

void verdict_status_utf8(struct verdict *v, const char *message)
{
	const unsigned char *p = (const unsigned char *)message;

	while (*p != '\0') {
		size_t n = utf8_seq(p);

		if (n == 0) {
			verdict_fail(v,
				     "the status message is not valid UTF-8 (byte 0x%02x at %zu)",
				     *p, (size_t)(p - (const unsigned char *)message));
			return;
		}
		p += n;
	}
}

/* --- families ------------------------------------------------------------------- */

struct family {
	const char *name;
	unsigned cases, contained;
};

static struct family families[MAX_FAMILIES];
static size_t n_families;

static struct family *family_get(const char *name)
{
	for (size_t i = 0; i < n_families; i++)
		if (strcmp(families[i].name, name) == 0)
			return &families[i];
	if (n_families == MAX_FAMILIES)
		die("more than %d families", MAX_FAMILIES);
	families[n_families].name = name;
	return &families[n_families++];
}

bool hostile_case_end(struct daemon *d, const char *family, const char *name, const struct run *r,
		      struct verdict *v)
{
	struct family *f = family_get(family);
	struct run ok = {0};
	char *left;

	if (d->pid <= 0 || harness_daemon_wait(d, 0) == 0) {
		verdict_fail(v, "capiboxd is gone (waitpid status 0x%x)", d->status);
	} else {
		harness_run_code(d, "python", "print(1)\n", &ok);
		hostile_note_sandbox_id(ok.sandbox_id);
		if (ok.rc != 0 || ok.n_finished != 1 || ok.reason != CAPIBOX_REASON_EXITED ||
		    ok.exit_code != 0 || ok.out_len != 2 || memcmp(ok.out, "1\n", 2) != 0)
			verdict_fail(v,
				     "a normal run afterwards failed: status %s \"%s\", reason %s, "
				     "stdout \"%s\"",
				     capibox_code_name(ok.rc), ok.st.message,
				     capibox_reason_name(ok.reason), (const char *)ok.out);
		harness_run_free(&ok);
	}
	left = host_wait_clean(d, hostile_baseline(), 3000);
	if (left != NULL) {
		verdict_fail(v, "left behind on the host:\n%s", left);
		free(left);
	}
	f->cases++;
	if (v->ok) {
		f->contained++;
		printf("case %s/%s: contained\n", family, name);
	} else {
		printf("case %s/%s: NOT CONTAINED or misbehaved:\n%s", family, name, v->text);
		if (r != NULL)
			harness_run_print(r);
	}
	fflush(stdout);
	return v->ok;
}

void hostile_family_require(const char *family)
{
	struct family *f = family_get(family);

	printf("family %s: %u cases, %u contained\n", f->name, f->cases, f->contained);
	fflush(stdout);
	if (f->contained != f->cases)
		fail_msg("family %s: %u of %u cases were not contained (see above)", f->name,
			 f->cases - f->contained, f->cases);
}

void hostile_print_summary(void)
{
	unsigned cases = 0, contained = 0;

	printf("--- hostile-code suite summary ---\n");
	for (size_t i = 0; i < n_families; i++) {
		printf("family %s: %u cases, %u contained\n", families[i].name, families[i].cases,
		       families[i].contained);
		cases += families[i].cases;
		contained += families[i].contained;
	}
	printf("all families: %zu families, %u cases, %u contained\n", n_families, cases,
	       contained);
	fflush(stdout);
}

/* --- host state ----------------------------------------------------------------- */

static pid_t supervisors[MAX_SUPERVISORS];
static size_t n_supervisors;

static bool is_pid_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Parent pid from /proc/<pid>/stat, or -1. */
static pid_t ppid_of(pid_t pid)
{
	char path[64], *text, *p;
	long ppid;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	text = slurp(path, NULL);
	if (text == NULL)
		return -1;
	/* "pid (comm) state ppid ...": comm may hold spaces and parentheses */
	p = strrchr(text, ')');
	if (p == NULL || sscanf(p + 1, " %*c %ld", &ppid) != 1)
		ppid = -1;
	free(text);
	return (pid_t)ppid;
}

pid_t hostile_supervisor_pid(const struct daemon *d)
{
	DIR *dir;
	struct dirent *de;
	pid_t found = 0;

	if (d->pid <= 0)
		return 0;
	dir = opendir("/proc");
	if (dir == NULL)
		die("opendir /proc: %s", strerror(errno));
	while ((de = readdir(dir)) != NULL && found == 0) {
		char path[300], *cmd;
		pid_t pid;

		if (!is_pid_name(de->d_name))
			continue;
		pid = (pid_t)strtol(de->d_name, NULL, 10);
		if (ppid_of(pid) != d->pid)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
		cmd = slurp(path, NULL);
		if (cmd != NULL && strncmp(cmd, "capiboxd: supervisor", 20) == 0)
			found = pid;
		free(cmd);
	}
	closedir(dir);
	if (found != 0) {
		size_t i;

		for (i = 0; i < n_supervisors && supervisors[i] != found; i++)
			;
		if (i == n_supervisors && n_supervisors < MAX_SUPERVISORS)
			supervisors[n_supervisors++] = found;
	}
	return found;
}

size_t hostile_cgroups(const struct daemon *d, char (*dirs)[256], size_t max)
{
	static const char *const patterns[] = {"/sys/fs/cgroup/*/capibox/sb-%ld-*",
					       "/sys/fs/cgroup/capibox/sb-%ld-*"};
	size_t n = 0;

	(void)hostile_supervisor_pid(d); /* remembers a restarted supervisor too */
	for (size_t s = 0; s < n_supervisors; s++)
		for (size_t p = 0; p < sizeof(patterns) / sizeof(patterns[0]); p++) {
			char pattern[128];
			glob_t g;

			snprintf(pattern, sizeof(pattern), patterns[p], (long)supervisors[s]);
			if (glob(pattern, GLOB_ONLYDIR, NULL, &g) != 0)
				continue;
			for (size_t i = 0; i < g.gl_pathc; i++) {
				if (n < max)
					snprintf(dirs[n], 256, "%s", g.gl_pathv[i]);
				n++;
			}
			globfree(&g);
		}
	return n;
}

struct proc_entry {
	pid_t pid, ppid;
	uid_t uid;
	bool init, runner; /* capibox-init; a warm runner (/.capibox/runner.*) */
	bool warm;	   /* part of an idle warm sandbox */
};

/* The processes of d's sandbox uid range, classified (malloc'd; *n entries). */
static struct proc_entry *range_procs(const struct daemon *d, size_t *n)
{
	size_t cap = 0, total = harness_procs_in_uid_range(
				d->uid_base, d->uid_base + HARNESS_UID_COUNT, NULL, 0);
	pid_t *pids;
	struct proc_entry *e;

	cap = total + 64; /* some may appear between the two scans */
	pids = xrealloc(NULL, cap * sizeof(*pids));
	e = xrealloc(NULL, cap * sizeof(*e));
	total = harness_procs_in_uid_range(d->uid_base, d->uid_base + HARNESS_UID_COUNT, pids, cap);
	if (total > cap)
		total = cap;
	*n = 0;
	for (size_t i = 0; i < total; i++) {
		char path[64], *cmd;
		size_t len = 0;
		struct proc_entry *p = &e[*n];

		p->pid = pids[i];
		p->uid = harness_proc_uid(pids[i]);
		p->ppid = ppid_of(pids[i]);
		if (p->uid == (uid_t)-1)
			continue; /* gone meanwhile */
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pids[i]);
		cmd = slurp(path, &len);
		p->init = cmd != NULL && strncmp(cmd, "capibox-init", 12) == 0;
		p->runner = false;
		if (cmd != NULL && !p->init) {
			/* argv joined: "/usr/bin/python3 -u /.capibox/runner.py" */
			for (const char *q = cmd; q < cmd + len; q += strlen(q) + 1)
				if (strncmp(q, "/.capibox/runner.", 17) == 0)
					p->runner = true;
		}
		free(cmd);
		p->warm = false;
		(*n)++;
	}
	free(pids);
	/* an idle warm sandbox: its uid has exactly an init and one runner, its child */
	for (size_t i = 0; i < *n; i++) {
		size_t inits = 0, runners = 0, others = 0;
		pid_t init_pid = 0, runner_parent = -1;

		for (size_t j = 0; j < *n; j++) {
			if (e[j].uid != e[i].uid)
				continue;
			if (e[j].init) {
				inits++;
				init_pid = e[j].pid;
			} else if (e[j].runner) {
				runners++;
				runner_parent = e[j].ppid;
			} else {
				others++;
			}
		}
		e[i].warm = inits == 1 && runners == 1 && others == 0 && runner_parent == init_pid;
	}
	return e;
}

/* Number of idle warm sandboxes and of the other processes in the range. */
static void count_procs(const struct proc_entry *e, size_t n, size_t *warm, size_t *other)
{
	*warm = *other = 0;
	for (size_t i = 0; i < n; i++) {
		if (!e[i].warm)
			(*other)++;
		else if (e[i].init)
			(*warm)++;
	}
}

/*
 * True when every pid in dir/cgroup.procs is an idle warm sandbox's, or
 * there is none (the group of a slot whose sandbox ended, kept for its next).
 */
static bool cgroup_is_idle(const char *dir, const struct proc_entry *e, size_t n)
{
	pid_t pids[256];
	size_t np = harness_cgroup_pids(dir, pids, 256);

	if (np > 256)
		return false; /* more than an idle sandbox ever has */
	/* (an empty group is kept for its slot's next sandbox) */
	for (size_t k = 0; k < np; k++) {
		bool warm = false;
		for (size_t i = 0; i < n; i++)
			if (e[i].pid == pids[k] && e[i].warm)
				warm = true;
		if (!warm)
			return false;
	}
	return true;
}

/* Sum of the pools' targets from Health, or 0 when it cannot be had. */
static size_t pool_target(const struct daemon *d)
{
	struct capibox_health *h = NULL;
	struct capibox_status st;
	size_t sum = 0;

	if (d->client == NULL || capibox_health(d->client, false, 5000, &h, &st) != 0)
		return 0;
	for (size_t b = 0; b < h->n_backends; b++)
		for (size_t i = 0; i < h->backends[b].n_pools; i++)
			sum += h->backends[b].pools[i].target;
	capibox_health_free(h);
	return sum;
}

void host_snapshot(const struct daemon *d, struct host_state *s)
{
	struct proc_entry *e;
	size_t n, ncg;
	char(*dirs)[256];

	memset(s, 0, sizeof(*s));
	s->mounts = harness_mounts();
	harness_temp_entries(&s->temp);
	harness_walk(d->state_dir, &s->state);
	e = range_procs(d, &n);
	count_procs(e, n, &s->warm, &s->procs);
	ncg = hostile_cgroups(d, NULL, 0) + 16;
	dirs = xrealloc(NULL, ncg * sizeof(*dirs));
	ncg = hostile_cgroups(d, dirs, ncg);
	for (size_t i = 0; i < ncg; i++)
		if (!cgroup_is_idle(dirs[i], e, n))
			s->cgroups++;
	free(dirs);
	free(e);
	s->warm_target = pool_target(d);
}

void host_state_free(struct host_state *s)
{
	free(s->mounts);
	harness_names_free(&s->temp);
	harness_names_free(&s->state);
	memset(s, 0, sizeof(*s));
}

static char sandbox_tag[64]; /* "19cb46d3" of sandbox ids "local-19cb46d3-N" */

void hostile_note_sandbox_id(const char *id)
{
	const char *a = strchr(id, '-'), *b = strrchr(id, '-');

	if (sandbox_tag[0] == '\0' && a != NULL && b != NULL && b - a > 4 &&
	    (size_t)(b - a) < sizeof(sandbox_tag))
		snprintf(sandbox_tag, sizeof(sandbox_tag), "%.*s", (int)(b - a - 1), a + 1);
}

/* True when name holds token as a whole word (delimited by non-alphanumerics). */
static bool has_token(const char *name, const char *token)
{
	size_t n = strlen(token);

	for (const char *p = strstr(name, token); p != NULL; p = strstr(p + 1, token)) {
		bool start = p == name || !isalnum((unsigned char)p[-1]);
		bool end = !isalnum((unsigned char)p[n]);

		if (start && end)
			return true;
	}
	return false;
}

/*
 * A new temp entry is this daemon's when it belongs to one of its sandbox
 * uids or its name carries the daemon's or the supervisor's pid or the tag
 * of its sandbox ids. Not just any name with "capibox" in it: other test
 * binaries (and other checkouts' tests on the same machine) make their own
 * capibox-* directories in /tmp at the same time.
 */
static bool temp_is_daemons(const char *path, const struct daemon *d)
{
	const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	char pid[32];
	struct stat st;

	if (lstat(path, &st) == 0 && st.st_uid >= d->uid_base &&
	    st.st_uid < d->uid_base + HARNESS_UID_COUNT)
		return true;
	if (sandbox_tag[0] != '\0' && strstr(name, sandbox_tag) != NULL)
		return true;
	snprintf(pid, sizeof(pid), "%ld", (long)d->pid);
	if (d->pid > 0 && has_token(name, pid))
		return true;
	for (size_t i = 0; i < n_supervisors; i++) {
		snprintf(pid, sizeof(pid), "%ld", (long)supervisors[i]);
		if (has_token(name, pid))
			return true;
	}
	return false;
}

struct text {
	char *b;
	size_t n, cap;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		die("vsnprintf");
	if (t->n + (size_t)n + 1 > t->cap) {
		t->cap = (t->n + (size_t)n + 1) * 2;
		t->b = xrealloc(t->b, t->cap);
	}
	va_start(ap, fmt);
	vsnprintf(t->b + t->n, t->cap - t->n, fmt, ap);
	va_end(ap);
	t->n += (size_t)n;
}

char *host_leftovers(const struct daemon *d, const struct host_state *base)
{
	struct host_state now;
	struct text t = {0};
	const char *line, *nl;

	text_add(&t, "%s", "");
	host_snapshot(d, &now);
	if (strcmp(now.mounts, base->mounts) != 0)
		for (line = now.mounts; *line != '\0'; line = nl + 1) {
			char probe[8192];

			nl = strchr(line, '\n');
			if (nl == NULL)
				break;
			snprintf(probe, sizeof(probe), "%.*s", (int)(nl - line + 1), line);
			if (strstr(base->mounts, probe) == NULL)
				text_add(&t, "new mount: %s", probe);
		}
	for (size_t i = 0; i < now.temp.n; i++)
		if (!harness_names_has(&base->temp, now.temp.v[i]) &&
		    temp_is_daemons(now.temp.v[i], d))
			text_add(&t, "new temp entry: %s\n", now.temp.v[i]);
	for (size_t i = 0; i < now.state.n; i++)
		if (!harness_names_has(&base->state, now.state.v[i]))
			text_add(&t, "new state-dir entry: %s\n", now.state.v[i]);
	if (now.procs > base->procs) {
		struct proc_entry *e;
		size_t n, shown = 0;

		text_add(&t,
			 "processes in the sandbox uid range (idle warm sandboxes excepted): "
			 "%zu at the start, %zu now:",
			 base->procs, now.procs);
		e = range_procs(d, &n);
		for (size_t i = 0; i < n && shown < 16; i++) {
			char path[64], *cmd;

			if (e[i].warm)
				continue;
			snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)e[i].pid);
			cmd = slurp(path, NULL);
			text_add(&t, " %ld(uid %u, \"%s\")", (long)e[i].pid, (unsigned)e[i].uid,
				 cmd ? cmd : "?");
			free(cmd);
			shown++;
		}
		free(e);
		text_add(&t, "\n");
	}
	if (now.cgroups > base->cgroups) {
		char dirs[8][256];
		size_t n = hostile_cgroups(d, dirs, 8);

		text_add(&t,
			 "sandbox cgroups holding a process (idle warm sandboxes' excepted): "
			 "%zu at the start, "
			 "%zu now; some:",
			 base->cgroups, now.cgroups);
		for (size_t i = 0; i < n && i < 8; i++)
			text_add(&t, " %s", dirs[i]);
		text_add(&t, "\n");
	}
	if (now.warm > base->warm && now.warm > now.warm_target)
		text_add(&t,
			 "idle warm sandboxes: %zu, more than at the start (%zu) and than the "
			 "pools' target (%zu)\n",
			 now.warm, base->warm, now.warm_target);
	host_state_free(&now);
	return t.b;
}

char *host_wait_clean(const struct daemon *d, const struct host_state *base, int timeout_ms)
{
	double end = harness_now() + timeout_ms / 1000.0;
	char *diff;

	for (;;) {
		diff = host_leftovers(d, base);
		if (diff[0] == '\0') {
			free(diff);
			return NULL;
		}
		if (harness_now() >= end)
			return diff;
		free(diff);
		harness_sleep_ms(50);
	}
}

static struct host_state baseline;

void host_snapshot_settled(const struct daemon *d, struct host_state *s, int timeout_ms)
{
	double end = harness_now() + timeout_ms / 1000.0;

	for (;;) {
		host_snapshot(d, s);
		if ((s->procs == 0 && s->cgroups == 0) || harness_now() >= end)
			break;
		host_state_free(s);
		harness_sleep_ms(50);
	}
	if (s->procs != 0 || s->cgroups != 0)
		printf("note: %zu sandbox processes and %zu sandbox cgroups (idle warm sandboxes' "
		       "excepted) before the test started\n",
		       s->procs, s->cgroups);
}

void hostile_set_baseline(const struct daemon *d)
{
	host_state_free(&baseline);
	host_snapshot_settled(d, &baseline, 5000);
}

const struct host_state *hostile_baseline(void) { return &baseline; }

/* --- processes ------------------------------------------------------------------ */

long hostile_rss_kib(pid_t pid) { return pid > 0 ? harness_proc_rss_kib(pid) : -1; }

struct sampler {
	pthread_t thread;
	uid_t lo;
	volatile bool stop;
	size_t max;
};

static void *sampler_main(void *arg)
{
	struct sampler *s = arg;
	struct daemon d = {.uid_base = s->lo};

	while (!s->stop) {
		struct proc_entry *e;
		size_t n;

		e = range_procs(&d, &n);
		for (size_t i = 0; i < n; i++) {
			size_t same = 0;

			for (size_t j = 0; j < n; j++)
				if (e[j].uid == e[i].uid)
					same++;
			if (same > s->max)
				s->max = same;
		}
		free(e);
		harness_sleep_ms(10);
	}
	return NULL;
}

struct sampler *hostile_sampler_start(const struct daemon *d)
{
	struct sampler *s = calloc(1, sizeof(*s));

	if (s == NULL)
		die("out of memory");
	s->lo = d->uid_base;
	if (pthread_create(&s->thread, NULL, sampler_main, s) != 0)
		die("pthread_create");
	return s;
}

size_t hostile_sampler_stop(struct sampler *s)
{
	size_t max;

	s->stop = true;
	pthread_join(s->thread, NULL);
	max = s->max;
	free(s);
	return max;
}

/* --- raw protobuf ------------------------------------------------------------------ */

static void pb_reserve(struct pb *p, size_t more)
{
	if (p->n + more > p->cap) {
		p->cap = (p->n + more) * 2 + 64;
		p->b = xrealloc(p->b, p->cap);
	}
}

void pb_varint(struct pb *p, uint64_t v)
{
	pb_reserve(p, 10);
	do {
		p->b[p->n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
}

void pb_bytes(struct pb *p, unsigned field, const void *data, size_t len)
{
	pb_varint(p, (uint64_t)field << 3 | 2);
	pb_varint(p, len);
	pb_reserve(p, len);
	if (len > 0)
		memcpy(p->b + p->n, data, len);
	p->n += len;
}

void pb_env(struct pb *p, const void *name, size_t nlen, const void *value, size_t vlen)
{
	struct pb e = {0};

	pb_bytes(&e, 1, name, nlen);
	pb_bytes(&e, 2, value, vlen);
	pb_bytes(p, 4, e.b, e.n);
	pb_free(&e);
}

void pb_file(struct pb *p, const void *path, size_t plen, const void *data, size_t dlen)
{
	struct pb f = {0};

	pb_bytes(&f, 1, path, plen);
	pb_bytes(&f, 2, data, dlen);
	pb_bytes(p, 3, f.b, f.n);
	pb_free(&f);
}

void pb_free(struct pb *p)
{
	free(p->b);
	p->b = NULL;
	p->n = p->cap = 0;
}
