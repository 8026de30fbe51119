#!/usr/bin/env bash
# The quick start's main job: run pgstack-gen on the example spec and show what it writes, then
# apply the migrations to a fresh database and run the example program against it.
#
# The database is PGSTACK_DEMO_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/pgstack_demo); it is dropped and created again.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/setup-postgres.sh >/dev/null
echo "==> building pgstack-gen and the quickstart example"
cargo build -q --locked -p pgstack-gen -p quickstart

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp examples/quickstart/pgstack.toml "$work/"
echo
echo "==> pgstack-gen generate --spec $work/pgstack.toml"
./target/debug/pgstack-gen generate --spec "$work/pgstack.toml"
echo
echo "==> the generated migration:"
cat "$work"/migration/sql/pgstack_0001_initial.up.sql
echo
echo "==> a second run writes nothing:"
./target/debug/pgstack-gen generate --spec "$work/pgstack.toml"
echo
echo "==> the committed example grew one facility at a time; its migrations:"
ls examples/quickstart/migration/sql
./target/debug/pgstack-gen check --spec examples/quickstart/pgstack.toml

url=${PGSTACK_DEMO_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/pgstack_demo}
db=${url##*/}
db=${db%%\?*}
admin=${url%/*}/postgres
PGOPTIONS='-c client_min_messages=warning' psql -q "$admin" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" -c "CREATE DATABASE \"$db\""
echo
echo "==> pgstack-gen migrate (database $db)"
DATABASE_URL=$url ./target/debug/pgstack-gen migrate --spec examples/quickstart/pgstack.toml
echo
echo "==> cargo run -p quickstart"
DATABASE_URL=$url ./target/debug/quickstart
