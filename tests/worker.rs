//! The worker runtime against a real PostgreSQL: exactly-once completion under concurrency,
//! crash recovery through leases, panics, timeouts, heartbeats, wake-ups and shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgstack::queue::{Delivery, EnqueueOptions, Job, JobError, NewJob, Worker, WorkerStats};
use pgstack_tests::TestDb;
use pgstack_tests::db::{archived, jobs, ordered};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "jobs")]
struct Work {
    n: usize,
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    panic: bool,
    #[serde(default)]
    fail: bool,
}

impl Work {
    fn n(n: usize) -> Work {
        Work {
            n,
            sleep_ms: 0,
            panic: false,
            fail: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "archived")]
struct Archived {
    n: usize,
}

/// A job of the `ordered` queue (`groups = true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "ordered")]
struct Step {
    n: usize,
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs each `Work` job: sleeps, panics or fails as asked, and records the delivery.
fn recording_worker(t: &TestDb, seen: Arc<Mutex<Vec<(usize, i32)>>>) -> Worker {
    Worker::new(&t.conn, &jobs::QUEUE).handle(move |d: Delivery<Work>| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push((d.job.n, d.attempt));
            if d.job.sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(d.job.sleep_ms)).await;
            }
            if d.job.panic {
                panic!("job {} exploded", d.job.n);
            }
            if d.job.fail {
                return Err::<(), JobError>(format!("job {} failed", d.job.n).into());
            }
            Ok(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_complete_20000_jobs_exactly_once() {
    let t = TestDb::migrated().await;
    let total = 20_000;
    let all: Vec<Work> = (0..total).map(Work::n).collect();
    for chunk in all.chunks(5000) {
        Work::enqueue_many(&t.conn, chunk).await.unwrap();
    }
    let counts: Arc<Vec<AtomicUsize>> = Arc::new((0..total).map(|_| AtomicUsize::new(0)).collect());
    let mut workers = Vec::new();
    for _ in 0..8 {
        let counts = counts.clone();
        workers.push(
            Worker::new(&t.conn, &jobs::QUEUE)
                .handle(move |d: Delivery<Work>| {
                    let counts = counts.clone();
                    async move {
                        counts[d.job.n].fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                })
                .concurrency(16)
                .start()
                .await
                .unwrap(),
        );
    }
    let done = || workers.iter().map(|w| w.stats().completed).sum::<u64>() == total as u64;
    wait_until("20,000 completions", Duration::from_secs(120), done).await;
    let mut stats = Vec::new();
    for worker in workers {
        stats.push(worker.shutdown(Duration::from_secs(5)).await);
    }
    let ran_twice: Vec<usize> = (0..total)
        .filter(|&n| counts[n].load(Ordering::SeqCst) != 1)
        .collect();
    assert!(
        ran_twice.is_empty(),
        "jobs not run exactly once: {:?}",
        &ran_twice[..ran_twice.len().min(10)]
    );
    assert_eq!(stats.iter().map(|s| s.claimed).sum::<u64>(), total as u64);
    assert_eq!(
        stats
            .iter()
            .map(|s| s.failed + s.stale + s.released)
            .sum::<u64>(),
        0
    );
    assert!(
        stats.iter().all(|s| s.completed > 0),
        "every worker took part: {stats:?}"
    );
    assert_eq!(t.column("SELECT count(*)::text FROM jobs").await, ["0"]);
}

#[test]
fn a_crashed_worker_s_job_is_redelivered_after_its_lease() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let t = runtime.block_on(TestDb::migrated());
    let url = t.url.clone();
    let started = Arc::new(AtomicUsize::new(0));

    // Worker A runs in a runtime of its own, on its own connections: dropping that runtime
    // mid-job is a process dying (its tasks vanish, its connections close).
    {
        let crashing = tokio::runtime::Runtime::new().unwrap();
        let started = started.clone();
        crashing.block_on(async move {
            let db = pgstack_tests::connect(&url, 4).await;
            Work {
                sleep_ms: 60_000,
                ..Work::n(1)
            }
            .enqueue(&db)
            .await
            .unwrap();
            let counter = started.clone();
            let worker = Worker::new(&db, &jobs::QUEUE)
                .handle(move |d: Delivery<Work>| {
                    let started = counter.clone();
                    async move {
                        started.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(d.job.sleep_ms)).await;
                        Ok(())
                    }
                })
                .start()
                .await
                .unwrap();
            wait_until("worker A to start the job", Duration::from_secs(10), || {
                started.load(Ordering::SeqCst) == 1
            })
            .await;
            std::mem::forget(worker);
        });
        drop(crashing);
    }
    let crashed_at = Instant::now();

    runtime.block_on(async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        // Worker B must not see the job before A's lease (1s) runs out, then sees attempt 2.
        let worker = Worker::new(&t.conn, &jobs::QUEUE)
            .handle({
                let seen = seen.clone();
                move |d: Delivery<Work>| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push((d.attempt, Instant::now()));
                        Ok(())
                    }
                }
            })
            .poll_interval(Duration::from_millis(100))
            .start()
            .await
            .unwrap();
        wait_until("redelivery", Duration::from_secs(10), || {
            !seen.lock().unwrap().is_empty()
        })
        .await;
        let stats = worker.shutdown(Duration::from_secs(5)).await;
        let (attempt, at) = seen.lock().unwrap()[0];
        assert_eq!(attempt, 2, "the crashed attempt counts");
        assert!(
            at.duration_since(crashed_at) >= Duration::from_millis(500),
            "not before the lease ran out"
        );
        assert_eq!(stats.completed, 1);
    });
    runtime
        .block_on(async { assert_eq!(t.column("SELECT count(*)::text FROM jobs").await, ["0"]) });
    drop(t);
}

