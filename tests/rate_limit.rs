//! Rate limiters against a real PostgreSQL: every algorithm holds its limit under 32 concurrent
//! callers on one key, refills as specified, honours costs, and peeks without consuming.

use std::time::Duration;

use pgstack::rate_limit::RateLimiter;
use pgstack_tests::TestDb;
use pgstack_tests::db::{
    fast_bucket, fast_fixed, fast_gcra, fast_sliding, hour_bucket, hour_fixed, hour_gcra,
    hour_sliding,
};

/// One limiter per algorithm, each allowing 10 per hour (burst 10): no refill during a test.
fn hour_limiters() -> [(&'static str, &'static RateLimiter); 4] {
    [
        ("gcra", &hour_gcra::LIMITER),
        ("fixed_window", &hour_fixed::LIMITER),
        ("sliding_window", &hour_sliding::LIMITER),
        ("token_bucket", &hour_bucket::LIMITER),
    ]
}

/// 32 callers, 5 checks each, at once on one key: returns how many passed.
async fn hammer(t: &TestDb, limiter: &'static RateLimiter, key: &str) -> usize {
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (db, key) = (t.conn.clone(), key.to_string());
        tasks.push(tokio::spawn(async move {
            let mut passed = 0;
            for _ in 0..5 {
                if limiter.check(&db, &key).await.unwrap().allowed {
                    passed += 1;
                }
            }
            passed
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_never_exceed_the_limit() {
    let t = TestDb::migrated().await;
    // Each limiter allows 10 (burst 10, or 10 per window) and refills over an hour, so within
    // the test exactly 10 of the 160 checks may pass, however they interleave.
    for (name, limiter) in hour_limiters() {
        let passed = hammer(&t, limiter, "hot-key").await;
        assert_eq!(passed, 10, "{name}: exactly the limit passes");
        let denied = limiter.check(&t.conn, "hot-key").await.unwrap();
        assert!(!denied.allowed, "{name}");
        assert_eq!(denied.remaining, 0, "{name}");
        // Refills take minutes; the fixed window, aligned to the hour, may end any moment.
        let soonest = if name == "fixed_window" {
            Duration::ZERO
        } else {
            Duration::from_secs(60)
        };
        assert!(denied.retry_after.unwrap() > soonest, "{name}: {denied:?}");
        // Other keys are independent.
        assert!(
            limiter.check(&t.conn, "other-key").await.unwrap().allowed,
            "{name}"
        );
    }
}

#[tokio::test]
async fn windows_and_buckets_refill_as_specified() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    // 5 per 500ms. GCRA and the token bucket refill one request every 100ms.
    for (name, limiter) in [
        ("gcra", &fast_gcra::LIMITER),
        ("token_bucket", &fast_bucket::LIMITER),
    ] {
        for _ in 0..5 {
            assert!(limiter.check(db, "k").await.unwrap().allowed, "{name}");
        }
        let denied = limiter.check(db, "k").await.unwrap();
        assert!(!denied.allowed, "{name}");
        let retry = denied.retry_after.unwrap();
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_millis(100),
            "{name}: {retry:?}"
        );
        tokio::time::sleep(retry + Duration::from_millis(20)).await;
        assert!(
            limiter.check(db, "k").await.unwrap().allowed,
            "{name}: one refilled"
        );
        assert!(
            !limiter.check(db, "k").await.unwrap().allowed,
            "{name}: only one"
        );
        tokio::time::sleep(Duration::from_millis(550)).await;
        let full = limiter.peek(db, "k").await.unwrap();
        assert_eq!(full.remaining, 5, "{name}: full after a period: {full:?}");
    }

    // The fixed window resets at its boundary.
    let limiter = &fast_fixed::LIMITER;
    let mut passed = 0;
    for _ in 0..8 {
        if limiter.check(db, "k").await.unwrap().allowed {
            passed += 1;
        }
    }
    // The burst may straddle a boundary; at most 5 per window either way.
    assert!((5..=8).contains(&passed), "{passed}");
    let denied = loop {
        let d = limiter.check(db, "k").await.unwrap();
        if !d.allowed {
            break d;
        }
    };
    let wait = denied.retry_after.unwrap();
    assert!(wait <= Duration::from_millis(500), "{wait:?}");
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    assert!(
        limiter.check(db, "k").await.unwrap().allowed,
        "a new window"
    );

    // The sliding window frees a slot when the oldest request leaves it.
    let limiter = &fast_sliding::LIMITER;
    for _ in 0..5 {
        assert!(limiter.check(db, "k").await.unwrap().allowed);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let denied = limiter.check(db, "k").await.unwrap();
    assert!(!denied.allowed);
    let wait = denied.retry_after.unwrap();
    // The first request was ~200ms ago: it leaves the 500ms window in ~300ms.
    assert!(
        wait > Duration::from_millis(200) && wait <= Duration::from_millis(320),
        "{wait:?}"
    );
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    assert!(limiter.check(db, "k").await.unwrap().allowed);
    assert!(
        !limiter.check(db, "k").await.unwrap().allowed,
        "one slot freed, not more"
    );
}

#[tokio::test]
async fn costs_peeks_resets_and_headers() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    for (name, limiter) in hour_limiters() {
        let fresh = limiter.peek(db, "c").await.unwrap();
        assert!(fresh.allowed && fresh.remaining == 10, "{name}: {fresh:?}");
        let d = limiter.check_cost(db, "c", 4).await.unwrap();
        assert!(d.allowed && d.remaining == 6, "{name}: {d:?}");
        let d = limiter.check_cost(db, "c", 4).await.unwrap();
        assert!(d.allowed && d.remaining == 2, "{name}: {d:?}");
        let denied = limiter.check_cost(db, "c", 4).await.unwrap();
        assert!(
            !denied.allowed && denied.remaining == 2,
            "{name}: a denied check consumes nothing: {denied:?}"
        );
        // A peek changes nothing either.
        for _ in 0..3 {
            assert_eq!(limiter.peek(db, "c").await.unwrap().remaining, 2, "{name}");
        }
        assert!(
            limiter.check_cost(db, "c", 2).await.unwrap().allowed,
            "{name}"
        );
        // More than the capacity can never pass: refused, not "retry after" a time at which
        // it would still not pass.
        for cost in [11, 1000, u64::MAX] {
            let err = limiter.check_cost(db, "big", cost).await.unwrap_err();
            assert!(
                matches!(err, pgstack::Error::InvalidArgument { .. })
                    && err
                        .to_string()
                        .contains(&format!("a cost of {cost} can never pass"))
                    && err.to_string().contains("between 1 and 10"),
                "{name}: {err}"
            );
        }
        assert_eq!(
            limiter.peek(db, "big").await.unwrap().remaining,
            10,
            "{name}"
        );
        limiter.reset(db, "c").await.unwrap();
        assert_eq!(limiter.peek(db, "c").await.unwrap().remaining, 10, "{name}");

        let headers = denied.headers("api");
        let get = |h: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == h)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("RateLimit-Limit").as_deref(), Some("10"), "{name}");
        assert_eq!(get("RateLimit-Remaining").as_deref(), Some("2"), "{name}");
        assert!(get("Retry-After").is_some(), "{name}");
        assert_eq!(
            get("RateLimit-Policy").as_deref(),
            Some("\"api\";q=10;w=3600"),
            "{name}"
        );
        assert!(
            get("RateLimit").unwrap().starts_with("\"api\";r=2;t="),
            "{name}"
        );
    }
}

