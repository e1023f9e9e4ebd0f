#!/usr/bin/python3
"""deploy.files: the files in deploy/ are what they claim to be.

- grafana-dashboard.json is valid JSON with a data-source variable, and
  every metric its queries use exists in server/metrics.c;
- prometheus.yml and capibox-alerts.yml parse (python3-yaml) and scrape or
  query only metrics that exist; `promtool check` when promtool is found
  (PROMTOOL=path, or on PATH), also over the dashboard's queries;
- capiboxd.service uses only known keys, keeps the directives a privileged
  supervisor needs and none that would break sandboxes, and passes
  `systemd-analyze verify` when systemd-analyze exists;
- docs/OPERATIONS.md documents every metric server/metrics.c exports.

Usage: check_deploy.py SOURCE_DIR [CAPIBOXD]. Exit 0 when all pass, 1 with
the failures listed. A check whose tool is missing says so and is skipped;
the others still run.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

failures = []
skipped = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def ok(msg):
    print("ok: " + msg)


def skip(msg):
    skipped.append(msg)
    print("skip: " + msg)


METRIC_RE = re.compile(r"\b(capibox_[a-z0-9_]+)\b")


def exported_metrics(src):
    """Base names of the metrics server/metrics.c writes, and the series
    names a query may use (histograms add _bucket, _sum, _count)."""
    with open(os.path.join(src, "server", "metrics.c")) as f:
        text = f.read()
    bases = set(re.findall(r'"(capibox_[a-z0-9_]+)', text))
    histograms = set(re.findall(r'header\([^,]+,\s*"(capibox_[a-z0-9_]+)",\s*"histogram"', text))
    series = set(bases)
    for h in histograms:
        series |= {h + "_bucket", h + "_sum", h + "_count"}
    return bases, series


def check_names(where, text, series):
    unknown = sorted(set(METRIC_RE.findall(text)) - series)
    if unknown:
        fail("%s uses metrics server/metrics.c does not export: %s" % (where, ", ".join(unknown)))
    return unknown


def check_dashboard(path, series):
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        fail("%s: not valid JSON: %s" % (path, e))
        return []
    variables = d.get("templating", {}).get("list", [])
    ds_vars = [v for v in variables if v.get("type") == "datasource" and v.get("query") == "prometheus"]
    if not ds_vars:
        fail("dashboard: no Prometheus data-source variable")
    ds_name = ds_vars[0]["name"] if ds_vars else "datasource"
    exprs, ids = [], set()

    def walk(panels):
        for p in panels:
            if p.get("id") in ids:
                fail("dashboard: panel id %s used twice" % p.get("id"))
            ids.add(p.get("id"))
            if p.get("type") != "row":
                ds = p.get("datasource", {})
                if ds.get("uid") != "${%s}" % ds_name:
                    fail("dashboard: panel %r does not use the ${%s} variable" % (p.get("title"), ds_name))
                if not p.get("targets"):
                    fail("dashboard: panel %r has no query" % p.get("title"))
            for t in p.get("targets", []):
                exprs.append((p.get("title"), t["expr"]))
            walk(p.get("panels", []))

    walk(d.get("panels", []))
    text = "\n".join(e for _, e in exprs)
    unknown = check_names("dashboard", text, series)
    # what the brief asks to see, by metric
    for need in ["capibox_executions_total", "capibox_execution_duration_seconds_bucket",
                 "capibox_queue_wait_seconds_bucket", "capibox_sandboxes",
                 "capibox_output_bytes_total", "capibox_rpcs_total",
                 "capibox_auth_failures_total", "capibox_supervisor_restarts_total",
                 "capibox_build_info", "capibox_queue_depth", "capibox_executions_running"]:
        if need not in text:
            fail("dashboard: no panel queries %s" % need)
    if "histogram_quantile(" not in text:
        fail("dashboard: no latency percentile (histogram_quantile)")
    if not unknown:
        ok("dashboard: %d panels, %d queries, every metric exists" % (len(ids), len(exprs)))
    return exprs


def load_yaml(path):
    try:
        import yaml
    except ImportError:
        skip("%s: python3-yaml is not installed, structure not parsed" % path)
        return None
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except Exception as e:  # yaml.YAMLError and OSError alike
        fail("%s: not valid YAML: %s" % (path, e))
        return None


def check_prometheus(deploy, series):
    prom = os.path.join(deploy, "prometheus.yml")
    rules = os.path.join(deploy, "capibox-alerts.yml")
    with open(rules) as f:
        check_names("capibox-alerts.yml", f.read(), series)
    cfg = load_yaml(prom)
    if cfg is not None:
        jobs = [j for j in cfg.get("scrape_configs", []) if j.get("job_name") == "capibox"]
        if not jobs:
            fail("prometheus.yml: no job capibox")
        else:
            j = jobs[0]
            targets = [t for sc in j.get("static_configs", []) for t in sc.get("targets", [])]
            if j.get("metrics_path", "/metrics") != "/metrics" or "127.0.0.1:9464" not in targets:
                fail("prometheus.yml: job capibox does not scrape 127.0.0.1:9464/metrics")
            else:
                ok("prometheus.yml: job capibox scrapes 127.0.0.1:9464/metrics")
    r = load_yaml(rules)
    if r is not None:
        alerts = [x for g in r.get("groups", []) for x in g.get("rules", [])]
        if not alerts or any("alert" not in a or "expr" not in a for a in alerts):
            fail("capibox-alerts.yml: no alerts, or one without alert/expr")
        else:
            ok("capibox-alerts.yml: %d alerts" % len(alerts))


def find_promtool():
    p = os.environ.get("PROMTOOL") or shutil.which("promtool")
    return p if p and os.access(p, os.X_OK) else None


def check_promtool(deploy, exprs):
    promtool = find_promtool()
    if promtool is None:
        skip("promtool not found (Debian package prometheus, or PROMTOOL=path): PromQL not checked")
        return
    for args in (["check", "config", os.path.join(deploy, "prometheus.yml")],
                 ["check", "rules", os.path.join(deploy, "capibox-alerts.yml")]):
        r = subprocess.run([promtool] + args, capture_output=True, text=True)
        if r.returncode != 0:
            fail("promtool %s: %s%s" % (" ".join(args[:2]), r.stdout, r.stderr))
        else:
            ok("promtool %s %s" % (" ".join(args[:2]), os.path.basename(args[2])))
    # the dashboard's queries as recording rules, Grafana's variables filled in
    subst = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s",
             "$job": ".*", "$instance": ".*"}
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, e) in enumerate(exprs):
        for k, v in subst.items():
            e = e.replace(k, v)
        lines.append("      - record: dashboard:query_%d" % i)
        lines.append("        expr: %s" % json.dumps(e))
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        name = f.name
    try:
        r = subprocess.run([promtool, "check", "rules", name], capture_output=True, text=True)
    finally:
        os.unlink(name)
    if r.returncode != 0:
        fail("promtool: a dashboard query is not valid PromQL: %s%s" % (r.stdout, r.stderr))
    else:
        ok("promtool: all %d dashboard queries are valid PromQL" % len(exprs))


# Keys this unit may use, by section: a typo (ProtectSytem=) would otherwise
# be ignored by systemd with a warning nobody reads.
UNIT_KEYS = {
    "Unit": {"Description", "Documentation", "Wants", "After", "Requires", "Before",
             "ConditionPathExists", "StartLimitIntervalSec", "StartLimitBurst"},
    "Service": {"Type", "ExecStart", "ExecStartPre", "ExecReload", "KillMode", "KillSignal",
                "TimeoutStopSec", "TimeoutStartSec", "Restart", "RestartSec", "LimitNOFILE",
                "LimitCORE", "Delegate", "ProtectSystem", "RuntimeDirectory",
                "RuntimeDirectoryMode", "LogsDirectory", "LogsDirectoryMode",
                "StateDirectory", "StateDirectoryMode", "ConfigurationDirectory",
                "ReadWritePaths", "ReadOnlyPaths", "ProtectHome", "PrivateTmp",
                "NoNewPrivileges", "ProtectKernelModules", "RestrictSUIDSGID",
                "RestrictRealtime", "LockPersonality", "SystemCallArchitectures",
                "ProtectHostname", "SystemCallFilter", "SystemCallErrorNumber",
                "RestrictAddressFamilies", "Environment", "EnvironmentFile", "User", "Group"},
    "Install": {"WantedBy", "Alias"},
}
# Directives that break a supervisor of namespaced sandboxes (the unit's
# comments say why); a later "hardening" must not add them back.
UNIT_FORBIDDEN = {"RestrictNamespaces", "PrivateUsers", "ProtectControlGroups",
                  "ProtectKernelTunables", "ProtectKernelLogs", "MemoryDenyWriteExecute",
                  "PrivateNetwork", "ProtectProc", "ProcSubset", "DynamicUser", "UMask"}
UNIT_REQUIRED = {"KillMode": "mixed", "Delegate": "yes", "Type": "exec"}


def parse_unit(path):
    sections, cur = {}, None
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            m = re.fullmatch(r"\[([A-Za-z]+)\]", line)
            if m:
                cur = sections.setdefault(m.group(1), {})
                continue
            if cur is None or "=" not in line:
                fail("%s:%d: not KEY=VALUE in a section: %s" % (path, n, line))
                continue
            k, v = line.split("=", 1)
            cur.setdefault(k.strip(), []).append(v.strip())
    return sections


def check_unit(deploy, capiboxd):
    path = os.path.join(deploy, "capiboxd.service")
    sections = parse_unit(path)
    bad = False
    for sec, keys in sections.items():
        known = UNIT_KEYS.get(sec)
        if known is None:
            fail("capiboxd.service: unknown section [%s]" % sec)
            bad = True
            continue
        for k in keys:
            if k in UNIT_FORBIDDEN:
                fail("capiboxd.service: %s= breaks the sandboxes (see the unit's comments)" % k)
                bad = True
            elif k not in known:
                fail("capiboxd.service: [%s] %s= is not a key this test knows (a typo?)" % (sec, k))
                bad = True
    svc = sections.get("Service", {})
    for k, v in UNIT_REQUIRED.items():
        if svc.get(k, [None])[-1] != v:
            fail("capiboxd.service: %s= must be %s" % (k, v))
            bad = True
    if "-HUP" not in " ".join(svc.get("ExecReload", [])):
        fail("capiboxd.service: ExecReload= must send SIGHUP")
        bad = True
    # grace defaults to 10 s and cancelling takes up to 3 s more
    stop = svc.get("TimeoutStopSec", ["90"])[-1]
    if not stop.isdigit() or int(stop) <= 13:
        fail("capiboxd.service: TimeoutStopSec=%s does not exceed the 10 s grace + 3 s" % stop)
        bad = True
    if not bad:
        ok("capiboxd.service: keys known, required directives present, none that break sandboxes")

    sa = shutil.which("systemd-analyze")
    if sa is None:
        skip("systemd-analyze not found: the unit is not verified by systemd")
        return
    # verify wants ExecStart's binary to exist: the one just built, or true
    exe = capiboxd if capiboxd and os.access(capiboxd, os.X_OK) else shutil.which("true")
    with tempfile.TemporaryDirectory() as d:
        unit = os.path.join(d, "capiboxd.service")
        with open(path) as f:
            text = f.read().replace("/usr/local/bin/capiboxd", exe)
        with open(unit, "w") as f:
            f.write(text)
        r = subprocess.run([sa, "verify", unit], capture_output=True, text=True)
        out = (r.stdout + r.stderr).strip()
        # systemd warns about unknown keys and bad values and goes on:
        # any line naming our unit is a finding
        findings = [l for l in out.splitlines() if "capiboxd.service" in l]
        if r.returncode != 0 or findings:
            fail("systemd-analyze verify: %s" % out)
        else:
            ok("systemd-analyze verify capiboxd.service")
        r = subprocess.run([sa, "security", "--offline=true", unit], capture_output=True, text=True)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+ \S+)", r.stdout)
        if m:
            print("info: systemd-analyze security --offline: exposure %s "
                  "(a root supervisor of namespaces cannot score low)" % m.group(1))


def check_docs(src, bases):
    path = os.path.join(src, "docs", "OPERATIONS.md")
    if not os.path.exists(path):
        fail("docs/OPERATIONS.md is missing")
        return
    with open(path) as f:
        text = f.read()
    missing = sorted(b for b in bases if b not in text)
    if missing:
        fail("docs/OPERATIONS.md does not document: %s" % ", ".join(missing))
    else:
        ok("docs/OPERATIONS.md documents all %d metrics" % len(bases))


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 64
    src = sys.argv[1]
    capiboxd = sys.argv[2] if len(sys.argv) > 2 else None
    deploy = os.path.join(src, "deploy")
    bases, series = exported_metrics(src)
    exprs = check_dashboard(os.path.join(deploy, "grafana-dashboard.json"), series)
    check_prometheus(deploy, series)
    check_promtool(deploy, exprs)
    check_unit(deploy, capiboxd)
    check_docs(src, bases)
    if failures:
        print("\n%d failure(s)" % len(failures))
        return 1
    print("\nall deploy checks passed%s" % (" (%d skipped)" % len(skipped) if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
