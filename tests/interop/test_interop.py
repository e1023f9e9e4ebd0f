#!/usr/bin/python3
"""Interop test: a Python grpcio client against the real capiboxd.

Shows that the wire contract works for a client that is not ours: the
stubs are generated from proto/ at test time (protoc + Debian's
grpc_python_plugin) and the client is Debian's python3-grpcio. Calls all
three SandboxService RPCs (Analyze of the README demo's sales CSV among
them) and grpc.health.v1.Health/Check.

Environment (set by tests/interop/CMakeLists.txt):
  CAPIBOXD           path of the daemon to start (default build/capiboxd)
  CAPIBOX_PROTO_DIR  proto/ directory (default: the repository's)
Exit code 77 (ctest's SKIP_RETURN_CODE) when it cannot run here: grpc not
importable, or not root (the daemon makes namespaces).
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

SKIP = 77
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAPIBOXD = os.environ.get("CAPIBOXD", os.path.join(REPO, "build", "capiboxd"))
PROTO_DIR = os.environ.get("CAPIBOX_PROTO_DIR", os.path.join(REPO, "proto"))
PROTOC = shutil.which("protoc") or "/usr/bin/protoc"
GRPC_PLUGIN = "/usr/bin/grpc_python_plugin"
# Generous: the deep health check runs a canary per runtime.
RPC_TIMEOUT = 60

try:
    import grpc
except ImportError as e:
    print(f"SKIP: grpc is not importable by {sys.executable} ({e}); "
          "install python3-grpcio and run with /usr/bin/python3")
    sys.exit(SKIP)

# Filled in by main(): the work directory, the generated modules.
WORK = None
pb = None        # capibox/v1/sandbox_pb2
pb_grpc = None   # capibox/v1/sandbox_pb2_grpc
health_pb = None  # grpc/health/v1/health_pb2


def generate_stubs(out):
    """Runs protoc over proto/ into out and imports the generated modules."""
    global pb, pb_grpc, health_pb
    os.makedirs(out)
    subprocess.run(
        [PROTOC, f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_out={out}",
         f"--plugin=protoc-gen-grpc={GRPC_PLUGIN}",
         "capibox/v1/sandbox.proto", "grpc/health/v1/health.proto"],
        check=True)
    sys.path.insert(0, out)
    from capibox.v1 import sandbox_pb2, sandbox_pb2_grpc
    pb, pb_grpc = sandbox_pb2, sandbox_pb2_grpc
    # The health module's package is "grpc", which would shadow the real
    # grpc package on import: load it from its file under another name and
    # call Check through a plain channel method.
    path = os.path.join(out, "grpc", "health", "v1", "health_pb2.py")
    spec = importlib.util.spec_from_file_location("capibox_interop_health_pb2", path)
    health_pb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(health_pb)


class Daemon:
    """capiboxd on an ephemeral loopback port, its stderr in a log file."""

    def __init__(self, workdir, args=()):
        self.ready = os.path.join(workdir, "addr")
        self.log_path = os.path.join(workdir, "capiboxd.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [CAPIBOXD, "--listen", "127.0.0.1:0", "--ready-file", self.ready,
             "--grace", "2", *args],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.addr = self._wait_ready(30)

    def _wait_ready(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if os.path.exists(self.ready) and os.path.getsize(self.ready) > 0:
                with open(self.ready) as f:
                    return f.read().strip()
            if self.proc.poll() is not None:
                raise RuntimeError(f"capiboxd exited with {self.proc.returncode} before serving")
            time.sleep(0.05)
        raise RuntimeError(f"capiboxd did not write {self.ready} within {seconds} s")

    def stop(self):
        """SIGTERM, then returns the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                return None
        self.log.close()
        return self.proc.returncode

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class InteropTest(unittest.TestCase):
    daemon = None

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(WORK)
        cls.channel = grpc.insecure_channel(cls.daemon.addr)
        try:
            grpc.channel_ready_future(cls.channel).result(timeout=10)
        except grpc.FutureTimeoutError:
            cls.channel.close()
            cls.daemon.stop()
            raise
        cls.stub = pb_grpc.SandboxServiceStub(cls.channel)
        cls.check = cls.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb.HealthCheckResponse.FromString)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        rc = cls.daemon.stop()
        if rc != 0:
            raise AssertionError(f"capiboxd did not exit 0 on SIGTERM (status {rc})")

    def test_execute_streams_events(self):
        """Started, stdout chunks as written, then Finished REASON_EXITED."""
        code = 'import time\nprint("a")\ntime.sleep(1.5)\nprint("b")\n'
        req = pb.ExecuteRequest(language="python", code=code, request_id="interop-1")
        events = []  # (arrival time, event name, message)
        for resp in self.stub.Execute(req, timeout=RPC_TIMEOUT):
            kind = resp.WhichOneof("event")
            events.append((time.monotonic(), kind, getattr(resp, kind)))

        kinds = [k for _, k, _ in events]
        self.assertEqual(kinds[0], "started", kinds)
        self.assertEqual(kinds[-1], "finished", kinds)
        self.assertEqual(kinds.count("finished"), 1, kinds)
        started = events[0][2]
        self.assertEqual(started.language, "python")
        self.assertEqual(started.backend, "local")
        self.assertTrue(started.sandbox_id)

        out = [(t, m.data) for t, k, m in events if k == "stdout"]
        self.assertEqual(b"".join(d for _, d in out), b"a\nb\n")
        # Streamed live, not at the end: "a" arrives well before "b".
        t_a = next(t for t, d in out if b"a" in d)
        t_b = next(t for t, d in out if b"b" in d)
        self.assertGreater(t_b - t_a, 1.0, "stdout was not streamed as written")

        fin = events[-1][2]
        self.assertEqual(fin.reason, pb.REASON_EXITED, fin)
        self.assertEqual(fin.exit_code, 0)
        self.assertEqual(fin.stdout_bytes, 4)
        self.assertGreater(fin.wall_time_us, 1_500_000)

    def test_execute_result_and_figure(self):
        """The last expression's value as a Result, an open figure as a PNG Artifact."""
        code = (
            "import json, matplotlib.pyplot as plt\n"
            "plt.plot([1, 3, 2])\n"
            "print('plotted')\n"
            "{'n': 3, 'ok': True}\n"
        )
        req = pb.ExecuteRequest(language="python", code=code)
        events = [r for r in self.stub.Execute(req, timeout=RPC_TIMEOUT)]
        kinds = [r.WhichOneof("event") for r in events]
        self.assertEqual(kinds[-1], "finished", kinds)
        self.assertEqual(events[-1].finished.reason, pb.REASON_EXITED, events[-1])
        # output first, then the result, then the figure, then finished
        self.assertLess(kinds.index("stdout"), kinds.index("result"), kinds)
        results = [r.result for r in events if r.HasField("result")]
        self.assertEqual(len(results), 1, kinds)
        self.assertEqual(results[0].text, "{'n': 3, 'ok': True}")
        self.assertEqual(json.loads(results[0].json), {"n": 3, "ok": True})
        self.assertEqual(results[0].mime_type, "text/plain")
        arts = [r.artifact for r in events if r.HasField("artifact")]
        self.assertEqual(len(arts), 1, kinds)
        self.assertEqual(arts[0].path, "figure-1.png")
        self.assertEqual(arts[0].mime_type, "image/png")
        self.assertEqual(arts[0].offset, 0)
        self.assertTrue(arts[0].eof)
        self.assertEqual(arts[0].size, len(arts[0].content))
        self.assertTrue(arts[0].content.startswith(b"\x89PNG\r\n\x1a\n"))

    def test_execute_collect(self):
        """collect globs: the matching files come back as Artifacts, in pieces, before Finished."""
        code = (
            "import os\n"
            "os.makedirs('out/deep', exist_ok=True)\n"
            "open('out/a.csv', 'w').write('x,y\\n1,2\\n')\n"
            "open('out/deep/b.csv', 'w').write('z\\n')\n"
            "open('out/skip.txt', 'w').write('no')\n"
            "os.symlink('/etc/passwd', 'out/evil.csv')\n"
            "open('big.bin', 'wb').write(bytes(range(256)) * 12288)\n"  # 3 MiB
        )
        req = pb.ExecuteRequest(language="python", code=code,
                                collect=["out/**/*.csv", "big.bin"])
        events = [r for r in self.stub.Execute(req, timeout=RPC_TIMEOUT)]
        kinds = [r.WhichOneof("event") for r in events]
        self.assertEqual(kinds[-1], "finished", kinds)
        self.assertEqual(events[-1].finished.reason, pb.REASON_EXITED, events[-1])
        files = {}
        for a in (r.artifact for r in events if r.HasField("artifact")):
            got = files.setdefault(a.path, bytearray())
            self.assertEqual(a.offset, len(got), a.path)
            got.extend(a.content)
            self.assertFalse(a.truncated)
            if a.eof:
                self.assertEqual(a.size, len(got))
        self.assertEqual(sorted(files), ["big.bin", "out/a.csv", "out/deep/b.csv"])
        self.assertEqual(bytes(files["out/a.csv"]), b"x,y\n1,2\n")
        self.assertEqual(bytes(files["big.bin"]), bytes(range(256)) * 12288)
        mimes = {r.artifact.path: r.artifact.mime_type for r in events if r.HasField("artifact")}
        self.assertEqual(mimes["out/a.csv"], "text/csv")

    def test_execute_bad_collect_glob_is_invalid_argument(self):
        req = pb.ExecuteRequest(language="python", code="print(1)", collect=["ok", "../up"])
        with self.assertRaises(grpc.RpcError) as cm:
            list(self.stub.Execute(req, timeout=RPC_TIMEOUT))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("collect[1]", cm.exception.details())

    def test_execute_empty_code_is_invalid_argument(self):
        req = pb.ExecuteRequest(language="python", code="")
        with self.assertRaises(grpc.RpcError) as cm:
            list(self.stub.Execute(req, timeout=RPC_TIMEOUT))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("code", cm.exception.details())

    def test_session_round_trip(self):
        """A session: define a variable, read it back, plot, close."""
        s = self.stub.CreateSession(pb.CreateSessionRequest(language="python"),
                                    timeout=RPC_TIMEOUT)
        self.assertTrue(s.session_id)
        self.assertEqual(s.language, "python")

        def cell(code):
            return list(self.stub.Execute(
                pb.ExecuteRequest(session_id=s.session_id, code=code), timeout=RPC_TIMEOUT))

        cell("x = 20")
        events = cell("x + 22")
        results = [e.result for e in events if e.WhichOneof("event") == "result"]
        self.assertEqual([r.text for r in results], ["42"])
        self.assertEqual(events[-1].finished.reason, pb.REASON_EXITED)
        events = cell("import matplotlib.pyplot as plt\nplt.plot([1, x])")
        png = b"".join(e.artifact.content for e in events
                       if e.WhichOneof("event") == "artifact")
        self.assertTrue(png.startswith(b"\x89PNG\r\n\x1a\n"))
        listed = self.stub.ListSessions(pb.ListSessionsRequest(), timeout=RPC_TIMEOUT)
        self.assertIn(s.session_id, [x.session_id for x in listed.sessions])
        closed = self.stub.CloseSession(pb.CloseSessionRequest(session_id=s.session_id),
                                        timeout=RPC_TIMEOUT)
        self.assertEqual(closed.session.executions, 3)
        with self.assertRaises(grpc.RpcError) as cm:
            cell("x")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_analyze_without_dataset_is_invalid_argument(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.Analyze(pb.AnalyzeRequest(), timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("dataset", cm.exception.details())

    def _analyze(self, req):
        """Analyze, skipping while the server has no statistics engine."""
        try:
            return self.stub.Analyze(req, timeout=RPC_TIMEOUT)
        except grpc.RpcError as e:
            if (e.code() == grpc.StatusCode.UNIMPLEMENTED
                    and "not installed" in e.details()):
                self.skipTest(f"Analyze: {e.details()}")
            raise

    def test_analyze_sales_csv(self):
        """The README demo's dataset: the means pandas gives, and a group-by."""
        with open(os.path.join(REPO, "examples", "sales.csv"), "rb") as f:
            content = f.read()
        dataset = pb.Dataset(name="sales.csv", content=content)
        resp = self._analyze(pb.AnalyzeRequest(dataset=dataset, request_id="interop-analyze"))
        self.assertEqual(resp.finished.reason, pb.REASON_EXITED, resp.finished)
        self.assertEqual(resp.finished.exit_code, 0, resp.finished)
        self.assertEqual(resp.rows, 20)
        cols = {c.name: c for c in resp.columns}
        self.assertEqual(list(cols), ["date", "region", "product", "sales", "customers"])
        self.assertEqual(cols["sales"].type, pb.COLUMN_TYPE_INTEGER)
        self.assertAlmostEqual(cols["sales"].mean, 547.25, places=9)
        self.assertAlmostEqual(cols["customers"].mean, 69.10, places=9)
        self.assertEqual(f"{cols['customers'].mean:.2f}", "69.10")
        self.assertEqual(cols["region"].type, pb.COLUMN_TYPE_TEXT)
        self.assertEqual(cols["region"].distinct, 4)

        resp = self._analyze(pb.AnalyzeRequest(
            dataset=dataset, group_by=["region"],
            aggregates=[pb.Aggregate(column="sales", function=pb.AGGREGATE_FUNCTION_MEAN)]))
        self.assertEqual(list(resp.groups.columns), ["region", "sales_mean"])
        rows = [(r.values[0].text, r.values[1].number) for r in resp.groups.rows]
        self.assertEqual(rows, [("East", 512.0), ("North", 563.0), ("South", 571.0),
                                ("West", 543.0)])

    def test_analyze_ragged_csv_is_a_finished_run(self):
        """A malformed dataset is not an RPC error: Finished says what and where."""
        dataset = pb.Dataset(name="bad.csv", content=b"a,b\n1,2\n3,4,5\n")
        resp = self._analyze(pb.AnalyzeRequest(dataset=dataset))
        self.assertEqual(resp.finished.reason, pb.REASON_EXITED, resp.finished)
        self.assertEqual(resp.finished.exit_code, 2, resp.finished)
        self.assertIn("line 3", resp.finished.message)

    def test_analyze_code_mode(self):
        """Code mode: pandas code with df preloaded; result, stdout, a figure."""
        with open(os.path.join(REPO, "examples", "sales.csv"), "rb") as f:
            content = f.read()
        code = ("import matplotlib.pyplot as plt\n"
                "print('rows', len(df))\n"
                "df.plot(x='date', y='sales')\n"
                "result = df.groupby('region')[['sales', 'customers']].mean()\n")
        resp = self.stub.Analyze(pb.AnalyzeRequest(
            dataset=pb.Dataset(name="sales.csv", content=content), code=code),
            timeout=RPC_TIMEOUT)
        self.assertEqual(resp.finished.reason, pb.REASON_EXITED, resp.finished)
        self.assertEqual(resp.finished.exit_code, 0, resp)
        self.assertEqual(resp.rows, 20)
        self.assertEqual(resp.stdout, b"rows 20\n")
        self.assertEqual(list(resp.result.columns), ["region", "sales", "customers"])
        got = [(r.values[0].text, r.values[1].number, r.values[2].number)
               for r in resp.result.rows]
        try:
            import io

            import pandas as pd
        except ImportError:
            want = [("East", 512.0, 64.4), ("North", 563.0, 70.6), ("South", 571.0, 70.4),
                    ("West", 543.0, 71.0)]
        else:  # pandas itself is the oracle
            mean = pd.read_csv(io.BytesIO(content)).groupby("region")[
                ["sales", "customers"]].mean()
            want = [(k, float(v.sales), float(v.customers)) for k, v in mean.iterrows()]
        self.assertEqual(got, want)
        self.assertEqual(len(resp.artifacts), 1)
        self.assertEqual(resp.artifacts[0].path, "figure-1.png")
        self.assertEqual(resp.artifacts[0].mime_type, "image/png")
        self.assertTrue(resp.artifacts[0].content.startswith(b"\x89PNG\r\n\x1a\n"))

        # the code's exception: a finished run, not an RPC error
        resp = self.stub.Analyze(pb.AnalyzeRequest(
            dataset=pb.Dataset(name="sales.csv", content=content), code="df['nope']\n"),
            timeout=RPC_TIMEOUT)
        self.assertEqual(resp.finished.exit_code, 1, resp.finished)
        self.assertEqual(resp.finished.message, "KeyError: 'nope'")
        self.assertIn(b"Traceback", resp.stderr)

    def _check_health(self, resp):
        self.assertEqual(resp.status, pb.SERVING_STATUS_SERVING, resp)
        self.assertTrue(resp.version)
        names = [b.name for b in resp.backends]
        self.assertIn("local", names)
        local = resp.backends[names.index("local")]
        self.assertEqual(local.status, pb.SERVING_STATUS_SERVING, local)
        self.assertEqual({p.language for p in local.pools}, {"python", "javascript", "bash"})
        return local

    def test_health_shallow(self):
        self._check_health(self.stub.Health(pb.HealthRequest(deep=False), timeout=RPC_TIMEOUT))

    def test_health_deep_runs_canaries(self):
        local = self._check_health(
            self.stub.Health(pb.HealthRequest(deep=True), timeout=RPC_TIMEOUT))
        self.assertGreater(local.canary_us, 0)
        for lang in ("python", "javascript", "bash"):
            self.assertIn(lang, local.message)

    def test_grpc_health_v1_check(self):
        serving = health_pb.HealthCheckResponse.SERVING
        for service in ("", "capibox.v1.SandboxService"):
            resp = self.check(health_pb.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT)
            self.assertEqual(resp.status, serving, f"service {service!r}")
        with self.assertRaises(grpc.RpcError) as cm:
            self.check(health_pb.HealthCheckRequest(service="no.such.Service"),
                       timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)


def main():
    global WORK
    if os.geteuid() != 0:
        print("SKIP: capiboxd must run as root (it creates namespaces)")
        return SKIP
    if not os.access(CAPIBOXD, os.X_OK):
        print(f"FAIL: no capiboxd at {CAPIBOXD} (set CAPIBOXD)")
        return 1
    WORK = tempfile.mkdtemp(prefix="capibox-interop.")
    try:
        generate_stubs(os.path.join(WORK, "stubs"))
        prog = unittest.main(argv=[sys.argv[0]] + sys.argv[1:], exit=False, verbosity=2)
        ok = prog.result.wasSuccessful()
        log = os.path.join(WORK, "capiboxd.log")
        if not ok and os.path.exists(log):
            with open(log, "rb") as f:
                sys.stderr.write("---- capiboxd log ----\n")
                sys.stderr.write(f.read().decode("utf-8", "replace"))
        return 0 if ok else 1
    finally:
        # A daemon still running here means setUpClass failed half-way.
        d = InteropTest.daemon
        if d is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
