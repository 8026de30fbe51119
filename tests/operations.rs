//! Tracing and metrics from a real run: every accessor's statement in a `pgstack` span and in
//! `pgstack_statements_total`; worker outcomes, queue depth, cache hits and misses, rate-limit
//! decisions and vector searches in the Prometheus text; worker errors logged at the level
//! they deserve, and a worker refusing to start on a database without its table.
//!
//! One test: the metrics recorder and the log subscriber are process-wide.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgstack::queue::{Delivery, Job, JobError, Worker};
use pgstack::vector::{Embedder, HashEmbedder, Record, Search};
use pgstack_tests::TestDb;
use pgstack_tests::db::{articles, fast_gcra, jobs, pages, settings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "jobs", kind = "ops.task")]
struct Task {
    fail: bool,
}

/// Log lines, kept in memory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the first metric line starting with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tracing_and_metrics_show_what_happened() {
    let logs = Logs::default();
    tracing_subscriber::fmt()
        .with_env_filter("pgstack=debug")
        .with_writer(logs.clone())
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .init();
    let prometheus = pgstack::metrics::prometheus::install().expect("the first recorder");

    let t = TestDb::migrated().await;
    let db = &t.conn;
    settings::STORE.set(db, "k", &1).await.unwrap();
    let _: Option<i64> = settings::STORE.get(db, "k").await.unwrap();
    pages::CACHE.set(db, "/", &"home").await.unwrap();
    let _: Option<String> = pages::CACHE.get(db, "/").await.unwrap();
    let _: Option<String> = pages::CACHE.get(db, "/missing").await.unwrap();
    for _ in 0..6 {
        fast_gcra::LIMITER.check(db, "ops").await.unwrap();
    }
    let e = HashEmbedder::new(32);
    let v = e.embed_one("metrics").await.unwrap();
    articles::COLLECTION
        .upsert(db, &Record::new(1).embedding(v.clone()).field("title", "t"))
        .await
        .unwrap();
    articles::COLLECTION
        .search(db, &Search::new(v).k(3))
        .await
        .unwrap();
    pgstack::metrics::sample_cache(db, &pages::CACHE)
        .await
        .unwrap();

    Task { fail: false }.enqueue(db).await.unwrap();
    Task { fail: true }.enqueue(db).await.unwrap();
    let worker = Worker::new(db, &jobs::QUEUE)
        .handle(|d: Delivery<Task>| async move {
            if d.job.fail {
                return Err::<(), JobError>("it fails".into());
            }
            Ok(())
        })
        .poll_interval(Duration::from_millis(50))
        .metrics_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    wait_until("a completion and a dead letter", async || {
        let s = worker.stats();
        s.completed == 1 && s.dead == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.shutdown(Duration::from_secs(5)).await;

    let text = prometheus.render();
    let has =
        |prefix: &str| metric(&text, prefix).unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"));
    assert!(
        has(
            "pgstack_statements_total{facility=\"kv\",table=\"settings\",op=\"get\",outcome=\"ok\"}"
        ) >= 1.0
    );
    assert!(text.contains("pgstack_statement_seconds"), "{text}");
    assert_eq!(has("pgstack_cache_hits_total{cache=\"pages\"}"), 1.0);
    assert_eq!(has("pgstack_cache_misses_total{cache=\"pages\"}"), 1.0);
    assert_eq!(has("pgstack_cache_max_entries{cache=\"pages\"}"), 50.0);
    assert!(
        text.contains("pgstack_cache_entries{cache=\"pages\"}"),
        "{text}"
    );
    assert_eq!(
        has("pgstack_rate_limit_checks_total{limiter=\"fast_gcra\",decision=\"allowed\"}"),
        5.0
    );
    assert_eq!(
        has("pgstack_rate_limit_checks_total{limiter=\"fast_gcra\",decision=\"denied\"}"),
        1.0
    );
    assert!(text.contains("pgstack_vector_search_seconds"), "{text}");
    assert!(text.contains("pgstack_vector_search_rows"), "{text}");
    assert_eq!(has("pgstack_queue_completed_total{queue=\"jobs\"}"), 1.0);
    assert_eq!(
        has("pgstack_queue_dead_lettered_total{queue=\"jobs\"}"),
        1.0
    );
    assert_eq!(has("pgstack_queue_retried_total{queue=\"jobs\"}"), 2.0);
    assert!(text.contains("pgstack_queue_claim_seconds"), "{text}");
    assert!(text.contains("pgstack_queue_job_seconds"), "{text}");
    assert_eq!(
        has("pgstack_queue_jobs{queue=\"jobs\",state=\"dead\"}"),
        1.0
    );
    assert_eq!(
        has("pgstack_queue_jobs{queue=\"jobs\",state=\"ready\"}"),
        0.0
    );
    assert!(
        text.contains("pgstack_queue_oldest_ready_seconds{queue=\"jobs\"}"),
        "{text}"
    );

    let log = logs.text();
    // One span per statement, with facility, table and operation.
    assert!(
        log.contains("pgstack{facility=\"kv\" table=\"settings\" op=\"get\"}"),
        "{log}"
    );
    assert!(log.contains("pgstack worker: started"), "{log}");
    assert!(
        log.contains("pgstack worker: job failed; it will be retried"),
        "{log}"
    );
    assert!(
        log.contains("WARN") && log.contains("pgstack worker: job dead-lettered"),
        "{log}"
    );
    assert!(log.contains("pgstack worker: stopped"), "{log}");

    // A worker on a database without its table refuses to start, naming the fix.
    let empty = TestDb::new().await;
    let err = Worker::new(&empty.conn, &jobs::QUEUE)
        .handle(|_d: Delivery<Task>| async { Ok(()) })
        .start()
        .await
        .err()
        .expect("no table, no worker");
    let message = err.to_string();
    assert!(
        matches!(err, pgstack::Error::NotMigrated { .. })
            && message.contains("public.jobs")
            && message.contains("pgstack-gen migrate"),
        "{message}"
    );

    // A table that disappears under a running worker: an ERROR, again and again, and the last
    // error in its stats.
    let worker = Worker::new(db, &jobs::QUEUE)
        .handle(|_d: Delivery<Task>| async { Ok(()) })
        .poll_only()
        .poll_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    t.exec("DROP TABLE jobs CASCADE").await;
    wait_until("repeated claim errors", async || worker.stats().errors >= 2).await;
    let stats = worker.shutdown(Duration::from_secs(5)).await;
    assert!(
        stats
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("does not exist")),
        "{stats:?}"
    );
    let log = logs.text();
    let missing = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("run `pgstack-gen migrate`"))
        .count();
    assert!(missing >= 2, "{log}");
}
