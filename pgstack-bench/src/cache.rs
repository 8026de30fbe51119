//! `pgstack-bench cache` and `pgstack-bench rate_limit`: pgstack's accessors against the seed
//! article's recipes (its `cache_store` and `rate_limits` tables and code) and Redis on
//! 127.0.0.1:6379, same keys and payloads, in one run.
//!
//! Every implementation decodes the same JSON payload into the same struct, and every client
//! has a connection of its own (no cross-client pipelining for Redis). `pgstack` is the plain
//! accessor; `mode = "coalesced"` is the same cache read through `Cache::reader`, which answers
//! concurrent gets with one statement, the way a pipelining client would. Rate-limit checks
//! have the same two modes: `check` per call, and `RateLimiter::batcher`'s batched statement.

use std::time::Duration;

use pgstack::cache::{CacheReader, Expiry};
use pgstack::rate_limit::CheckBatcher;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde::{Deserialize, Serialize};

use crate::db::{bench_cache, bench_limit};
use crate::load::{BoxError, measure, spread, stmt};
use crate::report::Record;

const KEYS: u64 = 100_000;
const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The cached payload: a small rendered page (about 200 bytes of JSON).
#[derive(Serialize, Deserialize)]
struct Page {
    path: String,
    title: String,
    html: String,
    version: u64,
}

fn page(n: u64) -> Page {
    Page {
        path: format!("/articles/{n}"),
        title: format!("Article {n}"),
        html: format!(
            "<article><h1>Article {n}</h1><p>{}</p></article>",
            "lorem ipsum ".repeat(10)
        ),
        version: n,
    }
}

fn key(n: u64) -> String {
    format!("page:{n}")
}

/// The key operation `n` touches: spread over all keys, the same in every run.
fn key_of(n: u64) -> String {
    key(spread(n) % KEYS)
}

const SEED_CACHE: &str = "
CREATE UNLOGGED TABLE cache_store (
    cache_key VARCHAR(255) PRIMARY KEY,
    cache_value TEXT,
    expires_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT NOW()
);
CREATE INDEX idx_cache_expires ON cache_store(expires_at);
";
const SEED_GET: &str = "SELECT cache_value FROM cache_store
     WHERE cache_key = $1 AND (expires_at IS NULL OR expires_at > NOW())";
const SEED_SET: &str = "INSERT INTO cache_store (cache_key, cache_value, expires_at)
     VALUES ($1, $2, $3)
     ON CONFLICT (cache_key)
     DO UPDATE SET cache_value = $2, expires_at = $3, created_at = NOW()";

/// Each client's own handle on the pool (clones share it).
async fn pool_client(db: &DatabaseConnection) -> Result<DatabaseConnection, BoxError> {
    Ok(db.clone())
}

async fn redis_connection() -> Result<redis::aio::MultiplexedConnection, BoxError> {
    let client = redis::Client::open(REDIS_URL)?;
    Ok(client.get_multiplexed_async_connection().await?)
}

