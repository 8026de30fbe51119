//! Schedules (`schedules = [..]` on a queue) against a real PostgreSQL: each tick enqueued
//! exactly once across worker processes, none missed, catch-up after downtime per policy, a
//! changed definition starting afresh. The fixture's `ticking` queue ticks every second.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pgstack::queue::{ClaimedJob, Worker};
use pgstack_tests::TestDb;
use pgstack_tests::db::ticking;
use sea_orm::ConnectionTrait;

const EFFECTS: &str = "CREATE TABLE tick_effects (kind text NOT NULL, tick timestamptz NOT NULL, job bigint NOT NULL)";

/// A worker that records every job it runs in `tick_effects`: its kind, its tick (the job's
/// `created_at`) and its id.
fn recording_worker(db: &sea_orm::DatabaseConnection) -> Worker {
    let mut worker = Worker::new(db, &ticking::QUEUE)
        .concurrency(4)
        .poll_interval(Duration::from_millis(100));
    for kind in ["tick", "tick_last", "nightly"] {
        let db = db.clone();
        worker = worker.handle_raw(kind, move |job: ClaimedJob| {
            let db = db.clone();
            async move {
                db.execute_raw(sea_orm::Statement::from_sql_and_values(
                    sea_orm::DbBackend::Postgres,
                    "INSERT INTO tick_effects (kind, tick, job) VALUES ($1, $2, $3)",
                    [job.kind.into(), job.created_at.into(), job.id.into()],
                ))
                .await?;
                Ok(())
            }
        });
    }
    worker
}

/// The child process of the three-process test: a recording worker (schedules on, as by
/// default) until it is killed. Runs only when that test starts it.
#[test]
#[ignore = "started as a child process by every_tick_is_enqueued_once_across_three_processes"]
fn schedule_worker_child() {
    let Ok(url) = std::env::var("PGSTACK_SCHEDULE_CHILD_URL") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let db = pgstack_tests::connect(&url, 6).await;
        let _running = recording_worker(&db).start().await.unwrap();
        std::future::pending::<()>().await;
    });
}

fn spawn_child(t: &TestDb) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "schedule_worker_child",
            "--ignored",
            "--nocapture",
        ])
        .env("PGSTACK_SCHEDULE_CHILD_URL", &t.url)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

async fn ticks_of(t: &TestDb, kind: &str) -> Vec<(DateTime<Utc>, i64)> {
    let rows = t
        .conn
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT tick, count(DISTINCT job) FROM tick_effects WHERE kind = $1 GROUP BY tick ORDER BY tick",
            [kind.into()],
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
            )
        })
        .collect()
}

async fn jobs_of(t: &TestDb, kind: &str) -> Vec<DateTime<Utc>> {
    let rows = t
        .conn
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT created_at FROM ticking WHERE kind = $1 ORDER BY created_at",
            [kind.into()],
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect()
}

