//! Everything through PgBouncer in transaction mode (`.ci/setup-pgbouncer.sh`, 127.0.0.1:6432,
//! `max_prepared_statements` on): every facility's accessors, `pgstack-gen migrate`, a worker
//! draining a backlog (polling, and listening on a direct URL), and 8 clients at once whose
//! every read is compared with what that client wrote, so a call that ran against another
//! client's prepared statement would show as a wrong value or an error.

use std::time::{Duration, Instant};

use pgstack::cache::Expiry;
use pgstack::queue::{Delivery, EnqueueOptions, Worker};
use pgstack::vector::{Embedder, HashEmbedder, Hybrid, Record, Search};
use pgstack_tests::db::{
    articles, fast_gcra, hour_sliding, jobs, notes, pages, profiles, settings,
};
use pgstack_tests::{TestDb, cli, fixture_spec, url_on};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "jobs", kind = "pooled")]
struct Pooled {
    n: usize,
}

#[tokio::test]
async fn every_facility_works_through_the_pooler() {
    let t = TestDb::migrated().await;
    let db = t.through_pooler(4).await;

    // kv
    for i in 0..20 {
        settings::STORE
            .set(&db, &format!("k{i}"), &i)
            .await
            .unwrap();
    }
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let got: Vec<Option<i64>> = settings::STORE.get_many(&db, &refs).await.unwrap();
    assert_eq!(got, (0..20).map(Some).collect::<Vec<_>>());
    let entry = settings::STORE
        .get_entry::<i64, _>(&db, "k3")
        .await
        .unwrap()
        .unwrap();
    let v = settings::STORE
        .compare_and_set(&db, "k3", entry.version, &33)
        .await
        .unwrap();
    assert_eq!(v, entry.version + 1);
    let page = settings::STORE
        .scan_prefix::<i64, _>(&db, "k1", None, 100)
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 11, "k1 and k10..k19");

    // documents
    let doc = profiles::STORE
        .insert(
            &db,
            &json!({"email": "a@example.com", "address": {"country": "NZ"}, "age": 40}),
        )
        .await
        .unwrap();
    let found = profiles::STORE
        .get_by::<Value, _, _>(&db, profiles::fields::EMAIL, "a@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, doc.id);
    profiles::STORE
        .patch_set(&db, doc.id, &["address", "country"], "AU")
        .await
        .unwrap();
    let in_au = profiles::STORE
        .find_by::<Value, _, _>(&db, profiles::fields::COUNTRY, "AU", None, 10)
        .await
        .unwrap();
    assert_eq!(in_au.docs.len(), 1);
    notes::STORE
        .insert(&db, &json!({"tag": "x"}))
        .await
        .unwrap();
    let tagged = notes::STORE
        .find_containing::<Value, _, _>(&db, &json!({"tag": "x"}), None, 10)
        .await
        .unwrap();
    assert_eq!(tagged.docs.len(), 1);

    // cache, including the coalescing reader and get_or_compute
    pages::CACHE.set(&db, "/a", &"A").await.unwrap();
    pages::CACHE
        .set_many(&db, &[("/b", "B"), ("/c", "C")], Expiry::Default)
        .await
        .unwrap();
    let many: Vec<Option<String>> = pages::CACHE
        .get_many(&db, &["/a", "/b", "/c", "/d"])
        .await
        .unwrap();
    assert_eq!(
        many,
        [Some("A".into()), Some("B".into()), Some("C".into()), None]
    );
    let reader = pages::CACHE.reader(&db, 2);
    assert_eq!(
        reader.get::<String>("/b").await.unwrap().as_deref(),
        Some("B")
    );
    let computed: String = pages::CACHE
        .get_or_compute(&db, "/e", Default::default(), || async {
            Ok::<_, std::io::Error>("E".to_string())
        })
        .await
        .unwrap();
    assert_eq!(computed, "E");

    // rate limits, single, batched and through the batcher
    for _ in 0..5 {
        assert!(fast_gcra::LIMITER.check(&db, "u").await.unwrap().allowed);
    }
    assert!(!fast_gcra::LIMITER.check(&db, "u").await.unwrap().allowed);
    let many = hour_sliding::LIMITER
        .check_many(&db, &[("a", 3), ("b", 10)])
        .await
        .unwrap();
    assert!(many.iter().all(|d| d.allowed));
    let batcher = hour_sliding::LIMITER.batcher(&db, 2);
    assert!(!batcher.check("b").await.unwrap().allowed, "b used its 10");

    // queue (the untyped API; the worker has its own tests below)
    let first = jobs::QUEUE
        .enqueue(&db, "k", &json!({"n": 1}), &EnqueueOptions::default())
        .await
        .unwrap();
    let claimed = jobs::QUEUE.claim(&db, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [first.id]);
    assert_eq!(
        jobs::QUEUE
            .complete(&db, &[claimed[0].token()])
            .await
            .unwrap(),
        [first.id]
    );
    assert_eq!(jobs::QUEUE.metrics(&db, 100).await.unwrap().ready, 0);

    // vector: load, search, hybrid (per-statement settings stay inside their statement)
    let e = HashEmbedder::new(32);
    let texts = ["red apples", "green pears", "ripe bananas"];
    let mut records = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        records.push(
            Record::new(i as i64 + 1)
                .embedding(e.embed_one(text).await.unwrap())
                .field("title", *text)
                .field("body", *text),
        );
    }
    articles::COLLECTION
        .upsert_many(&db, &records)
        .await
        .unwrap();
    let q = e.embed_one("green pears").await.unwrap();
    let hits = articles::COLLECTION
        .search(&db, &Search::new(q.clone()).k(1).ef_search(50))
        .await
        .unwrap();
    assert_eq!(hits[0].item.id, json!(2));
    let hybrid = articles::COLLECTION
        .hybrid(&db, &Hybrid::new("bananas", q))
        .await
        .unwrap();
    assert_eq!(hybrid[0].item.id, json!(3));
}

