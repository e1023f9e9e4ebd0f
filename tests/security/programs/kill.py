# Signals aimed at everything: kill(-1, SIGKILL), then SIGKILL to pids
# 1..200 and to the victim's host pid (VICTIM_PID). Another sandbox runs at
# the same time and must not notice.
import errno
import os
import signal

me = os.getpid()
# our own thread ids are pids in the namespace too: killing one kills us
own = {int(t) for t in os.listdir('/proc/self/task')} | {me}
try:
    os.kill(-1, signal.SIGKILL)
    print('kill(-1) returned 0')
except OSError as e:
    print('kill(-1)', errno.errorcode.get(e.errno, e.errno))
hits = {}
targets = [p for p in range(1, 201) if p not in own] + [int(os.environ['VICTIM_PID'])]
for p in targets:
    try:
        os.kill(p, signal.SIGKILL)
        hits.setdefault('delivered', []).append(p)
    except OSError as e:
        hits.setdefault(errno.errorcode.get(e.errno, str(e.errno)), []).append(p)
for k in sorted(hits):
    print(k, len(hits[k]), hits[k][:8])
print('attacker done')
