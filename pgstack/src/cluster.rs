//! One primary and any number of read replicas behind one handle.
//!
//! Every accessor takes a [`Route`]: any SeaORM connection or transaction (which is its own
//! route: everything runs on it), or a [`Cluster`]. Given a cluster, each accessor picks the
//! connection its operation needs:
//!
//! - writes go to the primary;
//! - reads that must see the primary go there too: every cache and rate-limiter call (their
//!   tables are UNLOGGED, which a hot standby cannot read, and a limiter's check is a write);
//! - reads that may be a little stale go to a replica: kv and document reads, vector search
//!   and hybrid search, queue metrics and dead-letter listings.
//!
//! ```no_run
//! # async fn demo(primary: sea_orm::DatabaseConnection, replica: sea_orm::DatabaseConnection) -> pgstack::Result<()> {
//! use pgstack::cluster::Cluster;
//! use std::time::Duration;
//!
//! let cluster = Cluster::builder(primary)
//!     .replica(replica)
//!     .max_lag(Duration::from_secs(1))   // a replica further behind is skipped
//!     .start();                          // checks the replicas' lag in the background
//! # let (settings, key) = (&pgstack::kv::JsonKv::new(pgstack::kv::KvDef { schema: "public", table: "settings", value: pgstack::kv::ValueKind::Jsonb, expiry: false }), "k");
//! let theme: Option<String> = settings.get(&cluster, "app.theme").await?; // a replica
//!
//! // Read your own writes: after this handle writes, its reads go to the primary until
//! // every replica has had time to replay the write.
//! let session = cluster.session();
//! settings.set(&session, "app.theme", "dark").await?;                // the primary
//! let theme: Option<String> = settings.get(&session, "app.theme").await?; // the primary
//! # Ok(()) }
//! ```
//!
//! **Lag.** Every `check_every` (default 250ms) a background task asks each replica how far it
//! is behind: none when it has replayed the primary's current WAL position, else the age of
//! the last transaction it replayed (`now() - pg_last_xact_replay_timestamp()`). A replica
//! further behind than `max_lag`, unreachable, or no longer in recovery (promoted) is skipped
//! until a later check finds it fit; with none fit, reads go to the primary. A read from a
//! replica is at most about `max_lag + check_every` behind the primary.
//!
//! Transactions are begun on the primary (`cluster.primary().begin()`): a transaction is its
//! own route, so every accessor given it runs inside it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

/// Where an accessor's statement goes: implemented by every SeaORM connection and
/// transaction (all three methods return the connection itself) and by [`Cluster`].
pub trait Route: Sync {
    /// The connection type statements run on.
    type Conn: ConnectionTrait;

    /// For writes: the primary. A read-your-writes [`Cluster::session`] notes the time.
    fn write(&self) -> &Self::Conn;

    /// For reads that must see the primary: UNLOGGED tables, reads that decide a write.
    fn primary(&self) -> &Self::Conn;

    /// For reads that may be served by a replica.
    fn read(&self) -> &Self::Conn;
}

impl<T: ConnectionTrait> Route for T {
    type Conn = T;

    fn write(&self) -> &T {
        self
    }

    fn primary(&self) -> &T {
        self
    }

    fn read(&self) -> &T {
        self
    }
}

/// What the last check found out about one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Its position among the replicas given to the builder.
    pub index: usize,
    /// Whether reads go to it now.
    pub serving: bool,
    /// How far behind the primary it was, when it answered.
    pub lag: Option<Duration>,
    /// Why it is not serving, when it is not.
    pub problem: Option<String>,
}

/// Builds a [`Cluster`]; see the module docs.
pub struct ClusterBuilder {
    primary: DatabaseConnection,
    replicas: Vec<DatabaseConnection>,
    max_lag: Duration,
    check_every: Duration,
}

impl ClusterBuilder {
    /// Adds a replica: a connection (pool) to a hot standby of the primary.
    pub fn replica(mut self, replica: DatabaseConnection) -> Self {
        self.replicas.push(replica);
        self
    }

    /// The most a replica may lag and still serve reads (default 1s).
    pub fn max_lag(mut self, lag: Duration) -> Self {
        self.max_lag = lag;
        self
    }

    /// How often replicas are checked (default 250ms, at least 10ms).
    pub fn check_every(mut self, every: Duration) -> Self {
        self.check_every = every.max(Duration::from_millis(10));
        self
    }

    /// The cluster, with replicas serving reads once the first check (started here, in the
    /// current tokio runtime) finds them fit. Call it inside a tokio runtime.
    pub fn start(self) -> Cluster {
        let inner = Arc::new(Inner {
            primary: self.primary,
            replicas: self
                .replicas
                .into_iter()
                .map(|conn| Replica {
                    conn,
                    serving: AtomicBool::new(false),
                    status: Mutex::new((None, Some("not checked yet".to_string()))),
                })
                .collect(),
            max_lag: self.max_lag,
            check_every: self.check_every,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        });
        if !inner.replicas.is_empty() {
            tokio::spawn(monitor(Arc::downgrade(&inner)));
        }
        Cluster {
            inner,
            last_write: None,
        }
    }
}

struct Replica {
    conn: DatabaseConnection,
    serving: AtomicBool,
    /// The lag and the problem found by the last check.
    status: Mutex<(Option<Duration>, Option<String>)>,
}

struct Inner {
    primary: DatabaseConnection,
    replicas: Vec<Replica>,
    max_lag: Duration,
    check_every: Duration,
    /// Round robin over the serving replicas.
    next: AtomicUsize,
    /// The clock sessions note their writes on.
    epoch: Instant,
}

/// A primary and its read replicas; cheap to clone. See the module docs.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
    /// A session's last write, in milliseconds since `inner.epoch` (plus one; 0: none).
    last_write: Option<Arc<AtomicU64>>,
}

