# The classic shell fork bomb, then wait for the wall time. Past the pids
# limit every fork fails; bash reports it and retries.
bomb() { bomb | bomb & }
bomb
echo launched
sleep 60
