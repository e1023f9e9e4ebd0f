# capibox runner for python.
#
# Warm (no argument): started by a pooled sandbox ahead of any request: the
# interpreter is up and waiting on descriptor 3 (a socket) for the one
# execution it will become. The sandbox's init writes, once, the code's
# path and the request's environment (path "\n", byte length "\n", then
# NAME=VALUE entries each ended by NUL), the socket staying open. When the
# program ends, this process closes its output and writes its exit code
# back on that socket ('X', one byte), so init ends the run without waiting
# for the interpreter's teardown; a session's cell asks init there to
# collect files ('G').
# Cold (`python3 -u runner.py PATH`): a sandbox made for the request runs
# the code at PATH at once.
# From the python zygote: the zygote runs this file's definitions once,
# under another name, and each sandbox it clones calls _capibox_start(None),
# as the warm runner's last line does.
#
# Either way this process runs the code as `python3 -u path` would: as
# __main__, argv[0] the path, the working directory /home/user, tracebacks
# without this file's frames, exit code 1 on an uncaught exception. Then,
# as a notebook does, it sends on the events pipe (descriptor 4, frames
# read by the server: u32 length, u8 type, payload) the value of the last
# statement when that is an expression whose value is not None ('R'), and
# every matplotlib figure still open, or shown with plt.show(), as a PNG
# ('A', in pieces of at most 1 MiB).
#
# Session (warm, with CAPIBOX_SESSION=1 in the take's environment, which
# the server sets and this process removes): instead of one program, a loop
# over cells the server writes to stdin (frames: u32 length, u8 type,
# payload; 'C' a cell, 'I' interrupt it). Every cell runs in the same
# __main__ globals; after each one an 'E' frame (i32 exit code, u64 CPU
# microseconds) says it ended. See _capibox_session_loop.
import atexit
import builtins
import gc
import os
import sys
import types

_capibox_session = False
_capibox_done = None  # warm: our socket to init (see _capibox_exit, _capibox_collect)
_capibox_path = None  # the program's, _capibox_pid and _capibox_main: set by _capibox_start
_capibox_pid = 0
_capibox_main = None


def _capibox_wait():
    data = b""
    need = -1
    while len(data) != need:
        chunk = os.read(3, 65536)
        if not chunk:
            os._exit(0)  # the pool let this sandbox go unused (init is gone)
        data += chunk
        if need < 0 and data.count(b"\n") >= 2:
            path, length, _ = data.split(b"\n", 2)
            need = len(path) + len(length) + 2 + int(length)
    global _capibox_done
    # the same socket takes our "done" line to init: kept out of the
    # program's way (descriptor 3 is free again, as in a cold run, and no
    # exec'd child inherits it)
    try:
        import fcntl

        _capibox_done = fcntl.fcntl(3, fcntl.F_DUPFD_CLOEXEC, 1000)
    except OSError:
        pass
    os.close(3)
    path, length, rest = data.split(b"\n", 2)
    _capibox_environ(rest[: int(length)])
    return os.fsdecode(path)


def _capibox_environ(env):
    """Takes the request's environment (NAME=VALUE entries, each ended by
    NUL) into os.environ; CAPIBOX_SESSION is the server's, for us."""
    global _capibox_session
    for entry in env.split(b"\0"):
        if entry:
            name, _, value = entry.partition(b"=")
            if name == b"CAPIBOX_SESSION":
                _capibox_session = os.fsdecode(value)  # "1": python, "bash"
                continue
            os.environb[name] = value


def _capibox_warm_up(code_path=None):
    """Paid before the request arrives (by the zygote once, for all its
    sandboxes): what the first compile() does lazily (about 2 ms), the
    modules the exit path and a result need (threading: about 3 ms; json).
    With code_path (the zygote), also the split of a one-expression program
    there (_capibox_empty), run often enough that CPython 3.11 has
    specialised the split's bytecode here rather than in every clone."""
    import _ast  # noqa: F401  (the split's exact path)
    import fcntl  # noqa: F401
    import json  # noqa: F401
    import threading  # noqa: F401

    exec(compile("def _capibox_w():\n    return 1\n_capibox_w()\n", "<warm-up>", "exec"), {})
    if code_path is not None:
        _capibox_empty[code_path] = compile(b"", code_path, "exec")
        for _ in range(16):
            _capibox_split(b"print(1)\n", code_path)
            _capibox_split(b"x = 1\nx\n", code_path)


