# Sleeps past the wall time (no CPU use: only the wall clock can end it).
import time

print('sleeping', flush=True)
time.sleep(60)
print('woke up')
