//! Live drift detection (`pgstack-gen check --database-url`): a migrated database matches
//! (archive partitions made at run time included); each kind of hand-made change is named.

use pgstack_tests::db::archived;
use pgstack_tests::{TestDb, cli, fixture_spec};

fn check(t: &TestDb) -> pgstack_tests::CliRun {
    cli(&[
        "check",
        "--spec",
        &fixture_spec().to_string_lossy(),
        "--database-url",
        &t.url,
    ])
}

#[tokio::test]
async fn a_migrated_database_has_no_drift_and_every_hand_made_change_is_named() {
    let t = TestDb::migrated().await;
    // Partitions queue maintenance creates are not drift.
    archived::QUEUE.maintain(&t.conn).await.unwrap();
    let run = check(&t);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("the database matches what"),
        "{}",
        run.stdout
    );

    for sql in [
        "CREATE INDEX jobs_kind_hand_idx ON jobs (kind)",
        "DROP INDEX jobs_lease_idx",
        "DROP INDEX profiles_score_idx",
        "CREATE INDEX profiles_score_idx ON profiles (age)",
        "ALTER TABLE pages SET LOGGED",
        "ALTER TABLE jobs SET (fillfactor = 50)",
        "ALTER TABLE profiles DROP COLUMN visits",
        "ALTER TABLE settings ADD COLUMN note text",
        "ALTER TABLE ordered ALTER COLUMN last_error TYPE varchar(200)",
        "ALTER TABLE jobs ALTER COLUMN kind DROP NOT NULL",
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'jobs_ready_idx'::regclass",
        "DROP TRIGGER jobs_notify ON jobs",
        "DROP FUNCTION jobs_enqueue",
        "DROP TABLE flags",
        "CREATE TABLE pgstack_mystery (x int)",
        "ALTER TABLE profiles DROP CONSTRAINT profiles_doc_is_object",
        "DELETE FROM seaql_migrations WHERE version = 'pgstack_0010_alter_profiles'",
        "INSERT INTO seaql_migrations VALUES ('pgstack_0099_future', 0)",
    ] {
        t.exec(sql).await;
    }
    let run = check(&t);
    assert_eq!(run.code, 1, "{run:?}");
    for expected in [
        "(17 differences)",
        "index `jobs_kind_hand_idx`: on `jobs` exists, but no migration creates it",
        "index `jobs_lease_idx`: on `jobs` is missing",
        "index `profiles_score_idx`: is `CREATE INDEX profiles_score_idx ON public.profiles USING btree (age)`",
        "index `jobs_ready_idx`: is INVALID",
        "table `pages`: is LOGGED, the migrations make it UNLOGGED",
        "table `jobs`: has storage parameter fillfactor=50, the migrations set fillfactor=70",
        "column `profiles.visits`: is missing",
        "column `settings.note`: exists, but no migration adds it",
        "column `ordered.last_error`: is character varying, the migrations make it text",
        "column `jobs.kind`: is nullable, the migrations make it NOT NULL",
        "trigger `jobs_notify`: on `jobs` is missing",
        "function `jobs_enqueue(text, jsonb, timestamptz, smallint, integer, text, text)`: is missing",
        "table `flags`: is missing (kv `flags`)",
        "table `pgstack_mystery`: exists, but no migration creates it",
        "check `profiles.profiles_doc_is_object`: is missing",
        "migration `pgstack_0010_alter_profiles`: is not applied",
        "migration `pgstack_0099_future`: is applied, but no migration file here has that name",
    ] {
        assert!(run.stderr.contains(expected), "{expected}\n{}", run.stderr);
    }
}
