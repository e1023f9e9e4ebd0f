# Changing the clock and the host name with the usual tools.
date -s '2001-01-01 00:00:00' >/dev/null 2>&1 && echo "date -s SUCCEEDED" || echo "date -s refused"
hostname capibox-evil >/dev/null 2>&1 && echo "hostname SUCCEEDED" || echo "hostname refused"
echo "hostname is $(hostname)"
echo "year $(date +%Y)"
