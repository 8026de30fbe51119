//! The closed-loop driver every per-operation case runs on, and the small helpers the
//! facilities' benchmarks share.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{DbBackend, Statement};

use crate::report::Record;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A statement with bound values (the baselines' hand-written SQL).
pub fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// What the measured span of a [`closed_loop`] did.
pub struct Measured<T> {
    /// Each measured operation's latency.
    pub latencies: Vec<Duration>,
    /// Each measured operation's result (recall counts, say; `()` for most cases).
    pub results: Vec<T>,
}

impl<T> Measured<T> {
    pub fn ops(&self) -> u64 {
        self.latencies.len() as u64
    }
}

/// Runs `op` from `clients` tasks, one operation at a time each, for `warmup` and then
/// `duration`, measuring only the second span. Each task's state comes from `setup(client)`,
/// made before any task starts; `op` gets it and a sequence number unique across tasks.
pub async fn closed_loop<S, T, Setup, SFut, Op, OFut>(
    clients: usize,
    warmup: Duration,
    duration: Duration,
    mut setup: Setup,
    op: Op,
) -> Result<Measured<T>, BoxError>
where
    S: Send + 'static,
    T: Send + 'static,
    Setup: FnMut(usize) -> SFut,
    SFut: Future<Output = Result<S, BoxError>>,
    Op: Fn(&mut S, u64) -> OFut + Clone + Send + 'static,
    OFut: Future<Output = Result<T, BoxError>> + Send,
{
    let mut states = Vec::with_capacity(clients);
    for client in 0..clients {
        states.push(setup(client).await?);
    }
    let sequence = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for mut state in states {
        let (op, sequence) = (op.clone(), sequence.clone());
        tasks.push(tokio::spawn(async move {
            let mut measured = Measured {
                latencies: Vec::new(),
                results: Vec::new(),
            };
            while start.elapsed() < warmup + duration {
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let result = op(&mut state, n).await?;
                if start.elapsed() >= warmup {
                    measured.latencies.push(t.elapsed());
                    measured.results.push(result);
                }
            }
            Ok::<_, BoxError>(measured)
        }));
    }
    let mut all = Measured {
        latencies: Vec::new(),
        results: Vec::new(),
    };
    for task in tasks {
        let measured = task.await??;
        all.latencies.extend(measured.latencies);
        all.results.extend(measured.results);
    }
    Ok(all)
}

/// The warm-up before each measured span.
pub const WARMUP: Duration = Duration::from_millis(300);

/// [`closed_loop`] over `record.workers` clients after [`WARMUP`], written into `record`:
/// operations per second over `duration`, p50 and p99.
pub async fn measure<S, Setup, SFut, Op, OFut>(
    record: Record,
    duration: Duration,
    setup: Setup,
    op: Op,
) -> Result<Record, BoxError>
where
    S: Send + 'static,
    Setup: FnMut(usize) -> SFut,
    SFut: Future<Output = Result<S, BoxError>>,
    Op: Fn(&mut S, u64) -> OFut + Clone + Send + 'static,
    OFut: Future<Output = Result<(), BoxError>> + Send,
{
    let clients = record.workers;
    let mut measured = closed_loop(clients, WARMUP, duration, setup, op).await?;
    Ok(record
        .rate(measured.ops(), duration)
        .latencies(&mut measured.latencies))
}

/// A well-spread number from a sequence number (splitmix64), for picking keys.
pub fn spread(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
