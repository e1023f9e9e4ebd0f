#!/usr/bin/python3
"""The Analyze oracle test: capibox-analyze against pandas, field by field.

    oracle.py ANALYZE_BIN CORPUS_DIR WORK_DIR

Runs build/capibox-analyze --json directly (no daemon) on every case of
corpus.py (the committed small datasets, and big ones generated into
WORK_DIR), computes the same with Debian's pandas (read_csv / read_json,
describe, nunique, value_counts, groupby().agg()) and fails on any
difference: types, counts and texts exactly, numbers to 1e-9 relative.
Also checks the bad-input cases (exit status and message), the
OPTIONS_FILE path and the README's sales figures. Without pandas it skips
(exit 77) saying so.
"""
import json
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402

try:
    import numpy as np
    import pandas as pd
except ImportError as e:
    print(f"SKIP: pandas is not available ({e}); install python3-pandas")
    sys.exit(77)

REL = float(os.environ.get("ANALYZE_REL", "1e-9"))  # ANALYZE_REL=0: report every last-bit difference
failures = []


def fail(case, msg):
    failures.append(f"{case}: {msg}")


def run(binary, path, flags, extra=()):
    with open(path, "rb") as f:
        p = subprocess.run([binary, "--json", *extra, *flags], stdin=f, capture_output=True)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def opt(flags, name):
    return [flags[i + 1] for i in range(len(flags) - 1) if flags[i] == name]


def read_pandas(path, flags):
    name = os.path.basename(path)
    nulls = opt(flags, "--null")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return pd.read_json(path, lines=True, convert_dates=False)
    kw = {}
    if name.endswith((".tsv", ".tab")):
        kw["sep"] = "\t"
    if opt(flags, "--delimiter"):
        kw["sep"] = opt(flags, "--delimiter")[0]
    if "--no-header" in flags:
        kw["header"] = None
    if nulls:
        kw["keep_default_na"] = False
        kw["na_values"] = nulls
    df = pd.read_csv(path, **kw)
    df.columns = [str(c) for c in df.columns]
    return df


def type_of(s):
    k = s.dtype.kind
    if k in "iu":
        return "INTEGER"
    if k == "f":
        return "FLOAT"
    if k == "b":
        return "BOOLEAN"
    return "TEXT"


def close(a, b):
    """Numbers agree: both null (NaN), equal, or within REL relative."""
    a = None if a is None or (isinstance(a, float) and math.isnan(a)) else float(a)
    b = None if b is None or (isinstance(b, float) and math.isnan(b)) else float(b)
    if a is None or b is None:
        return a is None and b is None
    if a == b:
        return True
    return abs(a - b) <= REL * max(abs(a), abs(b))


def expect_summary(s):
    e = {"name": s.name, "type": type_of(s), "count": int(s.count()),
         "nulls": int(s.isna().sum()), "distinct": int(s.nunique())}
    if e["type"] in ("INTEGER", "FLOAT"):
        d = s.describe()
        e.update(mean=d["mean"], std=d["std"], min=d["min"], p25=d["25%"], median=d["50%"],
                 p75=d["75%"], max=d["max"], sum=s.sum())
    else:
        vc = s.value_counts().head(5)
        e["top"] = [{"value": str(k), "count": int(v)} for k, v in vc.items()]
    return e


def compare_summary(case, got, exp):
    for k, v in exp.items():
        if k == "top":
            if got.get("top") != v:
                fail(case, f"column {exp['name']}: top {got.get('top')} != pandas {v}")
        elif k in ("name", "type", "count", "nulls", "distinct"):
            if got.get(k) != v:
                fail(case, f"column {exp['name']}: {k} {got.get(k)!r} != pandas {v!r}")
        elif not close(got.get(k), v):
            fail(case, f"column {exp['name']}: {k} {got.get(k)!r} != pandas {v!r}")


def cell(v):
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def agg_fn(df, col, f):
    """The pandas aggregate; min/max of text skip nulls (pandas raises TypeError comparing str and NaN)."""
    if df[col].dtype == object and f in ("min", "max"):
        return lambda s: getattr(s.dropna(), f)() if s.notna().any() else float("nan")
    return f


def expect_groups(df, flags):
    keys = opt(flags, "--group-by")
    aggs = [a.rsplit(":", 1) for a in opt(flags, "--agg")]
    names = keys + [f"{c}_{f}" for c, f in aggs]
    if not keys:
        return names, [[cell(df[c].agg(agg_fn(df, c, f))) for c, f in aggs]]
    g = df.groupby(keys, sort=True, dropna=True)
    if not aggs:
        res = g.size()
        cols = [res]
        names = keys + ["size"]
    else:
        cols = [g[c].agg(agg_fn(df, c, f)) for c, f in aggs]
    index = cols[0].index
    rows = []
    for i, key in enumerate(index):
        key = key if isinstance(key, tuple) else (key,)
        rows.append([cell(k) for k in key] + [cell(c.iloc[i]) for c in cols])
    return names, rows


