# capibox warm runner for python.
#
# Started by a pooled sandbox ahead of any request: the interpreter is up
# and waiting on descriptor 3 for the one execution it will become. The
# sandbox's init writes, once, the code's path and the request's
# environment (path "\n", byte length "\n", then NAME=VALUE entries each
# ended by NUL), closes the pipe, and this process runs the code as
# `python3 -u path` would: as __main__, argv[0] the path, the working
# directory /home/user, tracebacks without this file's frames, exit code 1
# on an uncaught exception.
import os
import sys


def _capibox_wait():
    data = b""
    while True:
        chunk = os.read(3, 65536)
        if not chunk:
            break
        data += chunk
    os.close(3)
    if not data:
        os._exit(0)  # the pool let this sandbox go unused
    path, length, rest = data.split(b"\n", 2)
    env = rest[: int(length)]
    for entry in env.split(b"\0"):
        if entry:
            name, _, value = entry.partition(b"=")
            os.environb[name] = value
    return os.fsdecode(path)


# Paid before the request arrives: what the first compile() does lazily
# (about 2 ms), the modules the exit path needs (threading: about 3 ms),
# and a frozen heap, so the collection at exit only looks at the program's
# own objects (about 2 ms less).
import atexit  # noqa: E402
import gc  # noqa: E402
import threading  # noqa: E402

exec(compile("def _capibox_w():\n    return 1\n_capibox_w()\n", "<warm-up>", "exec"), {})
gc.freeze()
_capibox_path = _capibox_wait()
del _capibox_wait
os.chdir("/home/user")
sys.argv = [_capibox_path]
# as for a script run from its directory (PYTHONPATH, from the runtime
# table, adds the working directory after it, as in a cold run)
sys.path[0] = os.path.dirname(_capibox_path)

import builtins  # noqa: E402
import types  # noqa: E402

# what `python3 path` does, without runpy (whose run_path imports pkgutil,
# typing and re: ~8 ms on the request path)
_capibox_main = types.ModuleType("__main__")
_capibox_main.__file__ = _capibox_path
_capibox_main.__builtins__ = builtins
_capibox_main.__cached__ = None
sys.modules["__main__"] = _capibox_main


def _capibox_exit(code):
    """Ends like the interpreter would, without its slow teardown.

    Python's own finalization (module teardown, a full collection, freeing
    the interpreter) costs about 5 ms even for print(1). What code can see
    of it is kept: non-daemon threads are joined, atexit functions run, the
    program's objects are released (so files left open are flushed and
    closed by their finalizers) and the standard streams are flushed; then
    the process exits with the code Python would have used.
    """
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
    os._exit(code)


try:
    with open(_capibox_path, "rb") as _capibox_f:
        _capibox_code = compile(_capibox_f.read(), _capibox_path, "exec")
    del _capibox_f
    exec(_capibox_code, _capibox_main.__dict__)
except SystemExit as _capibox_e:
    # the exit status sys.exit() gives: None 0, an int itself, else the
    # object printed to stderr and 1
    _capibox_c = _capibox_e.code
    if _capibox_c is None:
        _capibox_c = 0
    elif not isinstance(_capibox_c, int):
        sys.stderr.write(str(_capibox_c) + "\n")
        _capibox_c = 1
    _capibox_exit(_capibox_c & 0xFF)
except BaseException as _capibox_e:  # noqa: B036
    _tb = _capibox_e.__traceback__
    while _tb is not None and _tb.tb_frame.f_code.co_filename != _capibox_path:
        _tb = _tb.tb_next
    if _tb is not None:
        _capibox_e = _capibox_e.with_traceback(_tb)
    sys.excepthook(type(_capibox_e), _capibox_e, _capibox_e.__traceback__)
    _capibox_exit(1)
_capibox_exit(0)