#[test]
fn migrate_runs_through_the_pooler() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let t = runtime.block_on(TestDb::new());
    let url = url_on(&pgstack_tests::pooler_url(), &t.name);
    let spec = fixture_spec().to_string_lossy().into_owned();
    let run = cli(&["migrate", "--spec", &spec, "--database-url", &url]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("applied pgstack_0001_initial"),
        "{}",
        run.stdout
    );
    // Again: nothing to do, through the same pooler.
    let run = cli(&["migrate", "--spec", &spec, "--database-url", &url]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("nothing to apply"), "{}", run.stdout);
    let tables = runtime.block_on(t.column("SELECT count(*)::text FROM seaql_migrations"));
    assert_ne!(tables, ["0"]);
    drop(t);
}

/// Enqueues `n` jobs through `db` and runs `worker` until all are done; returns its stats.
async fn drain(
    db: &sea_orm::DatabaseConnection,
    worker: Worker,
    n: usize,
) -> pgstack::queue::WorkerStats {
    let handle = worker
        .handle(|_job: Delivery<Pooled>| async { Ok(()) })
        .concurrency(8)
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let batch: Vec<Pooled> = (0..n).map(|n| Pooled { n }).collect();
    for chunk in batch.chunks(100) {
        <Pooled as pgstack::queue::Job>::enqueue_many(db, chunk)
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.stats().completed < n as u64 {
        assert!(Instant::now() < deadline, "stuck: {:?}", handle.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.shutdown(Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_drains_a_backlog_through_the_pooler() {
    let t = TestDb::migrated().await;
    let db = t.through_pooler(6).await;
    // Without a direct URL: the worker sees the pooler and polls.
    let stats = drain(&db, Worker::new(&db, &jobs::QUEUE), 500).await;
    assert_eq!((stats.completed, stats.errors), (500, 0), "{stats:?}");
    // With a direct URL for LISTEN: wake-ups, and enqueues through the pooler stay clean.
    let worker = Worker::new(&db, &jobs::QUEUE).listen_url(t.url.clone());
    let stats = drain(&db, worker, 500).await;
    assert_eq!((stats.completed, stats.errors), (500, 0), "{stats:?}");
    // Nothing is left listening on a pooled server connection: further statements are fine.
    for i in 0..50 {
        settings::STORE.set(&db, "after", &i).await.unwrap();
    }
    assert_eq!(jobs::QUEUE.metrics(&db, 1000).await.unwrap().ready, 0);
}

/// 8 clients, each with its own pool through PgBouncer (8 application processes), run a mix
/// of statements with different parameter counts for a few seconds; each checks every answer
/// against what it wrote itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_never_run_against_each_others_statements() {
    let t = TestDb::migrated().await;
    let mut clients = Vec::new();
    for c in 0..8usize {
        let db = t.through_pooler(2).await;
        clients.push(tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(3);
            let mut calls = 0u64;
            let mut round = 0usize;
            while Instant::now() < until {
                round += 1;
                let key = format!("c{c}:{}", round % 7);
                let value = json!({"client": c, "round": round});
                settings::STORE.set(&db, &key, &value).await.unwrap();
                let back: Value = settings::STORE.get(&db, &key).await.unwrap().unwrap();
                assert_eq!(back, value, "client {c} read another value");
                let cache_key = format!("p{c}:{}", round % 5);
                pages::CACHE.set(&db, &cache_key, &value).await.unwrap();
                let many: Vec<Option<Value>> = pages::CACHE
                    .get_many(&db, &[cache_key.as_str(), "absent"])
                    .await
                    .unwrap();
                assert_eq!(many, [Some(value.clone()), None], "client {c}");
                let doc = notes::STORE.insert(&db, &value).await.unwrap();
                let read = notes::STORE
                    .get::<Value, _>(&db, doc.id)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(read.doc, value, "client {c}");
                let decision = hour_sliding::LIMITER
                    .check(&db, &format!("l{c}:{round}"))
                    .await
                    .unwrap();
                assert!(
                    decision.allowed && decision.remaining == 9,
                    "client {c}: {decision:?}"
                );
                let job = jobs::QUEUE
                    .enqueue(&db, &format!("kind{c}"), &value, &EnqueueOptions::default())
                    .await
                    .unwrap();
                assert!(!job.duplicate);
                calls += 8;
            }
            calls
        }));
    }
    let mut calls = 0;
    for client in clients {
        calls += client.await.expect("a client failed: see its panic above");
    }
    assert!(calls > 8 * 8, "only {calls} calls");
    // Every job landed with its own client's kind and payload.
    let mismatched = t
        .column("SELECT count(*)::text FROM jobs WHERE kind <> 'kind' || (payload->>'client')")
        .await;
    assert_eq!(mismatched, ["0"]);
    eprintln!(
        "8 clients through PgBouncer: {calls} calls, no error, every answer the writer's own"
    );
}

/// Backends connected to the test database, other than the one asking.
async fn backends(t: &TestDb) -> usize {
    t.column(
        "SELECT count(*)::text FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await[0]
        .parse()
        .unwrap()
}

/// The connection budget: a worker's listener and a cache reader open connections of their
/// own, so with an application pool of 3 they leave the pool to the application; a rate
/// check right after them does not wait. Counts are read from `pg_stat_activity`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_and_readers_never_take_the_applications_pool() {
    let t = TestDb::migrated().await;
    let mut options = sea_orm::ConnectOptions::new(t.url.clone());
    options
        .max_connections(3)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(2))
        .test_before_acquire(false)
        .sqlx_logging(false);
    let db = sea_orm::Database::connect(options).await.unwrap();
    let before = backends(&t).await;
    let worker = Worker::new(&db, &jobs::QUEUE)
        .handle(|_job: Delivery<Pooled>| async { Ok(()) })
        .start()
        .await
        .unwrap();
    let reader = pages::CACHE.reader(&db, 2);
    pages::CACHE.set(&db, "/", &"home").await.unwrap();
    for _ in 0..10 {
        assert_eq!(
            reader.get::<String>("/").await.unwrap().as_deref(),
            Some("home")
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = backends(&t).await - before;
    // Under load: jobs, 16 concurrent reads and batched checks at once.
    let batch: Vec<Pooled> = (0..300).map(|n| Pooled { n }).collect();
    <Pooled as pgstack::queue::Job>::enqueue_many(&db, &batch)
        .await
        .unwrap();
    let batcher = fast_gcra::LIMITER.batcher(&db, 2);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (reader, batcher) = (reader.clone(), batcher.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                reader.get::<String>("/").await.unwrap();
                batcher.check(&format!("k{i}")).await.unwrap();
            }
        }));
    }
    let mut peak = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        peak = peak.max(backends(&t).await - before);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    // The pool is still the application's: a check gets a connection at once.
    let started = Instant::now();
    assert!(hour_sliding::LIMITER.check(&db, "after").await.is_ok());
    assert!(started.elapsed() < Duration::from_secs(1));
    let stats = worker.shutdown(Duration::from_secs(10)).await;
    assert_eq!(stats.errors, 0, "{stats:?}");
    // Pool (3 at most) + the listener (1) + the reader's own (2).
    assert!(idle <= 6 && peak <= 6, "idle {idle}, peak {peak}");
    eprintln!("connections: idle {idle}, peak under load {peak} (pool 3, listener 1, reader 2)");
}
