# Becoming root by system call: every form must fail with EPERM.
import errno
import os

for name, f in [('setuid(0)', lambda: os.setuid(0)), ('seteuid(0)', lambda: os.seteuid(0)),
                ('setresuid(0)', lambda: os.setresuid(0, 0, 0)), ('setgid(0)', lambda: os.setgid(0)),
                ('setgroups([0])', lambda: os.setgroups([0])),
                ('chown /home/user to 0', lambda: os.chown('/home/user', 0, 0))]:
    try:
        f()
        print(name, 'SUCCEEDED')
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
print('ids', os.getresuid(), os.getresgid())
