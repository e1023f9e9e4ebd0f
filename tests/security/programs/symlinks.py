# Symlinks planted in the working directory, pointing at host paths (the
# host's /etc/passwd, a canary file in the host's /tmp, the daemon's state
# directory, /), and writes through them. The server reads nothing back
# from the sandbox today; the test checks that the host is untouched. The
# input files (uploaded before this code ran) are where they were put.
import errno
import os

os.chdir('/home/user')
targets = {'passwd': '/etc/passwd', 'canary': os.environ['CANARY'],
           'state': os.environ['STATE_DIR'], 'root': '/', 'up': '../../..',
           'proc-root': '/proc/1/root/etc'}
for name, target in targets.items():
    os.symlink(target, name)


def attempt(what, f):
    try:
        f()
        print(what, 'ok')
    except OSError as e:
        print(what, errno.errorcode.get(e.errno, e.errno))


def append(path, data):
    with open(path, 'a') as f:
        f.write(data)


attempt('append passwd', lambda: append('passwd', 'evil::0:0::/:/bin/sh\n'))
# lands in the sandbox's own /tmp, never the host's
attempt('write canary', lambda: append('canary', 'pwned\n'))
attempt('mkdir state/pwned', lambda: os.makedirs('state/pwned'))
attempt('write root/pwned', lambda: append('root/pwned', 'x'))
attempt('write up/pwned', lambda: append('up/pwned', 'x'))
attempt('write proc-root/pwned', lambda: append('proc-root/pwned', 'x'))
for p in ['data/in/input.txt', 'etc/passwd']:
    st = os.lstat(p)
    with open(p) as f:
        print(p, 'regular' if os.path.isfile(p) and not os.path.islink(p) else 'NOT REGULAR',
              f.read().strip())
