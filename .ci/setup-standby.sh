#!/usr/bin/env bash
# Makes sure a streaming hot standby of the PostgreSQL on 127.0.0.1:5432 answers on
# 127.0.0.1:5433: a second cluster (`pg_createcluster 15 standby`) made with
# `pg_basebackup -R`, which writes primary_conninfo and standby.signal. pgstack's replica
# tests read from it. Idempotent: a second run only checks that it is in recovery.
set -euo pipefail

PG_MAJOR=15
NAME=standby
PORT=5433
DATA=/var/lib/postgresql/$PG_MAJOR/$NAME
HBA=/etc/postgresql/$PG_MAJOR/main/pg_hba.conf

log() { printf 'setup-standby: %s\n' "$*"; }

SLOT=pgstack_standby

in_recovery() {
  [ "$(psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = t ]
}

# Streaming from the primary now (a standby that fell too far behind only retries).
streaming() {
  [ "$(psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'" 2>/dev/null)" = 1 ]
}

if in_recovery; then
  for _ in $(seq 1 10); do
    if streaming; then
      log "the standby answers on 127.0.0.1:$PORT and streams from the primary"
      exit 0
    fi
    sleep 0.5
  done
  log "the standby on 127.0.0.1:$PORT is not streaming; rebuilding it"
fi

# Streaming replication needs a replication entry in the primary's pg_hba.conf.
if ! grep -Eq '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32' "$HBA"; then
  log "allowing replication connections from 127.0.0.1 on the primary"
  printf 'host replication all 127.0.0.1/32 trust\n' >> "$HBA"
  psql -h 127.0.0.1 -U postgres -d postgres -qtAc 'SELECT pg_reload_conf()' >/dev/null
fi

if pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$PG_MAJOR $NAME"; then
  log "dropping the stale $PG_MAJOR/$NAME cluster"
  pg_dropcluster --stop "$PG_MAJOR" "$NAME"
fi
pg_createcluster "$PG_MAJOR" "$NAME" --port "$PORT" >/dev/null
# Keep the folder (postgres owns it; its parent may not be writable to postgres), empty it.
find "$DATA" -mindepth 1 -delete
# A replication slot keeps the WAL a stopped standby still needs (bounded, so a standby left
# stopped cannot fill the primary's disk).
psql -h 127.0.0.1 -U postgres -d postgres -qtAc \
  "SELECT pg_drop_replication_slot('$SLOT') FROM pg_replication_slots WHERE slot_name = '$SLOT'" >/dev/null
if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -tAc 'SHOW max_slot_wal_keep_size')" = "-1" ]; then
  psql -h 127.0.0.1 -U postgres -d postgres -qtAc "ALTER SYSTEM SET max_slot_wal_keep_size = '4GB'" >/dev/null
  psql -h 127.0.0.1 -U postgres -d postgres -qtAc 'SELECT pg_reload_conf()' >/dev/null
fi
su postgres -c "pg_basebackup -h 127.0.0.1 -p 5432 -U postgres -D '$DATA' -R -X stream -c fast -C -S $SLOT" >/dev/null
# The same client authentication as the primary (trust on 127.0.0.1 here).
cp "$HBA" "/etc/postgresql/$PG_MAJOR/$NAME/pg_hba.conf"
# The tests' fresh databases reach the standby within moments; let it read them at once.
cat >> "/etc/postgresql/$PG_MAJOR/$NAME/postgresql.conf" <<'CONF'
hot_standby = on
hot_standby_feedback = on
max_standby_streaming_delay = 5s
CONF
pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" "$NAME" start
for _ in $(seq 1 30); do
  if in_recovery && streaming; then
    log "a hot standby of 127.0.0.1:5432 answers on 127.0.0.1:$PORT"
    exit 0
  fi
  sleep 1
done
log "the standby did not start; see /var/log/postgresql/postgresql-$PG_MAJOR-$NAME.log"
exit 1
