//! `pgstack-bench queue`: enqueue, enqueue_batch, claim_complete and enqueue_to_start, for
//! pgstack's queue (generated from `pgstack.toml`, run through the worker runtime) and the seed
//! article's recipe (its table and indexes as written; SELECT ... FOR UPDATE SKIP LOCKED and
//! UPDATE status in a transaction, then UPDATE status = 'completed').

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgstack::queue::{EnqueueOptions, NewJob, Worker};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use serde_json::json;

use crate::db::bench_jobs;
use crate::load::{BoxError, WARMUP, closed_loop, measure, stmt};
use crate::report::Record;

const SEED_SCHEMA: &str = "
CREATE TABLE job_queue (
    id SERIAL PRIMARY KEY,
    payload JSONB NOT NULL,
    status VARCHAR(20) DEFAULT 'pending',
    created_at TIMESTAMP DEFAULT NOW(),
    processed_at TIMESTAMP,
    error_message TEXT,
    retry_count INTEGER DEFAULT 0
);
CREATE INDEX idx_job_queue_status ON job_queue(status);
CREATE INDEX idx_job_queue_created ON job_queue(created_at);
";

const SEED_ENQUEUE: &str =
    "INSERT INTO job_queue (payload, status) VALUES ($1, 'pending') RETURNING id";
const SEED_FETCH: &str = "SELECT id, payload FROM job_queue WHERE status = 'pending'
     ORDER BY created_at ASC LIMIT 1 FOR UPDATE SKIP LOCKED";
const SEED_MARK: &str =
    "UPDATE job_queue SET status = 'processing', processed_at = NOW() WHERE id = $1";
const SEED_COMPLETE: &str = "UPDATE job_queue SET status = 'completed' WHERE id = $1";

fn payload(n: u64) -> serde_json::Value {
    json!({"to": format!("user{n}@example.com"), "subject": "Welcome", "template": "welcome", "n": n})
}

pub async fn run(
    db: &DatabaseConnection,
    seconds: Duration,
    workers: &[usize],
    listen_url: Option<&str>,
) -> Result<(), BoxError> {
    db.execute_unprepared(SEED_SCHEMA).await?;
    let bytes = serde_json::to_vec(&payload(1_000_000))?.len();

    for clients in [1usize, 4] {
        reset(db).await?;
        measure(
            Record::new("queue", "enqueue", "pgstack", clients),
            seconds,
            |_| std::future::ready(Ok(db.clone())),
            |db: &mut DatabaseConnection, n| {
                let db = db.clone();
                async move {
                    bench_jobs::QUEUE
                        .enqueue(&db, "bench", &payload(n), &EnqueueOptions::default())
                        .await?;
                    Ok(())
                }
            },
        )
        .await?
        .with("payload_bytes", bytes)
        .print();
        reset(db).await?;
        measure(
            Record::new("queue", "enqueue", "seed", clients),
            seconds,
            |_| std::future::ready(Ok(db.clone())),
            |db: &mut DatabaseConnection, n| {
                let db = db.clone();
                async move {
                    db.query_one_raw(stmt(SEED_ENQUEUE, vec![payload(n).into()]))
                        .await?;
                    Ok(())
                }
            },
        )
        .await?
        .with("payload_bytes", bytes)
        .print();
    }

    for batch in [100u64, 1000] {
        reset(db).await?;
        let mut statements = closed_loop(
            1,
            WARMUP,
            seconds,
            |_| std::future::ready(Ok(db.clone())),
            move |db: &mut DatabaseConnection, n| {
                let db = db.clone();
                async move {
                    let jobs = (0..batch)
                        .map(|i| NewJob::json("bench", &payload(n * batch + i)))
                        .collect::<Result<Vec<_>, _>>()?;
                    bench_jobs::QUEUE.enqueue_many(&db, &jobs).await?;
                    Ok(())
                }
            },
        )
        .await?;
        Record::new("queue", "enqueue_batch", "pgstack", 1)
            .rate(statements.ops() * batch, seconds)
            .latencies(&mut statements.latencies)
            .with("batch", batch)
            .with("payload_bytes", bytes)
            .print();
    }

    for &w in workers {
        reset(db).await?;
        claim_complete_pgstack(db, w, seconds, listen_url)
            .await?
            .print();
        reset(db).await?;
        claim_complete_seed(db, w, seconds).await?.print();
    }

    reset(db).await?;
    enqueue_to_start_pgstack(db, seconds, listen_url)
        .await?
        .print();
    reset(db).await?;
    enqueue_to_start_seed(db, seconds).await?.print();
    reset(db).await?;
    Ok(())
}

