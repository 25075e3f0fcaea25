#!/usr/bin/env bash
# lego "exec" DNS provider: lego-exec.sh present|cleanup FQDN VALUE (FQDN with a trailing dot).
set -euo pipefail
case ${1:?} in
  present) exec "$(dirname "$0")/nsupdate-txt.sh" add "${2:?}" "${3:?}" ;;
  cleanup) exec "$(dirname "$0")/nsupdate-txt.sh" del "${2:?}" "${3:?}" ;;
  *) exit 0 ;;
esac
