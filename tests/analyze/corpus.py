#!/usr/bin/python3
"""The Analyze test corpus: datasets and the requests to run on them.

    corpus.py DIR          write the small datasets (tests/analyze/corpus/ is
                           this script's committed output)
    corpus.py --big DIR    write the big ones (long, wide) for the test run

CASES lists what oracle.py runs: a dataset, the request (flags of
capibox-analyze) and, for bad input, the exit status and message expected.
Everything is seeded: the same bytes every time.
"""
import os
import random
import sys

# --- small datasets -----------------------------------------------------------


def basic(rng):
    cities = ["Lima", "Quito", "Bogotá", "Santiago", "Caracas", "La Paz"]
    rows = ["id,city,sales,customers,price,active,note,ratio"]
    for i in range(60):
        city = rng.choice(cities) if rng.random() > 0.1 else ""
        sales = str(rng.randint(-50, 1000)) if rng.random() > 0.05 else "NA"
        cust = str(rng.randint(0, 200))
        price = f"{rng.uniform(-5, 500):.3f}" if rng.random() > 0.1 else ""
        active = rng.choice(["True", "False", "true", "FALSE"])
        note = rng.choice(["", "ok", "late", "n/a", "ok"])
        ratio = repr(rng.gauss(0, 1e-3) * 10 ** rng.randint(-3, 6))
        rows.append(f"{i},{city},{sales},{cust},{price},{active},{note},{ratio}")
    return "\n".join(rows) + "\n"


def quoted():
    return ('name,desc,qty\n'
            '"Smith, J","says ""hi""",1\n'
            '"multi\nline",plain,2\n'
            '"a"tail,"x,y,z",3\n'
            'in"side,"",4\n'
            '"crlf\r\ninside","",5\n'
            'last,"q""",6\n')


def crlf_bom():
    return "\ufeffa,b,c\r\n1,2.5,x\r\n3,,y\r\n5,7.25,\r\n"


def blank_lines():
    return "a,b\n\n1,2\n   \n\t\n3,4\n\n\n5,6\n,\n7,8"


def short_rows():
    return "a,b,c\n1,2,3\n4,5\n6\n7,8,9\n"


def implicit_index():
    return "a,b\n10,1,2\n11,3,4\n12,5\n"


def all_null():
    return "a,b,c\n1,,NA\n2,,null\n3,,\n"


def single_row():
    return "a,b,c,d\n1,2.5,x,True\n"


def header_only():
    return "a,b,c\n"


def types_edge():
    return ("int,float,inf,plus,spaced,big,huge,bools,under,mixed,overflow,tiny,lead0\n"
            "1,1.5,inf,+3, 7 ,9223372036854775808,99999999999999999999,TRUE,1_0,1,1e400,1e-400,007\n"
            "2,.5,-Infinity,+4,8 ,18446744073709551615,1,false,2,x,2,1e-320,010\n"
            "-3,1e5,1.5,-5, 9,9223372036854775809,2,True,3,True,3,2,0\n"
            "4,1E-3,2,6,10,10,3,FALSE,4,2.5,4,3,-0\n")


def dup_names():
    return "a,,a,a.1,a,\n1,2,3,4,5,6\n7,8,9,10,11,12\n"


def ties(rng):
    vals = [f"v{i:02d}" for i in range(40)]
    col = []
    for v in vals:
        col += [v] * rng.choice([1, 2, 2, 3])
    rng.shuffle(col)
    flags = [rng.choice(["True", "False"]) for _ in col]
    return "val,flag,n\n" + "".join(f"{v},{f},{i % 7}\n" for i, (v, f) in enumerate(zip(col, flags)))


def tsv(rng):
    rows = ["k\tv\tw"]
    for i in range(30):
        rows.append(f"{rng.choice('abc')}\t{rng.randint(0, 9)}\t{rng.random():.6f}")
    return "\n".join(rows) + "\n"


def semicolon():
    return "x;y;z\n1;a,b;2.5\n2;c;3.5\n3;a,b;\n"


def no_header():
    return "1,a,2.5\n2,b,3.5\n3,a,\n"


def custom_nulls():
    return "a,b,c\n1,-,x\n2,missing,NA\n-,3,\n4,5,nan\n"


def unicode_keys():
    return ("k,v\n"
            "Zürich,1\nzebra,2\nÄpfel,3\napple,4\nZürich,5\n日本,6\nApple,7\nzebra,8\n,9\nÉcole,10\n")


def bool_nulls():
    return "flag,n,key\nTrue,1,a\n,2,b\nFalse,3,a\nTrue,4,\nTRUE,5,b\n"


def basic_jsonl(rng):
    lines = []
    for i in range(40):
        o = {"id": i, "city": rng.choice(["Lima", "Quito", "Cusco"]),
             "amount": round(rng.uniform(0, 100), 2), "ok": rng.choice([True, False])}
        if rng.random() < 0.1:
            o["amount"] = None
        if rng.random() < 0.1:
            del o["city"]
        if i == 7:
            o["extra"] = "late key"
        lines.append(o)
    import json
    return "\n".join(json.dumps(o, ensure_ascii=False) for o in lines) + "\n\n"


