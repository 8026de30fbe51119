//! Schema changes on tables that hold rows, against PostgreSQL: indexes built concurrently
//! (and a failed build cleaned up), DDL that gives up waiting for a lock after
//! `lock_timeout` and is retried, readers never queued behind it for long.

use std::time::{Duration, Instant};

use pgstack_tests::{TempDir, TestDb, cli, cli_ok};
use sea_orm::{ConnectionTrait, TransactionTrait};

const PROFILES: &str = r#"
[[document]]
name = "profiles"
[document.fields]
email = { path = "email", type = "text" }
"#;

const PROFILES_UNIQUE: &str = r#"
[[document]]
name = "profiles"
[document.fields]
email = { path = "email", type = "text", unique = true }
"#;

fn migrate(dir: &TempDir, db: &TestDb, extra: &[&str]) -> pgstack_tests::CliRun {
    let spec = dir.join("pgstack.toml");
    let mut args = vec!["migrate", "--database-url", &db.url, "--spec"];
    let spec = spec.to_string_lossy().into_owned();
    args.push(&spec);
    args.extend_from_slice(extra);
    cli(&args)
}

#[tokio::test]
async fn a_failed_concurrent_index_build_is_dropped_and_the_migration_runs_again() {
    let dir = TempDir::new("online-unique");
    let db = TestDb::new().await;
    let spec = dir.write_spec(PROFILES);
    cli_ok(&["generate"], &spec);
    assert_eq!(migrate(&dir, &db, &[]).code, 0);
    db.exec(
        r#"INSERT INTO profiles (doc) VALUES ('{"email": "a@x"}'), ('{"email": "a@x"}'), ('{"email": "b@x"}')"#,
    )
    .await;

    // A unique index on a table that holds rows: built concurrently, in a migration of its own.
    std::fs::write(&spec, PROFILES_UNIQUE).unwrap();
    let run = cli_ok(&["generate"], &spec);
    assert!(
        run.stdout
            .contains("new migration pgstack_0002_alter_profiles:"),
        "{}",
        run.stdout
    );
    // The duplicate makes the build fail: the error names the migration and the statement,
    // the INVALID index it left is dropped, the migration is not recorded.
    let run = migrate(&dir, &db, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("pgstack_0002_alter_profiles")
            && run.stderr.contains("CREATE UNIQUE INDEX CONCURRENTLY"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("23505"), "{}", run.stderr);
    assert_eq!(
        db.column("SELECT count(*)::text FROM pg_index WHERE NOT indisvalid")
            .await,
        ["0"],
        "no INVALID index is left behind"
    );
    assert_eq!(
        db.column("SELECT count(*)::text FROM seaql_migrations WHERE version = 'pgstack_0002_alter_profiles'")
            .await,
        ["0"]
    );
    // Fixed, the same migration applies.
    db.exec(
        r#"DELETE FROM profiles WHERE id = (SELECT max(id) FROM profiles WHERE email = 'a@x')"#,
    )
    .await;
    let run = migrate(&dir, &db, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.trim(), "applied pgstack_0002_alter_profiles");
    assert_eq!(
        db.column(
            "SELECT indisunique::text || ' ' || indisvalid::text FROM pg_index \
             WHERE indexrelid = 'profiles_email_key'::regclass"
        )
        .await,
        ["true true"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ddl_behind_a_long_transaction_gives_up_after_lock_timeout_and_is_retried() {
    let dir = TempDir::new("online-lock-timeout");
    let db = TestDb::new().await;
    let spec = dir.write_spec(PROFILES);
    cli_ok(&["generate"], &spec);
    assert_eq!(migrate(&dir, &db, &[]).code, 0);
    db.exec(r#"INSERT INTO profiles (doc) VALUES ('{"email": "a@x", "name": "A"}')"#)
        .await;
    // A new field: ADD COLUMN takes ACCESS EXCLUSIVE (on this small table, briefly).
    std::fs::write(
        &spec,
        format!("{PROFILES}name = {{ path = \"name\", type = \"text\" }}\n"),
    )
    .unwrap();
    cli_ok(&["generate", "--allow-blocking"], &spec);

    // A long transaction reads the table: it holds ACCESS SHARE until it ends.
    let long = db.conn.begin().await.unwrap();
    long.execute_unprepared("SELECT count(*) FROM profiles")
        .await
        .unwrap();
    // A reader keeps querying the table throughout, timing each query.
    let reader_db = pgstack_tests::connect(&db.url, 1).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut longest, mut reads) = (Duration::ZERO, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                reader_db
                    .execute_unprepared("SELECT email FROM profiles WHERE id = 1")
                    .await
                    .unwrap();
                longest = longest.max(started.elapsed());
                reads += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (longest, reads)
        })
    };
    let url = db.url.clone();
    let spec_path = spec.to_string_lossy().into_owned();
    let migration = tokio::task::spawn_blocking(move || {
        cli(&[
            "migrate",
            "--database-url",
            &url,
            "--spec",
            &spec_path,
            "--lock-timeout",
            "200ms",
            "--lock-retries",
            "10",
        ])
    });
    // The DDL waits 200 ms per attempt, then backs off; the long transaction ends after 1.5 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    long.commit().await.unwrap();
    let run = migration.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (longest, reads) = reader.await.unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("waited for a lock and tried again"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("applied pgstack_0002"),
        "{}",
        run.stdout
    );
    // Queued behind a waiting ALTER TABLE, a read waits at most about lock_timeout.
    assert!(reads > 20, "the reader ran throughout ({reads} reads)");
    assert!(
        longest < Duration::from_secs(1),
        "the longest read took {longest:?}"
    );
    assert_eq!(db.column("SELECT name FROM profiles").await, ["A"]);
}

#[tokio::test]
async fn verify_at_start_up_names_the_missing_migrations_and_tables() {
    // An empty database: nothing applied.
    let empty = TestDb::new().await;
    let error = pgstack_tests::db::verify(&empty.conn).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("the database is behind this build:")
            && message.contains("run `pgstack-gen migrate`"),
        "{message}"
    );
    let pgstack::Error::Unverified {
        missing_migrations,
        missing_tables,
    } = error
    else {
        panic!("{message}")
    };
    assert_eq!(missing_migrations, pgstack_tests::db::MIGRATIONS);
    assert_eq!(missing_tables.len(), pgstack_tests::db::TABLES.len());

    // Migrated: nothing to say.
    let t = TestDb::migrated().await;
    pgstack_tests::db::verify(&t.conn).await.unwrap();
    // A migration forgotten and a table gone: exactly those are named.
    let last = pgstack_tests::db::MIGRATIONS[pgstack_tests::db::MIGRATIONS.len() - 1];
    t.exec(&format!(
        "DELETE FROM seaql_migrations WHERE version = '{last}'; DROP TABLE settings"
    ))
    .await;
    match pgstack_tests::db::verify(&t.conn).await {
        Err(pgstack::Error::Unverified {
            missing_migrations,
            missing_tables,
        }) => {
            assert_eq!(missing_migrations, [last]);
            assert_eq!(missing_tables, ["public.settings"]);
        }
        other => panic!("{other:?}"),
    }
}
