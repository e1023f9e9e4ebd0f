# Writing to the system from python (open for writing, create, rename,
# chmod), without modifying an existing host file if it were to succeed.
import os

for p in ['/usr/capibox-probe', '/usr/lib/python3/capibox-probe.py', '/etc/capibox-probe',
          '/etc/profile.d/capibox-probe.sh']:
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        print('create', p, 'WRITABLE')
    except OSError:
        print('create', p, 'denied')
for p in ['/etc/passwd', '/usr/bin/bash', '/usr/lib/os-release']:
    try:
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        os.close(fd)
        print('open', p, 'WRITABLE')
    except OSError:
        print('open', p, 'denied')
for p in ['/usr/bin/env', '/etc/hosts']:
    try:
        os.chmod(p, os.stat(p).st_mode)
        print('chmod', p, 'ALLOWED')
    except OSError:
        print('chmod', p, 'denied')
