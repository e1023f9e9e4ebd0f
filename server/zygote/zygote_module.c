/*
 * _capibox_zygote: the C half of the python zygote (docs/ZYGOTE.md), a
 * CPython extension module loaded by server/runners/python_zygote.py.
 *
 * serve(fd) runs the product's zygote loop (sandbox_zygote_serve in
 * server/sandbox/sandbox.c) around the interpreter's fork hooks. It
 * returns "eof" in the zygote when the supervisor closed the socket, and
 * "runner" in a new sandbox's runner, after PyOS_AfterFork_Child: that
 * process has its sandbox's descriptors, limits, no capabilities,
 * no_new_privs and the seccomp filter, and goes on as the warm runner.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include "sandbox/sandbox.h"

static void before_fork(void) { PyOS_BeforeFork(); }

static void after_fork_parent(void) { PyOS_AfterFork_Parent(); }

static PyObject *zyg_serve(PyObject *self, PyObject *args)
{
	int fd, rc;

	(void)self;
	if (!PyArg_ParseTuple(args, "i", &fd))
		return NULL;
	/* every clone copies our page tables twice (its init, then init's
	 * runner) and tears them down twice: give back the heap memory malloc
	 * holds free first (about 0.85 MB of the lean zygote's 6) */
	(void)malloc_trim(0);
	rc = sandbox_zygote_serve(fd, before_fork, after_fork_parent);
	if (rc < 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	if (rc == 1) {
		PyOS_AfterFork_Child();
		return PyUnicode_FromString("runner");
	}
	return PyUnicode_FromString("eof");
}

/* threads(): this process's threads (it must have one to clone safely) */
static PyObject *zyg_threads(PyObject *self, PyObject *noargs)
{
	char buf[4096], *p;
	ssize_t n;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

	(void)self, (void)noargs;
	if (fd < 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	buf[n] = '\0';
	p = strstr(buf, "\nThreads:");
	return PyLong_FromLong(p != NULL ? strtol(p + 9, NULL, 10) : -1);
}

/*
 * take(): a warm runner's wait for its request, as python.py's
 * _capibox_wait does it: reads "path\n" "length\n" and length bytes of
 * environment from descriptor 3, moves the socket to a close-on-exec
 * descriptor >= 1000 (-1 if that fails) and closes 3. Returns (path,
 * environment bytes, descriptor), or None when the socket closed first.
 */
static PyObject *zyg_take(PyObject *self, PyObject *noargs)
{
	char *buf = NULL, *nl1, *nl2, *end;
	/* offsets, not pointers: buf moves as it grows */
	size_t len = 0, cap = 0, need = SIZE_MAX, env_len = 0, path_len = 0;
	PyObject *path, *res;
	int done;

	(void)self, (void)noargs;
	while (len < need) {
		ssize_t n;
		if (len == cap) {
			char *nb = realloc(buf, cap = cap ? cap * 2 : 4096);
			if (nb == NULL) {
				free(buf);
				return PyErr_NoMemory();
			}
			buf = nb;
		}
		n = read(3, buf + len, cap - len);
		if (n < 0 && errno == EINTR) {
			if (PyErr_CheckSignals() < 0)
				goto fail;
			continue;
		}
		if (n < 0) {
			PyErr_SetFromErrno(PyExc_OSError);
			goto fail;
		}
		if (n == 0) {
			free(buf);
			Py_RETURN_NONE;
		}
		len += (size_t)n;
		if (need == SIZE_MAX && (nl1 = memchr(buf, '\n', len)) != NULL &&
		    (nl2 = memchr(nl1 + 1, '\n', len - (size_t)(nl1 + 1 - buf))) != NULL) {
			unsigned long long v;
			errno = 0;
			v = strtoull(nl1 + 1, &end, 10);
			if (end != nl2 || end == nl1 + 1 || errno != 0 || v > (1ULL << 30)) {
				PyErr_SetString(PyExc_ValueError, "take: bad environment length");
				goto fail;
			}
			env_len = (size_t)v;
			path_len = (size_t)(nl1 - buf);
			need = (size_t)(nl2 + 1 - buf) + env_len;
		}
	}
	done = fcntl(3, F_DUPFD_CLOEXEC, 1000);
	close(3);
	path = PyUnicode_DecodeFSDefaultAndSize(buf, (Py_ssize_t)path_len);
	if (path == NULL)
		goto fail;
	res = Py_BuildValue("(Ny#i)", path, buf + (need - env_len), (Py_ssize_t)env_len, done);
	free(buf);
	return res;
fail:
	free(buf);
	return NULL;
}

/* stdio_pipes(): whether descriptors 0, 1 and 2 are all pipes */
static PyObject *zyg_stdio_pipes(PyObject *self, PyObject *noargs)
{
	struct stat st;

	(void)self, (void)noargs;
	for (int fd = 0; fd < 3; fd++)
		if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode))
			Py_RETURN_FALSE;
	Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
	{"serve", zyg_serve, METH_VARARGS, "serve spawn requests on a socket"},
	{"take", zyg_take, METH_NOARGS, "wait for the request, as a warm runner"},
	{"stdio_pipes", zyg_stdio_pipes, METH_NOARGS, "whether 0, 1 and 2 are pipes"},
	{"threads", zyg_threads, METH_NOARGS, "threads of this process"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "_capibox_zygote", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__capibox_zygote(void);
PyMODINIT_FUNC PyInit__capibox_zygote(void) { return PyModule_Create(&module); }
