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
	{"stdio_pipes", zyg_stdio_pipes, METH_NOARGS, "whether 0, 1 and 2 are pipes"},
	{"threads", zyg_threads, METH_NOARGS, "threads of this process"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "_capibox_zygote", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__capibox_zygote(void);
PyMODINIT_FUNC PyInit__capibox_zygote(void) { return PyModule_Create(&module); }
