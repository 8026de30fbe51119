//! No input a caller passes can panic or abort the process, or reach PostgreSQL out of its
//! range: deeply nested JSON, durations at `Duration::MAX`, batches past the one batch limit.
//! Each case is refused in Rust with an `InvalidArgument` naming the limit, and writes nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pgstack::Error;
use pgstack::cache::{Compute, Expiry};
use pgstack::limits::{MAX_BATCH, MAX_DURATION, MAX_JSON_DEPTH};
use pgstack::queue::{EnqueueOptions, Failure, JobToken, NewJob, Payload};
use pgstack::vector::{Filter, Hybrid, Key, Record, Search};
use pgstack_tests::TestDb;
use pgstack_tests::db::{articles, fast_sliding, flags, jobs, notes, pages, settings};
use serde_json::{Value, json};

/// Arrays nested `levels` deep, built without recursion.
fn nested(levels: usize) -> Value {
    let mut value = json!("leaf");
    for _ in 0..levels {
        value = Value::Array(vec![value]);
    }
    value
}

/// Objects nested `levels` deep (`{"a": {"a": ...}}`).
fn nested_object(levels: usize) -> Value {
    let mut value = json!("leaf");
    for _ in 0..levels {
        let mut map = serde_json::Map::new();
        map.insert("a".to_string(), value);
        value = Value::Object(map);
    }
    value
}

/// A deep value that is taken apart one level at a time when dropped (even while a failed
/// assertion unwinds): dropping a deep `Value` recurses as deep as it nests.
struct Deep(Value);

impl std::ops::Deref for Deep {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.0
    }
}

impl Drop for Deep {
    fn drop(&mut self) {
        drop_flat(std::mem::take(&mut self.0));
    }
}

fn drop_flat(mut value: Value) {
    loop {
        value = match value {
            Value::Array(mut items) => items.pop().unwrap_or(Value::Null),
            Value::Object(mut map) => match map.keys().next().cloned() {
                Some(key) => map.remove(&key).unwrap_or(Value::Null),
                None => return,
            },
            _ => return,
        };
    }
}

/// Asserts `result` is the "nested too deeply" refusal.
fn assert_too_deep<T: std::fmt::Debug>(what: &str, result: pgstack::Result<T>) {
    match result {
        Err(e @ Error::InvalidArgument { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("more than {MAX_JSON_DEPTH} levels deep")),
                "{what}: {text}"
            );
        }
        other => panic!("{what}: expected InvalidArgument for a too-deep value, got {other:?}"),
    }
}

/// Asserts `result` is an `InvalidArgument` whose message contains `needle`.
fn assert_invalid<T: std::fmt::Debug>(what: &str, result: pgstack::Result<T>, needle: &str) {
    match result {
        Err(e @ Error::InvalidArgument { .. }) => {
            let text = e.to_string();
            assert!(text.contains(needle), "{what}: {text}");
        }
        other => panic!("{what}: expected InvalidArgument ({needle}), got {other:?}"),
    }
}

/// Levels that abort an unguarded accessor: serializing, cloning or printing a value nested
/// 10,000 deep needs more than 4 MiB of stack (a debug build), dropping it less than 2.
const DEEP: usize = 10_000;

/// Runs `body` on a thread with 3 MiB of stack, like a tokio worker (2 MiB) with room for
/// the test's own frames: enough to drop a `DEEP` value, far too little to serialize it.
fn on_small_stack<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let thread = std::thread::Builder::new()
        .stack_size(3 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(body())
        })
        .unwrap();
    thread.join().unwrap();
}

/// Each accessor refuses a value nested `DEEP` levels before anything recursive runs; the
/// process lives on (before the fix, the first call aborted it with a stack overflow).
#[test]
fn deeply_nested_json_is_refused_everywhere_without_aborting() {
    on_small_stack(deeply_nested_json_body);
}

