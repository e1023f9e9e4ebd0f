# Host secrets from the shell.
for p in /etc/shadow /etc/gshadow /root/.bashrc "$CANARY" /proc/1/environ; do
	if cat "$p" >/dev/null 2>&1; then echo "$p READABLE"; else echo "$p denied"; fi
done
if ls /root >/dev/null 2>&1; then echo "/root READABLE"; else echo "/root denied"; fi
env | grep -c CAPIBOX_TEST_SECRET
cat /proc/*/environ 2>/dev/null | tr '\0' '\n' | grep -c CAPIBOX_TEST_SECRET
