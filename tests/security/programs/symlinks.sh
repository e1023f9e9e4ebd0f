# The same with ln -s and shell redirections.
cd /home/user
ln -s /etc/passwd passwd
ln -s "$CANARY" canary
ln -s "$STATE_DIR" state
echo 'evil::0:0::/:/bin/sh' 2>/dev/null >>passwd && echo "append passwd ok" || echo "append passwd refused"
echo pwned >canary 2>/dev/null && echo "write canary ok" || echo "write canary refused"
mkdir -p state/pwned 2>/dev/null && echo "mkdir state ok" || echo "mkdir state refused"
cat data/in/input.txt
