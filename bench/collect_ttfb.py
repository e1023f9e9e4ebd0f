#!/usr/bin/python3
"""Time to the first byte of a collected 10 MiB artifact (issue 6's figure).

Usage: bench/collect_ttfb.py ADDR [RUNS]   (a running capiboxd, e.g. 127.0.0.1:50051)

Each run writes a 10 MiB file and prints the clock as its last act; the
file comes back through a `collect` glob. Measured on the client: from the
Execute call's start, and from the program's end (the sandbox shares the
host's clocks: no time namespace), to the arrival of the first artifact
piece, and to the last. Python runs warm (the pool), bash cold. Prints
the median, min and max in ms. Run with Debian's /usr/bin/python3 (grpcio).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import grpc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 10 * 1024 * 1024

PY = ("import os, time\n"
      f"open('big.bin', 'wb').write(os.urandom({SIZE}))\n"
      "print(time.time(), flush=True)\n")
BASH = (f"head -c {SIZE} /dev/urandom > big.bin\n"
        "echo $EPOCHREALTIME\n")


def stubs():
    out = tempfile.mkdtemp(prefix="capibox-bench-")
    subprocess.run(["protoc", f"-I{REPO}/proto", f"--python_out={out}", f"--grpc_out={out}",
                    "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
                    "capibox/v1/sandbox.proto"], check=True)
    sys.path.insert(0, out)
    from capibox.v1 import sandbox_pb2, sandbox_pb2_grpc
    return out, sandbox_pb2, sandbox_pb2_grpc


def one(stub, pb, language, code):
    req = pb.ExecuteRequest(language=language, code=code, collect=["big.bin"])
    t0 = time.time()
    first = last = None
    out = b""
    got = 0
    warm = None
    for r in stub.Execute(req, timeout=60):
        kind = r.WhichOneof("event")
        if kind == "started":
            warm = r.started.warm
        elif kind == "stdout":
            out += r.stdout.data
        elif kind == "artifact":
            now = time.time()
            if first is None:
                first = now
            got += len(r.artifact.content)
            if r.artifact.eof:
                last = now
        elif kind == "finished":
            assert r.finished.reason == pb.REASON_EXITED, r.finished
    assert got == SIZE, got
    end = float(out.split()[-1])
    return (first - t0) * 1000, (first - end) * 1000, (last - end) * 1000, warm


def main():
    addr = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    tmp, pb, pb_grpc = stubs()
    try:
        ch = grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", 8 << 20)])
        stub = pb_grpc.SandboxServiceStub(ch)
        for language, code in (("python", PY), ("bash", BASH)):
            rows = [one(stub, pb, language, code) for _ in range(runs)]
            warm = sum(1 for r in rows if r[3])
            for i, name in enumerate(("call start -> first byte",
                                      "program end -> first byte",
                                      "program end -> last byte")):
                v = [r[i] for r in rows]
                print(f"{language:6} ({warm}/{runs} warm) {name:26} p50 {statistics.median(v):7.1f} ms"
                      f"  min {min(v):7.1f}  max {max(v):7.1f}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
