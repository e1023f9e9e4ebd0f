# setsid + nohup + disown, twice forked, ignoring TERM and HUP.
# The test looks for "sleep $DAEMON_MARK" on the host after the run.
( setsid nohup sh -c "trap '' TERM HUP INT; sleep $DAEMON_MARK; sleep $DAEMON_MARK" >/dev/null 2>&1 </dev/null & ) &
sleep 0.3
echo daemonised
sleep 0.5
