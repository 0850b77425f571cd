#!/bin/sh
# Fill the placeholders of keepproxy.conf.in.
#   SERVER_NAME=keep.zzzzz.example.com SSL_CERT=/etc/ssl/keep.pem SSL_KEY=/etc/ssl/keep.key \
#     deploy/nginx/render.sh > /etc/nginx/sites-enabled/keepproxy.conf
# Defaults: LISTEN=443, UPSTREAM=127.0.0.1:25107,
# ACCESS_LOG=/var/log/nginx/keepproxy.access.log (signatures stripped).
set -eu
: "${SERVER_NAME:?set SERVER_NAME, e.g. keep.zzzzz.example.com}"
: "${SSL_CERT:?set SSL_CERT to the certificate chain (PEM)}"
: "${SSL_KEY:?set SSL_KEY to the private key (PEM)}"
LISTEN=${LISTEN:-443}
UPSTREAM=${UPSTREAM:-127.0.0.1:25107}
ACCESS_LOG=${ACCESS_LOG:-/var/log/nginx/keepproxy.access.log}
esc() { printf '%s' "$1" | sed -e 's/[\/&|]/\\&/g'; }
sed -e "s|@SERVER_NAME@|$(esc "$SERVER_NAME")|g" \
    -e "s|@LISTEN@|$(esc "$LISTEN")|g" \
    -e "s|@SSL_CERT@|$(esc "$SSL_CERT")|g" \
    -e "s|@SSL_KEY@|$(esc "$SSL_KEY")|g" \
    -e "s|@UPSTREAM@|$(esc "$UPSTREAM")|g" \
    -e "s|@ACCESS_LOG@|$(esc "$ACCESS_LOG")|g" \
    "$(dirname "$0")/keepproxy.conf.in"