#[tokio::test]
async fn panics_and_errors_fail_the_attempt_but_not_the_worker() {
    let t = TestDb::migrated().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    Work {
        panic: true,
        ..Work::n(1)
    }
    .enqueue(&t.conn)
    .await
    .unwrap();
    Work {
        fail: true,
        ..Work::n(2)
    }
    .enqueue(&t.conn)
    .await
    .unwrap();
    Work::n(3).enqueue(&t.conn).await.unwrap();
    let worker = recording_worker(&t, seen.clone())
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    // 3 attempts each for 1 and 2 (200ms then 400ms backoff), one for 3.
    wait_until("all attempts", Duration::from_secs(15), || {
        worker.stats().dead == 2 && worker.stats().completed == 1
    })
    .await;
    let stats = worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (stats.panicked, stats.failed, stats.retried, stats.dead),
        (3, 6, 4, 2),
        "{stats:?}"
    );
    let dead = jobs::QUEUE.dead_letters(&t.conn, None, 10).await.unwrap();
    let errors: Vec<&str> = dead
        .iter()
        .filter_map(|d| d.last_error.as_deref())
        .collect();
    assert_eq!(
        errors,
        ["the handler panicked: job 1 exploded", "job 2 failed"]
    );
    let mut attempts: Vec<(usize, i32)> = seen.lock().unwrap().clone();
    attempts.sort();
    assert_eq!(
        attempts,
        [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 1)]
    );
}

#[tokio::test]
async fn a_job_over_its_timeout_fails() {
    let t = TestDb::migrated().await;
    Work {
        sleep_ms: 5_000,
        ..Work::n(1)
    }
    .enqueue_with(&t.conn, &EnqueueOptions::default().max_attempts(1))
    .await
    .unwrap();
    let worker = recording_worker(&t, Arc::new(Mutex::new(Vec::new())))
        .job_timeout(Some(Duration::from_millis(200)))
        .start()
        .await
        .unwrap();
    wait_until("the timeout", Duration::from_secs(10), || {
        worker.stats().dead == 1
    })
    .await;
    let stats = worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(stats.timed_out, 1);
    let dead = jobs::QUEUE.dead_letters(&t.conn, None, 1).await.unwrap();
    assert_eq!(dead[0].last_error.as_deref(), Some("timed out after 200ms"));
}

#[tokio::test]
async fn heartbeats_keep_a_long_job_from_being_redelivered() {
    let t = TestDb::migrated().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    // The lease is 1s; the job runs 2.5s.
    Work {
        sleep_ms: 2_500,
        ..Work::n(1)
    }
    .enqueue(&t.conn)
    .await
    .unwrap();
    let a = recording_worker(&t, seen.clone()).start().await.unwrap();
    let b = recording_worker(&t, seen.clone())
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    wait_until("the long job", Duration::from_secs(10), || {
        a.stats().completed + b.stats().completed == 1
    })
    .await;
    let (sa, sb) = (
        a.shutdown(Duration::from_secs(1)).await,
        b.shutdown(Duration::from_secs(1)).await,
    );
    assert_eq!(seen.lock().unwrap().as_slice(), [(1, 1)], "delivered once");
    assert_eq!(sa.lost_leases + sb.lost_leases + sa.stale + sb.stale, 0);
}