async fn reset(db: &DatabaseConnection) -> Result<(), BoxError> {
    db.execute_unprepared("TRUNCATE bench_jobs, bench_jobs_dead, job_queue RESTART IDENTITY")
        .await?;
    db.execute_unprepared("VACUUM ANALYZE bench_jobs").await?;
    db.execute_unprepared("VACUUM ANALYZE job_queue").await?;
    Ok(())
}

async fn preload_pgstack(db: &DatabaseConnection, jobs: u64) -> Result<(), BoxError> {
    let mut n = 0;
    while n < jobs {
        let chunk = (jobs - n).min(5000);
        let batch = (n..n + chunk)
            .map(|i| NewJob::json("bench", &payload(i)))
            .collect::<Result<Vec<_>, _>>()?;
        bench_jobs::QUEUE.enqueue_many(db, &batch).await?;
        n += chunk;
    }
    db.execute_unprepared("VACUUM ANALYZE bench_jobs").await?;
    Ok(())
}

/// A worker for the bench queue, listening on `listen_url` when one is given.
fn bench_worker(db: &DatabaseConnection, listen_url: Option<&str>) -> Worker {
    let worker = Worker::new(db, &bench_jobs::QUEUE);
    match listen_url {
        Some(url) => worker.listen_url(url),
        None => worker,
    }
}

async fn claim_complete_pgstack(
    db: &DatabaseConnection,
    workers: usize,
    seconds: Duration,
    listen_url: Option<&str>,
) -> Result<Record, BoxError> {
    let backlog = 30_000 * seconds.as_secs() + 20_000;
    preload_pgstack(db, backlog).await?;
    let mut handles = Vec::new();
    for _ in 0..workers {
        handles.push(
            bench_worker(db, listen_url)
                .handle_raw("bench", |_job| async { Ok(()) })
                .start()
                .await?,
        );
    }
    let completed = |handles: &[pgstack::queue::WorkerHandle]| {
        handles.iter().map(|h| h.stats().completed).sum::<u64>()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (c0, t0) = (completed(&handles), Instant::now());
    let mut t1 = t0 + seconds;
    while Instant::now() < t0 + seconds {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if completed(&handles) >= backlog {
            t1 = Instant::now();
            eprintln!("pgstack-bench: the backlog ran out; measuring the shorter window");
            break;
        }
    }
    let c1 = completed(&handles);
    let elapsed = t1.min(Instant::now()) - t0;
    let mut errors = 0;
    for handle in handles {
        errors += handle.shutdown(Duration::from_secs(10)).await.errors;
    }
    Ok(Record::new("queue", "claim_complete", "pgstack", workers)
        .rate(c1 - c0, elapsed)
        .with("jobs", c1 - c0)
        .with("concurrency_per_worker", 16)
        .with("errors", errors))
}

/// The seed's dequeue: BEGIN; SELECT ... FOR UPDATE SKIP LOCKED; UPDATE status; COMMIT.
async fn seed_dequeue(db: &DatabaseConnection) -> Result<Option<i32>, BoxError> {
    let txn = db.begin().await?;
    let row = txn.query_one_raw(stmt(SEED_FETCH, vec![])).await?;
    let Some(row) = row else {
        txn.commit().await?;
        return Ok(None);
    };
    let id: i32 = row.try_get_by_index(0)?;
    let _payload: serde_json::Value = row.try_get_by_index(1)?;
    txn.execute_raw(stmt(SEED_MARK, vec![id.into()])).await?;
    txn.commit().await?;
    Ok(Some(id))
}

async fn seed_complete(db: &DatabaseConnection, id: i32) -> Result<(), BoxError> {
    db.execute_raw(stmt(SEED_COMPLETE, vec![id.into()])).await?;
    Ok(())
}

async fn claim_complete_seed(
    db: &DatabaseConnection,
    workers: usize,
    seconds: Duration,
) -> Result<Record, BoxError> {
    let backlog = 4_000 * seconds.as_secs() + 10_000;
    db.execute_raw(stmt(
        "INSERT INTO job_queue (payload, status)
         SELECT jsonb_build_object('to', 'user' || n || '@example.com', 'subject', 'Welcome',
                                   'template', 'welcome', 'n', n), 'pending'
         FROM generate_series(1, $1) AS n",
        vec![(backlog as i64).into()],
    ))
    .await?;
    db.execute_unprepared("VACUUM ANALYZE job_queue").await?;
    // Each operation reports whether it found a job: only those count.
    let measured = closed_loop(
        workers,
        WARMUP,
        seconds,
        |_| std::future::ready(Ok(db.clone())),
        |db: &mut DatabaseConnection, _| {
            let db = db.clone();
            async move {
                let Some(id) = seed_dequeue(&db).await? else {
                    return Ok(false);
                };
                seed_complete(&db, id).await?;
                Ok(true)
            }
        },
    )
    .await?;
    let done = measured.results.iter().filter(|&&did| did).count() as u64;
    Ok(Record::new("queue", "claim_complete", "seed", workers)
        .rate(done, seconds)
        .with("jobs", done))
}

/// A producer enqueues one job every `gap`; the latency of each is the time from just before
/// its enqueue to the start of its handler.
async fn produce<F, Fut>(
    seconds: Duration,
    gap: Duration,
    sent: Arc<Mutex<HashMap<u64, Instant>>>,
    enqueue: F,
) -> Result<u64, BoxError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < seconds {
        sent.lock()
            .map_err(|_| "poisoned")?
            .insert(n, Instant::now());
        enqueue(n).await?;
        n += 1;
        tokio::time::sleep(gap).await;
    }
    Ok(n)
}