async fn deeply_nested_json_body() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let deep = Deep(nested(DEEP));
    let deep_object = Deep(nested_object(DEEP));

    assert_too_deep("kv set", settings::STORE.set(db, "k", &*deep).await);
    assert_too_deep(
        "kv set object",
        settings::STORE.set(db, "k", &*deep_object).await,
    );
    assert_too_deep(
        "kv set_many",
        settings::STORE
            .set_many(db, &[("a", json!(1)), ("b", deep.clone_shallow())])
            .await,
    );
    assert_too_deep(
        "kv set_with_ttl",
        flags::STORE
            .set_with_ttl(db, "k", &*deep, Duration::from_secs(1))
            .await,
    );
    assert_too_deep(
        "document insert",
        notes::STORE.insert(db, &*deep_object).await,
    );
    let doc = notes::STORE.insert(db, &json!({"a": 1})).await.unwrap();
    assert_too_deep(
        "document replace",
        notes::STORE
            .replace(db, doc.id, doc.version, &*deep_object)
            .await,
    );
    assert_too_deep(
        "document patch_merge",
        notes::STORE.patch_merge(db, doc.id, &*deep_object).await,
    );
    assert_too_deep(
        "document patch_set",
        notes::STORE.patch_set(db, doc.id, &["x"], &*deep).await,
    );
    assert_too_deep(
        "document find_containing",
        notes::STORE
            .find_containing::<Value, _, _>(db, &*deep_object, None, 10)
            .await,
    );
    assert_too_deep("cache set", pages::CACHE.set(db, "k", &*deep).await);
    assert_too_deep(
        "cache get_or_compute",
        pages::CACHE
            .get_or_compute(db, "gc", Compute::default(), || async {
                Ok::<_, std::io::Error>(nested(DEEP))
            })
            .await,
    );
    let options = EnqueueOptions::default();
    assert_too_deep(
        "queue enqueue",
        jobs::QUEUE.enqueue(db, "k", &*deep, &options).await,
    );
    let payload = std::mem::ManuallyDrop::new(Payload::Json(deep.clone_shallow()));
    assert_too_deep(
        "queue enqueue_payload",
        jobs::QUEUE
            .enqueue_payload(db, "k", &payload, &options)
            .await,
    );
    assert_too_deep(
        "queue enqueue_many",
        jobs::QUEUE
            .enqueue_many(
                db,
                &[NewJob {
                    kind: "k".into(),
                    payload: payload.clone_shallow(),
                    options: options.clone(),
                }],
            )
            .await,
    );
    assert_too_deep("NewJob::json", NewJob::json("k", &*deep));
    let record = std::mem::ManuallyDrop::new(
        Record::new(1)
            .embedding(vec![0.5f32; 32])
            .field("title", "t")
            .field("meta", deep.clone_shallow()),
    );
    assert_too_deep(
        "vector upsert",
        articles::COLLECTION.upsert(db, &record).await,
    );
    assert_invalid(
        "vector record id",
        articles::COLLECTION
            .upsert(db, &Record::new(deep.clone_shallow()))
            .await,
        "a record id must be a whole number (`bigint`), found an array",
    );
    let query = vec![0.5f32; 32];
    assert_too_deep(
        "vector filter",
        articles::COLLECTION
            .search(
                db,
                &Search::new(query.clone()).filter(Filter::eq("meta", deep.clone_shallow())),
            )
            .await,
    );
    assert_too_deep(
        "vector typed filter",
        articles::COLLECTION
            .search(
                db,
                &Search::new(query.clone()).filter(articles::fields::META.eq(deep.clone_shallow())),
            )
            .await,
    );
    assert_too_deep(
        "vector hybrid filter",
        articles::COLLECTION
            .hybrid(
                db,
                &Hybrid::new("x", query).filter(Filter::one_of("meta", [deep.clone_shallow()])),
            )
            .await,
    );
    assert_too_deep(
        "vector key",
        articles::COLLECTION
            .get(db, Key::new(deep.clone_shallow()))
            .await,
    );

    // Nothing was written.
    assert_eq!(
        settings::STORE.get::<Value, _>(db, "k").await.unwrap(),
        None
    );
    assert_eq!(pages::CACHE.get::<Value, _>(db, "k").await.unwrap(), None);
    assert_eq!(jobs::QUEUE.metrics(db, 10).await.unwrap().ready, 0);
    assert_eq!(articles::COLLECTION.count(db).await.unwrap(), 0);
}

