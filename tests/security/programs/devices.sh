# Device files: only the harmless ones exist, nothing can be made.
echo "dev: $(ls /dev | tr '\n' ' ')"
for p in /dev/mem /dev/kmem /dev/port /dev/sda /dev/vda /dev/nvme0 /dev/kmsg /dev/console /dev/tty /dev/net/tun /dev/fuse; do
	if [ -e "$p" ]; then echo "$p PRESENT"; else echo "$p absent"; fi
done
mknod /tmp/sda b 8 0 2>/dev/null && echo "mknod block SUCCEEDED" || echo "mknod block refused"
mknod /home/user/mem c 1 1 2>/dev/null && echo "mknod char SUCCEEDED" || echo "mknod char refused"
mkfifo /tmp/fifo && echo "mkfifo ok"
echo x 2>/dev/null >/dev/full && echo "/dev/full accepted" || echo "/dev/full ENOSPC"
[ "$(head -c 16 /dev/urandom | wc -c)" = 16 ] && echo "urandom ok"
if [ -e /sys ]; then echo "/sys PRESENT"; else echo "/sys absent"; fi
echo "kcore bytes: $(head -c 4096 /proc/kcore 2>/dev/null | wc -c)"
# the masked proc directories: empty, and nothing can be made in them
for d in acpi scsi bus fs irq tty driver; do
	[ -d "/proc/$d" ] || continue
	[ -z "$(ls -A "/proc/$d")" ] || echo "/proc/$d contents PRESENT"
	mkdir "/proc/$d/x" 2>/dev/null && echo "mkdir in /proc/$d SUCCEEDED"
done
echo "masked dirs: $(for d in fs irq tty; do [ -d "/proc/$d" ] && ls -A "/proc/$d" | wc -l; done | tr '\n' ' ')"