async fn now(t: &TestDb) -> DateTime<Utc> {
    let row = t
        .conn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT now()",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

fn whole_seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_seconds()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tick_is_enqueued_once_across_three_processes() {
    let t = TestDb::migrated().await;
    t.exec(EFFECTS).await;
    let mut children: Vec<_> = (0..3).map(|_| spawn_child(&t)).collect();
    // The schedules count from the first worker's registration.
    let deadline = Instant::now() + Duration::from_secs(30);
    while t
        .column("SELECT count(*)::text FROM pgstack_queue_schedules")
        .await[0]
        == "0"
    {
        assert!(Instant::now() < deadline, "no child worker started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = now(&t).await;
    // Let the three share the schedule, then kill one (it may hold a pass open: that pass
    // rolls back and another process enqueues its ticks), and let two go on.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut killed = children.remove(0);
    killed.kill().unwrap(); // SIGKILL
    killed.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    for mut child in children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let stopped = now(&t).await;
    // What the children enqueued but did not run, run here (schedules off: nothing new).
    let worker = recording_worker(&t.conn)
        .without_schedules()
        .start()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.column("SELECT count(*)::text FROM ticking").await[0] != "0" {
        assert!(Instant::now() < deadline, "tick jobs left unrun");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await;

    let ticks = ticks_of(&t, "tick").await;
    assert!(ticks.len() >= 5, "the schedule ticked: {ticks:?}");
    for (tick, jobs) in &ticks {
        assert_eq!(*jobs, 1, "tick {tick} was enqueued once, not {jobs} times");
    }
    // None missed: one tick every second from the first to the last, the first within a couple
    // of seconds of the start (the children need a moment to start) and the last near the end.
    let (first, last) = (ticks[0].0, ticks[ticks.len() - 1].0);
    assert_eq!(
        ticks.len() as i64,
        whole_seconds(first, last) + 1,
        "a tick every second, none missing: {ticks:?}"
    );
    assert!(
        whole_seconds(started, first) <= 1,
        "first tick {first}, registered {started}"
    );
    assert!(
        whole_seconds(last, stopped) <= 2,
        "last tick {last}, stopped {stopped}"
    );
    // The other every-second schedule ticked alongside, also once per tick.
    let others = ticks_of(&t, "tick_last").await;
    assert!(others.iter().all(|(_, jobs)| *jobs == 1), "{others:?}");
    assert_eq!(others.len(), ticks.len(), "{others:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_missed_while_no_worker_ran_follow_each_schedule_s_catch_up() {
    let t = TestDb::migrated().await;
    // The first pass registers the schedules: they count from now, nothing before.
    let first = ticking::QUEUE.run_schedules(&t.conn).await.unwrap();
    assert!(first.enqueued.len() <= 2, "{first:?}");
    t.exec("DELETE FROM ticking").await;
    // As if every worker had been down for ten seconds.
    t.exec(
        "UPDATE pgstack_queue_schedules SET last_tick = now() - interval '10 seconds' \
         WHERE name <> 'nightly'",
    )
    .await;
    // Eight processes' passes at once decide the same ticks once between them.
    let passes = concurrent_passes(&t, 8).await;
    let enqueued: usize = passes.iter().map(|p| p.enqueued.len()).sum();
    let ticks = jobs_of(&t, "tick").await;
    let caught = jobs_of(&t, "tick_last").await;
    assert_eq!(enqueued, ticks.len() + caught.len(), "{passes:?}");
    let now = now(&t).await;
    // `every_second`: catch_up = "skip", grace 3s. The ticks of the last 3 seconds are on
    // time; the 7 before them were missed and dropped.
    assert!((3..=4).contains(&ticks.len()), "{ticks:?}");
    assert!(
        ticks
            .iter()
            .all(|tick| (now - *tick).num_milliseconds() < 3_000 + 1_000),
        "{ticks:?} at {now}"
    );
    // `every_second_last`: catch_up = "last", grace 1s. The latest missed tick runs once, the
    // on-time one with it; the 8 or so before are dropped.
    assert!((2..=3).contains(&caught.len()), "{caught:?}");
    assert!(
        (now - caught[0]).num_milliseconds() >= 1_000,
        "the first is the missed tick caught up: {caught:?} at {now}"
    );
    assert!(
        passes
            .iter()
            .flat_map(|p| &p.skipped)
            .filter(|(name, _)| *name == "every_second" || *name == "every_second_last")
            .count()
            == 2,
        "both reported dropped ticks: {passes:?}"
    );
    // Tick jobs carry the declared payload and priority, and the queue's attempts.
    let rows = t
        .column(
            "SELECT DISTINCT payload::text || ' ' || priority || ' ' || max_attempts FROM ticking \
             WHERE kind = 'tick'",
        )
        .await;
    assert_eq!(rows, [r#"{"n": 1, "source": "cron"} 0 5"#]);
    // Decided once: a pass right after adds at most the tick of the next second.
    let again = ticking::QUEUE.run_schedules(&t.conn).await.unwrap();
    assert!(again.enqueued.len() <= 2, "{again:?}");
    assert!(again.skipped.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_schedule_whose_definition_changed_starts_again_from_now() {
    let t = TestDb::migrated().await;
    ticking::QUEUE.run_schedules(&t.conn).await.unwrap();
    t.exec("DELETE FROM ticking").await;
    // A row written by an older definition, far behind: its ticks are not the new one's.
    t.exec(
        "UPDATE pgstack_queue_schedules SET cron = '*/5 * * * * *', last_tick = now() - \
         interval '1 hour' WHERE name = 'every_second_last'",
    )
    .await;
    let pass = ticking::QUEUE.run_schedules(&t.conn).await.unwrap();
    assert!(
        pass.skipped
            .iter()
            .all(|(name, _)| *name != "every_second_last"),
        "{pass:?}"
    );
    assert!(jobs_of(&t, "tick_last").await.len() <= 1);
    let cron = t
        .column("SELECT cron FROM pgstack_queue_schedules WHERE name = 'every_second_last'")
        .await;
    assert_eq!(cron, ["* * * * * *"]);
}

#[tokio::test]
async fn a_worker_runs_its_queue_s_schedules_and_registers_each() {
    let t = TestDb::migrated().await;
    t.exec(EFFECTS).await;
    let worker = recording_worker(&t.conn).start().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ticks_of(&t, "tick").await.len() < 2 {
        assert!(Instant::now() < deadline, "no ticks ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await;
    let registered = t
        .column("SELECT name || ' ' || timezone FROM pgstack_queue_schedules ORDER BY name")
        .await;
    assert_eq!(
        registered,
        [
            "every_second UTC",
            "every_second_last UTC",
            "nightly Europe/Berlin"
        ]
    );
}

/// `n` passes started at once, each on its own task (as from as many processes).
async fn concurrent_passes(t: &TestDb, n: usize) -> Vec<pgstack::queue::SchedulePass> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let db = t.conn.clone();
            tokio::spawn(async move { ticking::QUEUE.run_schedules(&db).await })
        })
        .collect();
    let mut passes = Vec::new();
    for task in tasks {
        passes.push(task.await.unwrap().unwrap());
    }
    passes
}
