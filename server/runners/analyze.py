# capibox Analyze code mode runner (docs/ANALYZE.md, "Code mode").
#
# The server runs this file as the code of an ordinary python execution
# (warm pools apply). Inputs, all under /home/user:
#   .capibox-analyze.json     options: format, name, delimiter, no_header,
#                             null_values (written by server/rpc/analyze.c)
#   .capibox-analyze-code.py  the caller's pandas code
#   stdin                     the dataset
# The dataset is read into `df` as pandas' read_csv / read_json(lines=True)
# would with those options, the code runs with df, pd and np in its
# globals, then ONE framed JSON document goes to the real stdout:
#   "CAPIBOX-ANALYZE <length>\n" <length bytes of JSON>
#   {"stdout": base64, "stdout_bytes": n, "rows": len(df) | null,
#    "result": {"columns": [...], "rows": [[...], ...]} | null,
#    "figures": [base64 PNG, ...], "error": text | null,
#    "dataset_error": text | null}
# The code's own stdout (fd 1, so child processes too) goes to a file under
# /tmp and travels base64 in the document: nothing the code prints can be
# mistaken for the protocol. stderr stays fd 2, which the server collects.
# Exit status: 0 the code ran; 1 it raised (traceback on stderr); 2 the
# dataset could not be parsed; sys.exit(n) in the code: n.
import os
import sys

CODE_PATH = "/home/user/.capibox-analyze-code.py"
OPTIONS_PATH = "/home/user/.capibox-analyze.json"
STDOUT_MAX = 1 << 20  # code stdout kept; the rest counted, not sent
CELLS_MAX = 200000  # result cells sent (the daemon parses them): rows beyond dropped
FIGURES_MAX = 32

# The protocol's descriptor: a private copy of the real stdout, not
# inherited by child processes; fd 1 becomes an unlinked file in /tmp.
sys.stdout.flush()
_proto = os.dup(1)
_out_fd = os.open("/tmp", os.O_RDWR | os.O_TMPFILE | os.O_CLOEXEC, 0o600)
os.dup2(_out_fd, 1)  # inheritable: children print into it too
os.close(_out_fd)

import base64  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import traceback  # noqa: E402


def _send(doc, code):
    """Writes the document to the protocol descriptor and exits with code."""
    body = json.dumps(doc, separators=(",", ":")).encode()
    data = b"CAPIBOX-ANALYZE %d\n" % len(body) + body
    while data:
        n = os.write(_proto, data)
        data = data[n:]
    os._exit(code)