/// A value exactly at the limit is stored and read back, by every reader.
#[tokio::test]
async fn json_at_the_depth_limit_round_trips() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let at_limit = nested(MAX_JSON_DEPTH);
    settings::STORE.set(db, "deep", &at_limit).await.unwrap();
    let back: Value = settings::STORE.get(db, "deep").await.unwrap().unwrap();
    assert_eq!(back, at_limit);
    pages::CACHE.set(db, "deep", &at_limit).await.unwrap();
    let reader = pages::CACHE.reader(db, 1);
    assert_eq!(
        reader.get::<Value>("deep").await.unwrap(),
        Some(at_limit.clone())
    );
    let doc = json!({ "d": nested(MAX_JSON_DEPTH - 1) });
    let stored = notes::STORE.insert(db, &doc).await.unwrap();
    let read = notes::STORE
        .get::<Value, _>(db, stored.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.doc, doc);
    assert_too_deep(
        "one level more",
        settings::STORE
            .set(db, "deeper", &nested(MAX_JSON_DEPTH + 1))
            .await,
    );
}

/// `Duration::MAX` (and anything past 100 years) is refused with the allowed range, never
/// sent to PostgreSQL as an out-of-range interval; `shutdown(Duration::MAX)` waits, not panics.
#[tokio::test]
async fn durations_out_of_range_are_refused_in_rust() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let range = "between 1ms and 100 years";
    let too_long = MAX_DURATION + Duration::from_secs(1);
    for ttl in [Duration::MAX, too_long] {
        assert_invalid(
            "kv ttl",
            flags::STORE.set_with_ttl(db, "k", &1, ttl).await,
            range,
        );
        assert_invalid(
            "kv expire",
            flags::STORE.expire(db, "k", Some(ttl)).await,
            range,
        );
        assert_invalid(
            "cache ttl",
            pages::CACHE.set_with(db, "k", &1, Expiry::After(ttl)).await,
            range,
        );
        assert_invalid(
            "cache touch",
            pages::CACHE.touch(db, "k", Expiry::After(ttl)).await,
            range,
        );
        let lease = Compute {
            lease: ttl,
            ..Compute::default()
        };
        assert_invalid(
            "cache compute lease",
            pages::CACHE
                .get_or_compute(db, "c", lease, || async { Ok::<_, std::io::Error>(1) })
                .await,
            range,
        );
        assert_invalid(
            "queue delay",
            jobs::QUEUE
                .enqueue(db, "k", &1, &EnqueueOptions::default().delay(ttl))
                .await,
            "a delay must be between 0 and 100 years",
        );
        assert_invalid(
            "queue lease",
            jobs::QUEUE.claim_with_lease(db, 1, ttl).await,
            range,
        );
        assert_invalid(
            "queue extend",
            jobs::QUEUE
                .extend_lease(db, &[JobToken { id: 1, attempt: 1 }], Some(ttl))
                .await,
            range,
        );
    }
    // The longest allowed TTL and delay work.
    flags::STORE
        .set_with_ttl(db, "long", &1, MAX_DURATION)
        .await
        .unwrap();
    jobs::QUEUE
        .enqueue(db, "k", &1, &EnqueueOptions::default().delay(MAX_DURATION))
        .await
        .unwrap();
    // Run times PostgreSQL cannot store (chrono's latest, year 262143, it can).
    let before_4713_bc = DateTime::<Utc>::from_timestamp(-220_000_000_000, 0).unwrap();
    for at in [DateTime::<Utc>::MIN_UTC, before_4713_bc] {
        assert_invalid(
            "queue run_at",
            jobs::QUEUE
                .enqueue(db, "k", &1, &EnqueueOptions::default().run_at(at))
                .await,
            "outside PostgreSQL's timestamps",
        );
    }
    let worker = pgstack::queue::Worker::new(db, &jobs::QUEUE)
        .handle_raw("k", |_| async { Ok(()) })
        .start()
        .await
        .unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(10), worker.shutdown(Duration::MAX))
        .await
        .expect("an idle worker shuts down at once, whatever the grace");
    assert_eq!(stats.errors, 0, "{stats:?}");
}