#[tokio::test]
async fn shutdown_finishes_or_releases_running_jobs() {
    let t = TestDb::migrated().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    Work {
        sleep_ms: 100,
        ..Work::n(1)
    }
    .enqueue(&t.conn)
    .await
    .unwrap();
    Work {
        sleep_ms: 30_000,
        ..Work::n(2)
    }
    .enqueue(&t.conn)
    .await
    .unwrap();
    let worker = recording_worker(&t, seen.clone()).start().await.unwrap();
    wait_until("both jobs to start", Duration::from_secs(10), || {
        seen.lock().unwrap().len() == 2
    })
    .await;
    let stats = worker.shutdown(Duration::from_millis(500)).await;
    // The short job finished within the grace period; the long one was given back.
    assert_eq!((stats.completed, stats.released), (1, 1), "{stats:?}");
    let left = t
        .column("SELECT (payload->>'n') || ':' || attempt || ':' || (claimed_at IS NULL) || ':' || (visible_at <= now()) FROM jobs")
        .await;
    assert_eq!(
        left,
        ["2:0:true:true"],
        "released: claimable at once, attempt not counted"
    );
}

#[tokio::test]
async fn notify_wakes_an_idle_worker_and_poll_only_still_works() {
    let t = TestDb::migrated().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    // A poll interval far longer than the test: only NOTIFY can deliver in time.
    let worker = recording_worker(&t, seen.clone())
        .poll_interval(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    Work::n(1).enqueue(&t.conn).await.unwrap();
    wait_until("the NOTIFY wake-up", Duration::from_secs(10), || {
        seen.lock().unwrap().len() == 1
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;

    let poll_only = recording_worker(&t, seen.clone())
        .poll_only()
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    Work::n(2).enqueue(&t.conn).await.unwrap();
    wait_until("polling", Duration::from_secs(10), || {
        seen.lock().unwrap().len() == 2
    })
    .await;
    poll_only.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_idle_worker_wakes_for_a_delayed_job_when_it_is_due() {
    let t = TestDb::migrated().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let worker = Worker::new(&t.conn, &archived::QUEUE)
        .handle({
            let seen = seen.clone();
            move |d: Delivery<Archived>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(d.job.n);
                    Ok(())
                }
            }
        })
        .poll_only()
        .poll_interval(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The worker looked before this job existed; it must still come back for it in time
    // (after the poll interval at the latest, so that is set far beyond the test).
    Archived { n: 1 }
        .enqueue_with(
            &t.conn,
            &EnqueueOptions::default().delay(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    worker.shutdown(Duration::from_secs(1)).await;
    // Restart: the idle worker sleeps only until the delayed job is due.
    let worker = Worker::new(&t.conn, &archived::QUEUE)
        .handle({
            let seen = seen.clone();
            move |d: Delivery<Archived>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(d.job.n);
                    Ok(())
                }
            }
        })
        .poll_only()
        .poll_interval(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    wait_until("the delayed job", Duration::from_secs(10), || {
        seen.lock().unwrap().len() == 1
    })
    .await;
    let stats = worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(stats.completed, 1);
    assert_eq!(
        t.column("SELECT outcome FROM archived_archive").await,
        ["completed"],
        "the archive keeps finished jobs"
    );
}

#[tokio::test]
async fn unknown_kinds_are_retried_then_dead_lettered() {
    let t = TestDb::migrated().await;
    jobs::QUEUE
        .enqueue(
            &t.conn,
            "nobody.handles.this",
            &serde_json::json!({}),
            &EnqueueOptions::default(),
        )
        .await
        .unwrap();
    let worker = recording_worker(&t, Arc::new(Mutex::new(Vec::new())))
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    wait_until("dead letter", Duration::from_secs(10), || {
        worker.stats().dead == 1
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    let dead = jobs::QUEUE.dead_letters(&t.conn, None, 1).await.unwrap();
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("no handler for job kind `nobody.handles.this` on this worker")
    );
}

#[tokio::test]
async fn a_worker_refuses_a_bad_configuration() {
    let t = TestDb::migrated().await;
    let err = Worker::new(&t.conn, &jobs::QUEUE)
        .start()
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("no handlers registered"), "{err}");
    let err = Worker::new(&t.conn, &archived::QUEUE)
        .handle(|_: Delivery<Work>| async { Ok(()) })
        .start()
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("belong to queue `jobs`, but this worker runs queue `archived`"),
        "{err}"
    );
    let err = Worker::new(&t.conn, &jobs::QUEUE)
        .handle(|_: Delivery<Work>| async { Ok(()) })
        .handle_raw("Work", |_| async { Ok(()) })
        .start()
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("two handlers for job kind `Work`"),
        "{err}"
    );
    // A payload that cannot decode never succeeds: dead-lettered on the first attempt.
    jobs::QUEUE
        .enqueue(
            &t.conn,
            "Work",
            &serde_json::json!({"n": "not a number"}),
            &EnqueueOptions::default(),
        )
        .await
        .unwrap();
    let worker = recording_worker(&t, Arc::new(Mutex::new(Vec::new())))
        .start()
        .await
        .unwrap();
    wait_until("discard", Duration::from_secs(10), || {
        worker.stats().dead == 1
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    let dead = jobs::QUEUE.dead_letters(&t.conn, None, 1).await.unwrap();
    assert_eq!(dead[0].attempt, 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("does not decode"),
        "{dead:?}"
    );
}

/// Counts how many jobs a worker holds: running plus buffered (claimed, not started).
async fn leased(t: &TestDb) -> usize {
    t.column("SELECT count(*)::text FROM jobs WHERE claimed_at IS NOT NULL")
        .await[0]
        .parse()
        .unwrap()
}

#[tokio::test]
async fn shutdown_releases_prefetched_jobs_at_once() {
    let t = TestDb::migrated().await;
    let jobs: Vec<Work> = (0..60)
        .map(|n| Work {
            sleep_ms: 50,
            ..Work::n(n)
        })
        .collect();
    for job in &jobs {
        job.enqueue(&t.conn).await.unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let a = recording_worker(&t, seen.clone())
        .concurrency(1)
        .prefetch(40)
        .start()
        .await
        .unwrap();
    wait_until(
        "worker A to fill its buffer",
        Duration::from_secs(10),
        || a.buffered() >= 20,
    )
    .await;
    assert!(
        leased(&t).await > 1,
        "buffered jobs are leased in the database"
    );
    let stats = a.shutdown(Duration::from_secs(5)).await;
    assert_eq!(leased(&t).await, 0, "nothing stays leased");
    assert!(stats.released >= 20, "{stats:?}");
    // Released, not left to their leases: claimable now, their attempt not counted.
    let left = t
        .column("SELECT count(*)::text FROM jobs WHERE visible_at <= now() AND attempt = 0")
        .await;
    assert_eq!(left[0].parse::<u64>().unwrap(), 60 - stats.completed);

    let b = recording_worker(&t, seen.clone())
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let before = Instant::now();
    wait_until(
        "worker B to finish the rest",
        Duration::from_secs(10),
        || seen.lock().unwrap().len() == 60,
    )
    .await;
    b.shutdown(Duration::from_secs(5)).await;
    let mut delivered: Vec<usize> = seen.lock().unwrap().iter().map(|(n, _)| *n).collect();
    delivered.sort_unstable();
    assert_eq!(delivered, (0..60).collect::<Vec<_>>(), "each job once");
    assert!(before.elapsed() < Duration::from_secs(5));
}

/// A worker claims only in a turn it shares with every process: while another connection holds
/// all of the queue's claim turns, nothing is claimed; once they are let go, the job runs.
#[tokio::test]
async fn a_worker_claims_only_in_its_turn() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let t = TestDb::migrated().await;
    Work::n(7).enqueue(&t.conn).await.unwrap();
    let def = jobs::QUEUE.def();
    let key = format!("pgstack claims {}.{}", def.schema, def.table);
    // Another process's claims, holding all four turns.
    let other = t.conn.begin().await.unwrap();
    other
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext($1), turn) FROM generate_series(0, 3) AS turn",
            [key.into()],
        ))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let worker = recording_worker(&t, seen.clone())
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(leased(&t).await, 0, "claimed out of turn");
    assert!(seen.lock().unwrap().is_empty());
    other.commit().await.unwrap();
    wait_until(
        "the job, once a turn is free",
        Duration::from_secs(10),
        || seen.lock().unwrap().len() == 1,
    )
    .await;
    let stats = worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(seen.lock().unwrap().as_slice(), [(7, 1)], "{stats:?}");
}

/// A turn held by a stuck transaction does not hold the worker forever: its claim waits
/// about a second for a turn, then claims without one.
#[tokio::test]
async fn a_worker_claims_without_a_turn_when_the_turns_stay_taken() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let t = TestDb::migrated().await;
    Work::n(3).enqueue(&t.conn).await.unwrap();
    let def = jobs::QUEUE.def();
    let key = format!("pgstack claims {}.{}", def.schema, def.table);
    let stuck = t.conn.begin().await.unwrap();
    stuck
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext($1), turn) FROM generate_series(0, 3) AS turn",
            [key.into()],
        ))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let worker = recording_worker(&t, seen.clone())
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    wait_until(
        "the job, while every turn stays taken",
        Duration::from_secs(10),
        || seen.lock().unwrap().len() == 1,
    )
    .await;
    let stats = worker.shutdown(Duration::from_secs(5)).await;
    stuck.rollback().await.unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), [(3, 1)], "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
}

