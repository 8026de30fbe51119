//! The worker runtime against a real PostgreSQL: exactly-once completion under concurrency,
//! crash recovery through leases, panics, timeouts, heartbeats, wake-ups and shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgstack::queue::{Delivery, EnqueueOptions, Job, JobError, Worker};
use pgstack_tests::TestDb;
use pgstack_tests::db::{archived, jobs};
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