def types_jsonl():
    return ('{"a": 1, "b": true, "c": "1", "d": 1.0, "e": {"x": 1}, "f": "x", "g": null, "h": "nan"}\n'
            '{"a": 2, "b": null, "c": " 2", "d": 2, "e": [1, 2], "f": "y\\u00e9\\"q", "g": null, "h": "1_0"}\n'
            '\n'
            '{"a": 3, "c": "3.5", "d": 3.0, "f": "x", "a": 4, "h": "2"}\n')


def sales_demo():
    # the README's demo file: mean sales 547.25, mean customers 69.10
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "examples", "sales.csv")) as f:
        return f.read()


# --- bad datasets -----------------------------------------------------------
BAD = {
    "ragged.csv": "a,b\n1,2\n\n3,4,5\n",
    "ragged_quoted.csv": 'a,b\n"x\ny",2\n3,4,5\n',
    "unterminated.csv": 'a,b\n1,2\n3,"open\n',
    "bad_utf8.csv": b"a,b\n1,2\n3,\xff\n",
    "nul.csv": b"a,b\n1,\x002\n",
    "empty.csv": "",
    "blank_only.csv": "\n\n  \n",
    "bad.jsonl": '{"a": 1}\n{"a": \n',
}


def small(rng_seed=5):
    rng = random.Random(rng_seed)
    return {
        "basic.csv": basic(rng),
        "quoted.csv": quoted(),
        "crlf_bom.csv": crlf_bom(),
        "blank_lines.csv": blank_lines(),
        "short_rows.csv": short_rows(),
        "implicit_index.csv": implicit_index(),
        "all_null.csv": all_null(),
        "single_row.csv": single_row(),
        "header_only.csv": header_only(),
        "types_edge.csv": types_edge(),
        "dup_names.csv": dup_names(),
        "ties.csv": ties(rng),
        "data.tsv": tsv(rng),
        "semicolon.txt": semicolon(),
        "no_header.csv": no_header(),
        "custom_nulls.csv": custom_nulls(),
        "unicode_keys.csv": unicode_keys(),
        "bool_nulls.csv": bool_nulls(),
        "basic.jsonl": basic_jsonl(rng),
        "types.jsonl": types_jsonl(),
        "sales.csv": sales_demo(),
        **BAD,
    }


# --- big datasets (generated at test time) --------------------------------
def long_csv(path, rows=200000, seed=11):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(3000)]
    with open(path, "w") as f:
        f.write("id,word,qty,price,flag,grp,maybe\n")
        for i in range(rows):
            qty = str(rng.randint(0, 10 ** 6)) if rng.random() > 0.01 else ""
            price = f"{rng.lognormvariate(3, 1):.4f}" if rng.random() > 0.01 else "NaN"
            flag = rng.choice(["True", "False"])
            maybe = rng.choice(["True", "False", ""])
            f.write(f"{i},{rng.choice(words)},{qty},{price},{flag},{rng.randint(0, 40)},{maybe}\n")


