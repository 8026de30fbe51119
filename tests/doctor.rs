//! `pgstack-gen doctor` against a real database, each finding provoked: a session idle in a
//! transaction, a bloated table, an unused and an invalid index, a missing table; exit 1 on a
//! critical finding, and `--json` for machines.

use std::time::{Duration, Instant};

use pgstack_tests::db::settings;
use pgstack_tests::{TestDb, cli, connect, fixture_spec};
use sea_orm::{ConnectionTrait, TransactionTrait};

fn doctor(t: &TestDb, extra: &[&str]) -> pgstack_tests::CliRun {
    let spec = fixture_spec().to_string_lossy().into_owned();
    let mut args = vec!["doctor", "--spec", &spec, "--database-url", &t.url];
    args.extend(extra);
    cli(&args)
}

/// Runs the doctor until `check` holds of its output (statistics arrive within a second).
async fn doctor_until(
    t: &TestDb,
    extra: &[&str],
    what: &str,
    check: impl Fn(&pgstack_tests::CliRun) -> bool,
) -> pgstack_tests::CliRun {
    let start = Instant::now();
    loop {
        let run = doctor(t, extra);
        if check(&run) {
            return run;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "doctor never reported {what}:\n{}{}",
            run.stdout,
            run.stderr
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_what_holds_vacuum_back_bloat_and_indexes() {
    let t = TestDb::migrated().await;
    // A healthy, quiet database: nothing critical, exit 0, JSON that parses.
    let run = doctor(&t, &["--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert!(report["tables"].as_array().is_some_and(|t| t.len() > 10));
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["severity"] != "critical"),
        "{}",
        run.stdout
    );
    // Never scanned: the profiles' declared field index.
    assert!(
        run.stdout.contains("\"check\": \"unused_index\"")
            && run.stdout.contains("profiles_country_idx"),
        "{}",
        run.stdout
    );

    // A bloated table: every row of 20,000 deleted, autovacuum off for it.
    t.exec("ALTER TABLE settings SET (autovacuum_enabled = false)")
        .await;
    let rows: Vec<(String, i64)> = (0..20_000).map(|i| (format!("k{i}"), i)).collect();
    for chunk in rows.chunks(10_000) {
        settings::STORE.set_many(&t.conn, chunk).await.unwrap();
    }
    let one = connect(&t.url, 1).await;
    one.execute_unprepared("DELETE FROM settings")
        .await
        .unwrap();
    one.execute_unprepared("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    let run = doctor_until(&t, &["--bloat-min-rows", "1000"], "bloat", |r| {
        r.stdout.contains("bloat") && r.stdout.contains("settings: 20000 dead rows")
    })
    .await;
    assert_eq!(run.code, 1, "100% dead rows is critical: {}", run.stdout);
    assert!(run.stdout.contains("CRITICAL bloat"), "{}", run.stdout);
    t.exec("VACUUM settings").await;

    // A session idle in a transaction.
    let idle = connect(&t.url, 1).await;
    let txn = idle.begin().await.unwrap();
    txn.execute_unprepared("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run = doctor_until(
        &t,
        &["--idle-in-transaction", "1s"],
        "the idle transaction",
        |r| r.stdout.contains("idle_in_transaction"),
    )
    .await;
    assert!(
        run.stdout.contains("warning  idle_in_transaction")
            && run.stdout.contains("pg_terminate_backend"),
        "{}",
        run.stdout
    );
    // Ten times past the limit: critical, exit 1.
    let run = doctor(&t, &["--idle-in-transaction", "100ms"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("CRITICAL idle_in_transaction"),
        "{}",
        run.stdout
    );
    txn.rollback().await.unwrap();

    // An invalid index (what a failed CREATE INDEX CONCURRENTLY leaves).
    t.exec(
        "UPDATE pg_index SET indisvalid = false \
         WHERE indexrelid = 'public.profiles_age_idx'::regclass",
    )
    .await;
    let run = doctor(&t, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("CRITICAL invalid_index") && run.stdout.contains("profiles_age_idx"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn doctor_on_an_unmigrated_database_names_the_missing_tables() {
    let t = TestDb::new().await;
    let run = doctor(&t, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("CRITICAL missing_table") && run.stdout.contains("pgstack-gen migrate"),
        "{}",
        run.stdout
    );
}