#[tokio::test]
async fn a_cancelled_job_waiting_in_the_buffer_never_starts() {
    let t = TestDb::migrated().await;
    Work {
        sleep_ms: 500,
        ..Work::n(0)
    }
    .enqueue(&t.conn)
    .await
    .unwrap();
    let second = Work::n(1).enqueue(&t.conn).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let worker = recording_worker(&t, seen.clone())
        .concurrency(1)
        .prefetch(8)
        .start()
        .await
        .unwrap();
    wait_until("both claimed", Duration::from_secs(10), || {
        worker.running() == 1 && worker.buffered() == 1
    })
    .await;
    jobs::QUEUE
        .cancel(&t.conn, second.id, "not needed")
        .await
        .unwrap();
    wait_until("the first job", Duration::from_secs(10), || {
        worker.stats().completed == 1
    })
    .await;
    // Give the slot time to pick the cancelled job if it were going to.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(seen.lock().unwrap().as_slice(), [(0, 1)], "{stats:?}");
}

/// The child process of the kill -9 tests: a worker that records each job's effect, in
/// `effects`, until it is killed. `PGSTACK_CHILD_WORKER_MODE=tx` writes the effect in the
/// job's transaction ([`Worker::handle_tx`]); otherwise outside any transaction. Runs only
/// when one of those tests starts it.
#[test]
#[ignore = "started as a child process by the kill -9 tests"]
fn killed_worker_child() {
    let Ok(url) = std::env::var("PGSTACK_CHILD_WORKER_URL") else {
        return;
    };
    let transactional = std::env::var("PGSTACK_CHILD_WORKER_MODE").as_deref() == Ok("tx");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let db = pgstack_tests::connect(&url, 20).await;
        let worker = if transactional {
            effect_tx_worker(&db)
        } else {
            let effects = db.clone();
            Worker::new(&db, &jobs::QUEUE)
                .concurrency(2)
                .prefetch(400)
                .handle(move |d: Delivery<Work>| {
                    let db = effects.clone();
                    async move {
                        use sea_orm::ConnectionTrait;
                        db.execute_unprepared(&format!(
                            "INSERT INTO effects (n) VALUES ({})",
                            d.job.n
                        ))
                        .await?;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        Ok(())
                    }
                })
        };
        let _running = worker.start().await.unwrap();
        // Run until killed.
        std::future::pending::<()>().await;
    });
}

