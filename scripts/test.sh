#!/usr/bin/env bash
# The full test suite, as CI runs it: build, clippy (-D warnings), rustfmt, every test against a
# real PostgreSQL, and `pgstack-gen check` on every committed spec.
#
# Tests create one database per test on PGSTACK_TEST_DATABASE_URL
# (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/setup-postgres.sh
# PgBouncer (transaction mode, 127.0.0.1:6432) and a hot standby (127.0.0.1:5433), for
# tests/pooler.rs and tests/replica.rs.
bash .ci/setup-pgbouncer.sh
bash .ci/setup-standby.sh
# A throwaway server on 127.0.0.1:5434 that tests/worker.rs crashes under a running worker.
bash .ci/setup-crashable.sh

# Snapshot tests fail on a difference instead of writing new snapshots.
export INSTA_UPDATE=no

step() { printf '\n==> %s\n' "$*"; }

step "build"
cargo build --workspace --all-targets --locked
step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "rustfmt"
cargo fmt --all --check
step "tests"
cargo test --workspace --locked
step "pgstack-gen check"
for spec in examples/*/pgstack.toml tests/pgstack.toml pgstack-bench/pgstack.toml; do
  ./target/debug/pgstack-gen check --spec "$spec"
done
step "all green"
