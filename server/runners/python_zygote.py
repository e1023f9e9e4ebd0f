# capibox's python zygote (docs/ZYGOTE.md).
#
#   /usr/bin/python3 -u /.capibox/zygote.py PRELOAD
#
# The supervisor starts this interpreter once per generation in its own
# user, pid, mount, ipc, uts and net namespaces, on the sandbox's read-only
# root (server/sandbox/sandbox.c, sandbox_zygote_start), with the warm
# runner's interpreter flags and environment (plus single-threaded BLAS).
# It imports PRELOAD (comma-separated; missing modules are skipped), then
# runs the warm runner's definitions (/.capibox/runner.py) once and serves spawn
# requests on descriptor 3, a SOCK_SEQPACKET socket from the supervisor.
#
# Every request is answered in C (_capibox_zygote.serve): it clones a new
# sandbox whose init is the product's C code; the sandbox's runner returns
# here, out of serve(), and becomes a warm runner: reseeded, with the warm
# runner's environment, it calls runner.py's _capibox_start, defined here
# once. The zygote itself never reads request content: requests carry ids,
# limits and descriptors.
import os
import sys

_preload = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else ""
# the variables that are the zygote's own, for its preload: a process with
# threads cannot be cloned safely, and BLAS libraries start a thread per
# core when loaded unless these say otherwise. Set here, not by the
# supervisor, so the environment this process was started with (which
# /proc/self/environ shows in a clone) is exactly the warm runner's; _serve
# puts os.environ back to it before the first clone
_ZYGOTE_ONLY = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_RUNNER_PATH = "/.capibox/runner.py"
_warm_env = dict(os.environb)
for _name in _ZYGOTE_ONLY:
    os.environ[_name] = "1"

for _name in filter(None, (m.strip() for m in _preload.split(","))):
    try:
        __import__(_name)
    except Exception as _e:  # noqa: BLE001  (skipped, with one line)
        sys.stderr.write("capibox zygote: preload %s skipped: %s\n" % (_name, _e))
if "pandas" in sys.modules:
    # what the first DataFrame and groupby build lazily (about 30 ms cold)
    try:
        _df = sys.modules["pandas"].DataFrame({"k": [0, 1], "v": [1, 2]})
        _df.groupby("k")["v"].sum()
        del _df
    except Exception:  # noqa: BLE001
        pass

# the warm runner (server/runners/python.py), defined once for every
# sandbox: each clone only calls its _capibox_start
import builtins  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import _signal  # noqa: E402
import random  # noqa: E402,F401  (loaded for the program; reseeded by its at-fork hook)
import signal  # noqa: E402
import threading  # noqa: E402

import _capibox_zygote  # noqa: E402

with open(_RUNNER_PATH, "rb") as _f:
    _runner = {"__name__": "_capibox_runner", "__builtins__": builtins, "__file__": _RUNNER_PATH}
    _runner["__cached__"] = None
    exec(compile(_f.read(), _RUNNER_PATH, "exec", dont_inherit=True), _runner)
del _f
# the code's path in a sandbox: next to the runner (the runtime table's
# file_name, main.py)
_runner["_capibox_warm_up"](os.path.join(os.path.dirname(_RUNNER_PATH), "main.py"))


def _stdio(fd, write, name, old):
    """A standard stream as `python3 -u` makes it at start (pylifecycle.c)."""
    buf = io.open(fd, "wb" if write else "rb", 0 if write else -1, closefd=False)
    raw = buf if write else buf.raw
    raw.name = name
    stream = io.TextIOWrapper(buf, old.encoding, old.errors, "\n", False, True)
    stream.mode = "w" if write else "r"
    return stream


def _std_streams():
    """stdin, stdout and stderr on descriptors 0, 1 and 2, made now."""
    return (
        _stdio(0, False, "<stdin>", sys.__stdin__),
        _stdio(1, True, "<stdout>", sys.__stdout__),
        _stdio(2, True, "<stderr>", sys.__stderr__),
    )


def _take():
    """runner.py's _capibox_wait, its reading and parsing done in C: every
    Python object a clone touches first costs it a page copy."""
    t = _capibox_zygote.take()
    if t is None:
        os._exit(0)  # the pool let this sandbox go unused (init is gone)
    path, env, done = t
    _runner["_capibox_done"] = done if done >= 0 else None
    if env:
        _runner["_capibox_environ"](env)
    return path


_runner["_capibox_wait"] = _take