_CAPIBOX_EVENTS = 4
_CAPIBOX_PIECE = 1 << 20  # the server takes at most 1 MiB of data per frame
_capibox_events_ok = True
_capibox_figures = 0
_capibox_send_lock = __import__("_thread").allocate_lock()


def _capibox_send(kind, payload):
    """Writes one frame; never raises into the program.

    The program may have closed or reused descriptor 4: after a failed
    write nothing more is sent (a half-written frame would end the run).
    """
    global _capibox_events_ok
    if not _capibox_events_ok:
        return
    view = memoryview((len(payload) + 1).to_bytes(4, "little") + kind + payload)
    with _capibox_send_lock:  # a session's CPU watcher writes too
        try:
            while view:
                view = view[os.write(_CAPIBOX_EVENTS, view) :]
        except BaseException:  # noqa: B036
            _capibox_events_ok = False


def _capibox_artifact(path, data):
    name = path.encode()
    size = len(data)
    offset = 0
    while True:
        piece = data[offset : offset + _CAPIBOX_PIECE]
        eof = offset + len(piece) == size
        _capibox_send(
            b"A",
            len(name).to_bytes(2, "little")
            + name
            + offset.to_bytes(8, "little")
            + size.to_bytes(8, "little")
            + (b"\1" if eof else b"\0")
            + piece,
        )
        offset += len(piece)
        if eof:
            return


def _capibox_result(value):
    """Sends value's repr (and JSON form) as the run's result."""
    import json

    try:
        text = repr(value)
    except BaseException as e:  # noqa: B036
        try:
            sys.stderr.write("capibox: no result: repr() raised %s\n" % type(e).__name__)
        except BaseException:  # noqa: B036
            pass
        return
    if len(text) > 65536:
        text = text[:65536] + "..."
        js = None  # as big: not worth a message
    else:
        try:
            js = json.dumps(value, allow_nan=False)
            if len(js) > 262144:
                js = None
        except BaseException:  # noqa: B036
            js = None
    payload = json.dumps({"text": text, "json": js, "mime_type": "text/plain"})
    _capibox_send(b"R", payload.encode())


def _capibox_capture():
    """Sends every open matplotlib figure as figure-N.png and closes them.

    Only when the program imported pyplot: importing it here would cost
    every run a quarter of a second.
    """
    global _capibox_figures
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None or not _capibox_events_ok:
        return
    try:
        import io

        nums = plt.get_fignums()
    except BaseException:  # noqa: B036
        return
    for num in nums:
        try:
            buf = io.BytesIO()
            plt.figure(num).savefig(buf, format="png")
        except BaseException as e:  # noqa: B036
            try:
                sys.stderr.write("capibox: figure %s not saved: %r\n" % (num, e))
            except BaseException:  # noqa: B036
                pass
            continue
        _capibox_figures += 1
        _capibox_artifact("figure-%d.png" % _capibox_figures, buf.getvalue())
    try:
        plt.close("all")
    except BaseException:  # noqa: B036
        pass


def _capibox_show(*args, **kwargs):
    """plt.show() under our backend: the figures are sent now, as shown."""
    _capibox_capture()


class _CapiboxMatplotlib:
    """An import hook for two names.

    "matplotlib": once the real package is loaded, its backend becomes
    "capibox_mpl" when it was the runtime's default (Agg); the environment
    is left alone, so other Python processes the code starts are not
    affected. "capibox_mpl": Agg whose show() sends the figures at once and
    closes them, so code that shows one figure after another gets them all.
    """

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "capibox_mpl":
            from importlib.machinery import ModuleSpec

            return ModuleSpec(name, cls)
        if name != "matplotlib":
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        real = spec.loader.exec_module

        def exec_module(module):
            real(module)
            try:
                if str(module.rcParams["backend"]).lower() == "agg":
                    module.rcParams["backend"] = "module://capibox_mpl"
            except BaseException:  # noqa: B036
                pass

        spec.loader.exec_module = exec_module
        return spec

    @staticmethod
    def create_module(spec):
        return None

    @staticmethod
    def exec_module(module):
        from matplotlib.backends import backend_agg

        for k, v in vars(backend_agg).items():
            if not k.startswith("__"):
                setattr(module, k, v)
        module.show = _capibox_show



