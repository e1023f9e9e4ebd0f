# Writing to the system: new files, directories and links in /usr and /etc,
# and opening existing system files for writing (without writing a byte,
# so a failure of the sandbox could not damage the host).
for p in /usr/capibox-probe /usr/bin/capibox-probe /usr/lib/capibox-probe /etc/capibox-probe \
	/bin/capibox-probe /capibox-probe; do
	if (: >"$p") 2>/dev/null; then echo "create $p WRITABLE"; else echo "create $p denied"; fi
done
if mkdir /usr/capibox-probe-dir 2>/dev/null; then echo "mkdir WRITABLE"; else echo "mkdir denied"; fi
if ln -s /tmp /etc/capibox-probe-link 2>/dev/null; then echo "symlink WRITABLE"; else echo "symlink denied"; fi
for p in /etc/passwd /etc/hosts /usr/bin/python3 /etc/ld.so.cache; do
	if (exec 3>>"$p") 2>/dev/null; then echo "open $p WRITABLE"; else echo "open $p denied"; fi
done
if touch -c /usr/bin/env 2>/dev/null; then echo "touch WRITABLE"; else echo "touch denied"; fi
