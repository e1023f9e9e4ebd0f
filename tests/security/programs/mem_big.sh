# Memory bomb, one allocation: a 1 GiB string in the shell's own memory.
big=$(head -c 1073741824 /dev/zero | tr '\0' x)
echo "allocated ${#big}"