def _pipe_stdio():
    """The clones' standard streams, made once here on a pipe's ends in 0,
    1 and 2, because a sandbox's 0, 1 and 2 are pipes: what a stream reads
    off its descriptor when made (not seekable, no position, a 4 KiB
    buffer) is then what it would read in the clone. Made in each clone,
    they cost about 100 of its page faults (the io classes' first use
    there). Never used here: each clone starts with untouched copies."""
    r, w = os.pipe()
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    try:
        os.dup2(r, 0)
        os.dup2(w, 1)
        os.dup2(w, 2)
        return _std_streams()
    finally:
        for fd, old in zip((0, 1, 2), saved):
            os.dup2(old, fd)
            os.close(old)
        os.close(r)
        os.close(w)


def _noop():
    pass


def _become_runner():
    """In a new sandbox's runner: undo what the fork shares, run runner.py."""
    threading._after_fork.__code__ = _after_fork_code  # see _serve
    # new streams on the sandbox's 0, 1 and 2: the ones made for pipes
    # (_pipe_stdio), or made now if one is not a pipe. The zygote's own stay
    # referenced (_zygote_stdio), so replacing them runs no finalizer; they
    # never close their descriptors (closefd=False, as at start)
    streams = _clone_stdio if _capibox_zygote.stdio_pipes() else _std_streams()
    sys.stdin = sys.__stdin__ = streams[0]
    sys.stdout = sys.__stdout__ = streams[1]
    sys.stderr = sys.__stderr__ = streams[2]
    # the C side reset every signal to its default; tell the signal module
    # where its table says otherwise (the zygote's handlers: looping over
    # every signal cost a clone about 0.2 ms; signal.signal's enum
    # conversions, 0.1 ms more), and set what a starting interpreter sets
    for sig in _handled:
        _signal.signal(sig, _signal.SIG_DFL)
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)
    # random state: random's own at-fork hook (random.py registers its
    # seed() with os.register_at_fork) reseeded it from OS entropy when the
    # C side ran PyOS_AfterFork_Child (integration.zygote checks siblings
    # differ); numpy's legacy global RandomState has no hook
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            np.random.seed()
        except Exception:  # noqa: BLE001
            pass
    try:
        _runner["_capibox_start"](None)  # ends with os._exit
    finally:
        os._exit(1)


def _serve():
    # children are reaped by the kernel: the supervisor follows each
    # sandbox with its pidfd, and init reports the runner's status
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    threads = _capibox_zygote.threads()
    if threads != 1:
        sys.stderr.write("capibox zygote: %d threads: cannot clone safely\n" % threads)
        os._exit(1)
    # what a clone undoes (_become_runner), found once: the signals whose
    # handler is not the default in the signal module's table
    global _handled
    fixed = (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGKILL, signal.SIGSTOP)
    _handled = [int(s) for s in signal.valid_signals() if s not in fixed and signal.getsignal(s) != signal.SIG_DFL]
    # the environment back to the warm runner's, here once (the preload
    # has read the BLAS variables: OpenBLAS sizes its pool when loaded), so
    # a clone has nothing to undo
    for name in [n for n in os.environb if n not in _warm_env]:
        del os.environb[name]
    for name, value in _warm_env.items():
        if os.environb.get(name) != value:
            os.environb[name] = value
    # threading's at-fork handler, which CPython runs in every clone,
    # rebuilds its state for a child of a process with several threads. The
    # zygote has one and holds none of threading's locks when it clones, so
    # in a clone the handler changes nothing that matters (its main thread,
    # idents and locks are as they were; _shutdown drops the one lock the
    # handler would have unlisted), yet it took about 110 page faults of the
    # clone's 430 (by getrusage: 30 fewer in all without it, the rest being
    # pages later code writes anyway) and runs some 40 lines of Python. The
    # clones skip it; each puts it back for forks of its program's own
    global _after_fork_code
    _after_fork_code = threading._after_fork.__code__
    threading._after_fork.__code__ = _noop.__code__
    global _clone_stdio, _zygote_stdio
    _clone_stdio = _pipe_stdio()
    _zygote_stdio = (sys.stdin, sys.stdout, sys.stderr)
    gc.collect()
    gc.freeze()  # children inherit a frozen heap: their collections skip it
    if _capibox_zygote.serve(3) == "runner":
        _become_runner()  # never returns
    # the supervisor closed the socket (a newer generation serves): wait
    # for every sandbox of ours, since our exit would kill them all (we are
    # their pid namespace's init); with SIGCHLD ignored, wait() returns
    # ECHILD once the last is gone
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
    os._exit(0)


_serve()