def compare_groups(case, got, names, rows):
    if got is None:
        fail(case, "no groups in the response")
        return
    if got["columns"] != names:
        fail(case, f"group columns {got['columns']} != {names}")
    if len(got["rows"]) != len(rows):
        fail(case, f"{len(got['rows'])} groups != pandas {len(rows)}")
        return
    for i, (gr, er) in enumerate(zip(got["rows"], rows)):
        for j, (gv, ev) in enumerate(zip(gr, er)):
            ok = gv == ev if isinstance(ev, str) or isinstance(gv, str) else close(gv, ev)
            if not ok:
                fail(case, f"group row {i} ({er[:len(names) - 1]}) {names[j]}: {gv!r} != pandas {ev!r}")
                return


def check_case(binary, path, flags):
    case = f"{os.path.basename(path)} {' '.join(flags)}".strip()
    rc, out, err = run(binary, path, flags)
    if rc != 0:
        fail(case, f"exit {rc}: {err.strip()}")
        return None
    got = json.loads(out)
    df = read_pandas(path, flags)
    if got["rows"] != len(df):
        fail(case, f"rows {got['rows']} != pandas {len(df)}")
    cols = opt(flags, "--column")
    grouping = opt(flags, "--group-by") or opt(flags, "--agg")
    if cols or not grouping:
        want = cols or list(df.columns)
        if [c["name"] for c in got["columns"]] != want:
            fail(case, f"columns {[c['name'] for c in got['columns']]} != {want}")
        else:
            for c, name in zip(got["columns"], want):
                compare_summary(case, c, expect_summary(df[name]))
    if grouping:
        names, rows = expect_groups(df, flags)
        compare_groups(case, got.get("groups"), names, rows)
    return got


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    binary, cdir, work = sys.argv[1:]
    os.makedirs(work, exist_ok=True)
    # the committed corpus must be what corpus.py writes
    for name, content in corpus.small().items():
        data = content if isinstance(content, bytes) else content.encode()
        with open(os.path.join(cdir, name), "rb") as f:
            if f.read() != data:
                fail(name, "committed corpus differs from corpus.py: run corpus.py tests/analyze/corpus")
    big = os.path.join(work, "big")
    os.makedirs(big, exist_ok=True)
    for name, gen in (("long.csv", corpus.long_csv), ("wide.csv", corpus.wide_csv),
                      ("halves.csv", corpus.halves_csv)):
        if not os.path.exists(os.path.join(big, name)):
            gen(os.path.join(big, name))
    n = 0
    for name, flags in corpus.CASES:
        check_case(binary, os.path.join(cdir, name), flags)
        n += 1
    for name, flags in corpus.BIG_CASES:
        check_case(binary, os.path.join(big, name), flags)
        n += 1
    for name, flags, status, msg in corpus.ERROR_CASES:
        case = f"{name} {' '.join(flags)}".strip()
        rc, out, err = run(binary, os.path.join(cdir, name), flags)
        if rc != status or err.strip() != msg:
            fail(case, f"exit {rc} {err.strip()!r}, want exit {status} {msg!r}")
        n += 1
    # the README demo through Analyze
    rc, out, err = run(binary, os.path.join(cdir, "sales.csv"), [])
    if rc == 0:
        by = {c["name"]: c for c in json.loads(out)["columns"]}
        if f"{by['sales']['mean']:.2f}" != "547.25" or f"{by['customers']['mean']:.2f}" != "69.10":
            fail("sales.csv", f"means {by['sales']['mean']} {by['customers']['mean']}")
    # the OPTIONS_FILE path: a serialized AnalyzeRequest, dataset on a regular file and a pipe
    optfile = os.path.join(work, "options.pb")
    flags = ["--group-by", "city", "--agg", "sales:mean", "--column", "price"]
    path = os.path.join(cdir, "basic.csv")
    rc1, want, _ = run(binary, path, flags)
    rc2, _, err2 = run(binary, path, flags + ["--write-options", optfile])
    rc3, got, err3 = run(binary, path, [optfile])
    with open(path, "rb") as f:
        p = subprocess.run(f"cat | {binary} --json {optfile}", shell=True, stdin=f, capture_output=True)
    if not (rc1 == rc2 == rc3 == p.returncode == 0 and got == want == p.stdout.decode()):
        fail("options file", f"{rc1} {rc2} {rc3} {p.returncode} {err2} {err3} {p.stderr}")
    n += 1
    # without --json: one AnalyzeResponse on stdout, decodable as protobuf
    with open(path, "rb") as f:
        p = subprocess.run([binary, optfile], stdin=f, capture_output=True)
    if p.returncode != 0 or len(p.stdout) == 0 or p.stdout[0] != 0x08:  # field 1 (rows), varint
        fail("protobuf output", f"exit {p.returncode}, {p.stdout[:8]!r}")
    n += 1
    if failures:
        print("\n".join(failures))
        print(f"FAIL: {len(failures)} differences in {n} cases")
        sys.exit(1)
    print(f"OK: {n} cases agree with pandas {pd.__version__}")


if __name__ == "__main__":
    main()
