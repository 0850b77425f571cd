#!/bin/sh
# Fill the placeholders of keepproxy.conf.in.
#   SERVER_NAME=keep.zzzzz.example.com SSL_CERT=/etc/ssl/keep.pem SSL_KEY=/etc/ssl/keep.key \
#     deploy/nginx/render.sh > /etc/nginx/sites-enabled/keepproxy.conf
# Several tenants' names, each with its own certificate (keepproxy's
# forwarding rules route by the name), plus a default server that answers
# 421 for any other name:
#   TENANTS="keep.a.example.org=/etc/ssl/a.pem:/etc/ssl/a.key keep.b.example.org=/etc/ssl/b.pem:/etc/ssl/b.key" \
#     deploy/nginx/render.sh > /etc/nginx/sites-enabled/keepproxy.conf
# Defaults: LISTEN=443, UPSTREAM=127.0.0.1:25107,
# ACCESS_LOG=/var/log/nginx/keepproxy.access.log (signatures stripped).
set -eu
TEMPLATE="$(dirname "$0")/keepproxy.conf.in"
LISTEN=${LISTEN:-443}
UPSTREAM=${UPSTREAM:-127.0.0.1:25107}
ACCESS_LOG=${ACCESS_LOG:-/var/log/nginx/keepproxy.access.log}
TENANTS=${TENANTS:-}
if [ -z "$TENANTS" ]; then
  : "${SERVER_NAME:?set SERVER_NAME, e.g. keep.zzzzz.example.com (or TENANTS for several names)}"
  : "${SSL_CERT:?set SSL_CERT to the certificate chain (PEM)}"
  : "${SSL_KEY:?set SSL_KEY to the private key (PEM)}"
fi
esc() { printf '%s' "$1" | sed -e 's/[\/&|]/\\&/g'; }
fill() { # name cert key < template part
  sed -e "s|@SERVER_NAME@|$(esc "$1")|g" \
      -e "s|@SSL_CERT@|$(esc "$2")|g" \
      -e "s|@SSL_KEY@|$(esc "$3")|g" \
      -e "s|@LISTEN@|$(esc "$LISTEN")|g" \
      -e "s|@UPSTREAM@|$(esc "$UPSTREAM")|g" \
      -e "s|@ACCESS_LOG@|$(esc "$ACCESS_LOG")|g"
}
if [ -z "$TENANTS" ]; then
  fill "$SERVER_NAME" "$SSL_CERT" "$SSL_KEY" < "$TEMPLATE"
  exit 0
fi

# Shared part (log format, upstream) once, then the server block per name.
first_cert= first_key=
sed -n '/^server {/q;p' "$TEMPLATE" | fill x x x
for t in $TENANTS; do
  name=${t%%=*} files=${t#*=}
  cert=${files%%:*} key=${files#*:}
  if [ "$name" = "$t" ] || [ "$cert" = "$files" ] || [ -z "$name" ] || [ -z "$cert" ] || [ -z "$key" ]; then
    echo "render.sh: TENANTS entry \"$t\": want NAME=CERT:KEY" >&2
    exit 1
  fi
  [ -n "$first_cert" ] || { first_cert=$cert first_key=$key; }
  sed -n '/^server {/,$p' "$TEMPLATE" | fill "$name" "$cert" "$key"
  echo
done
# Any other name: 421 Misdirected Request, before keepproxy sees it.
fill x "$first_cert" "$first_key" <<'EOT'
server {
    listen @LISTEN@ ssl default_server;
    server_name _;
    access_log @ACCESS_LOG@ keepgate;
    ssl_certificate     @SSL_CERT@;
    ssl_certificate_key @SSL_KEY@;
    ssl_protocols TLSv1.2 TLSv1.3;
    return 421;
}
EOT
