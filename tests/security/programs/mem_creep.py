# Memory bomb, creeping growth: 1 MiB more every few milliseconds.
import sys
import time

held = []
while True:
    held.append(b'c' * (1 << 20))
    if len(held) % 16 == 0:
        print('holding', len(held), 'MiB', flush=True)
    time.sleep(0.002)
