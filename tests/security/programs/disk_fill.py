# Disk fill: write 1 MiB files into /home/user and /tmp until the tmpfs is
# full, then one more big file into the full one; the program must get
# ENOSPC (not be killed) and go on.
import errno
import os
import signal

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
chunk = b'd' * (1 << 20)


def name(e):
    return errno.errorcode.get(e.errno, str(e.errno))


for top in ['/home/user', '/tmp']:
    n = 0
    err = 'none'
    while n < 4096:
        try:
            with open(os.path.join(top, 'fill%d' % n), 'wb') as f:
                f.write(chunk)
        except OSError as e:
            err = name(e)
            break
        n += 1
    try:
        with open(os.path.join(top, 'big'), 'wb') as f:
            f.write(chunk * 4)
        big = 'written'
    except OSError as e:
        big = name(e)
    print(top, 'files', err, 'big', big, flush=True)
print('continued')
