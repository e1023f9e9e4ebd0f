#include "exec.h"

const char *exec_reason_name(enum exec_reason r)
{
	switch (r) {
	case EXEC_REASON_EXITED: return "exited";
	case EXEC_REASON_SIGNALED: return "signaled";
	case EXEC_REASON_WALL_TIMEOUT: return "wall_timeout";
	case EXEC_REASON_CPU_TIMEOUT: return "cpu_timeout";
	case EXEC_REASON_MEMORY_LIMIT: return "memory_limit";
	case EXEC_REASON_OUTPUT_LIMIT: return "output_limit";
	case EXEC_REASON_CANCELLED: return "cancelled";
	case EXEC_REASON_SANDBOX_ERROR: return "sandbox_error";
	case EXEC_REASON_UNSPECIFIED: break;
	}
	return "unspecified";
}
