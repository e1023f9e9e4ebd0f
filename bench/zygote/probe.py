# Run inside a zygote sandbox (zbench ... -c "$(cat probe.py)" --expect - --show):
# what a forked sandbox shares with its siblings and what it can reach.
# Two runs side by side: lines that should differ (random state) and lines
# that are the same in every sibling (hash secret, address-space layout).
import ctypes
import hashlib
import os
import random
import socket
import sys

out = []


def fact(name, value):
    out.append("%-22s %s" % (name, value))


st = open("/proc/self/status").read()
for key in ("Uid", "Gid", "CapEff", "CapBnd", "NoNewPrivs", "Seccomp"):
    line = [x for x in st.splitlines() if x.startswith(key + ":")][0]
    fact(key, " ".join(line.split()[1:]))
fact("uid_map", open("/proc/self/uid_map").read().split())
fact("pid, ppid", (os.getpid(), os.getppid()))
fact("/proc pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
fact("hostname", socket.gethostname())
fact("interfaces", [n for _, n in socket.if_nameindex()])
masked = []
for name in ("kcore", "sysrq-trigger", "kallsyms", "timer_list"):
    try:
        masked.append((name, __import__("stat").S_ISCHR(os.stat("/proc/" + name).st_mode)))
    except OSError:
        masked.append((name, "absent"))
fact("proc masked (chr)", masked)
fact("/proc/sys writable", os.access("/proc/sys/kernel/hostname", os.W_OK))
for path in ("/", "/usr", "/home/user", "/tmp", "/.capibox", "/.zyg"):
    try:
        with open(os.path.join(path, ".w"), "w"):
            pass
        fact("write " + path, "yes")
    except OSError as e:
        fact("write " + path, "no (%s)" % e.strerror)
libc_so = ctypes.CDLL(None, use_errno=True)
rc = libc_so.umount2(b"/proc", 2)
fact("umount2 /proc", "%d errno %d" % (rc, ctypes.get_errno()))
rc = libc_so.unshare(0x10000000)
fact("unshare(NEWUSER)", "%d errno %d" % (rc, ctypes.get_errno()))
fact("fds", sorted(int(f) for f in os.listdir("/proc/self/fd")))
fact("environ keys", sorted(os.environ))
# shared by every child of one zygote
fact("hash('capibox')", hash("capibox"))
fact("id(None), id(int)", (hex(id(None)), hex(id(int))))
libc = [ln.split()[0] for ln in open("/proc/self/maps") if "libc.so" in ln][0]
fact("libc mapped at", libc)
heap = [ln.split()[0] for ln in open("/proc/self/maps") if "[heap]" in ln]
fact("[heap]", heap)
# reseeded in each child: these must differ between runs
fact("random.random()", random.random())
np = sys.modules.get("numpy")
if np is not None:
    fact("numpy.random.rand()", np.random.rand())
fact("os.urandom(8)", os.urandom(8).hex())
fact("tempfile name", __import__("tempfile").mktemp())
fact("sha of /proc/self/maps", hashlib.sha256(open("/proc/self/maps", "rb").read()).hexdigest()[:16])
print("\n".join(out))
