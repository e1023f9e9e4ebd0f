# Disk fill: one file per tmpfs, written until the device is full.
for top in /home/user /tmp; do
	if err=$(dd if=/dev/zero of="$top/fill" bs=1M 2>&1 >/dev/null); then
		echo "$top no error"
	elif [[ $err == *"No space left on device"* ]]; then
		echo "$top ENOSPC"
	else
		echo "$top other error: $err"
	fi
done
echo continued
