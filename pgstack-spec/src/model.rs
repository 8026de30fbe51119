//! The validated spec: names checked, defaults applied. Built only by [`crate::Spec::parse`].

use std::ops::Range;

use serde::Serialize;

use crate::duration::SpecDuration;

/// A whole `pgstack.toml`, validated.
#[derive(Clone, Debug, Serialize)]
pub struct Spec {
    pub project: Project,
    /// `[[kv]]` facilities, sorted by name.
    pub kv: Vec<Kv>,
    /// `[[document]]` facilities, sorted by name.
    pub documents: Vec<Document>,
    /// `[[queue]]` facilities, sorted by name.
    pub queues: Vec<Queue>,
    /// `[[cache]]` facilities, sorted by name.
    pub caches: Vec<Cache>,
    /// `[[rate_limit]]` facilities, sorted by name.
    pub rate_limits: Vec<RateLimit>,
    /// `[[vector]]` collections, sorted by name.
    pub vectors: Vec<Vector>,
}

/// `[project]`.
#[derive(Clone, Debug, Serialize)]
pub struct Project {
    /// Shown in generated headers; defaults to nothing.
    pub name: Option<String>,
    /// PostgreSQL schema for every facility table.
    pub schema: String,
    /// The sea-orm-migration crate to create or extend, relative to the spec file.
    pub migrations_dir: String,
    /// Where generated accessor modules go, relative to the spec file.
    pub accessors_dir: String,
}

/// The kinds of facility a spec can declare, named as their TOML array keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FacilityKind {
    Kv,
    Document,
    Queue,
    Cache,
    RateLimit,
    Vector,
}

impl FacilityKind {
    pub const ALL: [FacilityKind; 6] = [
        FacilityKind::Kv,
        FacilityKind::Document,
        FacilityKind::Queue,
        FacilityKind::Cache,
        FacilityKind::RateLimit,
        FacilityKind::Vector,
    ];

    /// The spec key: `kv`, `document`, `queue`, `cache`, `rate_limit`, `vector`.
    pub const fn key(self) -> &'static str {
        match self {
            FacilityKind::Kv => "kv",
            FacilityKind::Document => "document",
            FacilityKind::Queue => "queue",
            FacilityKind::Cache => "cache",
            FacilityKind::RateLimit => "rate_limit",
            FacilityKind::Vector => "vector",
        }
    }
}