/// A worker whose handler records each job's effect in the job's own transaction.
fn effect_tx_worker(db: &sea_orm::DatabaseConnection) -> Worker {
    Worker::new(db, &jobs::QUEUE)
        .poll_interval(Duration::from_millis(100))
        .handle_tx(|d: Delivery<Work>, tx: pgstack::queue::JobTx| async move {
            use sea_orm::ConnectionTrait;
            tx.execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "INSERT INTO effects (n) VALUES ($1)",
                [(d.job.n as i32).into()],
            ))
            .await?;
            Ok(tx)
        })
}

/// Starts `killed_worker_child` on the test's database.
fn spawn_child(t: &TestDb, mode: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "killed_worker_child", "--ignored", "--nocapture"])
        .env("PGSTACK_CHILD_WORKER_URL", &t.url)
        .env("PGSTACK_CHILD_WORKER_MODE", mode)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

async fn count(t: &TestDb, sql: &str) -> usize {
    t.column(sql).await[0].parse().unwrap()
}

async fn effects_table(t: &TestDb, jobs: usize) {
    use sea_orm::ConnectionTrait;
    t.conn
        .execute_unprepared("CREATE TABLE effects (n integer NOT NULL)")
        .await
        .unwrap();
    // Every kill costs the jobs its worker held an attempt (the database cannot tell a job
    // that never started from one that crashed), so these jobs have attempts to spare.
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(5000) {
        let batch: Vec<NewJob> = chunk
            .iter()
            .map(|&n| {
                NewJob::json(Work::KIND, &Work::n(n))
                    .unwrap()
                    .with(EnqueueOptions::default().max_attempts(100))
            })
            .collect();
        jobs::QUEUE.enqueue_many(&t.conn, &batch).await.unwrap();
    }
}

/// Waits until the `jobs` queue is empty, failing after `limit`.
async fn drained(t: &TestDb, limit: Duration) {
    drained_table(t, "jobs", limit).await;
}