#[tokio::test]
async fn sweeps_forget_only_idle_keys_and_tables_are_unlogged() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    for limiter in [
        &fast_gcra::LIMITER,
        &fast_fixed::LIMITER,
        &fast_sliding::LIMITER,
        &fast_bucket::LIMITER,
    ] {
        limiter.check(db, "old").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for limiter in [
        &fast_gcra::LIMITER,
        &fast_fixed::LIMITER,
        &fast_sliding::LIMITER,
        &fast_bucket::LIMITER,
    ] {
        limiter.check(db, "new").await.unwrap();
        assert_eq!(
            limiter.sweep(db, 100).await.unwrap(),
            1,
            "{}",
            limiter.def().table
        );
        assert_eq!(
            limiter.peek(db, "new").await.unwrap().remaining,
            4,
            "{}",
            limiter.def().table
        );
    }
    let persistence = t
        .column("SELECT DISTINCT relpersistence::text FROM pg_class WHERE relname LIKE 'fast_%' AND relkind = 'r'")
        .await;
    assert_eq!(persistence, ["u"]);
}

#[tokio::test]
async fn batched_checks_judge_each_key_as_a_single_check_would() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    for (name, limiter) in hour_limiters() {
        // The same rounds of requests, one key at a time ("s:") and batched ("m:").
        let rounds: [&[(&str, u64)]; 4] = [
            &[("a", 4), ("b", 3), ("c", 9)],
            &[("a", 4), ("b", 3)],
            &[("c", 10), ("a", 4), ("b", 3)],
            &[("b", 1), ("a", 2)],
        ];
        for round in rounds {
            let single_keys: Vec<String> = round.iter().map(|(k, _)| format!("s:{k}")).collect();
            let batch_keys: Vec<String> = round.iter().map(|(k, _)| format!("m:{k}")).collect();
            let mut single = Vec::new();
            for ((_, cost), key) in round.iter().zip(&single_keys) {
                single.push(limiter.check_cost(db, key, *cost).await.unwrap());
            }
            let asked: Vec<(&str, u64)> = round
                .iter()
                .zip(&batch_keys)
                .map(|((_, cost), key)| (key.as_str(), *cost))
                .collect();
            let batched = limiter.check_many(db, &asked).await.unwrap();
            assert_eq!(batched.len(), round.len(), "{name}");
            for ((s, b), (key, _)) in single.iter().zip(&batched).zip(round) {
                assert_eq!(
                    (s.allowed, s.remaining, s.limit, s.retry_after.is_some()),
                    (b.allowed, b.remaining, b.limit, b.retry_after.is_some()),
                    "{name} key {key}: single {s:?}, batched {b:?}"
                );
            }
        }
        // After the rounds: a is at 10 of 10 (4 + 4, denied 4, then 2), b at 10 (3 + 3 + 3 + 1).
        for key in ["m:a", "m:b"] {
            let peek = limiter.peek(db, key).await.unwrap();
            assert_eq!(peek.remaining, 0, "{name} {key}: {peek:?}");
        }

        let err = limiter
            .check_many(db, &[("x", 1), ("y", 1), ("x", 2)])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"x\" appears twice"), "{err}");
        let err = limiter
            .check_many(db, &[("x", 1), ("y", 11)])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("a cost of 11 can never pass"), "{name}: {err}");
        let err = limiter
            .check_many(db, &[("x", 0)])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cost 0") && err.contains("peek"), "{err}");
        assert!(limiter.check_many(db, &[]).await.unwrap().is_empty());
        assert_eq!(
            limiter.peek(db, "x").await.unwrap().remaining,
            10,
            "{name}: a rejected batch consumed nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batchers_hold_the_limit_and_do_not_deadlock() {
    let t = TestDb::migrated().await;
    for (name, limiter) in hour_limiters() {
        // Two batchers with two statements each; 64 callers check ten keys three times,
        // each caller starting at a different key, so batches overlap in every order.
        let batchers = [limiter.batcher(&t.conn, 2), limiter.batcher(&t.conn, 2)];
        let mut tasks = Vec::new();
        for caller in 0..64usize {
            let batcher = batchers[caller % 2].clone();
            tasks.push(tokio::spawn(async move {
                let mut passed = [0usize; 10];
                for round in 0..30 {
                    let key = (caller + round) % 10;
                    if batcher.check(&format!("k{key}")).await.unwrap().allowed {
                        passed[key] += 1;
                    }
                }
                passed
            }));
        }
        let mut passed = [0usize; 10];
        for task in tasks {
            for (total, n) in passed.iter_mut().zip(task.await.unwrap()) {
                *total += n;
            }
        }
        assert_eq!(passed, [10; 10], "{name}: exactly the limit passes per key");
        // A cost of 0 peeks through the batcher; a bad key fails alone.
        let peek = batchers[0].check_cost("k0", 0).await.unwrap();
        assert!(!peek.allowed && peek.remaining == 0, "{name}: {peek:?}");
        assert!(batchers[1].check("").await.is_err());
        assert!(batchers[1].check("fresh").await.unwrap().allowed, "{name}");
    }
}

