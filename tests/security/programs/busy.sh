# Busy loop in the shell itself.
while :; do :; done
