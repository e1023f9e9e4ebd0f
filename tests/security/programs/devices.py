# Device files from python: mknod of a char device, opening raw devices.
import errno
import os
import stat

for path, dev in [('/tmp/mem', os.makedev(1, 1)), ('/home/user/sda', os.makedev(8, 0))]:
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, dev)
        print('mknod', path, 'SUCCEEDED')
    except OSError as e:
        print('mknod', path, errno.errorcode.get(e.errno, e.errno))
for path in ['/dev/mem', '/dev/sda', '/dev/kmsg', '/dev/port']:
    try:
        os.close(os.open(path, os.O_RDONLY))
        print('open', path, 'OPENED')
    except OSError as e:
        print('open', path, errno.errorcode.get(e.errno, e.errno))
print('dev', sorted(os.listdir('/dev')))
