# Memory bomb, creeping growth: an array that gains a 64 KiB string per step.
chunk=$(printf '%065536d' 0)
held=()
i=0
while :; do
	held[i]="$chunk$i"
	i=$((i + 1))
	if [ $((i % 256)) -eq 0 ]; then echo "holding $((i / 16)) MiB"; fi
done
