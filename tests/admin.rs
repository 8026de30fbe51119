//! The job admin API against a real worker: list and search by state, kind and unique key with
//! keyset pages; one job with its attempts and last error; cancel waiting and running jobs
//! (the handler is told); retry now; delete; pause and resume (workers stop and start again on
//! their own); purge; redrive dead letters by kind.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgstack::queue::{
    Cancelled, Delivery, EnqueueOptions, Job, JobError, JobFilter, JobState, Worker,
};
use pgstack_tests::TestDb;
use pgstack_tests::db::{archived, jobs};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "jobs", kind = "admin.task")]
struct Task {
    n: usize,
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    block: bool,
}

impl Task {
    fn n(n: usize) -> Task {
        Task {
            n,
            fail: false,
            block: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "jobs", kind = "admin.other")]
struct Other {
    n: usize,
}

async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_searching_and_looking_up_jobs() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    for n in 0..5 {
        Task::n(n).enqueue(db).await.unwrap();
    }
    Other { n: 9 }
        .enqueue_with(db, &EnqueueOptions::default().unique_key("other:9"))
        .await
        .unwrap();
    let later = Task::n(7)
        .enqueue_with(
            db,
            &EnqueueOptions::default().delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();

    let waiting = jobs::QUEUE
        .list_jobs(db, &JobFilter::new(JobState::Waiting))
        .await
        .unwrap();
    assert_eq!(waiting.jobs.len(), 6);
    assert!(waiting.jobs.iter().all(|j| j.state == JobState::Waiting));
    // Keyset pages of two.
    let mut ids = Vec::new();
    let mut filter = JobFilter::new(JobState::Waiting)
        .kind("admin.task")
        .limit(2);
    loop {
        let page = jobs::QUEUE.list_jobs(db, &filter).await.unwrap();
        ids.extend(page.jobs.iter().map(|j| j.id));
        match page.next {
            Some(next) => filter = filter.after(next),
            None => break,
        }
    }
    assert_eq!(ids.len(), 5);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let by_key = jobs::QUEUE
        .list_jobs(db, &JobFilter::new(JobState::Waiting).unique_key("other:9"))
        .await
        .unwrap();
    assert_eq!(by_key.jobs.len(), 1);
    assert_eq!(by_key.jobs[0].kind, "admin.other");
    let scheduled = jobs::QUEUE
        .list_jobs(db, &JobFilter::new(JobState::Scheduled))
        .await
        .unwrap();
    assert_eq!(
        scheduled.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        [later.id]
    );

    let job = jobs::QUEUE.job(db, later.id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Scheduled);
    assert_eq!(job.payload.decode::<Task>().unwrap(), Task::n(7));
    assert!(jobs::QUEUE.job(db, 999_999).await.unwrap().is_none());

    // Retry now: the scheduled job becomes waiting.
    assert!(jobs::QUEUE.retry_now(db, later.id).await.unwrap());
    assert_eq!(
        jobs::QUEUE.job(db, later.id).await.unwrap().unwrap().state,
        JobState::Waiting
    );
    // Delete a waiting job; cancel another (to the dead letters, with the reason).
    assert!(jobs::QUEUE.delete_job(db, ids[0]).await.unwrap());
    assert!(jobs::QUEUE.job(db, ids[0]).await.unwrap().is_none());
    assert_eq!(
        jobs::QUEUE.cancel(db, ids[1], "duplicate").await.unwrap(),
        Cancelled::Waiting
    );
    let cancelled = jobs::QUEUE.job(db, ids[1]).await.unwrap().unwrap();
    assert_eq!(cancelled.state, JobState::Dead);
    assert_eq!(
        cancelled.last_error.as_deref(),
        Some("cancelled: duplicate")
    );
    assert_eq!(
        jobs::QUEUE.cancel(db, ids[1], "again").await.unwrap(),
        Cancelled::NotFound
    );
    let dead = jobs::QUEUE
        .list_jobs(db, &JobFilter::new(JobState::Dead).kind("admin.task"))
        .await
        .unwrap();
    assert_eq!(dead.jobs.len(), 1);
    // Redrive by kind brings it back; purge empties what is not running.
    assert_eq!(
        jobs::QUEUE
            .redrive_kind(db, "admin.task", 10)
            .await
            .unwrap(),
        [ids[1]]
    );
    assert_eq!(jobs::QUEUE.purge(db).await.unwrap(), 6);
    assert_eq!(jobs::QUEUE.metrics(db, 100).await.unwrap().ready, 0);

    // A queue without dead letters archives cancelled jobs as such.
    let a = archived::QUEUE
        .enqueue(db, "x", &1, &EnqueueOptions::default())
        .await
        .unwrap();
    archived::QUEUE.maintain(db).await.unwrap();
    assert_eq!(
        archived::QUEUE
            .cancel(db, a.id, "not needed")
            .await
            .unwrap(),
        Cancelled::Waiting
    );
    assert_eq!(
        archived::QUEUE.job(db, a.id).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_job_is_cancelled_and_its_handler_told() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let told = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (told2, started2) = (told.clone(), started.clone());
    let worker = Worker::new(db, &jobs::QUEUE)
        .handle(move |d: Delivery<Task>| {
            let (told, started) = (told2.clone(), started2.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                if d.job.block {
                    // Work until told to stop.
                    tokio::select! {
                        _ = d.cancel.cancelled() => { told.fetch_add(1, Ordering::SeqCst); }
                        _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                    }
                    return Err::<(), JobError>("stopped".into());
                }
                if d.job.fail {
                    return Err("always fails".into());
                }
                Ok(())
            }
        })
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let running = Task {
        block: true,
        ..Task::n(1)
    }
    .enqueue(db)
    .await
    .unwrap();
    wait_until("the job to start", Duration::from_secs(10), async || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    let job = jobs::QUEUE.job(db, running.id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Running);
    assert!(job.claimed_at.is_some() && !job.lease_expired);
    let listed = jobs::QUEUE
        .list_jobs(db, &JobFilter::new(JobState::Running))
        .await
        .unwrap();
    assert_eq!(listed.jobs.len(), 1);
    // A running job cannot be deleted, only cancelled.
    let err = jobs::QUEUE.delete_job(db, running.id).await.unwrap_err();
    assert!(err.to_string().contains("cancel it"), "{err}");
    assert_eq!(
        jobs::QUEUE
            .cancel(db, running.id, "operator")
            .await
            .unwrap(),
        Cancelled::Running
    );
    wait_until(
        "the handler to be told",
        Duration::from_secs(5),
        async || told.load(Ordering::SeqCst) == 1,
    )
    .await;
    // Its failure after cancellation is fenced: the job stays cancelled, not retried.
    wait_until("the stale outcome", Duration::from_secs(5), async || {
        worker.stats().stale == 1
    })
    .await;
    let job = jobs::QUEUE.job(db, running.id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.last_error.as_deref(), Some("cancelled: operator"));

    // A failing job shows its attempts and last error while it waits to retry.
    let failing = Task {
        fail: true,
        ..Task::n(2)
    }
    .enqueue(db)
    .await
    .unwrap();
    wait_until("a failed attempt", Duration::from_secs(10), async || {
        jobs::QUEUE
            .job(db, failing.id)
            .await
            .unwrap()
            .is_some_and(|j| j.state == JobState::Retrying)
    })
    .await;
    let job = jobs::QUEUE.job(db, failing.id).await.unwrap().unwrap();
    assert!(job.attempt >= 1);
    assert_eq!(job.last_error.as_deref(), Some("always fails"));
    worker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pausing_stops_every_worker_and_resuming_starts_them_again() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let done = done.clone();
        workers.push(
            Worker::new(db, &jobs::QUEUE)
                .handle(move |_d: Delivery<Task>| {
                    let done = done.clone();
                    async move {
                        done.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                })
                .poll_interval(Duration::from_millis(100))
                .start()
                .await
                .unwrap(),
        );
    }
    jobs::QUEUE.pause(db, "maintenance window").await.unwrap();
    let paused = jobs::QUEUE.paused(db).await.unwrap().unwrap();
    assert_eq!(paused.reason.as_deref(), Some("maintenance window"));
    let batch: Vec<Task> = (0..20).map(Task::n).collect();
    Task::enqueue_many(db, &batch).await.unwrap();
    // Several poll intervals: nothing runs, nothing is claimed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(done.load(Ordering::SeqCst), 0);
    assert_eq!(
        jobs::QUEUE.claim(db, 10).await.unwrap().len(),
        0,
        "a paused queue claims nothing"
    );
    assert_eq!(jobs::QUEUE.metrics(db, 100).await.unwrap().ready, 20);
    jobs::QUEUE.resume(db).await.unwrap();
    assert!(jobs::QUEUE.paused(db).await.unwrap().is_none());
    wait_until(
        "the workers to resume on their own",
        Duration::from_secs(5),
        async || done.load(Ordering::SeqCst) == 20,
    )
    .await;
    for worker in workers {
        let stats = worker.shutdown(Duration::from_secs(5)).await;
        assert_eq!(stats.errors, 0, "{stats:?}");
    }
}

/// Without LISTEN the heartbeat finds the cancelled job gone and tells the handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_polling_worker_hears_of_a_cancellation_at_its_next_heartbeat() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let told = Arc::new(AtomicUsize::new(0));
    let told2 = told.clone();
    let worker = Worker::new(db, &jobs::QUEUE)
        .handle_raw("admin.task", move |_job| {
            let told = told2.clone();
            async move {
                // A raw handler reaches its cancellation through the task.
                let cancel = pgstack::queue::Cancellation::current().expect("inside a handler");
                tokio::select! {
                    _ = cancel.cancelled() => { told.fetch_add(1, Ordering::SeqCst); }
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
                Ok(())
            }
        })
        .poll_only()
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let job = Task {
        block: true,
        ..Task::n(1)
    }
    .enqueue(db)
    .await
    .unwrap();
    wait_until("the job to run", Duration::from_secs(5), async || {
        worker.running() == 1
    })
    .await;
    assert_eq!(
        jobs::QUEUE.cancel(db, job.id, "stop").await.unwrap(),
        Cancelled::Running
    );
    // The visibility timeout is 1s: a heartbeat every third of it.
    wait_until(
        "the heartbeat to tell the handler",
        Duration::from_secs(3),
        async || told.load(Ordering::SeqCst) == 1,
    )
    .await;
    let stats = worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (stats.lost_leases, stats.stale, stats.completed),
        (1, 1, 0),
        "{stats:?}"
    );
}
