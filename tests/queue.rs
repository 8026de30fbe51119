//! Queue accessors against a real PostgreSQL: enqueue options, claims, fencing, retries,
//! dead letters, metrics, the archive's partitions.

use std::time::{Duration, Instant};

use chrono::Utc;
use pgstack::Error;
use pgstack::queue::{EnqueueOptions, Failure, Job, NewJob, Payload};
use pgstack_tests::TestDb;
use pgstack_tests::db::{archived, jobs, raw_jobs};
use sea_orm::TransactionTrait;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "jobs")]
struct SendEmail {
    to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "jobs", kind = "report.build")]
struct BuildReport {
    n: u32,
}

#[tokio::test]
async fn typed_enqueue_claim_complete() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    assert_eq!(SendEmail::KIND, "SendEmail");
    assert_eq!(BuildReport::KIND, "report.build");
    let first = SendEmail {
        to: "a@example.com".into(),
    }
    .enqueue(db)
    .await
    .unwrap();
    let second = BuildReport { n: 7 }.enqueue(db).await.unwrap();
    assert!(!first.duplicate && second.id > first.id);

    let claimed = jobs::QUEUE.claim(db, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].kind, "SendEmail");
    assert_eq!(claimed[0].attempt, 1);
    assert_eq!(
        claimed[0].payload.decode::<SendEmail>().unwrap().to,
        "a@example.com"
    );
    assert_eq!(claimed[1].payload, Payload::Json(json!({"n": 7})));
    assert!(claimed[0].lease_expires_at > Utc::now());
    // Claimed jobs are invisible to other claimers until their lease runs out.
    assert!(jobs::QUEUE.claim(db, 10).await.unwrap().is_empty());

    let tokens: Vec<_> = claimed.iter().map(|j| j.token()).collect();
    let done = jobs::QUEUE.complete(db, &tokens).await.unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(
        t.column("SELECT count(*)::text FROM jobs").await,
        ["0"],
        "finished jobs leave the hot table"
    );
}

#[tokio::test]
async fn enqueue_in_a_rolled_back_transaction_leaves_no_job() {
    let t = TestDb::migrated().await;
    let txn = t.conn.begin().await.unwrap();
    SendEmail {
        to: "rolled@back".into(),
    }
    .enqueue(&txn)
    .await
    .unwrap();
    txn.rollback().await.unwrap();
    let txn = t.conn.begin().await.unwrap();
    SendEmail {
        to: "kept@commit".into(),
    }
    .enqueue(&txn)
    .await
    .unwrap();
    txn.commit().await.unwrap();
    let claimed = jobs::QUEUE.claim(&t.conn, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].payload.decode::<SendEmail>().unwrap().to,
        "kept@commit"
    );
}

#[tokio::test]
async fn delayed_jobs_are_invisible_until_due() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let delayed = SendEmail { to: "later".into() }
        .enqueue_with(
            db,
            &EnqueueOptions::default().delay(Duration::from_millis(600)),
        )
        .await
        .unwrap();
    let at = SendEmail { to: "at".into() }
        .enqueue_with(
            db,
            &EnqueueOptions::default().run_at(Utc::now() + chrono::Duration::hours(1)),
        )
        .await
        .unwrap();
    assert!(jobs::QUEUE.claim(db, 10).await.unwrap().is_empty());
    let metrics = jobs::QUEUE.metrics(db, 1000).await.unwrap();
    assert_eq!((metrics.ready, metrics.scheduled), (0, 2));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let claimed = jobs::QUEUE.claim(db, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [delayed.id]
    );
    assert!(at.id != delayed.id);
}

