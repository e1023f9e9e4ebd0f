# A classic double-fork daemon that ignores the polite signals and tries to
# outlive the run; the test looks for "sleep $DAEMON_MARK" on the host after
# it.
import os
import signal
import sys
import time

r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        os.chdir('/')
        devnull = os.open('/dev/null', os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.write(w, b'%d' % os.getpid())
        os.close(w)
        # the shell keeps the ignored signals; "sleep" shows on the host
        mark = os.environ['DAEMON_MARK']
        os.execv('/bin/sh', ['sh', '-c', 'sleep %s; sleep %s' % (mark, mark)])
    os._exit(0)
os.close(w)
pid = os.read(r, 32).decode()
os.wait()
time.sleep(0.3)
print('daemonised', pid, flush=True)
time.sleep(0.5)
