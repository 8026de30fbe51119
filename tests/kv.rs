//! Key-value facility against a real PostgreSQL: every accessor, expiry, transactions, the
//! prefix scan's plan, and concurrent compare-and-set.

use std::time::Duration;

use pgstack::Error;
use pgstack_tests::TestDb;
use pgstack_tests::db::{blobs, flags, settings};
use sea_orm::TransactionTrait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Flag {
    enabled: bool,
    rollout: f64,
}

#[tokio::test]
async fn get_set_delete_exists() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let store = &settings::STORE;

    assert_eq!(store.get::<Flag, _>(db, "f").await.unwrap(), None);
    assert!(!store.exists(db, "f").await.unwrap());

    let flag = Flag {
        enabled: true,
        rollout: 0.25,
    };
    assert_eq!(store.set(db, "f", &flag).await.unwrap(), 1);
    assert_eq!(
        store.get::<Flag, _>(db, "f").await.unwrap(),
        Some(flag.clone())
    );
    assert!(store.exists(db, "f").await.unwrap());

    // Every write bumps the version.
    assert_eq!(store.set(db, "f", &flag).await.unwrap(), 2);
    let entry = store.get_entry::<Flag, _>(db, "f").await.unwrap().unwrap();
    assert_eq!((entry.key.as_str(), entry.version), ("f", 2));
    assert_eq!(entry.expires_at, None);

    // Values of any serde shape, including bare strings and numbers.
    store.set(db, "theme", "dark").await.unwrap();
    store.set(db, "limit", &10_485_760u64).await.unwrap();
    assert_eq!(
        store
            .get::<String, _>(db, "theme")
            .await
            .unwrap()
            .as_deref(),
        Some("dark")
    );
    assert_eq!(
        store.get::<u64, _>(db, "limit").await.unwrap(),
        Some(10_485_760)
    );

    // Reading with the wrong type is a decode error that names the facility.
    let err = store.get::<Flag, _>(db, "theme").await.unwrap_err();
    assert!(matches!(err, Error::Json { .. }), "{err}");
    assert!(err.to_string().contains("settings"), "{err}");

    assert!(store.delete(db, "f").await.unwrap());
    assert!(!store.delete(db, "f").await.unwrap());
    assert_eq!(store.get::<Flag, _>(db, "f").await.unwrap(), None);

    // Keys are validated before any SQL runs.
    let err = store.set(db, "", "x").await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    let err = store.set(db, "a\0b", "x").await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
}

#[tokio::test]
async fn set_if_absent_and_compare_and_set() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let store = &settings::STORE;

    assert_eq!(
        store.set_if_absent(db, "k", "first").await.unwrap(),
        Some(1)
    );
    assert_eq!(store.set_if_absent(db, "k", "second").await.unwrap(), None);
    assert_eq!(
        store.get::<String, _>(db, "k").await.unwrap().as_deref(),
        Some("first")
    );

    assert_eq!(store.compare_and_set(db, "k", 1, "third").await.unwrap(), 2);
    match store.compare_and_set(db, "k", 1, "stale").await {
        Err(Error::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (1, Some(2))),
        other => panic!("expected a conflict, got {other:?}"),
    }
    match store.compare_and_set(db, "missing", 1, "x").await {
        Err(Error::Conflict { actual, .. }) => assert_eq!(actual, None),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store.get::<String, _>(db, "k").await.unwrap().as_deref(),
        Some("third")
    );
}

