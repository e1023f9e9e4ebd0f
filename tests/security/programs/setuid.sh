# setuid binaries: they must not make us root. newgrp runs a shell after its
# privileged part, so that shell's uid shows what the binary gained.
for b in $(find /usr/bin /usr/sbin /usr/lib -xdev -perm -4000 -type f 2>/dev/null | sort); do
	echo "setuid binary $b"
done
echo "newgrp shell uid: $(echo 'id -u' | newgrp user 2>/dev/null)"
echo "newgrp group shell uid: $(echo 'id -u' | newgrp 2>/dev/null)"
echo "su uid: $(su -c 'id -u' root </dev/null 2>/dev/null)"
if command -v sudo >/dev/null; then echo "sudo uid: $(sudo -n id -u 2>/dev/null)"; else echo "sudo absent"; fi
passwd -d user </dev/null >/dev/null 2>&1 && echo "passwd SUCCEEDED" || echo "passwd refused"
mkdir -p /home/user/m
mount -t tmpfs none /home/user/m >/dev/null 2>&1 && echo "mount SUCCEEDED" || echo "mount refused"
chsh -s /bin/sh user </dev/null >/dev/null 2>&1 && echo "chsh SUCCEEDED" || echo "chsh refused"
grep -E '^(NoNewPrivs|CapBnd|CapEff):' /proc/self/status
echo "uid $(id -u) euid $(id -u) groups $(id -G)"
