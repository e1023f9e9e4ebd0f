# Host secrets: the shadow files, root's home, a canary file the test
# planted in the host's /tmp (world-readable there), and the server's
# environment through /proc. Prints a verdict per path, then dumps every
# environ and cmdline it can read so the test can search them for the
# server's secret value.
import glob
import os
import sys


def probe(path):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, 'rb') as f:
                f.read()
        print(path, 'READABLE')
    except OSError:
        print(path, 'denied')


for p in ['/etc/shadow', '/etc/gshadow', '/root', '/root/.bashrc', os.environ['CANARY'],
          '/proc/1/environ', '/proc/1/mem', '/proc/1/root/etc/shadow']:
    probe(p)
print('own env has server secret:', 'CAPIBOX_TEST_SECRET' in os.environ)
found = False
for path in sorted(glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline') +
                   glob.glob('/proc/*/task/*/environ')):
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError:
        continue
    if b'CAPIBOX_TEST_SECRET' in data:
        found = True
    sys.stdout.buffer.write(b'dump ' + path.encode() + b' ' + data.replace(b'\0', b' ') + b'\n')
print('server secret in /proc:', found)