pub async fn run_cache(
    db: &DatabaseConnection,
    seconds: Duration,
    workers: &[usize],
) -> Result<(), BoxError> {
    db.execute_unprepared(SEED_CACHE).await?;
    eprintln!("pgstack-bench: loading {KEYS} keys into each store");
    let bytes = serde_json::to_string(&page(1))?.len();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(5000) {
        let entries: Vec<(String, Page)> = chunk.iter().map(|&n| (key(n), page(n))).collect();
        bench_cache::CACHE
            .set_many(db, &entries, Expiry::Default)
            .await?;
    }
    db.execute_raw(stmt(
        "INSERT INTO cache_store (cache_key, cache_value, expires_at)
         SELECT key, value::text, now() + interval '1 hour' FROM bench_cache",
        vec![],
    ))
    .await?;
    db.execute_unprepared("VACUUM ANALYZE bench_cache").await?;
    db.execute_unprepared("VACUUM ANALYZE cache_store").await?;
    let mut redis = redis_connection().await?;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(5000) {
        let mut pipe = redis::pipe();
        for &n in chunk {
            pipe.cmd("SET")
                .arg(key(n))
                .arg(serde_json::to_string(&page(n))?)
                .arg("EX")
                .arg(3600)
                .ignore();
        }
        pipe.query_async::<()>(&mut redis).await?;
    }

    for &clients in workers {
        let record = |case, implementation| Record::new("cache", case, implementation, clients);
        // get
        measure(
            record("get", "pgstack"),
            seconds,
            |_| pool_client(db),
            |db: &mut DatabaseConnection, n| {
                let db = db.clone();
                async move {
                    let page: Option<Page> = bench_cache::CACHE.get(&db, &key_of(n)).await?;
                    page.ok_or("missing key")?;
                    Ok(())
                }
            },
        )
        .await?
        .with("mode", "direct")
        .with("payload_bytes", bytes)
        .print();

        let reader = bench_cache::CACHE.reader(db, 2);
        measure(
            record("get", "pgstack"),
            seconds,
            |_| std::future::ready(Ok(reader.clone())),
            |reader: &mut CacheReader, n| {
                let reader = reader.clone();
                async move {
                    let page: Option<Page> = reader.get(&key_of(n)).await?;
                    page.ok_or("missing key")?;
                    Ok(())
                }
            },
        )
        .await?
        .with("mode", "coalesced")
        .with("payload_bytes", bytes)
        .print();
        drop(reader);

        measure(
            record("get", "seed"),
            seconds,
            |_| pool_client(db),
            |db: &mut DatabaseConnection, n| {
                let db = db.clone();
                async move {
                    let row = db
                        .query_one_raw(stmt(SEED_GET, vec![key_of(n).into()]))
                        .await?
                        .ok_or("missing key")?;
                    let text: String = row.try_get_by_index(0)?;
                    let _page: Page = serde_json::from_str(&text)?;
                    Ok(())
                }
            },
        )
        .await?
        .with("payload_bytes", bytes)
        .print();

        measure(
            record("get", "redis"),
            seconds,
            |_| redis_connection(),
            |con: &mut redis::aio::MultiplexedConnection, n| {
                let mut con = con.clone();
                async move {
                    let text: Option<String> = redis::cmd("GET")
                        .arg(key_of(n))
                        .query_async(&mut con)
                        .await?;
                    let _page: Page = serde_json::from_str(&text.ok_or("missing key")?)?;
                    Ok(())
                }
            },
        )
        .await?
        .with("payload_bytes", bytes)
        .print();

        // set
        measure(
            record("set", "pgstack"),
            seconds,
            |_| pool_client(db),
            |db: &mut DatabaseConnection, n| {
                let db = db.clone();
                async move {
                    let k = spread(n) % KEYS;
                    bench_cache::CACHE.set(&db, &key(k), &page(k)).await?;
                    Ok(())
                }
            },
        )
        .await?
        .with("payload_bytes", bytes)
        .print();

        measure(
            record("set", "seed"),
            seconds,
            |_| pool_client(db),
            |db: &mut DatabaseConnection, n| {
                let db = db.clone();
                async move {
                    let k = spread(n) % KEYS;
                    let text = serde_json::to_string(&page(k))?;
                    let expires = chrono::Utc::now().naive_utc() + chrono::Duration::hours(1);
                    db.execute_raw(stmt(
                        SEED_SET,
                        vec![key(k).into(), text.into(), expires.into()],
                    ))
                    .await?;
                    Ok(())
                }
            },
        )
        .await?
        .with("payload_bytes", bytes)
        .print();

        measure(
            record("set", "redis"),
            seconds,
            |_| redis_connection(),
            |con: &mut redis::aio::MultiplexedConnection, n| {
                let mut con = con.clone();
                async move {
                    let k = spread(n) % KEYS;
                    let text = serde_json::to_string(&page(k))?;
                    redis::cmd("SET")
                        .arg(key(k))
                        .arg(text)
                        .arg("EX")
                        .arg(3600)
                        .query_async::<()>(&mut con)
                        .await?;
                    Ok(())
                }
            },
        )
        .await?
        .with("payload_bytes", bytes)
        .print();
    }
    Ok(())
}

const SEED_LIMITS: &str = "
CREATE UNLOGGED TABLE rate_limits (
    identifier VARCHAR(255) PRIMARY KEY,
    request_count INTEGER DEFAULT 0,
    window_start TIMESTAMP DEFAULT NOW()
);
CREATE INDEX idx_rate_limit_window ON rate_limits(window_start);
";

