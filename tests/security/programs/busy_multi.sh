# Four busy processes at once: the CPU limit is the sandbox's total, so on
# two cores it must end the run well before any single process used it all.
for i in 1 2 3 4; do
	(while :; do :; done) &
done
wait
