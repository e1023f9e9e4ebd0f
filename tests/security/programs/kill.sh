# kill -9 -1, then every pid up to 200 and the victim's host pid.
kill -s KILL -- -1 2>/dev/null
for p in $(seq 1 200) "$VICTIM_PID"; do
	[ "$p" = $$ ] || [ "$p" = "$BASHPID" ] || kill -9 "$p" 2>/dev/null
done
echo attacker done
