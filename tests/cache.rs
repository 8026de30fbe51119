//! Cache facility against a real PostgreSQL: TTLs, every write mode, prefix deletes, the size
//! bound, stampede protection, coalesced reads, partitions and UNLOGGED behaviour.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pgstack::Error;
use pgstack::cache::{Cached, Compute, Expiry};
use pgstack_tests::TestDb;
use pgstack_tests::db::{blob_cache, fragments, pages};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, pgstack::Cached)]
#[pgstack(cache = "pages", key = "path", ttl = "10m", prefix = "page:")]
struct Page {
    path: String,
    html: String,
}

#[tokio::test]
async fn ttl_expiry_and_write_modes() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let cache = &pages::CACHE;

    cache
        .set_with(db, "short", &1, Expiry::After(Duration::from_millis(200)))
        .await
        .unwrap();
    cache
        .set_with(db, "forever", &2, Expiry::Never)
        .await
        .unwrap();
    cache.set(db, "default", &3).await.unwrap();
    assert_eq!(cache.get::<i32, _>(db, "short").await.unwrap(), Some(1));
    let expiries = t
        .column("SELECT key || ':' || coalesce((expires_at - now() > interval '4 minutes')::text, 'never') FROM pages ORDER BY key")
        .await;
    assert_eq!(
        expiries,
        ["default:true", "forever:never", "short:false"],
        "the spec's default_ttl is 5m"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cache.get::<i32, _>(db, "short").await.unwrap(),
        None,
        "expired entries are misses"
    );
    assert_eq!(
        cache
            .get_many::<i32, _>(db, &["short", "forever", "default", "none"])
            .await
            .unwrap(),
        [None, Some(2), Some(3), None]
    );

    // set_if_absent treats an expired entry as absent; replace only writes over a live one.
    assert!(
        cache
            .set_if_absent(db, "short", &10, Expiry::Default)
            .await
            .unwrap()
    );
    assert!(
        !cache
            .set_if_absent(db, "short", &11, Expiry::Default)
            .await
            .unwrap()
    );
    assert!(
        cache
            .replace(db, "short", &12, Expiry::Default)
            .await
            .unwrap()
    );
    assert!(
        !cache
            .replace(db, "missing", &13, Expiry::Default)
            .await
            .unwrap()
    );
    assert_eq!(cache.get::<i32, _>(db, "short").await.unwrap(), Some(12));
    assert_eq!(cache.get::<i32, _>(db, "missing").await.unwrap(), None);

    // touch moves the expiry of a live entry.
    assert!(
        cache
            .touch(db, "forever", Expiry::After(Duration::from_millis(100)))
            .await
            .unwrap()
    );
    assert!(!cache.touch(db, "missing", Expiry::Never).await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cache.get::<i32, _>(db, "forever").await.unwrap(), None);

    assert!(cache.delete(db, "default").await.unwrap());
    assert!(!cache.delete(db, "default").await.unwrap());

    // The sweep removes expired rows only.
    cache
        .set_with(db, "gone", &0, Expiry::After(Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        cache.sweep_expired(db, 100).await.unwrap(),
        2,
        "`forever` and `gone`"
    );
    assert_eq!(
        t.column("SELECT key FROM pages ORDER BY key").await,
        ["short"]
    );

    let stats = cache.stats();
    assert!(stats.hits >= 5 && stats.misses >= 4, "{stats:?}");
}

#[tokio::test]
async fn atomic_increments() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                pages::CACHE
                    .incr(&db, "hits", 1, Expiry::Default)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        pages::CACHE.get::<i64, _>(db, "hits").await.unwrap(),
        Some(200)
    );
    assert_eq!(
        pages::CACHE
            .incr(db, "hits", -50, Expiry::Default)
            .await
            .unwrap(),
        150
    );
    pages::CACHE.set(db, "text", &"abc").await.unwrap();
    let err = pages::CACHE
        .incr(db, "text", 1, Expiry::Default)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
    // Byte caches count in decimal text, as Redis does.
    assert_eq!(
        blob_cache::CACHE
            .incr(db, "n", 5, Expiry::Never)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        blob_cache::CACHE
            .incr(db, "n", 2, Expiry::Never)
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        blob_cache::CACHE
            .get_bytes(db, "n")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"7"[..])
    );
}

#[tokio::test]
async fn delete_by_prefix_is_a_key_range() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let entries: Vec<(String, i32)> = (0..300)
        .map(|i| (format!("user:{i}:profile"), i))
        .chain([
            ("user;".to_string(), -1),
            ("users".to_string(), -2),
            ("user".to_string(), -3),
        ])
        .collect();
    fragments::CACHE
        .set_many(db, &entries, Expiry::Never)
        .await
        .unwrap();
    assert_eq!(
        fragments::CACHE.delete_prefix(db, "user:").await.unwrap(),
        300
    );
    let left = t.column("SELECT key FROM fragments ORDER BY key").await;
    assert_eq!(left, ["user", "user;", "users"]);
    assert_eq!(
        fragments::CACHE.delete_prefix(db, "").await.unwrap(),
        3,
        "the empty prefix is everything"
    );
}