def halves_csv(path, rows=120000, seed=13):
    """Columns whose type differs between the file's halves (the engine reads big files in two)."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write("int_then_float,null_then_int,int_then_null,bool_then_text,text_then_int,int_then_big,"
                "bool_then_null,text_both,null_both\n")
        for i in range(rows):
            first = i < rows // 2
            f.write(",".join((
                str(rng.randint(-9, 9)) if first else f"{rng.random():.3f}",
                "" if first else str(rng.randint(0, 99)),
                str(rng.randint(0, 99)) if first else "",
                rng.choice(["True", "False"]) if first else rng.choice(["True", "x"]),
                rng.choice(["a", "b", "c"]) if first else str(i),
                str(rng.randint(0, 99)) if first else str(9223372036854775808 + i),
                rng.choice(["True", "False"]) if first else rng.choice(["True", ""]),
                rng.choice(["a", "b"]) if first else rng.choice(["b", "c", "d"]),
                "",
            )) + "\n")


def wide_csv(path, cols=2000, rows=40, seed=12):
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write(",".join(f"c{i}" for i in range(cols)) + "\n")
        for _ in range(rows):
            f.write(",".join(str(rng.randint(0, 9)) if i % 3 else f"{rng.random():.3f}"
                             for i in range(cols)) + "\n")


# --- the cases ----------------------------------------------------------------
AGGS_ALL = ["count", "sum", "mean", "min", "max", "std", "median", "nunique"]


def aggs(col, fns=AGGS_ALL):
    return [x for f in fns for x in ("--agg", f"{col}:{f}")]


# (dataset, flags) compared with pandas
CASES = [
    ("basic.csv", []),
    ("basic.csv", ["--column", "sales", "--column", "city", "--column", "sales"]),
    ("basic.csv", ["--group-by", "city"] + aggs("sales") + aggs("price") + ["--agg", "note:count",
                   "--agg", "note:nunique", "--agg", "note:min", "--agg", "note:max"]),
    ("basic.csv", ["--group-by", "city", "--group-by", "active"] + aggs("customers")),
    ("basic.csv", ["--group-by", "active"] + aggs("ratio") + aggs("active")),
    ("basic.csv", aggs("sales") + aggs("ratio") + ["--agg", "city:nunique", "--agg", "city:min"]),
    ("basic.csv", ["--group-by", "customers", "--agg", "sales:mean"]),
    ("basic.csv", ["--group-by", "price", "--agg", "sales:sum"]),
    ("basic.csv", ["--group-by", "city"]),
    ("basic.csv", ["--null", "NA", "--null", "late"]),
    ("quoted.csv", []),
    ("crlf_bom.csv", []),
    ("blank_lines.csv", []),
    ("short_rows.csv", []),
    ("implicit_index.csv", []),
    ("all_null.csv", []),
    ("all_null.csv", ["--group-by", "a"] + aggs("b")),
    ("single_row.csv", []),
    ("header_only.csv", []),
    ("header_only.csv", ["--group-by", "a", "--agg", "b:count", "--agg", "c:nunique"]),
    ("types_edge.csv", []),
    ("dup_names.csv", []),
    ("ties.csv", []),
    ("ties.csv", ["--group-by", "n", "--agg", "val:nunique", "--agg", "flag:count"]),
    ("data.tsv", []),
    ("data.tsv", ["--group-by", "k"] + aggs("w")),
    ("semicolon.txt", ["--delimiter", ";"]),
    ("no_header.csv", ["--no-header"]),
    ("no_header.csv", ["--no-header", "--group-by", "1", "--agg", "0:sum"]),
    ("custom_nulls.csv", ["--null", "-", "--null", "missing"]),
    ("unicode_keys.csv", ["--group-by", "k", "--agg", "v:sum"]),
    ("unicode_keys.csv", []),
    ("bool_nulls.csv", []),
    ("bool_nulls.csv", ["--group-by", "flag", "--agg", "n:sum"]),
    ("bool_nulls.csv", ["--group-by", "key", "--group-by", "flag", "--agg", "n:mean"]),
    ("basic.jsonl", []),
    ("basic.jsonl", ["--group-by", "city"] + aggs("amount") + ["--agg", "ok:mean"]),
    # column e holds an object and a list: pandas cannot count those (unhashable)
    ("types.jsonl", [f for c in "abcdfgh" for f in ("--column", c)]),
    ("sales.csv", []),
    ("sales.csv", ["--group-by", "region"] + aggs("sales")),
]

BIG_CASES = [
    ("long.csv", []),
    ("long.csv", ["--group-by", "word"] + aggs("qty") + aggs("price")),
    ("long.csv", ["--group-by", "grp", "--group-by", "flag"] + aggs("price", ["mean", "sum", "std"])),
    ("wide.csv", []),
    ("halves.csv", []),
    ("halves.csv", ["--group-by", "text_both", "--agg", "int_then_float:mean", "--agg", "null_then_int:sum"]),
]

# (dataset, flags, exit status, stderr)
ERROR_CASES = [
    ("ragged.csv", [], 2, "dataset: line 4: expected 2 fields, saw 3"),
    ("ragged_quoted.csv", [], 2, "dataset: line 3: expected 2 fields, saw 3"),
    ("unterminated.csv", [], 2, "dataset: line 3: unterminated quoted field"),
    ("bad_utf8.csv", [], 2, "dataset: line 3: invalid UTF-8"),
    ("nul.csv", [], 2, "dataset: line 2: NUL byte"),
    ("empty.csv", [], 2, "dataset: no columns to parse"),
    ("blank_only.csv", [], 2, "dataset: no columns to parse"),
    ("bad.jsonl", [], 2, "dataset: line 2: bad value"),
    ("basic.csv", ["--column", "nope"], 3, 'columns: unknown column "nope"'),
    ("basic.csv", ["--group-by", "x"], 3, 'group_by: unknown column "x"'),
    ("basic.csv", ["--agg", "sales:sum", "--agg", "city:count", "--agg", "zzz:mean"], 3,
     'aggregates[2].column: unknown column "zzz"'),
    ("basic.csv", ["--agg", "city:mean"], 4, 'aggregates[0]: mean does not apply to text column "city"'),
]


def write(dirname, files):
    os.makedirs(dirname, exist_ok=True)
    for name, content in files.items():
        data = content if isinstance(content, bytes) else content.encode()
        with open(os.path.join(dirname, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--big":
        os.makedirs(sys.argv[2], exist_ok=True)
        long_csv(os.path.join(sys.argv[2], "long.csv"))
        wide_csv(os.path.join(sys.argv[2], "wide.csv"))
        halves_csv(os.path.join(sys.argv[2], "halves.csv"))
    elif len(sys.argv) == 2:
        write(sys.argv[1], small())
    else:
        sys.exit(__doc__)
