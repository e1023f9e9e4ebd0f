#!/usr/bin/python3
"""Admission control against the real capiboxd, from grpcio's asyncio API.

A cap on running executions (--max-live), a bounded wait queue
(--max-queue, --max-queue-wait-ms) and what clients see: a burst of 1,000
Execute streams where every one either finishes or is cleanly refused; a
queued request that gives up (deadline, cancel) leaving the queue at once;
the wait limit; a full queue; waiting requests at shutdown. Python because
one process can hold 1,000 streams open on one channel with grpc.aio.

Environment and skips: as test_interop.py (CAPIBOXD, CAPIBOX_PROTO_DIR; exit
77 when grpc is missing or not root).
"""

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_interop as ti  # noqa: E402  (exits 77 when grpc is missing)

import grpc  # noqa: E402

SLEEPER = 'import time\nprint("hi", flush=True)\ntime.sleep({s})\n'
FLOOD = 1000


def rss_kib(pid):
    """VmRSS and VmHWM of pid, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out["VmRSS"], out["VmHWM"]


class Server:
    """A daemon with admission flags, and an asyncio channel to it."""

    def __init__(self, name, *args):
        self.work = os.path.join(ti.WORK, name)
        os.makedirs(self.work)
        self.daemon = ti.Daemon(self.work, args)

    async def __aenter__(self):
        # one connection, many streams: what a router's client does
        self.channel = grpc.aio.insecure_channel(self.daemon.addr)
        self.stub = ti.pb_grpc.SandboxServiceStub(self.channel)
        return self

    async def __aexit__(self, *exc):
        await self.channel.close()
        rc = self.daemon.stop()
        if rc != 0 and exc[0] is None:
            raise AssertionError(f"capiboxd exited with {rc}; log:\n{self.log()[-5000:]}")

    def log(self):
        return self.daemon.log_text()

    async def health(self):
        return await self.stub.Health(ti.pb.HealthRequest(), timeout=30)

    async def until_queued(self, n, seconds=30):
        """Polls Health until exactly n executions wait (bounded, not timed)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            h = await self.health()
            if h.queued == n:
                return h
            await asyncio.sleep(0.02)
        raise AssertionError(f"queue never reached {n} (last: {h.queued}); log:\n{self.log()}")


async def run(stub, code, timeout=120, started=None):
    """One Execute; returns (status code, details, events). started: an
    asyncio.Event set at the Started event."""
    events = []
    call = stub.Execute(ti.pb.ExecuteRequest(language="python", code=code), timeout=timeout)
    try:
        async for ev in call:
            events.append(ev)
            if started is not None and ev.HasField("started"):
                started.set()
        return grpc.StatusCode.OK, "", events
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details() or "", events


def finished_of(events):
    fins = [e.finished for e in events if e.HasField("finished")]
    return fins[0] if len(fins) == 1 else None


class AdmissionTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        # unittest runs the loop in debug mode, whose slow-callback notes
        # about 1,000 streams are noise here
        asyncio.get_running_loop().set_debug(False)

    def assert_ran(self, result, want_stdout=b"hi\n"):
        code, details, events = result
        self.assertEqual(code, grpc.StatusCode.OK, details)
        fin = finished_of(events)
        self.assertIsNotNone(fin, "no single Finished event")
        self.assertEqual(fin.reason, ti.pb.REASON_EXITED, fin.message)
        self.assertEqual(fin.exit_code, 0)
        out = b"".join(e.stdout.data for e in events if e.HasField("stdout"))
        self.assertEqual(out, want_stdout)

    async def test_flood_of_1000_streams(self):
        """1,000 concurrent streams against a cap of 32: each finishes or is refused."""
        async with Server("flood", "--max-live", "32", "--max-queue", "128",
                          "--max-queue-wait-ms", "4000") as s:
            pid = s.daemon.proc.pid
            rss0, _ = rss_kib(pid)
            code = SLEEPER.format(s=1)
            results = await asyncio.gather(*(run(s.stub, code) for _ in range(FLOOD)))
            rss1, hwm = rss_kib(pid)
            done = [r for r in results if r[0] == grpc.StatusCode.OK]
            refused = [r for r in results if r[0] == grpc.StatusCode.RESOURCE_EXHAUSTED]
            other = [(r[0], r[1]) for r in results
                     if r[0] not in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED)]
            print(f"\n  {FLOOD} streams: {len(done)} finished, {len(refused)} refused, "
                  f"{len(other)} other; capiboxd RSS {rss0 >> 10} -> {rss1 >> 10} MiB "
                  f"(peak {hwm >> 10} MiB)", file=sys.stderr)
            self.assertEqual(other, [], "every stream ends finished or RESOURCE_EXHAUSTED")
            self.assertEqual(len(done) + len(refused), FLOOD)
            # the cap and the queue were both used, and refusals say why
            self.assertGreaterEqual(len(done), 32 + 1)
            self.assertGreater(len(refused), 0)
            for r in done:
                self.assert_ran(r)
            for _, details, events in refused:
                self.assertIn("server is full", details)
                self.assertIn("of 32 executions running", details)
                self.assertEqual(events, [], "a refused request sent events")
            waited = [e.started.queued_us for r in done for e in r[2] if e.HasField("started")]
            self.assertEqual(len(waited), len(done))
            self.assertGreater(max(waited), 0, "queued requests report their wait")
            # bounded: 1,000 streams and 128 queued requests are not a leak
            self.assertLess(hwm, 256 * 1024, "capiboxd's peak RSS stays bounded")
            h = await s.health()
            self.assertEqual((h.running, h.queued), (0, 0))
            self.assertEqual((h.max_running, h.max_queued), (32, 128))
            for p in h.backends[0].pools:
                self.assertEqual(p.busy, 0, f"{p.language} sandboxes still busy")
            # and it still serves
            self.assert_ran(await run(s.stub, 'print("hi")'))

    async def test_deadline_and_cancel_leave_the_queue(self):
        async with Server("leave", "--max-live", "1", "--max-queue", "4",
                          "--max-queue-wait-ms", "60000") as s:
            started = asyncio.Event()
            holder = asyncio.create_task(run(s.stub, SLEEPER.format(s=3), started=started))
            await started.wait()
            # the deadline passes while it waits: DEADLINE_EXCEEDED, queue empty
            code, _, events = await run(s.stub, 'print("late")', timeout=0.5)
            self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED)
            self.assertEqual(events, [])
            await s.until_queued(0)
            # a client cancel while it waits
            call = s.stub.Execute(ti.pb.ExecuteRequest(language="python", code='print(1)'),
                                  timeout=60)
            waiter = asyncio.ensure_future(call.read())
            await s.until_queued(1)
            call.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await waiter
            await s.until_queued(0)
            # the running one was never disturbed
            self.assert_ran(await holder)
            self.assert_ran(await run(s.stub, 'print("hi")'))

    async def test_wait_limit_and_full_queue(self):
        async with Server("full", "--max-live", "1", "--max-queue", "1",
                          "--max-queue-wait-ms", "1500") as s:
            started = asyncio.Event()
            holder = asyncio.create_task(run(s.stub, SLEEPER.format(s=4), started=started))
            await started.wait()
            waiting = asyncio.create_task(run(s.stub, 'print("hi")'))
            await s.until_queued(1)
            # the queue holds one: the next is refused at once, with the figures
            code, details, _ = await run(s.stub, 'print("hi")')
            self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("1 of 1 executions running, 1 of 1 waiting", details)
            # the waiting one gives up after --max-queue-wait-ms
            code, details, events = await waiting
            self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, details)
            self.assertIn("no running slot came free in", details)
            self.assertEqual(events, [])
            self.assert_ran(await holder)

    async def test_queued_request_runs_when_a_slot_frees(self):
        async with Server("runs", "--max-live", "1", "--max-queue", "2",
                          "--max-queue-wait-ms", "30000") as s:
            started = asyncio.Event()
            holder = asyncio.create_task(run(s.stub, SLEEPER.format(s=1), started=started))
            await started.wait()
            waiting = asyncio.create_task(run(s.stub, 'print("hi")'))
            await s.until_queued(1)
            self.assert_ran(await holder)
            result = await waiting
            self.assert_ran(result)
            st = [e.started for e in result[2] if e.HasField("started")][0]
            self.assertGreater(st.queued_us, 100000, "Started.queued_us holds the wait")

    async def test_shutdown_refuses_waiting_requests(self):
        async with Server("drain", "--max-live", "1", "--max-queue", "2",
                          "--max-queue-wait-ms", "30000") as s:
            started = asyncio.Event()
            holder = asyncio.create_task(run(s.stub, SLEEPER.format(s=1), started=started))
            await started.wait()
            waiting = asyncio.create_task(run(s.stub, 'print("hi")'))
            await s.until_queued(1)
            s.daemon.proc.send_signal(signal.SIGTERM)
            code, details, events = await waiting
            self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, details)
            self.assertIn("shutting down", details)
            # the running one finishes within the grace period
            self.assert_ran(await holder)
            self.assertEqual(await asyncio.to_thread(s.daemon.proc.wait, 30), 0)


def main():
    if os.geteuid() != 0:
        print("SKIP: capiboxd must run as root (it creates namespaces)")
        return ti.SKIP
    if not os.access(ti.CAPIBOXD, os.X_OK):
        print(f"FAIL: no capiboxd at {ti.CAPIBOXD} (set CAPIBOXD)")
        return 1
    ti.WORK = tempfile.mkdtemp(prefix="capibox-admission.")
    try:
        ti.generate_stubs(os.path.join(ti.WORK, "stubs"))
        prog = unittest.main(argv=[sys.argv[0]] + sys.argv[1:], exit=False, verbosity=2)
        ok = prog.result.wasSuccessful()
        if not ok:
            for name in sorted(os.listdir(ti.WORK)):
                log = os.path.join(ti.WORK, name, "capiboxd.log")
                if os.path.exists(log):
                    with open(log, "rb") as f:
                        sys.stderr.write(f"---- capiboxd log ({name}) ----\n")
                        sys.stderr.write(f.read().decode("utf-8", "replace")[-20000:])
        return 0 if ok else 1
    finally:
        shutil.rmtree(ti.WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
