# Endless output on both streams: the limit counts stdout plus stderr.
import sys

while True:
    sys.stdout.write('o' * 1000)
    sys.stdout.flush()
    sys.stderr.write('e' * 333)
    sys.stderr.flush()
