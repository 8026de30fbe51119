//! Nearest-neighbour and hybrid search: the query builders and the SQL they become.
//!
//! A search is one statement (plus, the first time a filter is seen, a count). Its shape
//! depends on the strategy:
//!
//! - **plain** (no filter): `ORDER BY embedding <op> $q LIMIT k`, which the ANN index serves.
//!   `hnsw.ef_search` (or `ivfflat.probes`) is set for this statement only, by a `set_config(...,
//!   true)` in an uncorrelated sub-select of the WHERE clause: PostgreSQL evaluates it once, as a
//!   one-time filter, before the index scan returns its first row.
//! - **iterative** (filtered): the same with pgvector's `iterative_scan = relaxed_order`, so the
//!   scan goes on until `k` rows pass the filter; the outer query restores strict order.
//! - **exact**: `ORDER BY (embedding <op> $q) + 0`, which no ANN index can serve, so PostgreSQL
//!   scans the filtered rows (through their B-tree) and sorts: exact, and fast when few match.
//! - **auto** (filtered, on an indexed field): the matching rows are counted through their
//!   B-tree, up to a bound that falls with the dimensions; exact search below it, the iterative
//!   scan above. The answer is remembered per filter and values for a minute, so steady traffic
//!   runs one statement per search.
//!
//! pgvector applies filters after the ANN scan, so without these a 1%-selective filter returns
//! about 0.45 of 10 rows at the default `ef_search`.

use sea_orm::{ConnectionTrait, QueryResult, Value};

use super::query::{Op, Query};
use super::{
    Collection, FieldKind, Filter, Hit, Hybrid, HybridHit, IndexDef, Record, Search, Strategy,
    default_exact_below,
};
use crate::cluster::Route;
use crate::error::{DbContext, Result};
use crate::ident::Ident;
use crate::sql::stmt;

/// The most rows one search returns.
pub const MAX_K: u32 = 1_000;

/// How long [`Strategy::Auto`] trusts a count of the rows a filter matches.
pub const SELECTIVITY_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Filters whose counts are remembered, per collection handle.
const SELECTIVITY_ENTRIES: usize = 4_096;

/// Bound parameters, numbered as they are pushed.
#[derive(Default)]
struct Params(Vec<Value>);

impl Params {
    fn push(&mut self, value: Value) -> String {
        self.0.push(value);
        format!("${}", self.0.len())
    }
}

/// How the ANN part of a statement runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Plain,
    Iterative,
    Exact,
}

impl Collection {
    /// `WHERE` conditions (joined with AND) for the filters and the tenant, values bound.
    /// Refuses filter values and a tenant nested too deeply, before anything copies or
    /// prints them (both recurse).
    fn check_depths(&self, filters: &[Filter], tenant: Option<&serde_json::Value>) -> Result<()> {
        let values = filters.iter().flat_map(|f| f.values.iter()).chain(tenant);
        for value in values {
            crate::json::check_depth(value)
                .map_err(|_| self.invalid(crate::json::too_deep("in a filter, tenant or key")))?;
        }
        Ok(())
    }

