# Network: the server's own port, listeners the test opened on the host
# (loopback, the host's address, an abstract Unix socket), documentation
# addresses (TEST-NET-2/3, never real hosts) and DNS. Every probe must fail.
import os
import socket

env = os.environ
print('interfaces', sorted(n for _, n in socket.if_nameindex()))


def tcp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((host, int(port)))
        print('tcp', host, port, 'CONNECTED')
    except OSError:
        print('tcp', host, port, 'blocked')
    finally:
        s.close()


def udp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b'capibox-udp-probe', (host, int(port)))
        print('udp', host, port, 'sent')
    except OSError:
        print('udp', host, port, 'blocked')
    finally:
        s.close()


def name(host):
    try:
        addrs = socket.getaddrinfo(host, 80)
        print('dns', host, 'RESOLVED', addrs[0][4][0])
    except OSError:
        print('dns', host, 'failed')


tcp('127.0.0.1', env['SERVER_PORT'])
tcp('127.0.0.1', env['LISTEN_PORT'])
if env.get('HOST_IP'):
    tcp(env['HOST_IP'], env['LISTEN_PORT'])
    tcp(env['HOST_IP'], env['SERVER_PORT'])
tcp('198.51.100.1', 80)
tcp('203.0.113.1', 443)
# loopback inside is the sandbox's own: a datagram "sent" there reaches nobody
udp('127.0.0.1', env['UDP_PORT'])
if env.get('HOST_IP'):
    udp(env['HOST_IP'], env['UDP_PORT'])
udp('198.51.100.1', 53)
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    u.connect('\0' + env['ABSTRACT'])
    print('abstract CONNECTED')
except OSError:
    print('abstract blocked')
name('example.com')
name('localhost')