/// Batches reach PostgreSQL behind sub-selects, so it keeps the cached generic plan rather
/// than sizing each batch's arrays and planning it afresh.
#[tokio::test]
async fn batched_checks_keep_a_generic_plan() {
    use sea_orm::TransactionTrait;
    let t = TestDb::migrated().await;
    for (name, limiter) in hour_limiters() {
        // One connection (a transaction) so its prepared statements can be read back.
        let txn = t.conn.begin().await.unwrap();
        for round in 0..8 {
            let keys: Vec<String> = (0..=round).map(|n| format!("plan{n}")).collect();
            let asked: Vec<(&str, u64)> = keys.iter().map(|k| (k.as_str(), 1)).collect();
            limiter.check_many(&txn, &asked).await.unwrap();
        }
        let table = format!("INTO \"public\".\"{}\"", limiter.def().table);
        let (generic, custom) = pgstack_tests::plan_counts(&txn, &table).await;
        assert!(
            generic >= 3 && custom <= 5,
            "{name}: generic {generic}, custom {custom}"
        );
        txn.rollback().await.unwrap();
    }
}

/// The database clock, in microseconds since the epoch (the limiters' own clock).
async fn db_now_us(db: &sea_orm::DatabaseConnection) -> i64 {
    use sea_orm::ConnectionTrait;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT (extract(epoch FROM statement_timestamp()) * 1000000)::bigint",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

/// 32 connections hammer one key of each fast limiter (5 per 500ms) across many window
/// boundaries; every admission is counted and compared with the algorithm's bound over the
/// span of database time in which all checks ran. `PGSTACK_RATE_SOAK_SECONDS` lengthens it
/// (the suite runs 3 seconds per algorithm).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_connections_never_pass_the_bound_across_windows() {
    let t = TestDb::migrated_with_pool(34).await;
    let seconds: u64 = std::env::var("PGSTACK_RATE_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for (name, limiter) in [
        ("gcra", &fast_gcra::LIMITER),
        ("fixed_window", &fast_fixed::LIMITER),
        ("sliding_window", &fast_sliding::LIMITER),
        ("token_bucket", &fast_bucket::LIMITER),
    ] {
        let def = limiter.def();
        let period_us = def.period_ms as i64 * 1000;
        let start = db_now_us(&t.conn).await;
        let until = std::time::Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let db = t.conn.clone();
            tasks.push(tokio::spawn(async move {
                let (mut passed, mut checks) = (0u64, 0u64);
                while std::time::Instant::now() < until {
                    checks += 1;
                    if limiter.check(&db, "soak").await.unwrap().allowed {
                        passed += 1;
                    }
                }
                (passed, checks)
            }));
        }
        let (mut passed, mut checks) = (0, 0);
        for task in tasks {
            let (p, c) = task.await.unwrap();
            passed += p;
            checks += c;
        }
        let end = db_now_us(&t.conn).await;
        let span = end - start;
        let limit = def.limit as i64;
        let bound = match name {
            // Every check's window starts between `start`'s and `end`'s.
            "fixed_window" => limit * (end / period_us - start / period_us + 1),
            // Any `period` holds at most `limit`; `span / period + 1` periods cover the run.
            "sliding_window" => limit * (span / period_us + 1),
            // A full bucket, then one per emission interval.
            _ => def.burst.unwrap_or(def.limit) as i64 + span * limit / period_us,
        } as u64;
        assert!(
            passed <= bound,
            "{name}: {passed} of {checks} checks passed in {span}us; at most {bound} may"
        );
        // Contention did not starve the limiter either: most windows admitted something.
        assert!(
            passed * 2 >= bound,
            "{name}: only {passed} of a possible {bound} passed in {checks} checks"
        );
        eprintln!("{name}: {passed} passed of {checks} checks, bound {bound}, {span}us");
    }
}
