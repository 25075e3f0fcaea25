#!/usr/bin/env bash
# certbot --manual-cleanup-hook for dns-01.
set -euo pipefail
exec "$(dirname "$0")/nsupdate-txt.sh" del "_acme-challenge.${CERTBOT_DOMAIN:?}" "${CERTBOT_VALIDATION:?}"