/// A facility looked up by name, whatever its kind.
#[derive(Clone, Copy, Debug)]
pub enum FacilityRef<'a> {
    Kv(&'a Kv),
    Document(&'a Document),
    Queue(&'a Queue),
    Cache(&'a Cache),
    RateLimit(&'a RateLimit),
    Vector(&'a Vector),
}

impl<'a> FacilityRef<'a> {
    pub fn kind(&self) -> FacilityKind {
        match self {
            FacilityRef::Kv(_) => FacilityKind::Kv,
            FacilityRef::Document(_) => FacilityKind::Document,
            FacilityRef::Queue(_) => FacilityKind::Queue,
            FacilityRef::Cache(_) => FacilityKind::Cache,
            FacilityRef::RateLimit(_) => FacilityKind::RateLimit,
            FacilityRef::Vector(_) => FacilityKind::Vector,
        }
    }

    pub fn name(&self) -> &'a str {
        match self {
            FacilityRef::Kv(f) => &f.name,
            FacilityRef::Document(f) => &f.name,
            FacilityRef::Queue(f) => &f.name,
            FacilityRef::Cache(f) => &f.name,
            FacilityRef::RateLimit(f) => &f.name,
            FacilityRef::Vector(f) => &f.name,
        }
    }
}

/// How a value column is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    Jsonb,
    Bytea,
}

impl ValueType {
    pub const fn sql(self) -> &'static str {
        match self {
            ValueType::Jsonb => "jsonb",
            ValueType::Bytea => "bytea",
        }
    }
}

/// `[[kv]]`: a key-value store.
#[derive(Clone, Debug, Serialize)]
pub struct Kv {
    pub name: String,
    pub value: ValueType,
    /// Adds a per-key `expires_at`.
    pub expiry: bool,
    #[serde(skip)]
    pub span: Range<usize>,
}

/// The GIN operator class for a document table's `doc` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GinOps {
    JsonbPathOps,
    JsonbOps,
    None,
}

/// `[[document]]`: a JSONB document collection.
#[derive(Clone, Debug, Serialize)]
pub struct Document {
    pub name: String,
    pub gin: GinOps,
    /// Declared fields, sorted by name.
    pub fields: Vec<DocField>,
    #[serde(skip)]
    pub span: Range<usize>,
}

/// A declared document field: a generated column over a JSON path.
#[derive(Clone, Debug, Serialize)]
pub struct DocField {
    pub name: String,
    /// Path segments into the document: `address.country` is `["address", "country"]`.
    pub path: Vec<String>,
    #[serde(rename = "type")]
    pub ty: FieldType,
    pub unique: bool,
    pub index: bool,
}

/// `[[queue]]`: a job queue.
#[derive(Clone, Debug, Serialize)]
pub struct Queue {
    pub name: String,
    /// The lease: a claimed job not completed, failed or extended within it is redelivered.
    pub visibility_timeout: SpecDuration,
    /// Attempts before a job is dead-lettered (or discarded).
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Keep jobs that exhausted their attempts in `<name>_dead` (else they are discarded).
    pub dead_letter: bool,
    /// A `smallint priority` per job, lower runs first.
    pub priorities: bool,
    /// An optional `unique_key` per job; a duplicate enqueue returns the existing job.
    pub unique: bool,
    /// An optional `group_key` per job: jobs of one group run one at a time, in enqueue order.
    pub groups: bool,
    /// LISTEN/NOTIFY wake-ups on insert (workers still poll).
    pub notify: bool,
    /// Keep finished jobs in a range-partitioned `<name>_archive`; `None` deletes them.
    pub archive: Option<Archive>,
    pub payload: ValueType,
    /// Recurring jobs, `schedules = [{ name, cron, kind, .. }]`, in spec order.
    pub schedules: Vec<Schedule>,
    #[serde(skip)]
    pub span: Range<usize>,
}

/// One recurring job of a queue: `{ name = "nightly_digest", cron = "0 3 * * *", kind =
/// "digest", payload = { .. }, timezone = "Europe/Berlin" }`. Each tick is enqueued once,
/// whatever the number of worker processes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Schedule {
    /// Unique within the queue; the tick bookkeeping row is keyed by it.
    pub name: String,
    /// Five fields (minute to weekday) or six (seconds first), or `@daily` and the like.
    pub cron: String,
    /// An IANA time zone the cron fields are read in; `UTC` unless given.
    pub timezone: String,
    /// The job kind each tick enqueues.
    pub kind: String,
    /// The payload as JSON text (`payload = "jsonb"` queues) or the bytes' UTF-8 text (`bytea`).
    pub payload: String,
    pub priority: i16,
    /// What a worker that comes back after ticks went by does with them.
    pub catch_up: CatchUp,
    /// A tick enqueued later than this after its time counts as missed.
    pub grace: SpecDuration,
}

/// `catch_up = "skip" | "last"`: ticks missed while no worker ran (older than `grace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Missed ticks are dropped; the schedule resumes with the next one.
    Skip,
    /// The latest missed tick is enqueued once, at once; earlier ones are dropped.
    Last,
}

/// How long a failed job waits before its next attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Backoff {
    pub kind: BackoffKind,
    pub initial: SpecDuration,
    pub max: SpecDuration,
    /// Randomise each delay between half and all of its value, so retries spread out.
    pub jitter: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    /// `initial * 2^(attempt - 1)`, capped at `max`.
    Exponential,
    /// `initial * attempt`, capped at `max`.
    Linear,
    /// Always `initial`.
    Fixed,
}

/// `archive = { retention = "7d", partition = "1d" }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Archive {
    /// Partitions wholly older than this are dropped by maintenance.
    pub retention: SpecDuration,
    /// The range of one partition: whole hours dividing a day, or whole days.
    pub partition: SpecDuration,
}

/// Whether a table is written to the WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// No WAL: fast writes; emptied after a crash or failover, unreadable on replicas.
    Unlogged,
    Logged,
}

/// `[[cache]]`: a cache table (UNLOGGED by default).
#[derive(Clone, Debug, Serialize)]
pub struct Cache {
    pub name: String,
    /// TTL for writes that give none; `None` keeps entries until evicted.
    pub default_ttl: Option<SpecDuration>,
    pub durability: Durability,
    /// Hash partitions; 1 is a plain table.
    pub partitions: u32,
    /// Bound on the number of entries; the oldest are evicted first.
    pub max_entries: Option<u64>,
    pub value: ValueType,
    #[serde(skip)]
    pub span: Range<usize>,
}

