# Prints the request's unusual environment values and file names as hex,
# so the test compares bytes exactly.
import os

for k in sorted(os.environb):
    if k.startswith(b'CBX_'):
        v = os.environb[k]
        print('env', k.hex(), len(v), v[:64].hex())
for root, dirs, files in os.walk(b'/home/user'):
    for f in sorted(files):
        p = os.path.join(root, f)
        with open(p, 'rb') as fh:
            print('file', p[len(b'/home/user/'):].hex(), fh.read().hex())
