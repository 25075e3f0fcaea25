#!/usr/bin/env bash
# nsupdate-txt.sh add|del FQDN VALUE: publishes or removes a TXT record in the test BIND through
# RFC 2136 with TSIG, then waits until the server answers with it. Data arrives only as arguments
# and is checked against a strict character set before use; nothing is evaluated.
set -euo pipefail
action=${1:?action}; fqdn=${2:?fqdn}; value=${3:?value}
fqdn=${fqdn%.}
[[ $fqdn =~ ^[A-Za-z0-9._-]+$ ]] || { echo "refusing fqdn: $fqdn" >&2; exit 2; }
[[ $value =~ ^[A-Za-z0-9_-]+$ ]] || { echo "refusing value" >&2; exit 2; }
port=${ANVIL_TEST_DNS_PORT:?}; key=${ANVIL_TEST_TSIG_KEYFILE:?}
case $action in
  add) cmd="update add $fqdn. 5 TXT \"$value\"" ;;
  del) cmd="update delete $fqdn. TXT \"$value\"" ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
printf 'server 127.0.0.1 %s\n%s\nsend\n' "$port" "$cmd" | nsupdate -k "$key"
if [ "$action" = add ]; then
  for _ in $(seq 1 50); do
    if dig @127.0.0.1 -p "$port" +short +time=1 +tries=1 "$fqdn" TXT | grep -qF "\"$value\""; then exit 0; fi
    sleep 0.1
  done
  echo "TXT $fqdn did not appear" >&2; exit 1
fi