impl Cache {
    /// The tables the cache owns: the table itself and its hash partitions.
    pub fn partition_names(&self) -> Vec<String> {
        if self.partitions <= 1 {
            return Vec::new();
        }
        (0..self.partitions)
            .map(|i| format!("{}_p{i}", self.name))
            .collect()
    }
}

/// `[[rate_limit]]`: a rate limiter with one row of state per key.
#[derive(Clone, Debug, Serialize)]
pub struct RateLimit {
    pub name: String,
    pub algorithm: Algorithm,
    /// Requests (cost units) per `period`.
    pub limit: u64,
    pub period: SpecDuration,
    /// Capacity for `gcra` and `token_bucket` (default: `limit`).
    pub burst: Option<u64>,
    pub durability: Durability,
    #[serde(skip)]
    pub span: Range<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Generic cell rate algorithm: a theoretical arrival time per key.
    Gcra,
    /// A counter per key and epoch-aligned window.
    FixedWindow,
    /// The request times of the last period per key: exact over any window.
    SlidingWindow,
    /// Tokens refilled continuously up to the burst.
    TokenBucket,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Gcra => "gcra",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::TokenBucket => "token_bucket",
        }
    }
}

/// `[[vector]]`: a pgvector collection.
#[derive(Clone, Debug, Serialize)]
pub struct Vector {
    pub name: String,
    pub dimensions: u32,
    pub element: Element,
    pub distance: Distance,
    pub index: VectorIndex,
    /// The type of the `id` column.
    pub id: IdType,
    /// Declared metadata fields, sorted by name.
    pub fields: Vec<VectorField>,
    /// Text fields fed to the generated `tsvector` column, in the order given (the first
    /// weighs most); empty when hybrid search is off.
    pub full_text: Vec<String>,
    /// The text search configuration (`english`, `simple`, ...).
    pub language: String,
    /// The field whose values each get their own LIST partition.
    pub partition_by: Option<String>,
    #[serde(skip)]
    pub span: Range<usize>,
}

impl Vector {
    pub fn field(&self, name: &str) -> Option<&VectorField> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// A metadata column of a vector collection.
#[derive(Clone, Debug, Serialize)]
pub struct VectorField {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// A B-tree index, used by filters (and to choose exact search for selective ones).
    pub index: bool,
}

/// The pgvector type of the `embedding` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Element {
    /// 4-byte floats; indexable up to 2,000 dimensions.
    Vector,
    /// 2-byte floats; indexable up to 4,000 dimensions.
    Halfvec,
    /// Bits; indexable up to 64,000 dimensions.
    Bit,
    /// Sparse floats; indexable (HNSW only) up to 1,000 non-zero elements.
    Sparsevec,
}

impl Element {
    pub const ALL: [(&'static str, Element); 4] = [
        ("vector", Element::Vector),
        ("halfvec", Element::Halfvec),
        ("bit", Element::Bit),
        ("sparsevec", Element::Sparsevec),
    ];

    pub fn name(self) -> &'static str {
        Element::ALL
            .iter()
            .find(|(_, e)| *e == self)
            .map_or("vector", |(n, _)| n)
    }

    /// The most dimensions a column of this type may declare.
    pub const fn max_dimensions(self) -> u32 {
        match self {
            Element::Vector | Element::Halfvec => 16_000,
            Element::Bit => 83_886_080,
            Element::Sparsevec => 1_000_000_000,
        }
    }

    /// The most dimensions an HNSW or IVFFlat index takes (`None`: limited by non-zeros).
    pub const fn max_indexed_dimensions(self) -> Option<u32> {
        match self {
            Element::Vector => Some(2_000),
            Element::Halfvec => Some(4_000),
            Element::Bit => Some(64_000),
            Element::Sparsevec => None,
        }
    }
}

/// How distance between two embeddings is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    Cosine,
    L2,
    InnerProduct,
    L1,
    Hamming,
    Jaccard,
}