#[tokio::test]
async fn priority_order() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    for (n, priority) in [(1, 5i16), (2, 1), (3, 3), (4, 1), (5, -2)] {
        BuildReport { n }
            .enqueue_with(db, &EnqueueOptions::default().priority(priority))
            .await
            .unwrap();
    }
    let mut order = Vec::new();
    loop {
        let batch = jobs::QUEUE.claim(db, 2).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for job in &batch {
            order.push(job.payload.decode::<BuildReport>().unwrap().n);
        }
    }
    // Lower priority first; equal priorities in enqueue order.
    assert_eq!(order, [5, 2, 4, 3, 1]);

    // Queues without priorities refuse them.
    let err = raw_jobs::QUEUE
        .enqueue_payload(
            db,
            "k",
            &Payload::Bytes(vec![1]),
            &EnqueueOptions::default().priority(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("priorities = true"), "{err}");
}

#[tokio::test]
async fn unique_keys_deduplicate_waiting_and_running_jobs() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let opts = EnqueueOptions::default().unique_key("report:42");
    let first = BuildReport { n: 1 }.enqueue_with(db, &opts).await.unwrap();
    let again = BuildReport { n: 2 }.enqueue_with(db, &opts).await.unwrap();
    assert_eq!((again.id, again.duplicate), (first.id, true));
    // Still a duplicate while it runs.
    let claimed = jobs::QUEUE.claim(db, 1).await.unwrap();
    let running = BuildReport { n: 3 }.enqueue_with(db, &opts).await.unwrap();
    assert_eq!((running.id, running.duplicate), (first.id, true));
    // Once finished, the key is free.
    jobs::QUEUE
        .complete(db, &[claimed[0].token()])
        .await
        .unwrap();
    let fresh = BuildReport { n: 4 }.enqueue_with(db, &opts).await.unwrap();
    assert!(!fresh.duplicate && fresh.id != first.id);

    // A batch: keys repeated inside it and keys already present, results in input order.
    let batch = vec![
        NewJob::json("report.build", &json!({"n": 10}))
            .unwrap()
            .with(EnqueueOptions::default().unique_key("a")),
        NewJob::json("report.build", &json!({"n": 11})).unwrap(),
        NewJob::json("report.build", &json!({"n": 12}))
            .unwrap()
            .with(EnqueueOptions::default().unique_key("a")),
        NewJob::json("report.build", &json!({"n": 13}))
            .unwrap()
            .with(opts.clone()),
        NewJob::json("report.build", &json!({"n": 14})).unwrap(),
    ];
    let results = jobs::QUEUE.enqueue_many(db, &batch).await.unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0].id, results[2].id);
    assert_eq!(
        results.iter().map(|r| r.duplicate).collect::<Vec<_>>(),
        [false, false, true, true, false]
    );
    assert_eq!(results[3].id, fresh.id);
    assert!(results[1].id < results[4].id, "new ids follow input order");
    assert_eq!(t.column("SELECT count(*)::text FROM jobs").await, ["4"]);
}