    fn conditions(
        &self,
        filters: &[Filter],
        tenant: Option<&serde_json::Value>,
        params: &mut Params,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for filter in filters {
            let Some(field) = self.def.field(&filter.field) else {
                let declared: Vec<&str> = self.def.fields.iter().map(|f| f.name).collect();
                return Err(self.invalid(format!(
                    "filter on `{}`, which is not a declared field; declared: {}",
                    filter.field,
                    declared.join(", ")
                )));
            };
            if let Some(why) = &filter.invalid {
                return Err(self.invalid(format!("filter on `{}`: {why}", field.name)));
            }
            let column = Ident::new(field.name)?;
            let mut bind = |value: &serde_json::Value| -> Result<String> {
                // Before `bind`, which copies the value.
                crate::json::check_depth(value).map_err(|_| {
                    self.invalid(format!(
                        "filter on `{}`: {}",
                        field.name,
                        crate::json::too_deep("compared with")
                    ))
                })?;
                let value = field
                    .kind
                    .bind(value)
                    .map_err(|why| self.invalid(format!("filter on `{}`: {why}", field.name)))?;
                Ok(params.push(value))
            };
            let condition = match filter.op {
                Op::IsNull => format!("{column} IS NULL"),
                Op::IsNotNull => format!("{column} IS NOT NULL"),
                Op::In => {
                    if filter.values.is_empty() {
                        "false".to_string()
                    } else {
                        let list = filter
                            .values
                            .iter()
                            .map(&mut bind)
                            .collect::<Result<Vec<_>>>()?;
                        format!("{column} IN ({})", list.join(", "))
                    }
                }
                op => {
                    if field.kind == FieldKind::Jsonb && op != Op::Eq && op != Op::Ne {
                        return Err(self.invalid(format!(
                            "filter on `{}`: a jsonb field compares only with eq and ne",
                            field.name
                        )));
                    }
                    let symbol = match op {
                        Op::Eq => "=",
                        Op::Ne => "<>",
                        Op::Lt => "<",
                        Op::Le => "<=",
                        Op::Gt => ">",
                        _ => ">=",
                    };
                    let value = filter.values.first().cloned().unwrap_or_default();
                    format!("{column} {symbol} {}", bind(&value)?)
                }
            };
            out.push(condition);
        }
        if let Some(tenant) = tenant {
            let Some(field) = self.def.partition_field() else {
                return Err(self
                    .invalid("the collection has no `partition_by`, so a search takes no tenant"));
            };
            let value = field
                .kind
                .bind(tenant)
                .map_err(|why| self.invalid(format!("tenant (`{}`): {why}", field.name)))?;
            out.push(format!(
                "{} = {}",
                Ident::new(field.name)?,
                params.push(value)
            ));
        }
        Ok(out)
    }

    /// `(SELECT set_config(...)) IS NOT NULL`: the per-statement search settings.
    fn settings(
        &self,
        ef_search: Option<u32>,
        probes: Option<u32>,
        k: u32,
        iterative: bool,
        params: &mut Params,
    ) -> Result<Option<String>> {
        let mut calls = Vec::new();
        match self.def.index {
            IndexDef::Hnsw { ef_search: default } => {
                let ef = ef_search.unwrap_or(default);
                if !(1..=1000).contains(&ef) {
                    return Err(self.invalid(format!("ef_search must be 1 to 1000, found {ef}")));
                }
                // Without an iterative scan HNSW returns at most ef_search rows.
                let ef = ef.max(k.min(1000));
                calls.push(format!(
                    "set_config('hnsw.ef_search', {}, true)",
                    params.push(ef.to_string().into())
                ));
                if iterative {
                    calls.push(
                        "set_config('hnsw.iterative_scan', 'relaxed_order', true)".to_string(),
                    );
                }
            }
            IndexDef::IvfFlat {
                lists,
                probes: default,
            } => {
                let p = probes.unwrap_or(default);
                if !(1..=lists).contains(&p) {
                    return Err(self.invalid(format!(
                        "probes must be 1 to {lists} (the lists), found {p}"
                    )));
                }
                calls.push(format!(
                    "set_config('ivfflat.probes', {}, true)",
                    params.push(p.to_string().into())
                ));
                if iterative {
                    calls.push(
                        "set_config('ivfflat.iterative_scan', 'relaxed_order', true)".to_string(),
                    );
                }
            }
            IndexDef::None => return Ok(None),
        }
        Ok(Some(format!("(SELECT {}) IS NOT NULL", calls.join(" || "))))
    }

    /// Whether at most `below` rows match the filters: counted (through their B-tree, up to
    /// `below + 1`) the first time a filter with these values is seen, then remembered for
    /// [`SELECTIVITY_TTL`]. A stale answer only changes the strategy, never the rows' validity.
    async fn few_match<C: Route>(
        &self,
        db: &C,
        filters: &[Filter],
        tenant: Option<&serde_json::Value>,
        below: u32,
    ) -> Result<bool> {
        let key = format!("{filters:?}|{tenant:?}|{below}");
        let now = std::time::Instant::now();
        {
            let cache = self.selectivity.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((few, at)) = cache.get(&key)
                && now.duration_since(*at) < SELECTIVITY_TTL
            {
                return Ok(*few);
            }
        }
        let mut params = Params::default();
        let conditions = self.conditions(filters, tenant, &mut params)?;
        let sql = format!(
            "SELECT count(*) AS n FROM (SELECT 1 FROM {} WHERE {} LIMIT {}) AS p",
            self.sql()?.table,
            conditions.join(" AND "),
            u64::from(below) + 1
        );
        let row = self
            .handle
            .traced(
                "count_filter",
                db.read().query_one_raw(stmt(&sql, params.0)),
            )
            .await
            .in_facility(self.facility())?;
        let n: i64 = match row {
            Some(row) => row.try_get("", "n").in_facility(self.facility())?,
            None => 0,
        };
        let few = n <= i64::from(below);
        let mut cache = self.selectivity.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= SELECTIVITY_ENTRIES {
            cache.clear();
        }
        cache.insert(key, (few, now));
        Ok(few)
    }