impl Distance {
    pub const ALL: [(&'static str, Distance); 6] = [
        ("cosine", Distance::Cosine),
        ("l2", Distance::L2),
        ("inner_product", Distance::InnerProduct),
        ("l1", Distance::L1),
        ("hamming", Distance::Hamming),
        ("jaccard", Distance::Jaccard),
    ];

    pub fn name(self) -> &'static str {
        Distance::ALL
            .iter()
            .find(|(_, d)| *d == self)
            .map_or("cosine", |(n, _)| n)
    }

    /// The operator class suffix: `cosine_ops`, `l2_ops`, ...
    pub const fn opclass_suffix(self) -> &'static str {
        match self {
            Distance::Cosine => "cosine_ops",
            Distance::L2 => "l2_ops",
            Distance::InnerProduct => "ip_ops",
            Distance::L1 => "l1_ops",
            Distance::Hamming => "hamming_ops",
            Distance::Jaccard => "jaccard_ops",
        }
    }

    /// Whether the distance applies to `element` at all.
    pub const fn fits(self, element: Element) -> bool {
        match element {
            Element::Bit => matches!(self, Distance::Hamming | Distance::Jaccard),
            _ => !matches!(self, Distance::Hamming | Distance::Jaccard),
        }
    }
}

/// The approximate-nearest-neighbour index, with the parameters pgstack searches with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum VectorIndex {
    Hnsw {
        m: u32,
        ef_construction: u32,
        /// `hnsw.ef_search` pgstack sets per query unless the call gives another.
        ef_search: u32,
    },
    Ivfflat {
        lists: u32,
        /// `ivfflat.probes` pgstack sets per query unless the call gives another.
        probes: u32,
    },
    /// Exact search only.
    None,
}

/// The type of a vector collection's `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdType {
    Bigint,
    Text,
    Uuid,
}

impl IdType {
    pub fn field_type(self) -> FieldType {
        match self {
            IdType::Bigint => FieldType::Bigint,
            IdType::Text => FieldType::Text,
            IdType::Uuid => FieldType::Uuid,
        }
    }
}

/// Column types a spec may declare for fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Bigint,
    Integer,
    Boolean,
    Double,
    Timestamptz,
    Uuid,
    Jsonb,
}

impl FieldType {
    pub const ALL: [(&'static str, FieldType); 8] = [
        ("text", FieldType::Text),
        ("bigint", FieldType::Bigint),
        ("integer", FieldType::Integer),
        ("boolean", FieldType::Boolean),
        ("double", FieldType::Double),
        ("timestamptz", FieldType::Timestamptz),
        ("uuid", FieldType::Uuid),
        ("jsonb", FieldType::Jsonb),
    ];

    /// The spec's name for the type.
    pub fn name(self) -> &'static str {
        FieldType::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("text", |(n, _)| n)
    }

    /// The PostgreSQL column type.
    pub const fn sql(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Bigint => "bigint",
            FieldType::Integer => "integer",
            FieldType::Boolean => "boolean",
            FieldType::Double => "double precision",
            FieldType::Timestamptz => "timestamptz",
            FieldType::Uuid => "uuid",
            FieldType::Jsonb => "jsonb",
        }
    }
}

impl Spec {
    /// Every facility, in kind order then name order.
    pub fn facilities(&self) -> impl Iterator<Item = FacilityRef<'_>> {
        self.kv
            .iter()
            .map(FacilityRef::Kv)
            .chain(self.documents.iter().map(FacilityRef::Document))
            .chain(self.queues.iter().map(FacilityRef::Queue))
            .chain(self.caches.iter().map(FacilityRef::Cache))
            .chain(self.rate_limits.iter().map(FacilityRef::RateLimit))
            .chain(self.vectors.iter().map(FacilityRef::Vector))
    }

    /// The facility called `name`, of any kind.
    pub fn facility(&self, name: &str) -> Option<FacilityRef<'_>> {
        self.facilities().find(|f| f.name() == name)
    }
}

/// The `FieldKind` variant naming a field type in generated Rust.
pub fn field_kind_variant(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Text => "Text",
        FieldType::Bigint => "Bigint",
        FieldType::Integer => "Integer",
        FieldType::Boolean => "Boolean",
        FieldType::Double => "Double",
        FieldType::Timestamptz => "Timestamptz",
        FieldType::Uuid => "Uuid",
        FieldType::Jsonb => "Jsonb",
    }
}
