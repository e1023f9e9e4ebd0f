#include "proctitle.h"

#include <string.h>
#include <sys/prctl.h>

extern char **environ;

static char *area_start;
static char *area_end;

void proctitle_init(int argc, char **argv)
{
	char *end;

	if (argc <= 0 || argv[0] == NULL)
		return;
	area_start = argv[0];
	end = argv[0] + strlen(argv[0]) + 1;
	/* argv and environ strings are contiguous on the initial stack */
	for (int i = 1; i < argc; i++)
		if (argv[i] == end)
			end += strlen(argv[i]) + 1;
	for (int i = 0; environ && environ[i]; i++)
		if (environ[i] == end)
			end += strlen(environ[i]) + 1;
	area_end = end;
}

void proctitle_set(const char *title)
{
	size_t len, tlen = strlen(title);

	if (area_start == NULL)
		return;
	len = (size_t)(area_end - area_start);
	memset(area_start, 0, len);
	memcpy(area_start, title, tlen < len ? tlen : len - 1);
	(void)prctl(PR_SET_NAME, title, 0, 0, 0);
}