/// The seed article's `checkLimit`: a transaction with SELECT ... FOR UPDATE, then a reset
/// upsert or an increment (or nothing when over the limit).
async fn seed_check(
    db: &DatabaseConnection,
    identifier: &str,
    max_requests: i32,
    window_secs: f64,
) -> Result<bool, BoxError> {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    let row = txn
        .query_one_raw(stmt(
            "SELECT request_count, window_start FROM rate_limits WHERE identifier = $1 FOR UPDATE",
            vec![identifier.into()],
        ))
        .await?;
    let now = chrono::Utc::now().naive_utc();
    let (count, start) = match &row {
        Some(row) => (
            row.try_get_by_index::<i32>(0)?,
            row.try_get_by_index::<chrono::NaiveDateTime>(1)?,
        ),
        None => (0, now),
    };
    let elapsed = (now - start).num_milliseconds() as f64 / 1000.0;
    let allowed = if elapsed > window_secs || row.is_none() {
        txn.execute_raw(stmt(
            "INSERT INTO rate_limits (identifier, request_count, window_start) VALUES ($1, 1, $2)
             ON CONFLICT (identifier) DO UPDATE SET request_count = 1, window_start = $2",
            vec![identifier.into(), now.into()],
        ))
        .await?;
        true
    } else if count >= max_requests {
        false
    } else {
        txn.execute_raw(stmt(
            "UPDATE rate_limits SET request_count = request_count + 1 WHERE identifier = $1",
            vec![identifier.into()],
        ))
        .await?;
        true
    };
    txn.commit().await?;
    Ok(allowed)
}

pub async fn run_rate_limit(
    db: &DatabaseConnection,
    seconds: Duration,
    workers: &[usize],
) -> Result<(), BoxError> {
    db.execute_unprepared(SEED_LIMITS).await?;
    // 10,000 identifiers, each operation's picked by its sequence number.
    let identifier = |n: u64| format!("user:{}", spread(n) % 10_000);
    for &clients in workers {
        let record = |implementation, algorithm| {
            Record::new("rate_limit", "check", implementation, clients)
                .with("algorithm", algorithm)
                .with("keys", 10_000)
        };
        measure(
            record("pgstack", "gcra"),
            seconds,
            |_| pool_client(db),
            move |db: &mut DatabaseConnection, n| {
                let db = db.clone();
                async move {
                    bench_limit::LIMITER.check(&db, &identifier(n)).await?;
                    Ok(())
                }
            },
        )
        .await?
        .with("mode", "direct")
        .print();

        let batcher = bench_limit::LIMITER.batcher(db, 2);
        measure(
            record("pgstack", "gcra"),
            seconds,
            |_| std::future::ready(Ok(batcher.clone())),
            move |batcher: &mut CheckBatcher, n| {
                let batcher = batcher.clone();
                async move {
                    batcher.check(&identifier(n)).await?;
                    Ok(())
                }
            },
        )
        .await?
        .with("mode", "coalesced")
        .print();
        drop(batcher);

        measure(
            record("seed", "fixed_window (transaction, FOR UPDATE)"),
            seconds,
            |_| pool_client(db),
            move |db: &mut DatabaseConnection, n| {
                let db = db.clone();
                async move {
                    seed_check(&db, &identifier(n), 1000, 60.0).await?;
                    Ok(())
                }
            },
        )
        .await?
        .print();

        measure(
            record("redis", "INCR + EXPIRE"),
            seconds,
            |_| redis_connection(),
            move |con: &mut redis::aio::MultiplexedConnection, n| {
                let mut con = con.clone();
                async move {
                    let key = format!("rl:{}", identifier(n));
                    let count: i64 = redis::cmd("INCR").arg(&key).query_async(&mut con).await?;
                    redis::cmd("EXPIRE")
                        .arg(&key)
                        .arg(60)
                        .query_async::<()>(&mut con)
                        .await?;
                    let _allowed = count <= 1000;
                    Ok(())
                }
            },
        )
        .await?
        .print();
    }
    Ok(())
}