def _stdout_of_code(doc):
    """The code's stdout, up to STDOUT_MAX bytes, into doc."""
    try:
        sys.stdout.flush()
    except BaseException:  # noqa: B036 (the code may have closed or replaced it)
        pass
    data = b""
    try:
        size = os.lseek(1, 0, os.SEEK_END)
        os.lseek(1, 0, os.SEEK_SET)
        while len(data) < min(size, STDOUT_MAX):
            chunk = os.read(1, min(size, STDOUT_MAX) - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as e:  # the code closed or replaced fd 1
        sys.stderr.write("capibox: the code's stdout is lost: %s\n" % e)
        size = 0
    if size > len(data):
        sys.stderr.write(
            "capibox: stdout cut to its first %d of %d bytes\n" % (len(data), size)
        )
    doc["stdout"] = base64.b64encode(data).decode()
    doc["stdout_bytes"] = size


def _guess_format(opts, data):
    """csv, tsv or jsonl: the option, the name's extension, then the content."""
    fmt = opts.get("format") or ""
    if fmt:
        return fmt
    name = (opts.get("name") or "").lower()
    for ext, f in ((".csv", "csv"), (".tsv", "tsv"), (".tab", "tsv"), (".jsonl", "jsonl"),
                   (".ndjson", "jsonl"), (".json", "jsonl")):
        if name.endswith(ext):
            return f
    head = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    stripped = head.lstrip(b" \t\r\n")
    if stripped.startswith(b"{"):
        return "jsonl"
    first = head.split(b"\n", 1)[0]
    return "tsv" if first.count(b"\t") > first.count(b",") else "csv"


def _read_dataset(pd, opts, data):
    """The DataFrame pandas reads from data with the request's options."""
    fmt = _guess_format(opts, data)
    if fmt == "jsonl":
        if not data.strip():
            return pd.DataFrame()
        return pd.read_json(io.BytesIO(data), lines=True, convert_dates=False)
    sep = opts.get("delimiter") or ("\t" if fmt == "tsv" else ",")
    kw = {}
    nulls = opts.get("null_values") or []
    if nulls:
        kw = {"keep_default_na": False, "na_values": nulls}
    return pd.read_csv(io.BytesIO(data), sep=sep, header=None if opts.get("no_header") else 0,
                       encoding="utf-8", **kw)


def _cell(v):
    """One value for the document: a float, a str or None (null)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, int):
        try:
            return float(v)
        except OverflowError:
            return str(v)
    if isinstance(v, str):
        return v
    try:
        import numpy as np

        if isinstance(v, np.bool_):
            return "True" if v else "False"
        if isinstance(v, (np.integer, np.floating)):
            return _cell(v.item())
        import pandas as pd

        if pd.api.types.is_scalar(v) and pd.isna(v):
            return None  # pd.NA, pd.NaT, np.datetime64("NaT")
    except Exception:  # noqa: BLE001 (an exotic object: its text)
        pass
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _name(label):
    """A column name from a pandas label (tuples of a MultiIndex joined by _)."""
    if isinstance(label, tuple):
        return "_".join(str(x) for x in label)
    return str(label)


def _table(pd, result):
    """{"columns", "rows"} for result, or None when there is no result."""
    import numpy as np

    if isinstance(result, np.ndarray):
        result = pd.DataFrame(result) if result.ndim <= 2 else pd.Series(list(result))
    elif isinstance(result, dict):
        result = pd.Series(result, dtype=object)
    elif isinstance(result, (list, tuple)):
        result = pd.Series(list(result), dtype=object)
    if isinstance(result, pd.Series):
        result = result.to_frame(name="value" if result.name is None else result.name)
    if not isinstance(result, pd.DataFrame):
        return {"columns": ["result"], "rows": [[_cell(result)]]}
    columns, data = [], []
    idx = result.index
    # the index is data unless it is the default 0..n-1 (groupby keys,
    # a labelled index); its columns come first, named as reset_index()
    # names them
    if not (isinstance(idx, pd.RangeIndex) and idx.name is None and idx.start == 0 and
            idx.step == 1):
        for i in range(idx.nlevels):
            n = idx.names[i]
            if n is None:
                n = "index" if idx.nlevels == 1 else "level_%d" % i
            columns.append(_name(n))
            data.append(idx.get_level_values(i))
    for k in range(result.shape[1]):
        columns.append(_name(result.columns[k]))
        data.append(result.iloc[:, k])
    nrows = len(result)
    if columns and nrows * len(columns) > CELLS_MAX:
        keep = CELLS_MAX // len(columns)
        sys.stderr.write("capibox: result cut to its first %d of %d rows\n" % (keep, nrows))
        nrows = keep
    cols = [[_cell(v) for v in (c.iloc[:nrows] if hasattr(c, "iloc") else c[:nrows]).tolist()]
            for c in data]
    return {"columns": columns, "rows": [list(r) for r in zip(*cols)] if cols else []}


def _figures():
    """Every open matplotlib figure as base64 PNG (only if pyplot was used)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    out = []
    nums = plt.get_fignums()
    if len(nums) > FIGURES_MAX:
        sys.stderr.write("capibox: only the first %d of %d figures are sent\n"
                         % (FIGURES_MAX, len(nums)))
    for num in nums[:FIGURES_MAX]:
        buf = io.BytesIO()
        plt.figure(num).savefig(buf, format="png")
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def _error_line(e):
    """The exception's last line, as the traceback ends ("KeyError: 'x'")."""
    return traceback.format_exception_only(type(e), e)[-1].strip()


def _main():
    doc = {"stdout": "", "stdout_bytes": 0, "rows": None, "result": None, "figures": [],
           "error": None, "dataset_error": None}
    with open(OPTIONS_PATH, "rb") as f:
        # the request's strings are not checked to be UTF-8
        opts = json.loads(f.read().decode("utf-8", "replace"))
    data = sys.stdin.buffer.read()

    import numpy as np
    import pandas as pd

    df = None
    try:
        df = _read_dataset(pd, opts, data)
    except Exception as e:  # noqa: BLE001 (pandas' message is the answer)
        # pandas' own words, as the engine's "dataset: ..." lines
        msg = str(e).strip().replace("\n", " ") or _error_line(e)
        doc["dataset_error"] = "dataset: " + msg
    del data
    if df is None:
        _stdout_of_code(doc)
        _send(doc, 2)
    doc["rows"] = len(df)

    import builtins

    glb = {"__name__": "__main__", "__file__": CODE_PATH, "__builtins__": builtins, "df": df,
           "pd": pd, "np": np}
    code = 0
    try:
        with open(CODE_PATH, "rb") as f:
            exec(compile(f.read(), CODE_PATH, "exec"), glb)
    except SystemExit as e:
        c = e.code
        if c is None:
            code = 0
        elif isinstance(c, int):
            code = c & 0xFF
        else:
            sys.stderr.write(str(c) + "\n")
            code = 1
        if code != 0:
            doc["error"] = "SystemExit: %s" % (c,)
    except BaseException as e:  # noqa: B036 (the code's failure is the answer)
        tb = e.__traceback__
        # the traceback starts at the code's own frames, not this runner's
        while tb is not None and tb.tb_frame.f_code.co_filename != CODE_PATH:
            tb = tb.tb_next
        # (none for a SyntaxError: the exception itself names the line)
        traceback.print_exception(type(e), e, tb)
        doc["error"] = _error_line(e)
        code = 1

    try:
        if "result" in glb:
            doc["result"] = _table(pd, glb["result"])
        doc["figures"] = _figures()
    except BaseException as e:  # noqa: B036
        sys.stderr.write("capibox: cannot convert the result: %s\n" % _error_line(e))
        if code == 0:
            doc["error"] = "result: " + _error_line(e)
            code = 1
    _stdout_of_code(doc)
    try:
        sys.stderr.flush()
    except BaseException:  # noqa: B036
        pass
    _send(doc, code)


_main()
