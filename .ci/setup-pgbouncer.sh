#!/usr/bin/env bash
# Makes sure a PgBouncer with protocol-level prepared statements (1.21 or later) runs on
# 127.0.0.1:6432 in transaction mode in front of the PostgreSQL on 127.0.0.1:5432, the way
# the seed article tells its readers to deploy. Debian 12 ships 1.18, which forwards sqlx's
# named statements to whichever server connection a transaction gets; so, when missing, we
# build Debian 13's source package (as setup-postgres.sh does for pgvector). Idempotent: a
# second run only checks.
#
# The settings pgstack needs, and what breaks without them:
#   pool_mode = transaction          the deployment under test
#   max_prepared_statements = 500    without it sqlx's named statements reach other clients'
#                                    server connections: "prepared statement sqlx_s_1 already
#                                    exists", binds against the wrong statement
#   ignore_startup_parameters = extra_float_digits
#                                    sqlx sends it at connect; without it every connect fails
#                                    with "unsupported startup parameter"
set -euo pipefail

PORT=6432
CONF_DIR=/etc/pgstack-pgbouncer
RUN_DIR=/var/run/pgstack-pgbouncer
LOG=/var/log/pgstack-pgbouncer.log
BIN=/usr/local/bin/pgbouncer

log() { printf 'setup-pgbouncer: %s\n' "$*"; }

version_ok() {
  [ -x "$BIN" ] || return 1
  local v
  v=$("$BIN" --version | sed -n 's/^PgBouncer \([0-9]*\.[0-9]*\).*/\1/p' | head -1)
  [ -n "$v" ] || return 1
  local major=${v%%.*} minor=${v#*.}
  [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 21 ]; }
}

install_pgbouncer() {
  log "PgBouncer >= 1.21 is missing: building it from Debian 13's source package"
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
  apt-get install -y -qq dpkg-dev make gcc pkg-config libevent-dev libssl-dev >/dev/null
  local build
  build=$(mktemp -d)
  (
    cd "$build"
    apt-get source -qq pgbouncer >/dev/null 2>&1
    cd pgbouncer-*/
    # c-ares and the docs (pandoc) are not needed: hosts here are IP addresses.
    ./configure -q --prefix=/usr/local --without-cares --disable-evdns >/dev/null
    make -s -j2 >/dev/null
    install -m 0755 pgbouncer "$BIN"
  )
  rm -rf "$build"
  log "installed $("$BIN" --version | head -1)"
}

write_config() {
  mkdir -p "$CONF_DIR" "$RUN_DIR"
  chown postgres:postgres "$RUN_DIR"
  cat > "$CONF_DIR/pgbouncer.ini" <<INI
; Written by .ci/setup-pgbouncer.sh: pgstack's tests run through this pooler.
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = trust
auth_file = $CONF_DIR/userlist.txt
pool_mode = transaction
max_prepared_statements = 500
ignore_startup_parameters = extra_float_digits
max_client_conn = 1000
default_pool_size = 20
max_db_connections = 40
server_reset_query =
pidfile = $RUN_DIR/pgbouncer.pid
logfile = $LOG
INI
  printf '"postgres" ""\n' > "$CONF_DIR/userlist.txt"
  touch "$LOG"
  chown postgres:postgres "$LOG"
}

up() { pg_isready -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres; }

version_ok || install_pgbouncer
version_ok || { log "no PgBouncer >= 1.21 after the build"; exit 1; }
if up; then
  log "PgBouncer answers on 127.0.0.1:$PORT"
  exit 0
fi
write_config
# PgBouncer refuses to run as root; -u drops to postgres.
"$BIN" -d -u postgres "$CONF_DIR/pgbouncer.ini"
for _ in $(seq 1 30); do
  if up; then
    log "$("$BIN" --version | head -1) runs on 127.0.0.1:$PORT (transaction mode)"
    exit 0
  fi
  sleep 0.2
done
log "PgBouncer did not start; see $LOG"
exit 1
