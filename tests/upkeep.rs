//! The maintenance runner (`pgstack::upkeep`, the generated `db::upkeep()`) against a real
//! PostgreSQL: expired rows, idle rate-limit keys and a cache's size bound are kept without the
//! application calling any sweep, and several runners at once split the work.

use std::time::{Duration, Instant};

use pgstack::cache::Expiry;
use pgstack_tests::TestDb;
use pgstack_tests::db::{self, blobs, fast_gcra, flags, pages};

async fn rows(t: &TestDb, table: &str) -> usize {
    t.column(&format!("SELECT count(*)::text FROM {table}"))
        .await[0]
        .parse()
        .unwrap()
}

/// Waits until `table` holds `want` rows or fewer, failing after 20 seconds.
async fn until_at_most(t: &TestDb, table: &str, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = rows(t, table).await;
        if n <= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{table} still holds {n} rows (want at most {want})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_rows_disappear_without_any_sweep_call() {
    let t = TestDb::migrated().await;
    let short = Duration::from_millis(300);
    for n in 0..300 {
        let key = format!("k{n}");
        flags::STORE
            .set_with_ttl(&t.conn, &key, &n, short)
            .await
            .unwrap();
        blobs::STORE
            .set_with_ttl(&t.conn, &key, b"x", short)
            .await
            .unwrap();
        fast_gcra::LIMITER.check(&t.conn, &key).await.unwrap();
    }
    for n in 0..40 {
        pages::CACHE
            .set_with(&t.conn, &format!("k{n}"), &n, Expiry::After(short))
            .await
            .unwrap();
    }
    // Kept: no expiry.
    flags::STORE.set(&t.conn, "forever", &1).await.unwrap();
    pages::CACHE
        .set_with(&t.conn, "forever", &1, Expiry::Never)
        .await
        .unwrap();

    // Small batches, so each task takes several transactions.
    let runner = db::upkeep()
        .interval(Duration::from_millis(100))
        .batch(64)
        .start(&t.conn)
        .unwrap();
    until_at_most(&t, "flags", 1).await;
    until_at_most(&t, "blobs", 0).await;
    until_at_most(&t, "pages", 1).await;
    // A gcra key is at "no state" once its burst has refilled (500ms here).
    until_at_most(&t, "fast_gcra", 0).await;
    runner.shutdown().await;

    assert_eq!(
        flags::STORE
            .get::<i32, _>(&t.conn, "forever")
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        pages::CACHE
            .get::<i32, _>(&t.conn, "forever")
            .await
            .unwrap(),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_keeps_a_cache_within_max_entries() {
    let t = TestDb::migrated().await;
    // Past the bound of 50, written around the accessors (which evict now and then).
    t.exec(
        "INSERT INTO pages (key, value, created_at) \
         SELECT 'k' || lpad(n::text, 3, '0'), to_jsonb(n), now() + n * interval '1 ms' \
         FROM generate_series(0, 399) AS n",
    )
    .await;
    let report = db::upkeep().run_once(&t.conn).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(rows(&t, "pages").await <= 50, "{report:?}");
    assert!(report.rows("pages", "evict") > 0, "{report:?}");
    // The newest entries stay.
    assert_eq!(
        pages::CACHE.get::<i32, _>(&t.conn, "k399").await.unwrap(),
        Some(399)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runners_split_the_work_and_never_fail() {
    let t = TestDb::migrated().await;
    let short = Duration::from_millis(50);
    let batch: Vec<(String, i32)> = (0..5000).map(|n| (format!("k{n}"), n)).collect();
    for chunk in batch.chunks(1000) {
        flags::STORE
            .set_many_with_ttl(&t.conn, chunk, short)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let upkeep = db::upkeep().batch(100);
    let passes: Vec<_> = (0..4)
        .map(|_| {
            let (upkeep, db) = (upkeep.clone(), t.conn.clone());
            tokio::spawn(async move { upkeep.run_once(&db).await })
        })
        .collect();
    let mut swept = 0;
    for pass in passes {
        let report = pass.await.unwrap().unwrap();
        assert!(report.failed.is_empty(), "{report:?}");
        swept += report.rows("flags", "expired");
    }
    // Every expired key deleted exactly once between them.
    assert_eq!(swept, 5000);
    assert_eq!(rows(&t, "flags").await, 0);
}

#[tokio::test]
async fn the_generated_list_holds_the_spec_s_upkeep_and_an_empty_runner_is_refused() {
    let tasks = db::upkeep().tasks();
    for expected in [
        ("cache", "pages", "expired"),
        ("cache", "pages", "evict"),
        ("kv", "flags", "expired"),
        ("kv", "blobs", "expired"),
        ("rate_limit", "fast_gcra", "idle"),
        ("queue", "archived", "partitions"),
    ] {
        assert!(tasks.contains(&expected), "{expected:?} in {tasks:?}");
    }
    // `settings` has no expiry; `jobs` no archive.
    assert!(
        !tasks
            .iter()
            .any(|(_, table, _)| *table == "settings" || *table == "jobs")
    );

    let t = TestDb::new().await;
    let err = pgstack::upkeep::Upkeep::new().start(&t.conn).err().unwrap();
    assert!(err.to_string().contains("no upkeep tasks"), "{err}");
}
