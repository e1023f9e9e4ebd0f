# Sleeps past the wall time.
echo sleeping
sleep 60
echo woke up