/// Waits until the queue table `table` is empty, failing after `limit`.
async fn drained_table(t: &TestDb, table: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    let sql = format!("SELECT count(*)::text FROM {table}");
    while count(t, &sql).await > 0 {
        assert!(
            Instant::now() < deadline,
            "{table}: jobs left after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every one of `jobs` jobs left exactly one row in `effects`, and none died.
async fn assert_one_effect_per_job(t: &TestDb, jobs: usize, stats: &WorkerStats) {
    let (rows, distinct) = (
        count(t, "SELECT count(*)::text FROM effects").await,
        count(t, "SELECT count(DISTINCT n)::text FROM effects").await,
    );
    assert_eq!(distinct, jobs, "no job is missing its effect ({stats:?})");
    assert_eq!(rows, jobs, "no job took effect twice ({stats:?})");
    assert_eq!(count(t, "SELECT count(*)::text FROM jobs_dead").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_prefetched_jobs_are_all_delivered() {
    let t = TestDb::migrated().await;
    const JOBS: usize = 3000;
    effects_table(&t, JOBS).await;
    for round in 0..3 {
        let mut child = spawn_child(&t, "plain");
        let at_start = count(&t, "SELECT count(*)::text FROM effects").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while count(&t, "SELECT count(*)::text FROM effects").await < at_start + 100 {
            assert!(
                Instant::now() < deadline,
                "the child worker made no progress"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let held = leased(&t).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(
            held > 2,
            "round {round}: the child held a prefetched buffer when killed ({held} leased)"
        );
    }
    // A fresh worker drains the rest once the killed worker's leases (1s) run out.
    let effects = t.conn.clone();
    let worker = Worker::new(&t.conn, &jobs::QUEUE)
        .poll_interval(Duration::from_millis(100))
        .handle(move |d: Delivery<Work>| {
            let db = effects.clone();
            async move {
                use sea_orm::ConnectionTrait;
                db.execute_unprepared(&format!("INSERT INTO effects (n) VALUES ({})", d.job.n))
                    .await?;
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    drained(&t, Duration::from_secs(60)).await;
    worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        count(&t, "SELECT count(DISTINCT n)::text FROM effects").await,
        JOBS,
        "every job ran (at least once)"
    );
    let rows = count(&t, "SELECT count(*)::text FROM effects").await;
    eprintln!(
        "at least once: {} jobs ran twice or more, their effects outside the job's transaction",
        rows - JOBS
    );
    assert_eq!(count(&t, "SELECT count(*)::text FROM jobs_dead").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_handlers_take_effect_exactly_once_across_20_kills() {
    let t = TestDb::migrated().await;
    const JOBS: usize = 20_000;
    effects_table(&t, JOBS).await;
    // Kill moments from a seeded generator; the seed is in every failure message.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut killed_holding = 0;
    for round in 0..20 {
        let mut child = spawn_child(&t, "tx");
        // Somewhere from before its first job to well into its run.
        let after = Duration::from_millis(100 + next() % 600);
        tokio::time::sleep(after).await;
        if leased(&t).await > 0 {
            killed_holding += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let done = count(&t, "SELECT count(*)::text FROM effects").await;
        eprintln!("round {round}: killed after {after:?}; {done} effects so far");
    }
    assert!(killed_holding >= 10, "most kills hit a worker holding jobs");
    let before = count(&t, "SELECT count(*)::text FROM effects").await;
    assert!(before > 0, "the children made progress");
    let worker = effect_tx_worker(&t.conn).start().await.unwrap();
    drained(&t, Duration::from_secs(120)).await;
    let stats = worker.shutdown(Duration::from_secs(5)).await;
    assert_one_effect_per_job(&t, JOBS, &stats).await;
}

#[tokio::test]
async fn heartbeats_extend_the_leases_of_buffered_jobs() {
    let t = TestDb::migrated().await;
    // One slot, 5 jobs of 600ms: the last waits ~2.4s in A's buffer, past the 1s lease.
    for n in 0..5 {
        Work {
            sleep_ms: 600,
            ..Work::n(n)
        }
        .enqueue(&t.conn)
        .await
        .unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let a = recording_worker(&t, seen.clone())
        .concurrency(1)
        .prefetch(10)
        .start()
        .await
        .unwrap();
    wait_until("A to buffer the rest", Duration::from_secs(10), || {
        a.buffered() == 4
    })
    .await;
    // B polls every 50ms: it would take any job whose lease ran out.
    let b = recording_worker(&t, seen.clone())
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    wait_until("all five", Duration::from_secs(15), || {
        a.stats().completed == 5
    })
    .await;
    let (sa, sb) = (
        a.shutdown(Duration::from_secs(1)).await,
        b.shutdown(Duration::from_secs(1)).await,
    );
    assert_eq!(sb.claimed, 0, "B never got a buffered job");
    assert_eq!(sa.lost_leases + sa.stale, 0, "{sa:?}");
    assert_eq!(seen.lock().unwrap().len(), 5, "each delivered once");
}

/// Crashes the throwaway server of `.ci/setup-crashable.sh` (`pg_ctl stop -m immediate`: no
/// checkpoint, recovery from WAL on the next start), keeps it down for `down`, starts it again.
fn crash_postgres(down: Duration) {
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", "15", "crashable"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("pg_ctlcluster: {e}"));
        assert!(
            out.status.success(),
            "pg_ctlcluster {args:?}: {}; run `bash .ci/setup-crashable.sh`",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ctl(&["stop", "-m", "immediate"]);
    std::thread::sleep(down);
    ctl(&["start"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_lost_across_postgresql_crashes() {
    let t = TestDb::migrated_on(&pgstack_tests::crashable_url(), 10).await;
    const JOBS: usize = 20_000;
    effects_table(&t, JOBS).await;
    let worker = effect_tx_worker(&t.conn).start().await.unwrap();
    for (round, at) in [2_000, 8_000, 14_000].into_iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(120);
        while count(&t, "SELECT count(*)::text FROM effects").await < at {
            assert!(
                Instant::now() < deadline,
                "round {round}: the worker made no progress after a crash ({:?})",
                worker.stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let held = leased(&t).await;
        tokio::task::spawn_blocking(move || {
            crash_postgres(Duration::from_millis(500 * round as u64))
        })
        .await
        .unwrap();
        eprintln!("round {round}: crashed PostgreSQL while the worker held {held} jobs");
    }
    drained(&t, Duration::from_secs(120)).await;
    let stats = worker.shutdown(Duration::from_secs(5)).await;
    assert_one_effect_per_job(&t, JOBS, &stats).await;
    assert!(
        stats.last_error.is_some(),
        "the crashes were seen: {stats:?}"
    );
}

/// A handler's `JobSnooze` runs the job again after the delay without spending an attempt
/// (a job with one attempt snoozes three times and still completes); `JobCancel` dead-letters
/// at once whatever attempts are left; `kind_timeout` bounds one kind, not the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_snooze_cancel_and_have_per_kind_timeouts() {
    use pgstack::queue::{JobCancel, JobSnooze, Payload};
    let t = TestDb::migrated().await;
    let snoozy = Work::n(1)
        .enqueue_with(&t.conn, &EnqueueOptions::default().max_attempts(1))
        .await
        .unwrap()
        .id;
    let doomed = Work::n(2)
        .enqueue_with(&t.conn, &EnqueueOptions::default().max_attempts(10))
        .await
        .unwrap()
        .id;
    let oversnoozed = Work::n(4)
        .enqueue_with(&t.conn, &EnqueueOptions::default().max_attempts(1))
        .await
        .unwrap()
        .id;
    let slow = Work {
        sleep_ms: 2_000,
        ..Work::n(3)
    }
    .enqueue_with(&t.conn, &EnqueueOptions::default().max_attempts(1))
    .await
    .unwrap()
    .id;
    // Another kind, as slow, under the worker's own (default) timeout.
    jobs::QUEUE
        .enqueue_payload(
            &t.conn,
            "other",
            &Payload::Json(serde_json::json!({})),
            &EnqueueOptions::default(),
        )
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<(usize, i32, i32, Instant)>::new()));
    let other_done = Arc::new(AtomicUsize::new(0));
    let (log, done) = (seen.clone(), other_done.clone());
    let worker = Worker::new(&t.conn, &jobs::QUEUE)
        .poll_interval(Duration::from_millis(50))
        .kind_timeout(Work::KIND, Some(Duration::from_millis(300)))
        .handle(move |d: Delivery<Work>| {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push((d.job.n, d.attempt, d.max_attempts, Instant::now()));
                let snoozes = log.lock().unwrap().iter().filter(|s| s.0 == 1).count();
                match d.job.n {
                    1 if snoozes <= 3 => Err(JobSnooze::after(Duration::from_millis(200)).into()),
                    2 => Err(JobCancel::because("the account is closed").into()),
                    4 => Err(JobSnooze::after(Duration::ZERO).into()),
                    _ => {
                        tokio::time::sleep(Duration::from_millis(d.job.sleep_ms)).await;
                        Ok(())
                    }
                }
            }
        })
        .handle_raw("other", move |_job| {
            let done = done.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(600)).await;
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    drained(&t, Duration::from_secs(20)).await;
    let stats = worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(stats.snoozed, 3, "{stats:?}");
    assert_eq!(stats.timed_out, 1, "{stats:?}");
    assert_eq!(
        other_done.load(Ordering::SeqCst),
        1,
        "the other kind ran to the end"
    );

    let seen = seen.lock().unwrap().clone();
    let runs: Vec<_> = seen.iter().filter(|s| s.0 == 1).collect();
    assert_eq!(runs.len(), 4, "three snoozes, then done: {seen:?}");
    for (i, pair) in runs.windows(2).enumerate() {
        assert!(
            pair[1].3 - pair[0].3 >= Duration::from_millis(190),
            "snooze {i} waited its delay"
        );
        // The counter goes up (it fences completions); the allowance with it.
        assert_eq!((pair[1].1, pair[1].2), (pair[0].1 + 1, pair[0].2 + 1));
    }
    assert_eq!(
        seen.iter().filter(|s| s.0 == 2).count(),
        1,
        "a cancelled job is not retried"
    );

    let dead = jobs::QUEUE.dead_letters(&t.conn, None, 10).await.unwrap();
    let error = |id: i64| {
        dead.iter()
            .find(|d| d.id == id)
            .and_then(|d| d.last_error.clone())
            .unwrap_or_else(|| panic!("job {id} is not among the dead letters: {dead:?}"))
    };
    assert_eq!(
        error(doomed),
        "cancelled by its handler: the account is closed"
    );
    assert_eq!(error(slow), "timed out after 300ms");
    assert_eq!(
        error(oversnoozed),
        "the handler snoozed for 0ns, outside 1ms to 100 years",
        "a snooze out of range fails its attempt, not the batch"
    );
    assert!(
        dead.iter().all(|d| d.id != snoozy),
        "snoozes spend no attempt"
    );
}

/// Jobs sharing a group key run one at a time in enqueue order across three workers (24
/// handlers), a failed one holding its group back until its retry succeeds; jobs without a
/// group run in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_jobs_run_one_at_a_time_in_order_across_workers() {
    const GROUPS: usize = 4;
    const PER_GROUP: usize = 40;
    let t = TestDb::migrated().await;
    // Interleaved, so every claim sees several groups at once; n = group * 1000 + seq.
    let mut batch = Vec::new();
    for seq in 0..PER_GROUP {
        for group in 0..GROUPS {
            batch.push(
                NewJob::json(
                    Step::KIND,
                    &Step {
                        n: group * 1000 + seq,
                    },
                )
                .unwrap()
                .with(EnqueueOptions::default().group_key(format!("g{group}"))),
            );
        }
        batch.push(NewJob::json(Step::KIND, &Step { n: 9000 + seq }).unwrap());
    }
    ordered::QUEUE.enqueue_many(&t.conn, &batch).await.unwrap();

    #[derive(Default)]
    struct Log {
        running: std::collections::HashMap<usize, usize>,
        started: Vec<(usize, usize, i32)>,
        overlaps: Vec<String>,
        ungrouped_now: usize,
        ungrouped_max: usize,
    }
    let log = Arc::new(Mutex::new(Log::default()));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let log = log.clone();
        let worker = Worker::new(&t.conn, &ordered::QUEUE)
            .concurrency(8)
            .poll_interval(Duration::from_millis(20))
            .handle(move |d: Delivery<Step>| {
                let log = log.clone();
                async move {
                    let (group, seq) = (d.job.n / 1000, d.job.n % 1000);
                    {
                        let mut log = log.lock().unwrap();
                        if group == 9 {
                            log.ungrouped_now += 1;
                            log.ungrouped_max = log.ungrouped_max.max(log.ungrouped_now);
                        } else if let Some(other) = log.running.insert(group, seq) {
                            log.overlaps.push(format!("g{group}: {other} and {seq}"));
                        }
                        log.started.push((group, seq, d.attempt));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let mut log = log.lock().unwrap();
                    if group == 9 {
                        log.ungrouped_now -= 1;
                    } else {
                        log.running.remove(&group);
                    }
                    // The first job of group 1 fails once: its group waits for the retry.
                    if group == 1 && seq == 0 && d.attempt == 1 {
                        return Err("first try fails".into());
                    }
                    Ok(())
                }
            })
            .start()
            .await
            .unwrap();
        workers.push(worker);
    }
    drained_table(&t, "ordered", Duration::from_secs(60)).await;
    for worker in workers {
        worker.shutdown(Duration::from_secs(1)).await;
    }
    let log = log.lock().unwrap();
    assert!(
        log.overlaps.is_empty(),
        "a group ran two jobs at once: {:?}",
        log.overlaps
    );
    for group in 0..GROUPS {
        let order: Vec<(usize, i32)> = log
            .started
            .iter()
            .filter(|(g, _, _)| *g == group)
            .map(|(_, seq, attempt)| (*seq, *attempt))
            .collect();
        let mut expected: Vec<(usize, i32)> = (0..PER_GROUP).map(|seq| (seq, 1)).collect();
        if group == 1 {
            expected.insert(1, (0, 2));
        }
        assert_eq!(order, expected, "group {group} in enqueue order");
    }
    assert!(
        log.ungrouped_max > 1,
        "jobs without a group ran in parallel"
    );
}
