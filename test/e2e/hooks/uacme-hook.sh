#!/usr/bin/env bash
# uacme hook: uacme-hook.sh begin|done|failed TYPE IDENT TOKEN KEY_AUTH. Answers http-01 by writing
# the key authorization under ANVIL_TEST_WEBROOT; declines other challenge types (exit 1).
set -euo pipefail
method=${1:?}; type=${2:?}; token=${4:?}; keyauth=${5:?}
[ "$type" = http-01 ] || exit 1
[[ $token =~ ^[A-Za-z0-9_-]+$ ]] || { echo "refusing token" >&2; exit 2; }
root=${ANVIL_TEST_WEBROOT:?}
case $method in
  begin) printf '%s' "$keyauth" > "$root/$token" ;;
  done|failed) rm -f "$root/$token" ;;
esac
