# Changing the clock and the host name by system call.
import errno
import socket
import time

for name, f in [('clock_settime', lambda: time.clock_settime(time.CLOCK_REALTIME, 978307200.0)),
                ('sethostname', lambda: socket.sethostname('capibox-evil'))]:
    try:
        f()
        print(name, 'SUCCEEDED')
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
print('hostname is', socket.gethostname())
print('year', time.gmtime().tm_year)