#[tokio::test]
async fn enqueue_many_is_one_statement_and_keeps_input_order() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let reports: Vec<BuildReport> = (0..500).map(|n| BuildReport { n }).collect();
    let ids = BuildReport::enqueue_many(db, &reports).await.unwrap();
    assert_eq!(ids.len(), 500);
    assert!(ids.windows(2).all(|w| w[0].id < w[1].id));
    let rows = t
        .column("SELECT (payload->>'n') FROM jobs ORDER BY id")
        .await;
    let expected: Vec<String> = (0..500).map(|n| n.to_string()).collect();
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn stale_completions_and_failures_are_no_ops() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    SendEmail { to: "x".into() }.enqueue(db).await.unwrap();
    let first = jobs::QUEUE
        .claim_with_lease(db, 1, Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The lease expired: another claimer takes the job, as attempt 2.
    let second = jobs::QUEUE.claim(db, 1).await.unwrap();
    assert_eq!((second[0].id, second[0].attempt), (first[0].id, 2));

    // The first worker wakes up late: its completion, failure and heartbeat change nothing.
    assert!(
        jobs::QUEUE
            .complete(db, &[first[0].token()])
            .await
            .unwrap()
            .is_empty()
    );
    let report = jobs::QUEUE
        .fail(db, &[Failure::of(&first[0], "late")])
        .await
        .unwrap();
    assert!(report.retried.is_empty() && report.dead.is_empty());
    assert!(
        jobs::QUEUE
            .extend_lease(db, &[first[0].token()], None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        t.column("SELECT attempt::text || coalesce(last_error, '-') FROM jobs")
            .await,
        ["2-"]
    );

    // The current holder completes it.
    assert_eq!(
        jobs::QUEUE
            .complete(db, &[second[0].token()])
            .await
            .unwrap(),
        [first[0].id]
    );
}

#[tokio::test]
async fn retries_back_off_then_dead_letter_with_the_error() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let enqueued = SendEmail { to: "flaky".into() }.enqueue(db).await.unwrap();
    // max_attempts = 3, exponential from 200ms without jitter: waits of 200ms, then 400ms.
    let mut claimed_at = Vec::new();
    let start = Instant::now();
    for attempt in 1..=3 {
        let job = loop {
            if let Some(job) = jobs::QUEUE.claim(db, 1).await.unwrap().pop() {
                break job;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "job never came back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        claimed_at.push(start.elapsed());
        assert_eq!(job.attempt, attempt);
        if attempt > 1 {
            assert_eq!(
                job.last_error.as_deref(),
                Some(format!("boom {}", attempt - 1).as_str())
            );
        }
        let report = jobs::QUEUE
            .fail(db, &[Failure::of(&job, format!("boom {attempt}"))])
            .await
            .unwrap();
        if attempt < 3 {
            assert_eq!(report.retried, [job.id]);
        } else {
            assert_eq!(report.dead, [job.id]);
        }
    }
    assert!(
        claimed_at[1] - claimed_at[0] >= Duration::from_millis(190),
        "{claimed_at:?}"
    );
    assert!(
        claimed_at[2] - claimed_at[1] >= Duration::from_millis(390),
        "{claimed_at:?}"
    );

    let dead = jobs::QUEUE.dead_letters(db, None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id, dead[0].attempt), (enqueued.id, 3));
    assert_eq!(dead[0].last_error.as_deref(), Some("boom 3"));
    assert_eq!(dead[0].payload.decode::<SendEmail>().unwrap().to, "flaky");
    assert_eq!(jobs::QUEUE.metrics(db, 100).await.unwrap().dead, 1);

    // Redrive: back in the queue with fresh attempts, same id.
    assert_eq!(
        jobs::QUEUE.redrive(db, &[enqueued.id]).await.unwrap(),
        [enqueued.id]
    );
    assert!(
        jobs::QUEUE
            .dead_letters(db, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let job = jobs::QUEUE.claim(db, 1).await.unwrap().pop().unwrap();
    assert_eq!((job.id, job.attempt), (enqueued.id, 1));
}

#[tokio::test]
async fn discarded_failures_skip_remaining_attempts() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    SendEmail { to: "bad".into() }.enqueue(db).await.unwrap();
    let job = jobs::QUEUE.claim(db, 1).await.unwrap().pop().unwrap();
    let mut failure = Failure::of(&job, "cannot ever work");
    failure.discard = true;
    let report = jobs::QUEUE.fail(db, &[failure]).await.unwrap();
    assert_eq!(report.dead, [job.id]);
    // Redrive of many at once.
    assert_eq!(jobs::QUEUE.redrive_all(db, 100).await.unwrap(), [job.id]);
}

#[tokio::test]
async fn metrics_count_each_state() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    for n in 0..5 {
        BuildReport { n }.enqueue(db).await.unwrap();
    }
    BuildReport { n: 99 }
        .enqueue_with(
            db,
            &EnqueueOptions::default().delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let running = jobs::QUEUE.claim(db, 2).await.unwrap();
    let m = jobs::QUEUE.metrics(db, 1000).await.unwrap();
    assert_eq!((m.ready, m.running, m.scheduled, m.dead), (3, 2, 1, 0));
    assert!(
        m.oldest_ready_age.unwrap() >= Duration::from_millis(40),
        "{m:?}"
    );
    // Counts stop at the cap.
    let capped = jobs::QUEUE.metrics(db, 2).await.unwrap();
    assert_eq!((capped.ready, capped.cap), (2, 2));
    // An expired lease counts as ready again.
    jobs::QUEUE
        .complete(db, &[running[0].token()])
        .await
        .unwrap();
    t.exec("UPDATE jobs SET visible_at = now() - interval '1 second' WHERE claimed_at IS NOT NULL")
        .await;
    let m = jobs::QUEUE.metrics(db, 1000).await.unwrap();
    assert_eq!((m.ready, m.running), (4, 0));
}

#[tokio::test]
async fn the_claim_uses_the_partial_indexes() {
    let t = TestDb::migrated().await;
    let batch: Vec<BuildReport> = (0..2000).map(|n| BuildReport { n }).collect();
    BuildReport::enqueue_many(&t.conn, &batch).await.unwrap();
    t.exec("ANALYZE jobs").await;
    let plan = t
        .column(
            "EXPLAIN SELECT id FROM jobs WHERE claimed_at IS NULL AND visible_at <= now()
             ORDER BY priority, visible_at LIMIT 10 FOR UPDATE SKIP LOCKED",
        )
        .await
        .join("\n");
    assert!(plan.contains("Index Scan using jobs_ready_idx"), "{plan}");
    let plan = t
        .column(
            "EXPLAIN SELECT id FROM jobs WHERE claimed_at IS NOT NULL AND visible_at <= now()
             ORDER BY visible_at LIMIT 10 FOR UPDATE SKIP LOCKED",
        )
        .await
        .join("\n");
    assert!(plan.contains("jobs_lease_idx"), "{plan}");
    let storage = t
        .column("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'jobs'")
        .await;
    assert!(storage[0].contains("fillfactor=70"), "{storage:?}");
}

#[tokio::test]
async fn bytes_payloads() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let sent = raw_jobs::QUEUE
        .enqueue_payload(
            db,
            "blob",
            &Payload::Bytes(vec![0, 1, 2, 255]),
            &EnqueueOptions::default(),
        )
        .await
        .unwrap();
    let err = raw_jobs::QUEUE
        .enqueue(db, "json", &json!({"a": 1}), &EnqueueOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bytea payloads"), "{err}");
    let job = raw_jobs::QUEUE.claim(db, 1).await.unwrap().pop().unwrap();
    assert_eq!(
        (job.id, job.payload.as_bytes()),
        (sent.id, Some(&[0u8, 1, 2, 255][..]))
    );
    // No dead-letter table, no archive: an exhausted job is deleted.
    let mut failure = Failure::of(&job, "gone");
    failure.discard = true;
    assert_eq!(
        raw_jobs::QUEUE.fail(db, &[failure]).await.unwrap().dead,
        [job.id]
    );
    assert_eq!(t.column("SELECT count(*)::text FROM raw_jobs").await, ["0"]);
    let err = raw_jobs::QUEUE.dead_letters(db, None, 1).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
}

#[tokio::test]
async fn archive_partitions_are_created_ahead_and_dropped_past_retention() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let partitions = || async {
        t.column(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'archived_archive'::regclass ORDER BY 1",
        )
        .await
    };
    let day = |offset: i64| {
        (Utc::now() + chrono::Duration::days(offset))
            .format("%Y%m%d")
            .to_string()
    };

    // Before maintenance, finished jobs land in the default partition.
    archived::QUEUE
        .enqueue(db, "early", &json!({}), &EnqueueOptions::default())
        .await
        .unwrap();
    let job = archived::QUEUE.claim(db, 1).await.unwrap().pop().unwrap();
    archived::QUEUE.complete(db, &[job.token()]).await.unwrap();
    assert_eq!(
        t.column("SELECT tableoid::regclass::text FROM archived_archive")
            .await,
        ["archived_archive_default"]
    );

    // Maintenance creates today's partition and three ahead, moving the stray row in.
    let report = archived::QUEUE.maintain(db).await.unwrap();
    assert_eq!(report.created.len(), 4, "{report:?}");
    assert_eq!(report.moved_from_default, 1);
    let expected: Vec<String> = (0..4)
        .map(|d| format!("archived_archive_p{}", day(d)))
        .chain(["archived_archive_default".to_string()])
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(partitions().await, expected_sorted);
    assert_eq!(
        t.column("SELECT tableoid::regclass::text || ':' || outcome FROM archived_archive")
            .await,
        [format!("archived_archive_p{}:completed", day(0))]
    );
    // A second run in the same period does nothing.
    let again = archived::QUEUE.maintain(db).await.unwrap();
    assert!(
        again.created.is_empty() && again.dropped.is_empty(),
        "{again:?}"
    );

    // Exhausted jobs are archived as discarded (no dead-letter table on this queue).
    archived::QUEUE
        .enqueue(
            db,
            "doomed",
            &json!({}),
            &EnqueueOptions::default().max_attempts(1),
        )
        .await
        .unwrap();
    let job = archived::QUEUE.claim(db, 1).await.unwrap().pop().unwrap();
    archived::QUEUE
        .fail(db, &[Failure::of(&job, "no")])
        .await
        .unwrap();
    assert_eq!(
        t.column("SELECT outcome || ':' || last_error FROM archived_archive WHERE kind = 'doomed'")
            .await,
        ["discarded:no"]
    );

    // Five days later, with two days of retention: today's and tomorrow's are gone, new
    // ones exist up to three days ahead of then.
    let later = Utc::now() + chrono::Duration::days(5);
    let report = archived::QUEUE.maintain_at(db, later).await.unwrap();
    let mut dropped = report.dropped.clone();
    dropped.sort();
    assert_eq!(
        dropped,
        [
            format!("archived_archive_p{}", day(0)),
            format!("archived_archive_p{}", day(1)),
            format!("archived_archive_p{}", day(2))
        ]
    );
    assert_eq!(report.created.len(), 4, "{report:?}");
    assert_eq!(
        t.column("SELECT count(*)::text FROM archived_archive")
            .await,
        ["0"]
    );
    assert!(
        !partitions()
            .await
            .contains(&format!("archived_archive_p{}", day(0)))
    );
}

#[tokio::test]
async fn concurrent_claimers_never_share_a_job() {
    let t = TestDb::migrated().await;
    let reports: Vec<BuildReport> = (0..1000).map(|n| BuildReport { n }).collect();
    for chunk in reports.chunks(250) {
        BuildReport::enqueue_many(&t.conn, chunk).await.unwrap();
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let db = t.conn.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = jobs::QUEUE.claim(&db, 7).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                mine.extend(batch.iter().map(|j| j.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((total, all.len()), (1000, 1000), "every job claimed once");
}

#[tokio::test]
async fn inserts_notify_only_while_a_worker_waits() {
    use sea_orm::sqlx::postgres::PgListener;
    let t = TestDb::migrated().await;
    let channel = jobs::DEF.notify_channel.unwrap();
    let mut listener = PgListener::connect(&t.url).await.unwrap();
    listener.listen(channel).await.unwrap();
    let heard = |listener: &mut PgListener| {
        let mut got = 0;
        while listener.next_buffered().is_some() {
            got += 1;
        }
        got
    };

    // Nobody waits: an enqueue skips NOTIFY (and its commit-time lock).
    SendEmail { to: "a".into() }.enqueue(&t.conn).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
    assert!(quiet.is_err(), "no notification without a waiting worker");

    // A worker registers before blocking: now enqueues wake it, one NOTIFY per statement.
    jobs::QUEUE.wait_start(&t.conn, "worker-1").await.unwrap();
    SendEmail { to: "b".into() }.enqueue(&t.conn).await.unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
    assert_eq!(woke.expect("a notification").unwrap().channel(), channel);
    let batch: Vec<SendEmail> = (0..50).map(|n| SendEmail { to: n.to_string() }).collect();
    SendEmail::enqueue_many(&t.conn, &batch).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
    assert!(first.is_ok(), "the batch notifies");
    assert_eq!(heard(&mut listener), 0, "once for the whole batch");

    // Stale registrations (a crashed worker) stop counting after five minutes.
    t.exec("UPDATE pgstack_queue_waiters SET seen_at = now() - interval '6 minutes'")
        .await;
    SendEmail { to: "c".into() }.enqueue(&t.conn).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
    assert!(quiet.is_err(), "a stale waiter does not count");
    jobs::QUEUE.wait_end(&t.conn, "worker-1").await.unwrap();
    assert_eq!(
        t.column("SELECT count(*)::text FROM pgstack_queue_waiters")
            .await,
        ["0"]
    );
}

/// The claim reads its limit behind a sub-select, so PostgreSQL keeps the cached generic plan
/// (given the number it would price each claim exactly and plan every one afresh); the plan
/// still walks the ready index in claim order, on a queue with priorities and without.
#[tokio::test]
async fn claims_keep_a_generic_plan_in_claim_order() {
    let t = TestDb::migrated().await;
    // One at a time, so that claim order (by enqueue time) is id order.
    for n in 0..200 {
        BuildReport { n }.enqueue(&t.conn).await.unwrap();
        let job = NewJob::json("k", &json!({ "n": n })).unwrap();
        archived::QUEUE.enqueue_many(&t.conn, &[job]).await.unwrap();
    }
    // Then a deep backlog behind them: the planner prices a claim on it.
    for _ in 0..10 {
        let batch: Vec<NewJob> = (0..5000)
            .map(|n| NewJob::json("k", &json!({ "n": n })).unwrap())
            .collect();
        jobs::QUEUE.enqueue_many(&t.conn, &batch).await.unwrap();
        archived::QUEUE.enqueue_many(&t.conn, &batch).await.unwrap();
    }
    t.exec("ANALYZE jobs; ANALYZE archived").await;
    for (queue, table) in [
        (&jobs::QUEUE as &pgstack::queue::Queue, "\"jobs\""),
        (&archived::QUEUE, "\"archived\""),
    ] {
        // One connection (a transaction) so its prepared statements can be read back.
        let txn = t.conn.begin().await.unwrap();
        let mut last = 0;
        for round in 1..=8 {
            let claimed = queue.claim(&txn, round * 3).await.unwrap();
            assert_eq!(claimed.len(), round * 3);
            let ids: Vec<i64> = claimed.iter().map(|j| j.id).collect();
            assert!(ids.iter().all(|&id| id > last), "{table}: claim order");
            last = *ids.iter().max().unwrap();
        }
        let fragment = format!("UPDATE \"public\".{table} AS q");
        let (generic, custom) = pgstack_tests::plan_counts(&txn, &fragment).await;
        assert!(
            generic >= 3 && custom <= 5,
            "{table}: generic {generic}, custom {custom}"
        );
        txn.rollback().await.unwrap();
    }
}

/// `generate` writes `<queue>_enqueue(...)` per queue: from SQL (a trigger, psql) it writes the
/// row the runtime's enqueue writes and deduplicates unique keys the same way (the table's
/// notify trigger fires for it as for any insert).
#[tokio::test]
async fn the_sql_enqueue_function_writes_the_runtime_s_row() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let payload = json!({"to": "a@example.com", "n": 1});
    let options = EnqueueOptions::default().priority(3).unique_key("u-rust");
    let ours = jobs::QUEUE
        .enqueue_payload(db, "Mail", &Payload::Json(payload.clone()), &options)
        .await
        .unwrap()
        .id;
    let sql = |call: &str| format!("SELECT {call}::text");
    let theirs: i64 = t
        .column(&sql(
            "jobs_enqueue('Mail', '{\"to\": \"a@example.com\", \"n\": 1}', NULL, 3::smallint, 3, 'u-sql')",
        ))
        .await[0]
        .parse()
        .unwrap();
    let row = |id: i64| {
        format!(
            "SELECT concat_ws('|', kind, payload, priority, attempt, max_attempts, last_error, \
             claimed_at, visible_at <= now(), created_at <= now(), \
             now() - visible_at < interval '1 minute') FROM jobs WHERE id = {id}"
        )
    };
    assert_eq!(t.column(&row(ours)).await, t.column(&row(theirs)).await);
    // Defaults: the spec's max_attempts, priority 0, now, no key, exactly as the runtime's.
    let plain_ours = jobs::QUEUE
        .enqueue_payload(
            db,
            "Mail",
            &Payload::Json(payload),
            &EnqueueOptions::default(),
        )
        .await
        .unwrap()
        .id;
    let plain_theirs: i64 = t
        .column(&sql(
            "jobs_enqueue('Mail', '{\"to\": \"a@example.com\", \"n\": 1}')",
        ))
        .await[0]
        .parse()
        .unwrap();
    assert_eq!(
        t.column(&row(plain_ours)).await,
        t.column(&row(plain_theirs)).await
    );
    let keys = t
        .column(&format!(
            "SELECT coalesce(unique_key, '-') FROM jobs WHERE id IN ({ours}, {theirs}, {plain_ours}, {plain_theirs}) ORDER BY id"
        ))
        .await;
    assert_eq!(keys, ["u-rust", "u-sql", "-", "-"]);

    // A unique key already waiting: the same job back, from either side.
    let again: i64 = t
        .column(&sql(
            "jobs_enqueue('Mail', '{}', NULL, 0::smallint, 3, 'u-rust')",
        ))
        .await[0]
        .parse()
        .unwrap();
    assert_eq!(again, ours);
    let again = jobs::QUEUE
        .enqueue_payload(
            db,
            "Mail",
            &Payload::Json(json!({})),
            &EnqueueOptions::default().unique_key("u-sql"),
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, theirs);

    // Scheduled from SQL: invisible until due, then claimed like any job.
    t.exec("SELECT archived_enqueue('k', '{\"n\": 7}', now() + interval '300 ms')")
        .await;
    assert!(archived::QUEUE.claim(db, 10).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let claimed = archived::QUEUE.claim(db, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].payload.as_json(), Some(&json!({"n": 7})));
    assert_eq!(claimed[0].max_attempts, 2, "the spec's max_attempts");

    // A bytea queue takes bytea.
    t.exec("SELECT raw_jobs_enqueue('blob', '\\x0102'::bytea)")
        .await;
    let raw = raw_jobs::QUEUE.claim(db, 10).await.unwrap();
    assert_eq!(raw[0].payload.as_bytes(), Some(&[1u8, 2][..]));
}

/// Key modes under concurrency: replace and debounce keep one waiting job per key with the
/// latest payload (debounce also the latest run time); throttle keeps one job per key per
/// window; a running job is never changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_modes_replace_debounce_and_throttle_under_concurrency() {
    use pgstack::queue::KeyMode;
    let t = TestDb::migrated_with_pool(20).await;
    let conn = t.conn.clone();
    let enqueue = move |n: u32, mode: KeyMode, key: &'static str, delay: Duration| {
        let db = conn.clone();
        async move {
            jobs::QUEUE
                .enqueue_payload(
                    &db,
                    "k",
                    &Payload::Json(json!({ "n": n })),
                    &EnqueueOptions::default()
                        .unique_key(key)
                        .key_mode(mode)
                        .delay(delay),
                )
                .await
                .unwrap()
        }
    };
    let waiting =
        |key: &str| format!("SELECT count(*)::text FROM jobs WHERE unique_key LIKE '{key}%'");

    // Replace: 16 at once, one job, whose payload is one of theirs; then a last one wins.
    let all: Vec<_> = (0..16)
        .map(|n| tokio::spawn(enqueue(n, KeyMode::Replace, "r", Duration::ZERO)))
        .collect();
    let mut ids = Vec::new();
    for task in all {
        ids.push(task.await.unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one job for the key");
    assert_eq!(t.column(&waiting("r")).await, ["1"]);
    enqueue(99, KeyMode::Replace, "r", Duration::ZERO).await;
    let payload = t
        .column("SELECT payload->>'n' FROM jobs WHERE unique_key = 'r'")
        .await;
    assert_eq!(payload, ["99"], "the last replace wins");

    // A running job is never changed.
    let claimed = jobs::QUEUE.claim(&t.conn, 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let back = enqueue(100, KeyMode::Replace, "r", Duration::from_secs(60)).await;
    assert!(back.duplicate);
    assert_eq!(back.id, claimed[0].id);
    let row = t
        .column("SELECT payload->>'n' || ' ' || (visible_at > now() + interval '30 s') FROM jobs WHERE unique_key = 'r'")
        .await;
    assert_eq!(
        row,
        ["99 false"],
        "the running job kept its payload and lease"
    );
    jobs::QUEUE
        .complete(&t.conn, &[claimed[0].token()])
        .await
        .unwrap();

    // Debounce: each enqueue pushes the run time back; the job runs after the last one.
    let delay = Duration::from_millis(1000);
    let first_at = Instant::now();
    let first = enqueue(1, KeyMode::Debounce, "d", delay).await;
    let mut last_at = first_at;
    for n in 2..=5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        last_at = Instant::now();
        let again = enqueue(n, KeyMode::Debounce, "d", delay).await;
        assert_eq!(again.id, first.id);
    }
    // Past the first enqueue's run time: the job has moved on (checked unless the machine
    // stalled so long that the last run time has come too).
    let until = |at: Instant| at.saturating_duration_since(Instant::now());
    tokio::time::sleep(until(first_at + Duration::from_millis(1150))).await;
    if last_at.elapsed() < Duration::from_millis(900) {
        let early = jobs::QUEUE.claim(&t.conn, 10).await.unwrap();
        assert!(early.is_empty(), "the run time moved");
    }
    tokio::time::sleep(until(last_at + Duration::from_millis(1100))).await;
    let due = jobs::QUEUE.claim(&t.conn, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].payload.as_json(), Some(&json!({"n": 5})));
    jobs::QUEUE
        .complete(&t.conn, &[due[0].token()])
        .await
        .unwrap();

    // Throttle: enqueues every 10ms from 8 tasks for 1.5s, a job claimed and completed as soon
    // as it is due: one job per 300ms window at most.
    let window = Duration::from_millis(300);
    let started = Instant::now();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let enqueue = enqueue.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while started.elapsed() < Duration::from_millis(1500) {
                    enqueue(w * 1000 + n, KeyMode::Throttle(window), "t", Duration::ZERO).await;
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    let mut ran = Vec::new();
    while started.elapsed() < Duration::from_millis(2200) {
        for job in jobs::QUEUE.claim(&t.conn, 10).await.unwrap() {
            ran.push(job.unique_key.clone().unwrap_or_default());
            jobs::QUEUE.complete(&t.conn, &[job.token()]).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let mut windows = ran.clone();
    windows.dedup();
    assert_eq!(windows.len(), ran.len(), "one job per window: {ran:?}");
    assert!(
        (4..=7).contains(&ran.len()),
        "about 1.5s / 300ms windows ran: {ran:?}"
    );
    assert!(ran.iter().all(|k| k.starts_with("t@")), "{ran:?}");

    // A mode needs a key, and is for single enqueues.
    let err = jobs::QUEUE
        .enqueue_payload(
            &t.conn,
            "k",
            &Payload::Json(json!({})),
            &EnqueueOptions::default().key_mode(KeyMode::Replace),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs a unique key"), "{err}");
    let job = NewJob::json("k", &json!({})).unwrap().with(
        EnqueueOptions::default()
            .unique_key("m")
            .key_mode(KeyMode::Debounce),
    );
    let err = jobs::QUEUE.enqueue_many(&t.conn, &[job]).await.unwrap_err();
    assert!(err.to_string().contains("single enqueues"), "{err}");

    // Group keys need `groups = true`.
    let err = jobs::QUEUE
        .enqueue_payload(
            &t.conn,
            "k",
            &Payload::Json(json!({})),
            &EnqueueOptions::default().group_key("g"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("groups = true"), "{err}");
}
