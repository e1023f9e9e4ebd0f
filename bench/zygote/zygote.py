# The zygote of the prototype: a python3 that has started (and, with
# "pandas", imported numpy and pandas) once, in its own user, mount, pid,
# ipc, uts and net namespaces on the sandbox's read-only root (zbench.c
# builds that), and clones one sandbox per request (_zyg.c).
#
#   python3 -u /.zyg/zygote.py none|pandas
#
# Requests come on descriptors 3.. (one SOCK_SEQPACKET socket per client
# worker): a packet "ID K TMPFS_MB" with descriptors stdin, stdout, stderr,
# report, go, code. The zygote answers "ID PID CLONE_US MAPS_US" with the
# child's pidfd. It never reads a request's content (see _zyg.c).
import os
import sys

preload = sys.argv[1] if len(sys.argv) > 1 else "none"
if preload == "pandas":
    # numpy's BLAS must not start threads: a process with threads cannot be
    # cloned safely (and a thread pool would not survive the fork anyway)
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    # what the first DataFrame and groupby build lazily (about 30 ms cold)
    _df = pandas.DataFrame({"k": [0, 1], "v": [1, 2]})
    _df.groupby("k")["v"].sum()
    del _df

# what the product's warm runner pays ahead (server/runners/python.py)
import atexit  # noqa: E402
import builtins  # noqa: E402
import gc  # noqa: E402
import random  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import types  # noqa: E402

import _zyg  # noqa: E402

exec(compile("def _w():\n    return 1\n_w()\n", "<warm-up>", "exec"), {})

if _zyg.threads() != 1:
    sys.stderr.write("zygote: %d threads after imports: cannot fork safely\n" % _zyg.threads())
    sys.exit(1)

BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/home/user",
    "USER": "user",
    "LOGNAME": "user",
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",
    "TERM": "dumb",
}


def run_code():
    """In the runner: reseed what the fork duplicated, then run main.py."""
    # random: os.register_at_fork already reseeds the global instance in a
    # forked child (PyOS_AfterFork_Child runs the hook); seeding again here
    # costs nothing and does not depend on that
    random.seed()
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()  # the legacy global RandomState, from os entropy
    os.environ.clear()
    os.environ.update(BASE_ENV)
    path = "/.capibox/main.py"
    sys.argv = [path]
    sys.path[0] = "/.capibox"
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins
    main.__cached__ = None
    sys.modules["__main__"] = main
    code = 0
    try:
        with open(path, "rb") as f:
            src = f.read()
        exec(compile(src, path, "exec"), main.__dict__)
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()
    except BaseException:  # noqa: B036
        pass
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: B036
        pass
    os._exit(code & 0xFF)


def serve():
    socks = []
    fd = 3
    while True:
        try:
            os.fstat(fd)
        except OSError:
            break
        socks.append(socket.socket(fileno=fd))
        fd += 1
    # children are reaped by the kernel; init reports the runner's status
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    gc.collect()
    gc.freeze()  # children inherit a frozen heap: their collections skip it
    os.write(2, b"zygote ready\n")
    while socks:
        ready, _, _ = select.select(socks, [], [])
        for s in ready:
            msg, fds, _, _ = socket.recv_fds(s, 256, 8)
            if not msg:
                socks.remove(s)
                s.close()
                continue
            rid, k, mb = msg.split()
            fin, fout, ferr, rep, go, code = fds
            res = _zyg.spawn(int(k), fin, fout, ferr, rep, go, code, int(mb))
            if res is None:
                run_code()  # never returns
            pid, pidfd, clone_us, maps_us = res
            for f in fds:
                os.close(f)
            socket.send_fds(s, [b"%s %d %d %d" % (rid, pid, clone_us, maps_us)], [pidfd])
            os.close(pidfd)


serve()
