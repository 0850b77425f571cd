#!/usr/bin/env bash
# Installs what `make test` / `make run` need on a fresh Debian machine, as
# root, idempotently: Debian packages and a MinIO server built from source at
# a pinned version into the repo's ignored .cache/bin.
#   scripts/setup.sh test   # everything the test suite uses
#   scripts/setup.sh run    # what `make run` uses (nginx, openssl)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-test}
MINIO_MOD=github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
CACHE=$PWD/.cache
mkdir -p "$CACHE/bin"
ts() { echo "[setup +${SECONDS}s] $*" >&2; }

pkgs=(nginx openssl curl)
bins=(nginx openssl curl)
if [ "$MODE" = test ]; then
  # postgresql: Debian's PostgreSQL 15; the tests start their own server
  # (initdb/pg_ctl as the postgres user, loopback only), never the packaged one.
  pkgs+=(runit chromium openssh-server rsyslog logrotate postgresql)
  bins+=(runsvdir chromium sshd rsyslogd logrotate /usr/lib/postgresql/15/bin/initdb)
fi

minio_pid=
if [ "$MODE" = test ] && [ ! -x "$CACHE/bin/minio" ]; then
  ts "building MinIO ($MINIO_MOD) in the background (about 3-4 minutes on 2 cores)"
  ( GOBIN="$CACHE/bin" GOFLAGS=-buildvcs=false go install "$MINIO_MOD" > "$CACHE/minio-build.log" 2>&1 ) &
  minio_pid=$!
fi

missing=()
for i in "${!bins[@]}"; do
  command -v "${bins[$i]}" > /dev/null 2>&1 || [ -x "/usr/sbin/${bins[$i]}" ] || missing+=("${pkgs[$i]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    ts "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$CACHE/apt.log" 2>&1 || { cat "$CACHE/apt.log"; exit 1; }
  else
    ts "missing ${missing[*]} and not root with apt-get: tests needing them will skip (fail under CI=true)"
  fi
fi

if [ -n "$minio_pid" ]; then
  if ! wait "$minio_pid"; then
    tail -30 "$CACHE/minio-build.log"
    ts "MinIO build failed"
    exit 1
  fi
  ts "MinIO built: $CACHE/bin/minio"
fi
ts "setup done"