async fn collect_latencies(
    sent: &Mutex<HashMap<u64, Instant>>,
    started: &Mutex<HashMap<u64, Instant>>,
    expected: u64,
    wait: Duration,
) -> Vec<Duration> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline
        && started.lock().map(|s| s.len() as u64).unwrap_or(0) < expected
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (Ok(sent), Ok(started)) = (sent.lock(), started.lock()) else {
        return Vec::new();
    };
    started
        .iter()
        .filter_map(|(n, at)| sent.get(n).map(|s| at.saturating_duration_since(*s)))
        .collect()
}

async fn enqueue_to_start_pgstack(
    db: &DatabaseConnection,
    seconds: Duration,
    listen_url: Option<&str>,
) -> Result<Record, BoxError> {
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let started = Arc::new(Mutex::new(HashMap::new()));
    let worker = bench_worker(db, listen_url)
        .handle_raw("bench", {
            let started = started.clone();
            move |job| {
                let started = started.clone();
                async move {
                    let at = Instant::now();
                    let n = job
                        .payload
                        .as_json()
                        .and_then(|p| p["n"].as_u64())
                        .unwrap_or(u64::MAX);
                    started.lock().map_err(|_| "poisoned")?.insert(n, at);
                    Ok(())
                }
            }
        })
        .start()
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected = produce(seconds, Duration::from_millis(20), sent.clone(), |n| {
        let db = db.clone();
        async move {
            bench_jobs::QUEUE
                .enqueue(&db, "bench", &payload(n), &EnqueueOptions::default())
                .await?;
            Ok(())
        }
    })
    .await?;
    let mut lat = collect_latencies(&sent, &started, expected, Duration::from_secs(5)).await;
    worker.shutdown(Duration::from_secs(5)).await;
    let n = lat.len();
    Ok(Record::new("queue", "enqueue_to_start", "pgstack", 1)
        .rate(n as u64, seconds)
        .latencies(&mut lat)
        .with("jobs", n)
        .with("wake_up", "notify"))
}

async fn enqueue_to_start_seed(
    db: &DatabaseConnection,
    seconds: Duration,
) -> Result<Record, BoxError> {
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let started = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // The seed's worker: dequeue; when empty, sleep 3 seconds.
    let worker = tokio::spawn({
        let (db, started, stop) = (db.clone(), started.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                let txn = db.begin().await?;
                let row = txn.query_one_raw(stmt(SEED_FETCH, vec![])).await?;
                let Some(row) = row else {
                    txn.commit().await?;
                    let until = Instant::now() + Duration::from_secs(3);
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    continue;
                };
                let id: i32 = row.try_get_by_index(0)?;
                let payload: serde_json::Value = row.try_get_by_index(1)?;
                txn.execute_raw(stmt(SEED_MARK, vec![id.into()])).await?;
                txn.commit().await?;
                let at = Instant::now();
                let n = payload["n"].as_u64().unwrap_or(u64::MAX);
                started.lock().map_err(|_| "poisoned")?.insert(n, at);
                seed_complete(&db, id).await?;
            }
            Ok::<_, BoxError>(())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected = produce(seconds, Duration::from_millis(20), sent.clone(), |n| {
        let db = db.clone();
        async move {
            db.query_one_raw(stmt(SEED_ENQUEUE, vec![payload(n).into()]))
                .await?;
            Ok(())
        }
    })
    .await?;
    let mut lat = collect_latencies(&sent, &started, expected, Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    worker.await??;
    let n = lat.len();
    Ok(Record::new("queue", "enqueue_to_start", "seed", 1)
        .rate(n as u64, seconds)
        .latencies(&mut lat)
        .with("jobs", n)
        .with("wake_up", "poll every 3s"))
}
