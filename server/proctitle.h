/*
 * Process titles. The supervisor and every sandbox init are forks of
 * capiboxd, so /proc/<pid>/cmdline would show capiboxd's arguments and
 * environment strings to code in the sandbox (pid 1 is visible there).
 * proctitle_set() overwrites that memory in place.
 */
#ifndef CAPIBOX_PROCTITLE_H
#define CAPIBOX_PROCTITLE_H

/* Remembers the argv/environ area; call first thing in main(). */
void proctitle_init(int argc, char **argv);

/*
 * Replaces this process's command line with title and wipes the original
 * argument and environment strings (the environment must no longer be
 * needed: call clearenv() first or after).
 */
void proctitle_set(const char *title);

#endif
