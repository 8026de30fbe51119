#!/usr/bin/env bash
# Makes sure PostgreSQL 15 answers on 127.0.0.1:5432 and that the `vector`
# extension (pgvector >= 0.7) is installable. Idempotent: a second run does
# nothing but check. Debian 12 does not package pgvector, so when it is missing
# we build Debian 13's source package against postgresql-server-dev-15.
set -euo pipefail

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PGHOST=${PGHOST:-127.0.0.1}

log() { printf 'setup-postgres: %s\n' "$*"; }

pg_up() { pg_isready -q -h "$PGHOST" -p 5432 -U postgres; }

ensure_running() {
  if pg_up; then return 0; fi
  log "PostgreSQL is not answering; starting cluster $PG_MAJOR/main"
  pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main start || true
  for _ in $(seq 1 30); do
    if pg_up; then return 0; fi
    sleep 1
  done
  log "PostgreSQL did not start; see /var/log/postgresql/postgresql-$PG_MAJOR-main.log"
  exit 1
}

vector_available() {
  [ -f "/usr/share/postgresql/$PG_MAJOR/extension/vector.control" ]
}

install_pgvector() {
  log "pgvector is missing: building it from Debian 13's source package"
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -f /etc/apt/sources.list.d/pgstack-trixie-src.sources ]; then
    cat > /etc/apt/sources.list.d/pgstack-trixie-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  apt-get update -qq
  # Pin the server-dev package to the running server's version family; it pulls
  # clang/LLVM and may upgrade postgresql-15 itself, which can stop the cluster.
  apt-get install -y -qq "postgresql-server-dev-$PG_MAJOR" dpkg-dev make gcc >/dev/null
  local build
  build=$(mktemp -d)
  (
    cd "$build"
    apt-get source -qq pgvector >/dev/null
    cd pgvector-*/
    make -s PG_CONFIG="$PG_BIN/pg_config" >/dev/null
    make -s PG_CONFIG="$PG_BIN/pg_config" install >/dev/null
  )
  rm -rf "$build"
  log "pgvector installed"
}

ensure_running
if ! vector_available; then
  install_pgvector
  ensure_running
fi
vector_available || { log "vector.control still missing after the build"; exit 1; }

# The databases the tests use exist on the CI machine already; make sure anyway.
for db in test; do
  if ! psql -h "$PGHOST" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    psql -h "$PGHOST" -U postgres -d postgres -qc "CREATE DATABASE $db"
  fi
done
log "PostgreSQL $(psql -h "$PGHOST" -U postgres -d postgres -tAc 'SHOW server_version') is up; vector is installable"
