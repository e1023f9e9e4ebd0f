/*
 * The runtime table. Each row says how to run one language: the command
 * ("{file}" is the code's path inside the sandbox), the file name the code
 * is written to, extra environment, how to read the version (run on the
 * host by the supervisor at start, trusted binaries only) and the canary a
 * deep health check runs.
 */
#include "runtime.h"

#include <stdio.h>
#include <string.h>

#include "runners/javascript.h"
#include "runners/python.h"

static const struct runtime runtimes[] = {
	{
		.name = "python",
		.file_name = "main.py",
		/* -u: unbuffered, so output streams as it is written */
		.argv = {"/usr/bin/python3", "-u", "{file}"},
		/* PYTHONPATH: modules uploaded next to the code import, warm or cold */
		.env = {"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "MPLBACKEND=Agg",
			"PYTHONPATH=/home/user"},
		.version_argv = {"/usr/bin/python3", "--version"},
		.canary_code = "print(sum(range(10)))\n",
		.canary_expect = "45\n",
		.runner = runner_python,
		.runner_file = "runner.py",
		.warm_argv = {"/usr/bin/python3", "-u", "{runner}"},
		.startup_env = {"PYTHON"},
	},
	{
		.name = "javascript",
		.file_name = "main.js",
		.argv = {"/usr/bin/node", "{file}"},
		.env = {"NODE_DISABLE_COLORS=1"},
		.version_argv = {"/usr/bin/node", "--version"},
		.canary_code = "console.log(6 * 7);\n",
		.canary_expect = "42\n",
		.runner = runner_javascript,
		.runner_file = "runner.js",
		.warm_argv = {"/usr/bin/node", "{runner}"},
		.startup_env = {"NODE", "UV_"},
	},
	{
		.name = "bash",
		.file_name = "main.sh",
		.argv = {"/bin/bash", "{file}"},
		.env = {NULL},
		.version_argv = {"/bin/bash", "-c", "echo \"bash $BASH_VERSION\""},
		.canary_code = "echo $((2 + 3))\n",
		.canary_expect = "5\n",
	},
	{
		/* Analyze's statistics engine (server/analyze/, the program
		 * capibox-analyze): the server sends the program itself as the
		 * code, the request's options as a file and the dataset as
		 * stdin. No version to probe (it is ours), no canary. */
		.name = "analyze",
		.file_name = "capibox-analyze",
		.argv = {"{file}", "/home/user/.capibox-analyze.pb"},
		.internal = 1,
		.code_mode = 0555,
	},
};

size_t runtime_count(void) { return sizeof(runtimes) / sizeof(runtimes[0]); }

const struct runtime *runtime_at(size_t i) { return i < runtime_count() ? &runtimes[i] : NULL; }

int runtime_find(const char *name)
{
	if (name == NULL)
		return -1;
	for (size_t i = 0; i < runtime_count(); i++)
		if (strcmp(runtimes[i].name, name) == 0)
			return (int)i;
	return -1;
}

int runtime_find_public(const char *name)
{
	int i = runtime_find(name);

	return i >= 0 && !runtimes[i].internal ? i : -1;
}

void runtime_names(char *buf, size_t len)
{
	size_t off = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < runtime_count(); i++) {
		if (runtimes[i].internal)
			continue;
		int n = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", runtimes[i].name);
		if (n < 0 || (size_t)n >= len - off)
			return;
		off += (size_t)n;
	}
}

int runtime_warm_env_ok(const struct runtime *rt, const char *const *names, size_t n)
{
	if (rt->runner == NULL)
		return 0;
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < 4 && rt->startup_env[k]; k++)
			if (strncmp(names[i], rt->startup_env[k], strlen(rt->startup_env[k])) == 0)
				return 0;
	return 1;
}