    fn check_k(&self, k: u32) -> Result<()> {
        if k == 0 || k > MAX_K {
            return Err(self.invalid(format!("k must be 1 to {MAX_K}, found {k}")));
        }
        Ok(())
    }

    /// The `k` rows nearest the query, closest first. Each hit's `item.embedding` is `None`
    /// unless the search asked [`Search::with_embeddings`].
    pub async fn search<C: Route>(&self, db: &C, search: &Search) -> Result<Vec<Hit<Record>>> {
        self.search_with(db, search, search.with_embeddings).await
    }

    /// [`Collection::search`], selecting the embeddings when `embeddings` (typed searches whose
    /// type holds a required embedding always do).
    pub(crate) async fn search_with<C: Route>(
        &self,
        db: &C,
        search: &Search,
        embeddings: bool,
    ) -> Result<Vec<Hit<Record>>> {
        let started = std::time::Instant::now();
        let hits = self.run_search(db, search, embeddings).await?;
        crate::metrics::vector_search(self.facility(), "search", started.elapsed(), hits.len());
        Ok(hits)
    }

    async fn run_search<C: Route>(
        &self,
        db: &C,
        search: &Search,
        embeddings: bool,
    ) -> Result<Vec<Hit<Record>>> {
        self.check_k(search.k)?;
        self.check_depths(&search.filters, search.tenant.as_ref())?;
        if let Query::SimilarTo(key) = &search.query {
            self.check_depths(&[], Some(&key.id))?;
            self.check_depths(&[], key.tenant.as_ref())?;
        }
        let filters = &search.filters;
        let mut tenant = search.tenant.as_ref();
        // similar_to leaves its own row out.
        let mut exclude = None;
        let stored;
        let embedding = match &search.query {
            Query::Embedding(e) => {
                self.check_embedding(e, "the query embedding")?;
                e
            }
            Query::SimilarTo(key) => {
                let Some(row) = self.get(db, key.clone()).await? else {
                    return Err(
                        self.invalid(format!("similar_to: there is no row with id {}", key.id))
                    );
                };
                let Some(embedding) = row.embedding else {
                    return Err(
                        self.invalid(format!("similar_to: row {} has no embedding yet", key.id))
                    );
                };
                if tenant.is_none() {
                    tenant = key.tenant.as_ref();
                }
                exclude = Some(&key.id);
                stored = embedding;
                &stored
            }
        };
        let sql = self.sql()?;
        let mut params = Params::default();
        // The query embedding as an uncorrelated sub-select: evaluated once per execution,
        // also under a generic plan (a bare `$1::vector` would be parsed again for every row
        // whose distance is projected).
        let q = format!(
            "(SELECT {}::{})",
            params.push(embedding.to_sql_text().into()),
            sql.vtype
        );
        // `k` is written into the statement, a checked integer: with it bound, PostgreSQL
        // cannot cost a generic plan and re-plans every execution.
        let k = search.k;
        let mut conditions = self.conditions(filters, tenant, &mut params)?;
        if let Some(id) = exclude {
            let id = self
                .def
                .id
                .bind(id)
                .map_err(|why| self.invalid(format!("similar_to id: {why}")))?;
            conditions.push(format!("\"id\" <> {}", params.push(id)));
        }
        // A tenant is not a filter: its partition holds only its rows.
        let filtered = !filters.is_empty() || exclude.is_some();
        let on_indexed = filters
            .iter()
            .any(|f| self.def.field(&f.field).is_some_and(|d| d.indexed));
        let plan = match (search.strategy, self.def.index) {
            (Strategy::Exact, _) | (_, IndexDef::None) => Plan::Exact,
            (_, _) if !filtered => Plan::Plain,
            (Strategy::Auto, _) if on_indexed => {
                let below = search
                    .exact_below
                    .unwrap_or_else(|| default_exact_below(self.def.dimensions));
                if self.few_match(db, filters, tenant, below).await? {
                    Plan::Exact
                } else {
                    Plan::Iterative
                }
            }
            _ => Plan::Iterative,
        };
        let op = self.def.distance.operator();
        let distance = format!("(\"embedding\" {op} {q})");
        let mut columns = sql.columns.clone();
        if embeddings {
            columns.push_str(", \"embedding\"::text AS \"embedding\"");
        }
        let table = &sql.table;
        let and = |extra: &[String]| -> String {
            let all: Vec<&String> = extra.iter().chain(conditions.iter()).collect();
            if all.is_empty() {
                String::new()
            } else {
                format!(
                    "WHERE {}",
                    all.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" AND ")
                )
            }
        };
        let exact = |gate: Option<String>| {
            let mut extra: Vec<String> = gate.into_iter().collect();
            extra.push("\"embedding\" IS NOT NULL".to_string());
            format!(
                "SELECT {columns}, {distance} AS \"distance\" FROM {table} {} ORDER BY {distance} + 0 LIMIT {k}",
                and(&extra)
            )
        };
        let ann = |gate: Option<String>, settings: Option<String>| {
            let extra: Vec<String> = gate.into_iter().chain(settings).collect();
            format!(
                "SELECT {columns}, {distance} AS \"distance\" FROM {table} {} ORDER BY \"embedding\" {op} {q} LIMIT {k}",
                and(&extra)
            )
        };
        let inner = match plan {
            Plan::Exact => exact(None),
            Plan::Plain => {
                let settings = self.settings(
                    search.ef_search,
                    search.probes,
                    search.k,
                    false,
                    &mut params,
                )?;
                ann(None, settings)
            }
            Plan::Iterative => {
                let settings =
                    self.settings(search.ef_search, search.probes, search.k, true, &mut params)?;
                ann(None, settings)
            }
        };
        let outer_where = match search.max_distance {
            Some(d) => format!(" WHERE \"distance\" <= {}", params.push(d.into())),
            None => String::new(),
        };
        let statement =
            format!("SELECT * FROM ({inner}) AS \"hits\"{outer_where} ORDER BY \"distance\" + 0");
        let rows = self
            .handle
            .traced(
                "search",
                db.read().query_all_raw(stmt(&statement, params.0)),
            )
            .await
            .in_facility(self.facility())?;
        rows.iter()
            .map(|row| {
                Ok(Hit {
                    item: self.decode(row, embeddings)?,
                    distance: row.try_get("", "distance").in_facility(self.facility())?,
                })
            })
            .collect()
    }

    /// Semantic and full-text rankings fused by reciprocal rank fusion, best first. Each hit's
    /// `item.embedding` is `None` unless the search asked [`Hybrid::with_embeddings`].
    pub async fn hybrid<C: Route>(
        &self,
        db: &C,
        hybrid: &Hybrid,
    ) -> Result<Vec<HybridHit<Record>>> {
        self.hybrid_with(db, hybrid, hybrid.with_embeddings).await
    }

    /// [`Collection::hybrid`], selecting the embeddings when `embeddings`.
    pub(crate) async fn hybrid_with<C: Route>(
        &self,
        db: &C,
        hybrid: &Hybrid,
        embeddings: bool,
    ) -> Result<Vec<HybridHit<Record>>> {
        let started = std::time::Instant::now();
        let hits = self.run_hybrid(db, hybrid, embeddings).await?;
        crate::metrics::vector_search(self.facility(), "hybrid", started.elapsed(), hits.len());
        Ok(hits)
    }

    async fn run_hybrid<C: Route>(
        &self,
        db: &C,
        hybrid: &Hybrid,
        embeddings: bool,
    ) -> Result<Vec<HybridHit<Record>>> {
        let Some(language) = self.def.full_text else {
            return Err(self.handle.unsupported(
                "hybrid search",
                "declare `full_text = [\"field\", ...]` in its [[vector]] to add the tsvector column",
            ));
        };
        self.check_k(hybrid.k)?;
        self.check_depths(&hybrid.filters, hybrid.tenant.as_ref())?;
        self.check_embedding(&hybrid.embedding, "the query embedding")?;
        let depth = hybrid.depth.unwrap_or((hybrid.k * 4).max(40));
        if depth < hybrid.k || depth > MAX_K {
            return Err(self.invalid(format!(
                "depth must be between k ({}) and {MAX_K}, found {depth}",
                hybrid.k
            )));
        }
        let sql = self.sql()?;
        let table = &sql.table;
        let mut params = Params::default();
        let q = format!(
            "(SELECT {}::{})",
            params.push(hybrid.embedding.to_sql_text().into()),
            sql.vtype
        );
        let text = params.push(hybrid.text.clone().into());
        let depth_param = depth;
        let conditions = self.conditions(&hybrid.filters, hybrid.tenant.as_ref(), &mut params)?;
        let settings = self.settings(
            hybrid.ef_search,
            None,
            depth,
            !hybrid.filters.is_empty(),
            &mut params,
        )?;
        let op = self.def.distance.operator();
        let where_with = |extra: Vec<String>| {
            let all: Vec<String> = extra
                .into_iter()
                .chain(conditions.iter().cloned())
                .collect();
            if all.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", all.join(" AND "))
            }
        };
        // Rows are joined on their key: the id, and the tenant in a partitioned collection.
        let key: Vec<String> = match self.def.partition_by {
            Some(p) => vec![Ident::new(p)?.to_string(), "\"id\"".to_string()],
            None => vec!["\"id\"".to_string()],
        };
        let key_list = key.join(", ");
        let join_on = |a: &str, b: &str| {
            key.iter()
                .map(|c| format!("{a}.{c} = {b}.{c}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let coalesced = key
            .iter()
            .map(|c| format!("coalesce(s.{c}, w.{c}) AS {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rrf_k = params.push(hybrid.rrf_k.into());
        let ws = params.push(hybrid.semantic_weight.into());
        let wk = params.push(hybrid.keyword_weight.into());
        let k = hybrid.k;
        let mut columns = sql
            .columns
            .split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        if embeddings {
            columns.push_str(", t.\"embedding\"::text AS \"embedding\"");
        }
        let statement = format!(
            "WITH \"semantic\" AS (\
                SELECT {key_list}, row_number() OVER (ORDER BY \"distance\" + 0) AS \"rank\" FROM (\
                    SELECT {key_list}, (\"embedding\" {op} {q}) AS \"distance\" FROM {table} {sem_where} \
                    ORDER BY \"embedding\" {op} {q} LIMIT {depth_param}) AS c), \
            \"keyword\" AS (\
                SELECT {key_list}, row_number() OVER (ORDER BY ts_rank_cd(\"fts\", tsq) DESC, \"id\") AS \"rank\" \
                FROM {table}, websearch_to_tsquery('{language}'::regconfig, {text}) AS tsq {kw_where} \
                ORDER BY ts_rank_cd(\"fts\", tsq) DESC, \"id\" LIMIT {depth_param}), \
            \"fused\" AS (\
                SELECT {coalesced}, \
                    coalesce({ws} / ({rrf_k} + s.\"rank\"), 0) + coalesce({wk} / ({rrf_k} + w.\"rank\"), 0) AS \"score\", \
                    s.\"rank\" AS \"semantic_rank\", w.\"rank\" AS \"keyword_rank\" \
                FROM \"semantic\" s FULL OUTER JOIN \"keyword\" w ON {sw_on} \
                ORDER BY \"score\" DESC, w.\"rank\" NULLS LAST, s.\"rank\" NULLS LAST LIMIT {k}) \
            SELECT {columns}, f.\"score\", f.\"semantic_rank\", f.\"keyword_rank\" \
            FROM \"fused\" f JOIN {table} t ON {ft_on} \
            ORDER BY f.\"score\" DESC, f.\"keyword_rank\" NULLS LAST, f.\"semantic_rank\" NULLS LAST",
            sem_where = where_with(settings.into_iter().collect()),
            kw_where = where_with(vec!["\"fts\" @@ tsq".to_string()]),
            sw_on = join_on("s", "w"),
            ft_on = join_on("f", "t"),
            language = language.replace('\'', "''"),
        );
        let rows = self
            .handle
            .traced(
                "hybrid",
                db.read().query_all_raw(stmt(&statement, params.0)),
            )
            .await
            .in_facility(self.facility())?;
        rows.iter()
            .map(|row| self.decode_hybrid(row, embeddings))
            .collect()
    }

    fn decode_hybrid(&self, row: &QueryResult, embeddings: bool) -> Result<HybridHit<Record>> {
        let f = self.facility();
        let rank = |name: &str| -> Result<Option<u32>> {
            let r: Option<i64> = row.try_get("", name).in_facility(f)?;
            Ok(r.map(|r| r as u32))
        };
        Ok(HybridHit {
            item: self.decode(row, embeddings)?,
            score: row.try_get("", "score").in_facility(f)?,
            semantic_rank: rank("semantic_rank")?,
            keyword_rank: rank("keyword_rank")?,
        })
    }
}
