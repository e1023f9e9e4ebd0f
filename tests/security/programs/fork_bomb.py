# Fork bomb: fork until the kernel refuses; every child tries to fork too
# (the classic bomb shape) and then sleeps. The sandbox's pids limit must
# make forks fail with EAGAIN; the run ends at its wall time.
import errno
import os
import time

ok = failed = 0
err = 'none'
for _ in range(500):
    try:
        pid = os.fork()
    except OSError as e:
        failed += 1
        err = errno.errorcode.get(e.errno, str(e.errno))
        continue
    if pid == 0:
        while True:
            try:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
            except OSError:
                time.sleep(0.05)
    ok += 1
print('forked', ok, 'failed', failed, err, flush=True)
time.sleep(60)
