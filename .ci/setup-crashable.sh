#!/usr/bin/env bash
# Makes sure a second, throwaway PostgreSQL 15 cluster answers on 127.0.0.1:5434 for the test
# that crashes and restarts the server under a running worker (tests/worker.rs,
# `no_job_is_lost_across_postgresql_crashes`). It is its own cluster so that crashing it
# disturbs no other test. Idempotent: a second run only checks that it answers.
set -euo pipefail

PG_MAJOR=15
NAME=crashable
PORT=5434
CONF=/etc/postgresql/$PG_MAJOR/$NAME

log() { printf 'setup-crashable: %s\n' "$*"; }

answers() {
  [ "$(psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc 'SELECT 1' 2>/dev/null)" = 1 ]
}

if answers; then
  log "the crashable server answers on 127.0.0.1:$PORT"
  exit 0
fi

if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$PG_MAJOR $NAME"; then
  pg_createcluster "$PG_MAJOR" "$NAME" --port "$PORT" >/dev/null
  # Trust on the loopback, as on the main test server.
  cat > "$CONF/pg_hba.conf" <<'HBA'
local all all trust
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
HBA
  cat >> "$CONF/postgresql.conf" <<'PGCONF'
listen_addresses = '127.0.0.1'
shared_buffers = 64MB
max_connections = 50
PGCONF
  log "created the $PG_MAJOR/$NAME cluster"
fi
pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" "$NAME" start || true
for _ in $(seq 1 30); do
  if answers; then
    log "the crashable server answers on 127.0.0.1:$PORT"
    exit 0
  fi
  sleep 1
done
log "the crashable server did not start; see /var/log/postgresql/postgresql-$PG_MAJOR-$NAME.log"
exit 1
