/* imports_any(): which programs the front sends to the preloaded zygote. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "imports.h"

static bool hit(const char *code) { return imports_any(code, strlen(code), "numpy,pandas"); }

static void test_statements(void **state)
{
	(void)state;
	assert_true(hit("import pandas as pd\n"));
	assert_true(hit("import numpy"));
	assert_true(hit("import os, sys\nimport numpy.linalg as la\n"));
	assert_true(hit("import os, numpy as np\n"));
	assert_true(hit("from pandas import DataFrame\n"));
	assert_true(hit("from numpy.random import default_rng\n"));
	assert_true(hit("if True:\n    import pandas\n"));
	assert_true(hit("def f():\n\timport \\\n numpy\n"));
	assert_true(hit("x = 1; import pandas\n"));
	assert_true(hit("import os\r\nimport pandas\r\n"));
}

static void test_calls(void **state)
{
	(void)state;
	assert_true(hit("pd = __import__('pandas')\n"));
	assert_true(hit("np = importlib.import_module(\"numpy\")\n"));
	assert_true(hit("m = importlib.import_module( 'numpy.fft' )\n"));
	assert_false(hit("m = importlib.import_module(name)\n"));
	assert_false(hit("m = __import__('numpyx')\n"));
}

static void test_numpy_users(void **state)
{
	(void)state;
	assert_true(hit("import matplotlib.pyplot as plt\n"));
	assert_true(hit("from scipy import stats\n"));
	assert_true(hit("from sklearn.linear_model import LinearRegression\n"));
	/* only when numpy is preloaded */
	assert_false(imports_any("import matplotlib\n", 18, "pandas"));
	assert_true(imports_any("import pandas\n", 14, " pandas "));
}

static void test_misses(void **state)
{
	(void)state;
	assert_false(hit("print(1)\n"));
	assert_false(hit("import os\nimport sys\n"));
	assert_false(hit("import numpyish\n"));
	assert_false(hit("import my_numpy\n"));
	assert_false(hit("from .numpy import x\n"));
	assert_false(hit("numpy = 3\npandas = 4\n"));
	assert_false(hit("important = 1\nimportpandas = 2\n"));
	assert_false(hit("import"));
	assert_false(hit("from"));
	assert_false(hit("__import__"));
	assert_false(hit(""));
	assert_false(imports_any("import numpy\n", 13, ""));
	assert_false(imports_any(NULL, 0, "numpy"));
	/* length bounds the scan: "import numpy" cut before the name */
	assert_false(imports_any("import numpy\n", 7, "numpy"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_statements),
		cmocka_unit_test(test_calls),
		cmocka_unit_test(test_numpy_users),
		cmocka_unit_test(test_misses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
