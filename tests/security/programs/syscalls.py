# Raw system calls the sandbox refuses, made through ctypes with arguments
# that would work for an unprivileged user if nothing filtered them
# (ptrace(TRACEME), unshare(NEWUSER), keyctl on the session keyring,
# io_uring_setup, a software perf counter). Each must fail with EPERM
# (clone3: ENOSYS, so libc falls back to clone) and the program goes on.
# x86_64 numbers; the test skips this program on other architectures.
import ctypes
import errno
import os
import platform

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
buf = ctypes.create_string_buffer(256)
perf_attr = ctypes.create_string_buffer(128)
perf_attr[0:4] = (1).to_bytes(4, 'little')     # type = PERF_TYPE_SOFTWARE
perf_attr[4:8] = (128).to_bytes(4, 'little')   # size
uring_params = ctypes.create_string_buffer(120)
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
SIGCHLD = 17

calls = [
    ('ptrace', 101, [0, 0, 0, 0]),
    ('mount', 165, [b'none', b'/tmp', b'tmpfs', 0, None]),
    ('umount2', 166, [b'/proc', 2]),
    ('pivot_root', 155, [b'/tmp', b'/tmp']),
    ('chroot', 161, [b'/tmp']),
    ('unshare', 272, [CLONE_NEWUSER]),
    ('unshare_net', 272, [CLONE_NEWNET]),
    ('setns', 308, [0, 0]),
    ('clone_newuser', 56, [CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0]),
    ('clone_newpid', 56, [CLONE_NEWPID | CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0]),
    ('bpf', 321, [0, buf, 64]),
    ('keyctl', 250, [0, -3, 1]),
    ('add_key', 248, [b'user', b'capibox', buf, 8, -3]),
    ('request_key', 249, [b'user', b'capibox', None, 0]),
    ('io_uring_setup', 425, [8, uring_params]),
    ('perf_event_open', 298, [perf_attr, 0, -1, -1, 0]),
    ('userfaultfd', 323, [0]),
    ('process_vm_readv', 310, [1, buf, 1, buf, 1, 0]),
    ('kcmp', 312, [1, os.getpid(), 0, 0, 0]),
    ('open_by_handle_at', 304, [-100, buf, 0]),
    ('init_module', 175, [buf, 16, b'']),
    ('finit_module', 313, [0, b'', 0]),
    ('kexec_load', 246, [0, 0, None, 0]),
    ('reboot', 169, [0xfee1dead, 672274793, 0, None]),  # CAD_OFF: harmless
    ('swapon', 167, [b'/tmp/swap', 0]),
    ('acct', 163, [None]),
    ('syslog', 103, [3, buf, 64]),
    ('quotactl', 179, [0, None, 0, None]),
]
if platform.machine() != 'x86_64':
    print('unsupported architecture', platform.machine())
    raise SystemExit(0)
for name, nr, args in calls:
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a
                                           for a in args])
    if rc == 0 and name.startswith('clone'):
        os._exit(0)  # a child was made: it must not run the rest
    err = ctypes.get_errno()
    print(name, rc, errno.errorcode.get(err, err) if rc < 0 else 'SUCCEEDED')
ctypes.set_errno(0)
rc = libc.syscall(ctypes.c_long(435), buf, ctypes.c_long(88))
print('clone3', rc, errno.errorcode.get(ctypes.get_errno(), '?') if rc < 0 else 'SUCCEEDED')
print('still running')
