#!/usr/bin/env python3
"""Splits perf samples by process role: cpu_roles.py PERF_DATA DAEMON_PID LOG BUSY_S NEXEC.

BUSY_S is the machine's busy CPU time over the recording (seconds), NEXEC
the executions in it; each role gets the share of non-idle samples times
BUSY_S / NEXEC, in ms per execution. The zygotes are recognised by their
pids in the daemon's log, the rest by command name.
"""
import collections
import re
import subprocess
import sys

data, dpid, log, busy, nexec = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
with open(log) as f:
    zygotes = {int(p) for p in re.findall(r"zygote generation \d+ starting \(pid (\d+)", f.read())}
out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,pid"], capture_output=True, text=True, check=True).stdout
count = collections.Counter()
for line in out.splitlines():
    m = re.match(r"\s*(.*?)\s+(\d+)\s*$", line)
    if not m:
        continue
    comm, pid = m.group(1), int(m.group(2))
    if pid == dpid:
        role = "front (capiboxd)"
    elif comm.startswith("capiboxd: sup"):
        role = "supervisor"
    elif pid in zygotes:
        role = "zygotes (their clones)"
    elif comm == "python3":
        role = "sandbox runner (python3)"
    elif comm == "capibox-init":
        role = "sandbox init"
    elif comm == "swapper":
        role = None  # idle
    elif re.match(r"(kworker|ksoftirqd|rcu|kthreadd|migration|cpuhp|watchdog|kcompactd)", comm):
        role = "kernel threads"
    elif comm.startswith("capibox-bench") or comm in ("default-executo", "grpc_global_tim", "resolver-execut", "timer_manager", "event_engine"):
        role = "bench client"
    else:
        role = "other: " + comm
    if role is not None:
        count[role] += 1
total = sum(count.values())
if total == 0 or nexec == 0:
    sys.exit("no samples or no executions")
print(f"busy {busy:.2f} CPU-s for {nexec} executions: {1000 * busy / nexec:.2f} ms of CPU per execution")
for role, n in count.most_common():
    print(f"  {role:28s} {100 * n / total:5.1f}%  {1000 * busy * n / total / nexec:6.2f} ms")
