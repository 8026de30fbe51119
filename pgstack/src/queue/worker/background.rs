//! A worker's background tasks: lease heartbeats, the LISTEN connection, archive upkeep and
//! the queue-depth gauges.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::stats::Counters;
use super::{QueueKey, Shared, queue_key};
use crate::queue::schedule::Schedules;
use crate::queue::{JobToken, Queue};

/// Extends the leases of jobs running longer than a third of the visibility timeout, in one
/// statement per beat. A job no longer held (its lease was taken, or it was cancelled) has its
/// handler told through its cancellation.
pub(super) async fn heartbeat(shared: Arc<Shared>, mut halt: watch::Receiver<bool>) {
    let table = shared.queue.def().table;
    let lease = shared.queue.def().visibility_timeout();
    let beat = (lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(beat) => {}
            _ = halt.changed() => return,
        }
        // Extend the leases that would run out before the beat after next.
        let horizon = Instant::now() + beat * 2;
        let due: Vec<JobToken> = shared
            .inflight()
            .iter()
            .filter(|(_, job)| job.lease_until <= horizon)
            .map(|(id, job)| JobToken {
                id: *id,
                attempt: job.attempt,
            })
            .collect();
        if due.is_empty() {
            continue;
        }
        match shared.queue.extend_lease(&shared.db, &due, None).await {
            Ok(held) => {
                let until = Instant::now() + lease;
                let mut inflight = shared.inflight();
                for id in &held {
                    if let Some(job) = inflight.get_mut(id) {
                        job.lease_until = until;
                    }
                }
                let lost: Vec<i64> = due
                    .iter()
                    .map(|t| t.id)
                    .filter(|id| !held.contains(id))
                    .collect();
                for id in &lost {
                    if let Some(job) = inflight.get(id) {
                        job.cancel.cancel();
                    }
                }
                drop(inflight);
                if !lost.is_empty() {
                    tracing::warn!(queue = table, jobs = ?lost, "pgstack worker: lost the lease of running jobs (cancelled, or taken by another worker after a stall); their handlers are told to stop");
                }
                Counters::add(&shared.stats.lost_leases, lost.len());
                crate::metrics::queue_count(table, "lost_leases", lost.len() as u64);
            }
            Err(e) => shared.database_error("extend_lease", &e),
        }
    }
}

/// LISTENs on the queue's channel over a connection of its own. A plain notification wakes the
/// claimer; `cancel:<id>` (from `Queue::cancel`) tells that job's handler at once.
pub(super) async fn listener(
    shared: Arc<Shared>,
    channel: &'static str,
    mut halt: watch::Receiver<bool>,
) {
    use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
    let table = shared.queue.def().table;
    let options: PgConnectOptions = match &shared.config.listen_url {
        Some(url) => match url.parse() {
            Ok(options) => options,
            Err(e) => {
                tracing::error!(queue = table, error = %e, "pgstack worker: `listen_url` is not a PostgreSQL URL; polling instead of listening");
                return;
            }
        },
        None => (*shared.db.get_postgres_connection_pool().connect_options()).clone(),
    };
    // A pool of one of its own: LISTEN state never reaches the application's pool.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options.clone());
    let mut failures = 0u32;
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            // LISTEN through a transaction pooler reaches a server connection the pooler then
            // gives to other clients: only listen where the server is the one we dialled.
            let row: (Option<i32>,) = sea_orm::sqlx::query_as("SELECT inet_server_port()")
                .fetch_one(&mut listener)
                .await?;
            let direct = options.get_socket().is_some()
                || row.0.is_none()
                || row.0 == Some(i32::from(options.get_port()));
            if !direct {
                return Ok(Err((options.get_port(), row.0.unwrap_or_default())));
            }
            listener.listen(channel).await?;
            Ok::<_, sea_orm::sqlx::Error>(Ok(listener))
        }
        .await;
        let mut listener = match connected {
            Ok(Ok(listener)) => listener,
            Ok(Err((dialled, server))) => {
                tracing::warn!(
                    queue = table,
                    dialled_port = dialled,
                    server_port = server,
                    poll_interval_ms = shared.config.poll_interval.as_millis() as u64,
                    "pgstack worker: the LISTEN connection goes through a pooler or proxy (it \
                     dialled port {dialled}, the server listens on {server}); polling instead. \
                     Give the worker a direct URL with `listen_url` for NOTIFY wake-ups"
                );
                pool.close().await;
                return;
            }
            Err(e) => {
                shared.connection_error("listen", &e.to_string());
                failures = (failures + 1).min(5);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200 << failures)) => continue,
                    _ = halt.changed() => return,
                }
            }
        };
        failures = 0;
        shared.listening.store(true, Ordering::Relaxed);
        // Anything enqueued while we were not listening is found by this wake-up.
        shared.wake.notify_one();
        loop {
            tokio::select! {
                received = listener.recv() => match received {
                    Ok(notification) => match notification.payload().strip_prefix("cancel:") {
                        Some(id) => {
                            if let Ok(id) = id.parse::<i64>()
                                && let Some(job) = shared.inflight().get(&id)
                            {
                                job.cancel.cancel();
                                tracing::info!(queue = table, job = id, "pgstack worker: running job cancelled");
                            }
                        }
                        None => shared.wake.notify_one(),
                    },
                    Err(e) => {
                        shared.listening.store(false, Ordering::Relaxed);
                        shared.connection_error("listen", &e.to_string());
                        break;
                    }
                },
                _ = halt.changed() => {
                    shared.listening.store(false, Ordering::Relaxed);
                    drop(listener);
                    pool.close().await;
                    return;
                }
            }
        }
    }
}

