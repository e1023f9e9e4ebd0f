/*
 * Which modules a python program imports, read from its text: the front
 * uses it to send code that imports numpy or pandas to the zygote that has
 * them loaded (docs/ZYGOTE.md). A guess that only ever changes speed, never
 * what the code sees: a miss runs in a lean sandbox and imports the module
 * itself, a false hit runs in a sandbox that has it loaded already.
 */
#ifndef CAPIBOX_IMPORTS_H
#define CAPIBOX_IMPORTS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * True when code names, as the top-level package of an `import` or `from`
 * statement, or as the literal argument of __import__() or import_module(),
 * one of the comma-separated modules in csv, or a package known to import
 * numpy (matplotlib, scipy, ...) when csv has numpy.
 */
bool imports_any(const char *code, size_t len, const char *csv);

#endif
