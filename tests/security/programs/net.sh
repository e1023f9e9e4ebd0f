# Network from the shell: bash's /dev/tcp, getent (NSS), and a raw UDP send.
probe() {
	if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then echo "tcp $1 $2 CONNECTED"; else echo "tcp $1 $2 blocked"; fi
}
probe 127.0.0.1 "$SERVER_PORT"
probe 127.0.0.1 "$LISTEN_PORT"
if [ -n "$HOST_IP" ]; then probe "$HOST_IP" "$LISTEN_PORT"; fi
probe 198.51.100.1 80
if getent hosts example.com >/dev/null; then echo "dns example.com RESOLVED"; else echo "dns example.com failed"; fi
