#!/usr/bin/env bash
# certbot --manual-auth-hook for dns-01: certbot passes CERTBOT_DOMAIN and CERTBOT_VALIDATION.
set -euo pipefail
exec "$(dirname "$0")/nsupdate-txt.sh" add "_acme-challenge.${CERTBOT_DOMAIN:?}" "${CERTBOT_VALIDATION:?}"
