#!/usr/bin/env bash
# Analyze benchmark (issue 5): capibox-analyze against pandas on a generated
# 1,000,000-row, 8-column CSV (ints, floats, two text columns, a boolean,
# 1% nulls), interleaved, several rounds. Prints each round's times, the
# medians, the ratios and the engine's peak RSS next to the file size.
#
#   bench/analyze.sh [BUILD_DIR]        # default build/
#
# Environment:
#   ROUNDS=3               rounds (each: pandas describe, engine describe, pandas
#                          group-by, engine group-by)
#   ROWS=1000000           rows of the generated file
#   DATA=PATH              the CSV (generated there, seeded, when missing;
#                          default BUILD_DIR/bench-analyze-ROWS.csv)
#   ANALYZE_TARGET=engine  engine: BUILD_DIR/capibox-analyze run directly, the
#                          file on its stdin (mapped, as the daemon's memfd is);
#                          daemon: end to end, `capibox analyze FILE --json`
#                          against a capiboxd this script starts (or
#                          CAPIBOX_ADDR's): the file travels over gRPC and is
#                          parsed in a sandbox; the peak memory reported is
#                          the sandbox's own (its cgroup's, Finished).
#
# What is timed: pandas inside one python process (read_csv + describe(include=
# 'all') + nunique(); read_csv + groupby(text key) mean and sum), without the
# interpreter start and imports; the engine from exec to exit (wall clock).
set -euo pipefail

cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${ROUNDS:-3}
rows=${ROWS:-1000000}
data=${DATA:-$build/bench-analyze-$rows.csv}
target=${ANALYZE_TARGET:-engine}
py=/usr/bin/python3

[ -x "$build/capibox-analyze" ] || { echo "no $build/capibox-analyze: build first" >&2; exit 1; }
"$py" -c 'import pandas' 2>/dev/null || { echo "no pandas for $py (python3-pandas)" >&2; exit 1; }

if [ ! -f "$data" ]; then
	echo "generating $data ($rows rows)" >&2
	"$py" - "$data" "$rows" <<'EOF'
import random, sys
path, rows = sys.argv[1], int(sys.argv[2])
rng = random.Random(20240301)
regions = [f"region-{i}" for i in range(20)]
products = [f"product-{i:04d}" for i in range(1000)]
def null(s):
    return "" if rng.random() < 0.01 else s
with open(path, "w") as f:
    f.write("id,region,product,units,price,discount,returned,rating\n")
    for i in range(rows):
        f.write(",".join((
            str(i),
            rng.choice(regions),
            null(rng.choice(products)),
            null(str(rng.randint(1, 500))),
            f"{rng.lognormvariate(3, 1):.2f}",
            null(f"{rng.random() * 0.3:.4f}"),
            null(rng.choice(("True", "False"))),
            f"{rng.gauss(3.5, 1):.3f}",
        )) + "\n")
EOF
fi

if [ "$target" = daemon ] && [ -z "${CAPIBOX_ADDR:-}" ]; then
	# shellcheck source=bench/lib.sh
	. bench/lib.sh
	bench_init "$build"
	start_daemon analyze 2600000 --no-metrics
	CAPIBOX_ADDR=$addr_analyze
fi

# target_cmd describe|groupby: the command that answers the request.
target_cmd() {
	case $target in
	engine)
		if [ "$1" = describe ]; then
			echo "$build/capibox-analyze --json"
		else
			echo "$build/capibox-analyze --json --group-by product --agg price:mean --agg price:sum"
		fi
		;;
	daemon)
		if [ "$1" = describe ]; then
			echo "$build/capibox -a $CAPIBOX_ADDR analyze $data --json"
		else
			echo "$build/capibox -a $CAPIBOX_ADDR analyze $data --json --group-by product --agg price:mean,price:sum"
		fi
		;;
	*) echo "ANALYZE_TARGET: engine or daemon" >&2; exit 2 ;;
	esac
}

"$py" - "$data" "$rounds" "$(target_cmd describe)" "$(target_cmd groupby)" <<'EOF'
import os, statistics, subprocess, sys, time
path, rounds, describe_cmd, group_cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

PANDAS = {
    "describe": "df = pd.read_csv(PATH); d = df.describe(include='all'); n = df.nunique()",
    "groupby": "df = pd.read_csv(PATH); g = df.groupby('product')['price'].agg(['mean', 'sum'])",
}
def pandas(kind):
    # a fresh interpreter per run (no warm caches); only the work is timed
    code = ("import time, pandas as pd\nPATH = %r\nt = time.perf_counter()\n%s\n"
            "print(time.perf_counter() - t)" % (path, PANDAS[kind]))
    out = subprocess.run(["/usr/bin/python3", "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])

DAEMON = os.environ.get("ANALYZE_TARGET") == "daemon"

def engine(cmd):
    with open(path, "rb") as f:
        t = time.perf_counter()
        p = subprocess.Popen(cmd.split(), stdin=f, stdout=subprocess.PIPE if DAEMON else subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        out = p.stdout.read() if DAEMON else b""
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t
    if status != 0:
        sys.exit(f"{cmd}: exit status {status}: {p.stderr.read().decode()}")
    if DAEMON:
        # the sandbox's peak (its cgroup), not the client's
        import json
        return dt, json.loads(out)["finished"]["peak_memory_bytes"]
    return dt, ru.ru_maxrss * 1024

size = os.path.getsize(path)
res = {k: [] for k in ("pd_describe", "en_describe", "pd_groupby", "en_groupby")}
rss = {"describe": 0, "groupby": 0}
print(f"file: {path}, {size / 1e6:.1f} MB")
print(f"{'round':>5} {'pandas describe':>16} {'engine describe':>16} {'pandas groupby':>15} {'engine groupby':>15}")
for r in range(rounds):
    res["pd_describe"].append(pandas("describe"))
    t, m = engine(describe_cmd); res["en_describe"].append(t); rss["describe"] = max(rss["describe"], m)
    res["pd_groupby"].append(pandas("groupby"))
    t, m = engine(group_cmd); res["en_groupby"].append(t); rss["groupby"] = max(rss["groupby"], m)
    print(f"{r + 1:>5} {res['pd_describe'][-1]:>15.3f}s {res['en_describe'][-1]:>15.3f}s "
          f"{res['pd_groupby'][-1]:>14.3f}s {res['en_groupby'][-1]:>14.3f}s")
med = {k: statistics.median(v) for k, v in res.items()}
print(f"median: describe pandas {med['pd_describe']:.3f}s, engine {med['en_describe']:.3f}s: "
      f"{med['pd_describe'] / med['en_describe']:.1f}x (target 10x)")
print(f"median: group-by pandas {med['pd_groupby']:.3f}s, engine {med['en_groupby']:.3f}s: "
      f"{med['pd_groupby'] / med['en_groupby']:.1f}x (target 5x)")
for k in ("describe", "groupby"):
    if DAEMON:
        print(f"sandbox peak memory (cgroup), {k}: {rss[k] / 1e6:.1f} MB = {rss[k] / size:.2f}x "
              f"the file (target under 2x)")
    else:
        print(f"engine peak RSS, {k}: {rss[k] / 1e6:.1f} MB = {rss[k] / size:.2f}x the file "
              f"(includes the mapped file's pages; target under 2x)")
EOF