# path -> the empty program compiled for it, the head of a program that is
# one expression (filled once, for the code's usual path: _capibox_warm_up)
_capibox_empty = {}


def _capibox_split(src, path):
    """Compiles src as (statements, final expression or None).

    The final expression is the last statement when that is an expression
    (a notebook's Out[]); both keep their line numbers, so tracebacks name
    the file's lines. The usual case, an expression on the last unindented
    line (or lines), is found by compiling: the tail as an expression, the
    head as statements; a tail at column 0 that compiles as one expression
    after a head that compiles on its own is exactly the last statement.
    Anything else goes through the syntax tree (exact, but importing _ast
    costs a cold run about a millisecond).
    """
    lines = src.splitlines(keepends=True)
    # an encoding declaration applies to the lines after it: keep them whole
    if b"coding" not in b"".join(lines[:2]):
        for i in range(len(lines) - 1, -1, -1):
            if lines[i][:1] in b" \t\f\r\n#":
                continue  # blank, comment, or inside the last statement
            try:
                expr = compile(b"\n" * i + b"".join(lines[i:]), path, "eval")
                head = _capibox_empty.get(path) if i == 0 else None
                if head is None:
                    head = compile(b"".join(lines[:i]), path, "exec")
                return head, expr
            except (SyntaxError, ValueError):
                break
    import _ast

    tree = compile(src, path, "exec", _ast.PyCF_ONLY_AST)
    expr = None
    if tree.body and isinstance(tree.body[-1], _ast.Expr):
        expr = compile(_ast.Expression(tree.body.pop().value), path, "eval")
    return compile(tree, path, "exec"), expr


def _capibox_exit(code):
    """Ends like the interpreter would, without its slow teardown.

    Python's own finalization (module teardown, a full collection, freeing
    the interpreter) costs about 5 ms even for print(1). What code can see
    of it is kept: non-daemon threads are joined, atexit functions run, the
    program's objects are released (so files left open are flushed and
    closed by their finalizers) and the standard streams are flushed; then
    the process exits with the code Python would have used. The figures
    still open go out first, whatever the ending.
    """
    _capibox_capture()
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:  # noqa: B036
            pass
    atexit._run_exitfuncs()
    _capibox_main.__dict__.clear()
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: B036
            pass
    if _capibox_done is not None and os.getpid() == _capibox_pid:
        # tell init the code ourselves, output closed first: it then ends
        # the run without waiting for the kernel to free this interpreter
        # (not from a child the program forked: its end is not the run's)
        for fd in (0, 1, 2, _CAPIBOX_EVENTS):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.write(_capibox_done, b"X" + bytes((code & 0xFF,)))
        except OSError:
            pass
    os._exit(code)


def _capibox_collect(globs):
    """Has init send a session cell's files matching globs as artifacts.

    init walks the working directory as after a one-shot run (never
    following a symlink, never leaving it) and writes the artifact frames
    on the events pipe itself; its answer comes before our 'E' frame, so
    the files arrive before the cell's end.
    """
    body = b"".join(g + b"\0" for g in globs)
    ok = False
    if _capibox_done is not None:
        try:
            os.write(_capibox_done, b"G" + len(body).to_bytes(4, "little") + body)
            ok = os.read(_capibox_done, 1) == b"k"
        except OSError:
            pass
    if not ok:
        sys.stderr.write("capibox: collecting the cell's files failed\n")
        sys.stderr.flush()


def _capibox_status(e):
    """The exit status a SystemExit gives, as python's: None 0, an int
    itself (its low byte), anything else printed to stderr and 1."""
    c = e.code
    if c is None:
        return 0
    if isinstance(c, int):
        return c & 0xFF
    sys.stderr.write(str(c) + "\n")
    return 1