impl Cluster {
    /// A cluster of `primary` and the replicas the builder adds.
    pub fn builder(primary: DatabaseConnection) -> ClusterBuilder {
        ClusterBuilder {
            primary,
            replicas: Vec::new(),
            max_lag: Duration::from_secs(1),
            check_every: Duration::from_millis(250),
        }
    }

    /// The primary's connection: for transactions, workers and migrations.
    pub fn primary_connection(&self) -> &DatabaseConnection {
        &self.inner.primary
    }

    /// A handle that reads its own writes: once it has written, its reads go to the primary
    /// for `max_lag` plus one check interval, by which time a fit replica has replayed the
    /// write. Give each request (or user session) its own.
    pub fn session(&self) -> Cluster {
        Cluster {
            inner: self.inner.clone(),
            last_write: Some(Arc::new(AtomicU64::new(0))),
        }
    }

    /// What the last check found out about each replica.
    pub fn replicas(&self) -> Vec<ReplicaStatus> {
        self.inner
            .replicas
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let (lag, problem) = r.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
                ReplicaStatus {
                    index,
                    serving: r.serving.load(Ordering::Relaxed),
                    lag,
                    problem,
                }
            })
            .collect()
    }

    /// Checks every replica now, as the background task does.
    pub async fn check_replicas(&self) {
        check_all(&self.inner).await;
    }

    fn since_epoch_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether this session wrote recently enough that a replica may not have its write.
    fn wrote_recently(&self) -> bool {
        let Some(last) = &self.last_write else {
            return false;
        };
        let at = last.load(Ordering::Relaxed);
        if at == 0 {
            return false;
        }
        let window = (self.inner.max_lag + self.inner.check_every * 2).as_millis() as u64;
        self.since_epoch_ms().saturating_sub(at) <= window
    }
}

impl Route for Cluster {
    type Conn = DatabaseConnection;

    fn write(&self) -> &DatabaseConnection {
        if let Some(last) = &self.last_write {
            last.store(self.since_epoch_ms(), Ordering::Relaxed);
        }
        &self.inner.primary
    }

    fn primary(&self) -> &DatabaseConnection {
        &self.inner.primary
    }

    fn read(&self) -> &DatabaseConnection {
        let inner = &self.inner;
        if inner.replicas.is_empty() || self.wrote_recently() {
            return &inner.primary;
        }
        let start = inner.next.fetch_add(1, Ordering::Relaxed);
        let n = inner.replicas.len();
        (0..n)
            .map(|i| &inner.replicas[(start + i) % n])
            .find(|r| r.serving.load(Ordering::Relaxed))
            .map_or(&inner.primary, |r| &r.conn)
    }
}

/// Checks the replicas every `check_every` while any handle on the cluster is alive.
async fn monitor(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        check_all(&strong).await;
        let every = strong.check_every;
        drop(strong);
        tokio::time::sleep(every).await;
    }
}

async fn check_all(inner: &Inner) {
    // The primary's position first: a replica at or past it is not behind at all.
    let primary_lsn = match inner
        .primary
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_current_wal_lsn()::text",
        ))
        .await
    {
        Ok(Some(row)) => row.try_get_by_index::<String>(0).ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "pgstack cluster: cannot read the primary's WAL position; judging replicas by replay time only");
            None
        }
    };
    for (index, replica) in inner.replicas.iter().enumerate() {
        let (lag, problem) = check_one(&replica.conn, primary_lsn.as_deref()).await;
        let problem = problem.or_else(|| match lag {
            Some(lag) if lag > inner.max_lag => Some(format!(
                "{}ms behind the primary, more than max_lag {}ms",
                lag.as_millis(),
                inner.max_lag.as_millis()
            )),
            _ => None,
        });
        let serving = problem.is_none();
        let was = replica.serving.swap(serving, Ordering::Relaxed);
        if was != serving {
            match &problem {
                None => tracing::info!(
                    replica = index,
                    lag_ms = lag.map(|l| l.as_millis() as u64),
                    "pgstack cluster: replica serves reads"
                ),
                Some(why) => {
                    tracing::warn!(replica = index, reason = %why, "pgstack cluster: replica skipped; its reads go to the primary or another replica")
                }
            }
        }
        *replica.status.lock().unwrap_or_else(|e| e.into_inner()) = (lag, problem);
    }
}

/// A replica's lag, or why it cannot serve.
async fn check_one(
    conn: &DatabaseConnection,
    primary_lsn: Option<&str>,
) -> (Option<Duration>, Option<String>) {
    let sql = "SELECT pg_is_in_recovery(), \
               coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false), \
               (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint";
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [primary_lsn.map(str::to_string).into()],
        ))
        .await;
    let row = match row {
        Ok(Some(row)) => row,
        Ok(None) => return (None, Some("the lag query returned nothing".into())),
        Err(e) => {
            return (
                None,
                Some(format!("unreachable: {}", crate::error::describe(&e))),
            );
        }
    };
    let read = || -> Result<(bool, bool, Option<i64>), sea_orm::DbErr> {
        Ok((
            row.try_get_by_index(0)?,
            row.try_get_by_index(1)?,
            row.try_get_by_index(2)?,
        ))
    };
    match read() {
        Err(e) => (None, Some(format!("cannot read its lag: {e}"))),
        Ok((false, _, _)) => (
            None,
            Some("not in recovery: promoted, or not a standby of this primary".into()),
        ),
        Ok((true, true, _)) => (Some(Duration::ZERO), None),
        Ok((true, false, Some(ms))) => (Some(Duration::from_millis(ms.max(0) as u64)), None),
        Ok((true, false, None)) => (None, Some("has replayed no transaction yet".into())),
    }
}
