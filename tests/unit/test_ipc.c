/* Front <-> supervisor packets: layouts are checked, descriptors travel,
 * and a malformed packet ends the receiver rather than being used. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ipc.h"

static void test_check_layouts(void **state)
{
	union ipc_msg m;
	(void)state;
	memset(&m, 0, sizeof(m));
	m.kill.type = IPC_KILL;
	m.kill.reason = EXEC_REASON_CANCELLED;
	assert_null(ipc_check(&m, sizeof(struct ipc_kill), 0));
	assert_non_null(ipc_check(&m, sizeof(struct ipc_kill) - 1, 0));
	assert_non_null(ipc_check(&m, sizeof(struct ipc_kill), 1));
	m.kill.reason = 99;
	assert_non_null(ipc_check(&m, sizeof(struct ipc_kill), 0));
	m.type = 1234;
	assert_non_null(ipc_check(&m, sizeof(struct ipc_kill), 0));
	assert_non_null(ipc_check(&m, 2, 0));

	memset(&m, 0, sizeof(m));
	m.exited.type = IPC_EXITED;
	assert_null(ipc_check(&m, sizeof(struct ipc_exited), 0));
	memset(m.exited.message, 'x', sizeof(m.exited.message));
	assert_non_null(ipc_check(&m, sizeof(struct ipc_exited), 0));
}

static void test_check_spawn_env(void **state)
{
	union ipc_msg *m = calloc(1, IPC_MAX_PACKET);
	const char env[] = "A=1\0B=x=y";
	(void)state;
	m->spawn.type = IPC_SPAWN;
	memcpy(m->spawn.env, env, sizeof(env));
	m->spawn.env_len = sizeof(env);
	m->spawn.n_env = 2;
	assert_null(ipc_check(m, sizeof(struct ipc_spawn) + sizeof(env), IPC_SPAWN_FDS));
	/* wrong count, wrong length, missing fds, entry without '=' */
	m->spawn.n_env = 3;
	assert_non_null(ipc_check(m, sizeof(struct ipc_spawn) + sizeof(env), IPC_SPAWN_FDS));
	m->spawn.n_env = 2;
	assert_non_null(ipc_check(m, sizeof(struct ipc_spawn) + sizeof(env) + 1, IPC_SPAWN_FDS));
	assert_non_null(ipc_check(m, sizeof(struct ipc_spawn) + sizeof(env), 2));
	memcpy(m->spawn.env, "A1\0BB=x=y", sizeof(env));
	assert_non_null(ipc_check(m, sizeof(struct ipc_spawn) + sizeof(env), IPC_SPAWN_FDS));
	/* unterminated last entry */
	memcpy(m->spawn.env, env, sizeof(env));
	m->spawn.env_len = sizeof(env) - 1;
	assert_non_null(ipc_check(m, sizeof(struct ipc_spawn) + sizeof(env) - 1, IPC_SPAWN_FDS));
	free(m);
}

static void test_roundtrip_with_fds(void **state)
{
	int sv[2], fds[IPC_SPAWN_FDS], p[2];
	union ipc_msg *m = calloc(1, IPC_MAX_PACKET);
	struct ipc_spawn *sp = calloc(1, sizeof(*sp) + 4);
	int sendfds[IPC_SPAWN_FDS];
	char buf[8];
	(void)state;
	ipc_socketpair(sv);
	assert_int_equal(pipe(p), 0);
	sp->type = IPC_SPAWN;
	sp->id = 42;
	sp->n_env = 1;
	sp->env_len = 4;
	memcpy(sp->env, "X=1", 4);
	for (int i = 0; i < IPC_SPAWN_FDS; i++)
		sendfds[i] = p[1];
	assert_int_equal(ipc_send(sv[0], sp, sizeof(*sp) + 4, sendfds, IPC_SPAWN_FDS), 0);
	assert_int_equal(ipc_recv(sv[1], m, fds), sizeof(*sp) + 4);
	assert_int_equal(m->spawn.id, 42);
	/* the descriptor works on the receiving side */
	assert_int_equal(write(fds[2], "ok", 2), 2);
	assert_int_equal(read(p[0], buf, sizeof(buf)), 2);
	for (int i = 0; i < IPC_SPAWN_FDS; i++)
		close(fds[i]);
	close(sv[0]);
	/* peer closed: 0 */
	assert_int_equal(ipc_recv(sv[1], m, fds), 0);
	close(sv[1]);
	close(p[0]);
	close(p[1]);
	free(sp);
	free(m);
}

static void test_malformed_is_fatal(void **state)
{
	int sv[2], status;
	pid_t pid;
	uint32_t junk[3] = {IPC_KILL, 0, 0}; /* a KILL that is too short */
	(void)state;
	ipc_socketpair(sv);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		union ipc_msg *m = malloc(IPC_MAX_PACKET);
		int fds[IPC_SPAWN_FDS];
		close(sv[0]);
		(void)ipc_recv(sv[1], m, fds);
		_exit(0); /* must not get here */
	}
	close(sv[1]);
	assert_int_equal(ipc_send(sv[0], junk, sizeof(junk), NULL, 0), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_layouts),
		cmocka_unit_test(test_check_spawn_env),
		cmocka_unit_test(test_roundtrip_with_fds),
		cmocka_unit_test(test_malformed_is_fatal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