#[tokio::test]
async fn max_entries_evicts_the_oldest_without_counting_each_write() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    // pages: max_entries = 50, checked every 16 writes.
    for i in 0..200 {
        pages::CACHE.set(db, &format!("k{i:03}"), &i).await.unwrap();
        if i % 40 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let count: usize = t.column("SELECT count(*)::text FROM pages").await[0]
        .parse()
        .unwrap();
    assert!(
        (50..=66).contains(&count),
        "within max_entries plus one check interval: {count}"
    );
    assert!(pages::CACHE.evict(db).await.unwrap() <= 16);
    assert_eq!(t.column("SELECT count(*)::text FROM pages").await, ["50"]);
    // The survivors are the newest writes.
    assert_eq!(t.column("SELECT min(key) FROM pages").await, ["k150"]);
    assert!(pages::CACHE.stats().evicted >= 150);
}

#[tokio::test]
async fn fifty_concurrent_get_or_compute_run_the_computation_once() {
    let t = TestDb::migrated().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (db, runs) = (t.conn.clone(), runs.clone());
        tasks.push(tokio::spawn(async move {
            pages::CACHE
                .get_or_compute(&db, "expensive", Compute::default(), || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, std::io::Error>("computed".to_string())
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "computed");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "one computation for fifty callers"
    );
    // (The counters are per process and shared with the other tests running in parallel.)
    let stats = pages::CACHE.stats();
    assert!(stats.computes >= 1 && stats.waits >= 40, "{stats:?}");
}

#[tokio::test]
async fn stale_values_are_served_while_one_caller_recomputes() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    pages::CACHE
        .set_with(
            db,
            "report",
            &"old",
            Expiry::After(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let slow = {
        let (db, runs) = (db.clone(), runs.clone());
        tokio::spawn(async move {
            pages::CACHE
                .get_or_compute(&db, "report", Compute::default(), || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok::<_, std::io::Error>("new".to_string())
                })
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let meanwhile: String = pages::CACHE
        .get_or_compute(db, "report", Compute::default(), || async {
            Ok::<_, std::io::Error>("other".to_string())
        })
        .await
        .unwrap();
    assert_eq!(
        meanwhile, "old",
        "the stale value while the computation runs"
    );
    assert_eq!(slow.await.unwrap(), "new");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        pages::CACHE
            .get::<String, _>(db, "report")
            .await
            .unwrap()
            .as_deref(),
        Some("new")
    );

    // A failed computation stores nothing and lets the next caller try at once.
    let err = pages::CACHE
        .get_or_compute(db, "broken", Compute::default(), || async {
            Err::<String, _>(std::io::Error::other("backend down"))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Compute { .. }), "{err}");
    assert!(err.to_string().contains("backend down"), "{err}");
    let second: String = pages::CACHE
        .get_or_compute(db, "broken", Compute::default(), || async {
            Ok::<_, std::io::Error>("fine".to_string())
        })
        .await
        .unwrap();
    assert_eq!(second, "fine");
}

#[tokio::test]
async fn derived_cached_types() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let page = Page {
        path: "/about".into(),
        html: "<p>about</p>".into(),
    };
    page.store(db).await.unwrap();
    assert_eq!(page.cache_key(), "page:/about");
    assert_eq!(Page::load(db, "/about").await.unwrap(), Some(page.clone()));
    // The ttl attribute (10m) overrides the cache's default (5m).
    let ttl = t
        .column("SELECT (expires_at - now() > interval '9 minutes')::text FROM pages WHERE key = 'page:/about'")
        .await;
    assert_eq!(ttl, ["true"]);
    let computed = Page::load_or_compute(db, "/new", || async {
        Ok::<_, std::io::Error>(Page {
            path: "/new".into(),
            html: "fresh".into(),
        })
    })
    .await
    .unwrap();
    assert_eq!(computed.html, "fresh");
    assert!(Page::forget(db, "/about").await.unwrap());
    assert_eq!(Page::load(db, "/about").await.unwrap(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn a_reader_coalesces_concurrent_gets() {
    let t = TestDb::migrated().await;
    let entries: Vec<(String, String)> = (0..100)
        .map(|i| (format!("f{i}"), format!("v{i}")))
        .collect();
    fragments::CACHE
        .set_many(&t.conn, &entries, Expiry::Never)
        .await
        .unwrap();
    let reader = fragments::CACHE.reader(&t.conn, 2);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let reader = reader.clone();
        tasks.push(tokio::spawn(async move {
            (i, reader.get::<String>(&format!("f{}", i % 120)).await)
        }));
    }
    for task in tasks {
        let (i, got) = task.await.unwrap();
        let expected = (i % 120 < 100).then(|| format!("v{}", i % 120));
        assert_eq!(got.unwrap(), expected, "request {i}");
    }
    assert!(fragments::CACHE.stats().hits >= 160);
}

#[tokio::test]
async fn partitions_and_persistence_follow_the_spec() {
    let t = TestDb::migrated().await;
    let persistence = t
        .column(
            "SELECT relname || ':' || relpersistence::text || ':' || relkind::text FROM pg_class
             WHERE relname IN ('pages', 'fragments', 'fragments_p0', 'fragments_p3', 'blob_cache')
             ORDER BY relname",
        )
        .await;
    assert_eq!(
        persistence,
        [
            "blob_cache:p:r",   // durability = "logged"
            "fragments:p:p",    // the partitioned parent holds no data
            "fragments_p0:u:r", // each partition is UNLOGGED itself
            "fragments_p3:u:r",
            "pages:u:r",
        ]
    );
    // Writes stay HOT: no index covers value or expires_at.
    let indexes = t
        .column("SELECT indexdef FROM pg_indexes WHERE tablename = 'pages' ORDER BY indexname")
        .await;
    assert_eq!(indexes.len(), 2, "{indexes:?}");
    assert!(
        indexes[0].contains("(created_at)") && indexes[1].contains("(key)"),
        "{indexes:?}"
    );
    // Keys spread over the partitions.
    let entries: Vec<(String, i32)> = (0..400).map(|i| (format!("k{i}"), i)).collect();
    fragments::CACHE
        .set_many(&t.conn, &entries, Expiry::Never)
        .await
        .unwrap();
    let spread = t
        .column("SELECT count(DISTINCT tableoid)::text FROM fragments")
        .await;
    assert_eq!(spread, ["4"]);
}

#[tokio::test]
async fn an_emptied_unlogged_table_is_an_empty_cache() {
    // After a crash PostgreSQL resets UNLOGGED tables to empty. Truncating gives the same state
    // without stopping a server other tests share.
    let t = TestDb::migrated().await;
    let db = &t.conn;
    pages::CACHE.set(db, "a", &1).await.unwrap();
    fragments::CACHE.set(db, "b", &2).await.unwrap();
    t.exec("TRUNCATE pages, fragments").await;
    assert_eq!(pages::CACHE.get::<i32, _>(db, "a").await.unwrap(), None);
    assert_eq!(fragments::CACHE.get::<i32, _>(db, "b").await.unwrap(), None);
    let value: i32 = pages::CACHE
        .get_or_compute(db, "a", Compute::default(), || async {
            Ok::<_, std::io::Error>(7)
        })
        .await
        .unwrap();
    assert_eq!(value, 7);
    assert_eq!(
        pages::CACHE
            .incr(db, "counter", 1, Expiry::Default)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn byte_caches_and_kind_mismatches() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    blob_cache::CACHE
        .set_bytes(db, "img", &[1, 2, 3], Expiry::Never)
        .await
        .unwrap();
    assert_eq!(
        blob_cache::CACHE.get_bytes(db, "img").await.unwrap(),
        Some(vec![1, 2, 3])
    );
    assert_eq!(
        blob_cache::CACHE
            .get_many_bytes(db, &["img", "none"])
            .await
            .unwrap(),
        [Some(vec![1, 2, 3]), None]
    );
    let err = blob_cache::CACHE
        .get::<i32, _>(db, "img")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("use the *_bytes methods"), "{err}");
    let err = pages::CACHE.get_bytes(db, "x").await.unwrap_err();
    assert!(err.to_string().contains("stores jsonb values"), "{err}");
    let err = pages::CACHE
        .set_with(db, "x", &1, Expiry::After(Duration::ZERO))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
}

/// Key lists sit behind a sub-select so that PostgreSQL keeps the cached generic plan: given
/// the array itself it would size each batch exactly and re-plan every execution.
#[tokio::test]
async fn batched_reads_keep_a_generic_plan() {
    use sea_orm::TransactionTrait;
    let t = TestDb::migrated().await;
    // 40 entries: under the cache's max_entries (50).
    for n in 0..40 {
        pages::CACHE
            .set(&t.conn, &format!("k{n}"), &n)
            .await
            .unwrap();
    }
    t.exec("ANALYZE pages").await;
    // One connection (a transaction) so its prepared statements can be read back.
    let txn = t.conn.begin().await.unwrap();
    for round in 0..8 {
        let keys: Vec<String> = (0..=round).map(|n| format!("k{}", n * 5)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let found = pages::CACHE.get_many::<i32, _>(&txn, &keys).await.unwrap();
        assert!(found.iter().all(Option::is_some));
    }
    let (generic, custom) =
        pgstack_tests::plan_counts(&txn, "= ANY((SELECT $1::text[])::text[])").await;
    assert!(
        generic >= 3 && custom <= 5,
        "generic {generic}, custom {custom}"
    );
    txn.rollback().await.unwrap();
}