#[tokio::test]
async fn concurrent_compare_and_set_has_exactly_one_winner() {
    let t = TestDb::migrated().await;
    settings::STORE.set(&t.conn, "counter", &0).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let db = t.conn.clone();
        tasks.push(tokio::spawn(async move {
            settings::STORE.compare_and_set(&db, "counter", 1, &i).await
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(version) => winners.push((i, version)),
            Err(Error::Conflict { actual, .. }) => {
                assert_eq!(actual, Some(2));
                conflicts += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one CAS wins: {winners:?}");
    assert_eq!(conflicts, 15);
    let (winner, version) = winners[0];
    assert_eq!(version, 2);
    assert_eq!(
        settings::STORE
            .get::<usize, _>(&t.conn, "counter")
            .await
            .unwrap(),
        Some(winner)
    );
}

#[tokio::test]
async fn get_many_and_set_many_are_one_statement_each() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let store = &settings::STORE;

    store
        .set_many(db, &[("b", 2), ("a", 1), ("c", 3), ("a", 10)])
        .await
        .unwrap();
    let values: Vec<Option<i32>> = store
        .get_many(db, &["c", "missing", "a", "b"])
        .await
        .unwrap();
    // Input order is kept; a duplicated key keeps its last value.
    assert_eq!(values, vec![Some(3), None, Some(10), Some(2)]);

    // set_many on existing keys bumps versions.
    store.set_many(db, &[("a", 11)]).await.unwrap();
    assert_eq!(
        store
            .get_entry::<i32, _>(db, "a")
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );

    // An empty batch is a no-op.
    store.set_many::<&str, i32, _>(db, &[]).await.unwrap();
    assert!(store.get_many::<i32, _>(db, &[]).await.unwrap().is_empty());

    // A batch inside a rolled-back transaction leaves nothing.
    let txn = db.begin().await.unwrap();
    store
        .set_many(&txn, &[("x", 1), ("y", 2), ("z", 3)])
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(
        store
            .get_many::<i32, _>(db, &["x", "y", "z"])
            .await
            .unwrap(),
        vec![None, None, None]
    );
}

#[tokio::test]
async fn concurrent_set_many_on_overlapping_keys_does_not_deadlock() {
    let t = TestDb::migrated().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let db = t.conn.clone();
        tasks.push(tokio::spawn(async move {
            // Each batch lists the same keys in a different order.
            let mut keys: Vec<String> = (0..50).map(|k| format!("key{k:02}")).collect();
            keys.rotate_left(i * 7);
            if i % 2 == 1 {
                keys.reverse();
            }
            for round in 0..10 {
                let entries: Vec<(String, usize)> =
                    keys.iter().map(|k| (k.clone(), round)).collect();
                let txn = db.begin().await.unwrap();
                settings::STORE.set_many(&txn, &entries).await.unwrap();
                txn.commit().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.expect("no batch fails with a deadlock");
    }
    let entry = settings::STORE
        .get_entry::<usize, _>(&t.conn, "key00")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.version, 80);
}

#[tokio::test]
async fn prefix_scan_pages_with_a_cursor() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let store = &settings::STORE;
    let entries: Vec<(String, i32)> = (0..25)
        .map(|i| (format!("user:{i:03}"), i))
        .chain([("user;".to_string(), -1), ("usea".to_string(), -2)])
        .chain([("user:é".to_string(), 99), ("v".to_string(), -3)])
        .collect();
    store.set_many(db, &entries).await.unwrap();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .scan_prefix::<i32, _>(db, "user:", cursor.as_deref(), 10)
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.entries.iter().map(|e| e.key.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> = (0..25).map(|i| format!("user:{i:03}")).collect();
    expected.push("user:é".to_string());
    assert_eq!(
        seen, expected,
        "keys in byte order, only those with the prefix"
    );

    // The empty prefix scans everything.
    let all = store
        .scan_prefix::<i32, _>(db, "", None, 100)
        .await
        .unwrap();
    assert_eq!(all.entries.len(), entries.len());
    assert!(all.next_cursor.is_none());

    let err = store
        .scan_prefix::<i32, _>(db, "user:", None, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
}

#[tokio::test]
async fn prefix_scan_is_served_by_the_primary_key() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let entries: Vec<(String, i32)> = (0..5000).map(|i| (format!("k{i:05}:x"), i)).collect();
    settings::STORE.set_many(db, &entries).await.unwrap();
    t.exec("ANALYZE settings").await;
    let plan = settings::STORE
        .explain_scan_prefix(db, "k012")
        .await
        .unwrap();
    assert!(
        plan.contains("Index Scan using settings_pkey"),
        "the prefix scan must use the primary key:\n{plan}"
    );
    assert!(plan.contains("key >= "), "{plan}");
    assert!(plan.contains("key < "), "{plan}");
    // The seed's `LIKE 'p%'` on a default-collation column cannot: compare on a copy.
    t.exec(
        "CREATE TABLE seed_kv (key varchar(255) PRIMARY KEY, value text);
         INSERT INTO seed_kv SELECT key, value::text FROM settings;
         ANALYZE seed_kv",
    )
    .await;
    let seed_plan = t
        .column("EXPLAIN SELECT key FROM seed_kv WHERE key LIKE 'k012%' ORDER BY key")
        .await
        .join("\n");
    let collation = t
        .column("SELECT datcollate::text FROM pg_database WHERE datname = current_database()")
        .await;
    if collation[0] != "C" && collation[0] != "POSIX" {
        assert!(
            seed_plan.contains("Seq Scan on seed_kv"),
            "LIKE on a {} column is not an index range:\n{seed_plan}",
            collation[0]
        );
    }
    println!("pgstack:\n{plan}\nseed:\n{seed_plan}");
}

#[tokio::test]
async fn expiry_hides_and_sweeps_entries() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let store = &flags::STORE;

    store
        .set_with_ttl(db, "short", &1, Duration::from_millis(200))
        .await
        .unwrap();
    store
        .set_with_ttl(db, "long", &2, Duration::from_secs(3600))
        .await
        .unwrap();
    store.set(db, "forever", &3).await.unwrap();
    let entry = store
        .get_entry::<i32, _>(db, "long")
        .await
        .unwrap()
        .unwrap();
    assert!(entry.expires_at.is_some());
    assert_eq!(store.get::<i32, _>(db, "short").await.unwrap(), Some(1));

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.get::<i32, _>(db, "short").await.unwrap(), None);
    assert!(!store.exists(db, "short").await.unwrap());
    assert_eq!(
        store
            .get_many::<i32, _>(db, &["short", "long", "forever"])
            .await
            .unwrap(),
        vec![None, Some(2), Some(3)]
    );
    // An expired key counts as absent for set_if_absent, and its row is taken over.
    assert_eq!(
        store.set_if_absent(db, "short", &10).await.unwrap(),
        Some(2)
    );
    assert_eq!(store.get::<i32, _>(db, "short").await.unwrap(), Some(10));

    // expire() sets and clears a TTL on a live key.
    assert!(
        store
            .expire(db, "forever", Some(Duration::from_millis(100)))
            .await
            .unwrap()
    );
    assert!(store.expire(db, "long", None).await.unwrap());
    assert!(!store.expire(db, "missing", None).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.get::<i32, _>(db, "forever").await.unwrap(), None);
    assert_eq!(
        store
            .get_entry::<i32, _>(db, "long")
            .await
            .unwrap()
            .unwrap()
            .expires_at,
        None
    );

    // The sweep deletes expired rows only, in bounded batches.
    for i in 0..5 {
        store
            .set_with_ttl(db, &format!("gone{i}"), &i, Duration::from_millis(1))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let total_expired = t
        .column("SELECT count(*)::text FROM flags WHERE expires_at <= now()")
        .await;
    assert_eq!(total_expired, vec!["6"]);
    assert_eq!(store.sweep_expired(db, 4).await.unwrap(), 4);
    assert_eq!(store.sweep_expired(db, 4).await.unwrap(), 2);
    assert_eq!(store.sweep_expired(db, 4).await.unwrap(), 0);
    let left = t.column("SELECT key::text FROM flags ORDER BY key").await;
    assert_eq!(left, vec!["long", "short"]);
}

#[tokio::test]
async fn ttl_needs_expiry_in_the_spec() {
    let t = TestDb::migrated().await;
    let err = settings::STORE
        .set_with_ttl(&t.conn, "k", &1, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("expiry = true"), "{err}");
    let err = flags::STORE
        .set_with_ttl(&t.conn, "k", &1, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
}

#[tokio::test]
async fn writes_join_the_callers_transaction() {
    let t = TestDb::migrated().await;
    let db = &t.conn;

    let txn = db.begin().await.unwrap();
    settings::STORE.set(&txn, "a", &1).await.unwrap();
    blobs::STORE.set(&txn, "b", b"bytes").await.unwrap();
    // Visible inside, not outside, until commit.
    assert_eq!(
        settings::STORE.get::<i32, _>(&txn, "a").await.unwrap(),
        Some(1)
    );
    assert_eq!(settings::STORE.get::<i32, _>(db, "a").await.unwrap(), None);
    txn.rollback().await.unwrap();
    assert_eq!(settings::STORE.get::<i32, _>(db, "a").await.unwrap(), None);
    assert_eq!(blobs::STORE.get(db, "b").await.unwrap(), None);

    let txn = db.begin().await.unwrap();
    settings::STORE.set(&txn, "a", &1).await.unwrap();
    blobs::STORE.set(&txn, "b", b"bytes").await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(
        settings::STORE.get::<i32, _>(db, "a").await.unwrap(),
        Some(1)
    );
    assert_eq!(
        blobs::STORE.get(db, "b").await.unwrap().as_deref(),
        Some(&b"bytes"[..])
    );
}

#[tokio::test]
async fn bytes_store() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let store = &blobs::STORE;
    let payload: Vec<u8> = (0..=255).collect();
    assert_eq!(store.set(db, "all", &payload).await.unwrap(), 1);
    assert_eq!(store.get(db, "all").await.unwrap(), Some(payload.clone()));
    assert_eq!(store.set_if_absent(db, "all", b"x").await.unwrap(), None);
    assert_eq!(store.compare_and_set(db, "all", 1, b"y").await.unwrap(), 2);
    store
        .set_many(db, &[("p:1", b"one".to_vec()), ("p:2", b"two".to_vec())])
        .await
        .unwrap();
    assert_eq!(
        store.get_many(db, &["p:2", "p:3"]).await.unwrap(),
        vec![Some(b"two".to_vec()), None]
    );
    let page = store.scan_prefix(db, "p:", None, 10).await.unwrap();
    assert_eq!(page.entries.len(), 2);
    assert_eq!(page.entries[0].value, b"one");
    assert!(store.delete(db, "all").await.unwrap());
    let column_type = t
        .column("SELECT data_type::text FROM information_schema.columns WHERE table_name = 'blobs' AND column_name = 'value'")
        .await;
    assert_eq!(column_type, vec!["bytea"]);
}