/// Archive upkeep (queues with an archive): partitions ahead, old ones dropped.
pub(super) async fn maintenance(shared: Arc<Shared>, mut halt: watch::Receiver<bool>) {
    loop {
        if let Err(e) = shared.queue.maintain(&shared.db).await {
            shared.database_error("maintain", &e);
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.config.maintenance_interval) => {}
            _ = halt.changed() => return,
        }
    }
}

/// Enqueues the queue's schedule ticks as they fall due: registers the schedules, then runs a
/// pass (`schedule.rs`) and sleeps until the next tick by the database's clock. Each tick is
/// enqueued by exactly one worker's pass; the others find its row locked, or already past it.
pub(super) async fn scheduler(
    shared: Arc<Shared>,
    schedules: Schedules,
    mut halt: watch::Receiver<bool>,
) {
    let table = shared.queue.def().table;
    let mut registered = false;
    loop {
        let mut wait = shared.config.poll_interval;
        if !registered {
            match schedules.register(&shared.db).await {
                Ok(()) => registered = true,
                Err(e) => shared.database_error("register_schedules", &e),
            }
        }
        if registered {
            match schedules.pass(&shared.db).await {
                Ok(pass) => {
                    for (schedule, since) in &pass.skipped {
                        tracing::warn!(queue = table, schedule, %since, "pgstack worker: a schedule missed ticks while no worker ran; dropped them (catch_up)");
                        crate::metrics::queue_schedule_ticks(table, schedule, "skipped", 1);
                    }
                    for (schedule, tick) in &pass.enqueued {
                        tracing::debug!(queue = table, schedule, %tick, "pgstack worker: enqueued a schedule's tick");
                        crate::metrics::queue_schedule_ticks(table, schedule, "enqueued", 1);
                    }
                    if !pass.enqueued.is_empty() {
                        shared.wake.notify_one();
                    }
                    wait = pass.next_in;
                }
                Err(e) => shared.database_error("schedules", &e),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = halt.changed() => return,
        }
    }
}

/// Sets the queue-depth gauges every `metrics_interval`. The gauges are the process's (one
/// per queue), so the workers of one queue in a process take turns: a worker skips its sample
/// when another set the gauges less than an interval ago. (Each sample counts up to 100,000
/// rows of a partial index. Under `pgstack-bench queue` with every worker sampling on its own,
/// pg_stat_statements put the samples at 1.1 s of 8 s of statement time over 5 s with 4
/// workers on a deep backlog, and 1.0 s of 37 s with 16.)
pub(super) async fn sampler(shared: Arc<Shared>, mut halt: watch::Receiver<bool>) {
    loop {
        if take_sampling_turn(shared.queue, shared.config.metrics_interval)
            && let Err(e) = crate::metrics::sample_queue(&shared.db, shared.queue, 100_000).await
        {
            shared.database_error("metrics", &e);
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.config.metrics_interval) => {}
            _ = halt.changed() => return,
        }
    }
}

/// When this process last sampled each queue.
static SAMPLED: Mutex<Vec<(QueueKey, Instant)>> = Mutex::new(Vec::new());

/// Whether the caller should sample `queue` now: no worker of this process did in the last
/// `interval`. Taking the turn records it.
fn take_sampling_turn(queue: &'static Queue, interval: Duration) -> bool {
    let key = queue_key(queue);
    let now = Instant::now();
    // Nothing panics while holding it; recover the list if something ever did.
    let mut sampled = SAMPLED.lock().unwrap_or_else(|e| e.into_inner());
    match sampled.iter_mut().find(|(k, _)| *k == key) {
        Some((_, at)) if now.duration_since(*at) < interval => false,
        Some((_, at)) => {
            *at = now;
            true
        }
        None => {
            sampled.push((key, now));
            true
        }
    }
}