def _capibox_report(e, filename):
    """Prints an uncaught exception as python does for the program in
    filename: the traceback from the program's first frame (none of this
    file's); no traceback when no frame is the program's (a syntax error,
    shown as python shows it for a file it cannot compile)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    e = e.with_traceback(tb)
    try:
        sys.excepthook(type(e), e, e.__traceback__)
    except BaseException:  # noqa: B036
        pass


def _capibox_session_loop(lang):
    """Runs cells until the server closes the control pipe (never returns).

    The control pipe (our stdin) moves to a private descriptor and stdin
    becomes /dev/null. A reader thread takes frames off it: cells go to a
    queue, an interrupt becomes SIGINT to this process (KeyboardInterrupt in
    the cell) while a cell runs. A second thread watches the cell's CPU time
    (this process and its waited children) and interrupts it at the limit,
    telling the server first ('T').

    lang "bash": the cells go to one long-lived bash (variables, functions
    and the working directory persist), each sourced from a file with stdin
    from /dev/null; its status comes back on a pipe. An interrupt is SIGINT
    to bash's process group, whose trap returns from the sourced cell.
    """
    import linecache
    import queue
    import signal
    import threading
    import time

    ctl = os.dup(0)  # not inherited by the cell's children (PEP 446)
    nul = os.open("/dev/null", os.O_RDONLY)
    os.dup2(nul, 0)
    os.close(nul)
    cells = queue.SimpleQueue()
    lock = threading.Lock()
    st = {"running": False, "cpu_ms": 0, "base": 0.0, "told": False}
    go = threading.Event()

    def cpu_now():
        t = os.times()  # children: 10 ms ticks; this process: precise
        return time.process_time() + t.children_user + t.children_system

    def readn(n):
        buf = b""
        while len(buf) < n:
            chunk = os.read(ctl, n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def reader():
        while True:
            head = readn(5)
            if head is None:
                os._exit(0)  # the server closed the session
            body = readn(int.from_bytes(head[:4], "little") - 1)
            if body is None:
                os._exit(0)
            if head[4:5] == b"C":
                cells.put(body)
            elif head[4:5] == b"I":
                with lock:
                    if st["running"]:
                        interrupt()

    def cpu_watch():
        while True:
            go.wait()
            time.sleep(0.02)
            with lock:
                if not st["running"]:
                    go.clear()
                    continue
                if st["told"] or not st["cpu_ms"]:
                    continue
                if (cpu_now() - st["base"]) * 1000 >= st["cpu_ms"]:
                    st["told"] = True
                    _capibox_send(b"T", b"")
                    interrupt()

    bash = None
    if lang == "bash":
        import subprocess

        done_r, done_w = os.pipe()
        bash = subprocess.Popen(
            ["/bin/bash", "--norc", "--noprofile"],
            stdin=subprocess.PIPE,
            pass_fds=(done_w,),
            start_new_session=True,
            cwd="/home/user",
        )
        os.close(done_w)  # bash holds it, under the same number
        done = os.fdopen(done_r, "rb", buffering=0)
        bash.stdin.write(b"trap 'return 130 2>/dev/null' INT\n")
        bash.stdin.flush()
        cell_file = "/tmp/.capibox-cell"

        def cpu_now():  # noqa: F811  (bash's own and its waited children's)
            try:
                with open("/proc/%d/stat" % bash.pid, "rb") as fh:
                    f = fh.read().rsplit(b")", 1)[1].split()
                return sum(int(v) for v in f[11:15]) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                return 0.0

        def interrupt():
            try:
                os.killpg(bash.pid, signal.SIGINT)
            except OSError:
                pass

    else:

        def interrupt():
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=reader, daemon=True).start()
    threading.Thread(target=cpu_watch, daemon=True).start()
    sys.argv = [""]
    sys.path[0] = ""
    n = 0
    while True:
        try:
            body = cells.get()
        except KeyboardInterrupt:  # a late interrupt of the last cell
            continue
        n += 1
        wall_ms = int.from_bytes(body[0:4], "little")  # noqa: F841 (the server times it)
        cpu_ms = int.from_bytes(body[4:8], "little")
        nfiles = int.from_bytes(body[8:12], "little")
        off = 12
        files = []
        for _ in range(nfiles):
            plen = int.from_bytes(body[off : off + 2], "little")
            path = os.fsdecode(body[off + 2 : off + 2 + plen])
            off += 2 + plen
            mode = int.from_bytes(body[off : off + 4], "little")
            size = int.from_bytes(body[off + 4 : off + 12], "little")
            off += 12
            files.append((path, mode, off, size))
            off += size
        globs = []
        for _ in range(int.from_bytes(body[off : off + 4], "little")):
            glen = int.from_bytes(body[off + 4 : off + 6], "little")
            globs.append(body[off + 6 : off + 6 + glen])
            off += 2 + glen
        off += 4
        src = body[off:]
        code = 0
        try:
            for path, mode, start, size in files:
                full = os.path.join("/home/user", path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(body[start : start + size])
                os.chmod(full, mode)
        except BaseException as e:  # noqa: B036
            sys.stderr.write("capibox: writing the cell's files: %r\n" % (e,))
            code = 1
        name = "<cell-%d>" % n
        t0 = cpu_now()
        with lock:
            st["running"] = True
            st["cpu_ms"] = cpu_ms
            st["base"] = t0
            st["told"] = False
        go.set()
        try:
            if code == 0 and bash is not None:
                fd = os.open(cell_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(src)
                bash.stdin.write(b". %s </dev/null; echo $? >&%d\n" % (cell_file.encode(), done_w))
                bash.stdin.flush()
                line = done.readline()
                if not line:  # the cell ended bash (exit): so ends the session
                    os._exit(bash.wait() & 0xFF)
                code = int(line) & 0xFF
            elif code == 0:
                text = src.decode("utf-8", "replace")
                linecache.cache[name] = (len(text), None, text.splitlines(True), name)
                cell, expr = _capibox_split(src, name)
                exec(cell, _capibox_main.__dict__)
                if expr is not None:
                    value = eval(expr, _capibox_main.__dict__)
                    if value is not None:
                        _capibox_main.__dict__["_"] = value
                        _capibox_result(value)
                    del value
        except SystemExit as e:
            code = _capibox_status(e)
        except BaseException as e:  # noqa: B036
            _capibox_report(e, name)
            code = 1
            del e
        try:
            _capibox_capture()
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
        except BaseException:  # noqa: B036
            pass
        with lock:
            st["running"] = False
        if globs:
            _capibox_collect(globs)  # no interrupt comes now: the cell has ended
        used = int((cpu_now() - t0) * 1000000)
        frame = (13).to_bytes(4, "little") + b"E" + (code & 0xFFFFFFFF).to_bytes(4, "little")
        frame += used.to_bytes(8, "little")
        while True:
            try:
                with _capibox_send_lock:
                    os.write(_CAPIBOX_EVENTS, frame)
                break
            except KeyboardInterrupt:
                continue
            except OSError:
                os._exit(1)  # the events pipe is gone: so is the session


def _capibox_start(path):
    """Runs the program at path (a cold run) or, path None, the one the
    server sends on descriptor 3 (warm); never returns."""
    global _capibox_path, _capibox_pid, _capibox_main
    # a frozen heap: the collection at exit looks at the program's own
    # objects only (about 2 ms less)
    gc.freeze()
    _capibox_path = path if path is not None else _capibox_wait()
    _capibox_pid = os.getpid()
    os.chdir("/home/user")
    sys.argv = [_capibox_path]
    # as for a script run from its directory (PYTHONPATH, from the runtime
    # table, adds the working directory after it, as in a cold run)
    sys.path[0] = os.path.dirname(_capibox_path)
    # what `python3 path` does, without runpy (whose run_path imports
    # pkgutil, typing and re: ~8 ms on the request path)
    _capibox_main = types.ModuleType("__main__")
    _capibox_main.__file__ = _capibox_path
    _capibox_main.__builtins__ = builtins
    _capibox_main.__cached__ = None
    sys.modules["__main__"] = _capibox_main
    sys.meta_path.insert(0, _CapiboxMatplotlib)
    if _capibox_session:
        _capibox_session_loop(_capibox_session)
    try:
        with open(_capibox_path, "rb") as f:
            code, expr = _capibox_split(f.read(), _capibox_path)
        del f
        # a final expression statement is evaluated on its own, for its value
        exec(code, _capibox_main.__dict__)
        if expr is not None:
            value = eval(expr, _capibox_main.__dict__)
            if value is not None:
                _capibox_result(value)
            del value
    except SystemExit as e:
        _capibox_exit(_capibox_status(e))
    except BaseException as e:  # noqa: B036
        _capibox_report(e, _capibox_path)
        _capibox_exit(1)
    _capibox_exit(0)


# Run as a script (`python3 -u runner.py [PATH]`). The python zygote runs
# this file once under another name, then calls _capibox_start(None) in
# each sandbox it clones (server/runners/python_zygote.py).
if __name__ == "__main__":
    if len(sys.argv) > 1:
        _capibox_start(sys.argv[1])
    _capibox_warm_up()
    _capibox_start(None)
