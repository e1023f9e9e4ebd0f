# Busy loop: CPU time until a limit stops it.
while True:
    pass