/// One batch limit, `pgstack::limits::MAX_BATCH`, for every call that takes a list; a list
/// of exactly that many is fine, one more is refused and writes nothing.
#[tokio::test]
async fn every_batched_call_takes_at_most_max_batch() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let limit = "at most 10000";
    let keys: Vec<String> = (0..=MAX_BATCH).map(|i| format!("k{i}")).collect();
    let over: Vec<&str> = keys.iter().map(String::as_str).collect();
    let full = &over[..MAX_BATCH];
    let pairs: Vec<(&str, i64)> = over.iter().map(|k| (*k, 1)).collect();

    assert_eq!(
        settings::STORE
            .get_many::<i64, _>(db, full)
            .await
            .unwrap()
            .len(),
        MAX_BATCH
    );
    assert_invalid(
        "kv get_many",
        settings::STORE.get_many::<i64, _>(db, &over).await,
        limit,
    );
    assert_invalid(
        "kv set_many",
        settings::STORE.set_many(db, &pairs).await,
        limit,
    );
    assert_eq!(
        pages::CACHE
            .get_many::<i64, _>(db, full)
            .await
            .unwrap()
            .len(),
        MAX_BATCH
    );
    assert_invalid(
        "cache get_many",
        pages::CACHE.get_many::<i64, _>(db, &over).await,
        limit,
    );
    assert_invalid(
        "cache set_many",
        pages::CACHE.set_many(db, &pairs, Expiry::Default).await,
        limit,
    );
    let new_jobs: Vec<NewJob> = (0..=MAX_BATCH)
        .map(|i| NewJob::json("k", &i).unwrap())
        .collect();
    assert_invalid(
        "queue enqueue_many",
        jobs::QUEUE.enqueue_many(db, &new_jobs).await,
        limit,
    );
    assert_eq!(
        jobs::QUEUE
            .enqueue_many(db, &new_jobs[..MAX_BATCH])
            .await
            .unwrap()
            .len(),
        MAX_BATCH
    );
    assert_invalid(
        "queue claim",
        jobs::QUEUE.claim(db, MAX_BATCH + 1).await,
        limit,
    );
    let tokens: Vec<JobToken> = (0..=MAX_BATCH as i64)
        .map(|id| JobToken { id, attempt: 1 })
        .collect();
    assert_invalid(
        "queue complete",
        jobs::QUEUE.complete(db, &tokens).await,
        limit,
    );
    assert_invalid(
        "queue release",
        jobs::QUEUE.release(db, &tokens).await,
        limit,
    );
    assert_invalid(
        "queue extend_lease",
        jobs::QUEUE.extend_lease(db, &tokens, None).await,
        limit,
    );
    let failures: Vec<Failure> = tokens
        .iter()
        .map(|token| Failure {
            token: *token,
            max_attempts: 3,
            error: "x".into(),
            discard: false,
        })
        .collect();
    assert_invalid("queue fail", jobs::QUEUE.fail(db, &failures).await, limit);
    let ids: Vec<i64> = (0..=MAX_BATCH as i64).collect();
    assert_invalid("queue redrive", jobs::QUEUE.redrive(db, &ids).await, limit);
    assert_invalid(
        "queue dead_letters page",
        jobs::QUEUE
            .dead_letters(db, None, MAX_BATCH as u32 + 1)
            .await,
        "a page holds 1 to 10000 jobs",
    );
    let checks: Vec<(&str, u64)> = over.iter().map(|k| (*k, 1)).collect();
    assert_invalid(
        "rate check_many",
        fast_sliding::LIMITER.check_many(db, &checks).await,
        limit,
    );
    // The refused writes left nothing behind.
    assert_eq!(settings::STORE.get::<i64, _>(db, "k0").await.unwrap(), None);
    assert_eq!(pages::CACHE.get::<i64, _>(db, "k0").await.unwrap(), None);
    assert_eq!(
        jobs::QUEUE.metrics(db, 100_000).await.unwrap().ready,
        MAX_BATCH as u64
    );
}

/// `Value::clone` recurses; the tests copy deep values level by level instead.
trait CloneShallow {
    fn clone_shallow(&self) -> Self;
}

impl CloneShallow for Value {
    fn clone_shallow(&self) -> Value {
        let mut levels = 0;
        let mut cursor = self;
        while let Value::Array(items) = cursor {
            levels += 1;
            match items.first() {
                Some(next) => cursor = next,
                None => break,
            }
        }
        let mut value = cursor.clone();
        for _ in 0..levels {
            value = Value::Array(vec![value]);
        }
        value
    }
}

impl CloneShallow for Payload {
    fn clone_shallow(&self) -> Payload {
        match self {
            Payload::Json(json) => Payload::Json(json.clone_shallow()),
            Payload::Bytes(bytes) => Payload::Bytes(bytes.clone()),
        }
    }
}
