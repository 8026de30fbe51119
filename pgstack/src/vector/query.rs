//! What a search asks for: the `Search` and `Hybrid` builders, filters, and the hits they
//! return. `search.rs` turns them into statements.

use super::{Embedding, Key};

/// How a search uses the ANN index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// The ANN index without filters; with filters on an indexed field, exact search when at
    /// most `exact_below` rows match, else the iterative index scan.
    #[default]
    Auto,
    /// Always the ANN index (iterative scan when filtered).
    Index,
    /// Always exact: every matching row is compared. Perfect recall.
    Exact,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    IsNull,
    IsNotNull,
}

/// A condition on a declared metadata field.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    pub(super) field: String,
    pub(super) op: Op,
    pub(super) values: Vec<serde_json::Value>,
    /// Why a typed field's value could not become JSON; reported by the search.
    pub(super) invalid: Option<String>,
}

macro_rules! comparison {
    ($($name:ident => $op:ident),*) => {$(
        pub fn $name(field: &str, value: impl Into<serde_json::Value>) -> Filter {
            Filter::new(field, Op::$op, vec![value.into()])
        }
    )*};
}

impl Filter {
    fn new(field: &str, op: Op, values: Vec<serde_json::Value>) -> Filter {
        Filter {
            field: field.to_string(),
            op,
            values,
            invalid: None,
        }
    }

    /// A filter whose value could not be encoded: the search reports `why`.
    pub(crate) fn invalid(field: &str, why: String) -> Filter {
        Filter {
            invalid: Some(why),
            ..Filter::new(field, Op::IsNull, Vec::new())
        }
    }

    comparison!(eq => Eq, ne => Ne, lt => Lt, le => Le, gt => Gt, ge => Ge);

    /// The field equals one of `values`.
    pub fn one_of<V: Into<serde_json::Value>>(
        field: &str,
        values: impl IntoIterator<Item = V>,
    ) -> Filter {
        Filter::new(field, Op::In, values.into_iter().map(Into::into).collect())
    }

    pub fn is_null(field: &str) -> Filter {
        Filter::new(field, Op::IsNull, Vec::new())
    }

    pub fn is_not_null(field: &str) -> Filter {
        Filter::new(field, Op::IsNotNull, Vec::new())
    }

    pub fn field(&self) -> &str {
        &self.field
    }
}

/// What to search near.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Query {
    Embedding(Embedding),
    /// The embedding of a stored row (which is left out of the results).
    SimilarTo(Key),
}

/// A nearest-neighbour search: `Search::new(embedding).k(10).filter(...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Search {
    pub(super) query: Query,
    pub(super) k: u32,
    pub(super) filters: Vec<Filter>,
    pub(super) tenant: Option<serde_json::Value>,
    pub(super) ef_search: Option<u32>,
    pub(super) probes: Option<u32>,
    pub(super) strategy: Strategy,
    pub(super) exact_below: Option<u32>,
    pub(crate) with_embeddings: bool,
    pub(super) max_distance: Option<f64>,
}

/// Below how many matching rows [`Strategy::Auto`] compares them all, unless the search says:
/// exact search costs about a microsecond a row plus the distance itself (a 1536-d distance
/// is about 2 µs), so the bound falls as dimensions grow: 2,000 rows up to 750 dimensions,
/// 976 at 1536, never below 200.
pub fn default_exact_below(dimensions: u32) -> u32 {
    (1_500_000 / dimensions.max(1)).clamp(200, 2_000)
}

impl Search {
    /// The 10 rows nearest `embedding`.
    pub fn new(embedding: impl Into<Embedding>) -> Search {
        Search::with_query(Query::Embedding(embedding.into()))
    }

    /// The 10 rows nearest the stored row `key` (itself excluded). In a partitioned collection
    /// the search stays within the row's tenant.
    pub fn similar_to(key: impl Into<Key>) -> Search {
        Search::with_query(Query::SimilarTo(key.into()))
    }

    fn with_query(query: Query) -> Search {
        Search {
            query,
            k: 10,
            filters: Vec::new(),
            tenant: None,
            ef_search: None,
            probes: None,
            strategy: Strategy::Auto,
            exact_below: None,
            with_embeddings: false,
            max_distance: None,
        }
    }

    /// How many rows to return (1 to 1000).
    pub fn k(mut self, k: u32) -> Search {
        self.k = k;
        self
    }

    /// Only rows matching `filter` (filters combine with AND).
    pub fn filter(mut self, filter: Filter) -> Search {
        self.filters.push(filter);
        self
    }

    /// Only the rows of this tenant (the `partition_by` value): one partition is searched.
    pub fn tenant(mut self, tenant: impl Into<serde_json::Value>) -> Search {
        self.tenant = Some(tenant.into());
        self
    }

    /// `hnsw.ef_search` for this query (1 to 1000): higher finds more true neighbours, slower.
    pub fn ef_search(mut self, ef_search: u32) -> Search {
        self.ef_search = Some(ef_search);
        self
    }

    /// `ivfflat.probes` for this query: lists searched, up to `lists` (exact).
    pub fn probes(mut self, probes: u32) -> Search {
        self.probes = Some(probes);
        self
    }

    pub fn strategy(mut self, strategy: Strategy) -> Search {
        self.strategy = strategy;
        self
    }

    /// With [`Strategy::Auto`], compare every matching row when at most this many match
    /// (default: [`default_exact_below`] of the collection's dimensions).
    pub fn exact_below(mut self, rows: u32) -> Search {
        self.exact_below = Some(rows);
        self
    }

    /// Return each hit's embedding too (off by default for untyped searches: a 1536-d
    /// embedding is 6 KB a row; a typed search whose embedding field is not an `Option` always
    /// returns it, so a hit never carries a silently empty embedding).
    pub fn with_embeddings(mut self, yes: bool) -> Search {
        self.with_embeddings = yes;
        self
    }

    /// Only hits at most this far away.
    pub fn max_distance(mut self, distance: f64) -> Search {
        self.max_distance = Some(distance);
        self
    }
}

/// A search result: the row and its distance to the query (smaller is closer).
#[derive(Clone, Debug, PartialEq)]
pub struct Hit<T> {
    pub item: T,
    pub distance: f64,
}

/// A hybrid search: semantic and full-text rankings fused by reciprocal rank fusion.
#[derive(Clone, Debug, PartialEq)]
pub struct Hybrid {
    pub(super) text: String,
    pub(super) embedding: Embedding,
    pub(super) k: u32,
    pub(super) filters: Vec<Filter>,
    pub(super) tenant: Option<serde_json::Value>,
    pub(super) depth: Option<u32>,
    pub(super) rrf_k: f64,
    pub(super) semantic_weight: f64,
    pub(super) keyword_weight: f64,
    pub(super) ef_search: Option<u32>,
    pub(crate) with_embeddings: bool,
}

impl Hybrid {
    /// `text` is matched with `websearch_to_tsquery` (quotes, `or`, `-word` work);
    /// `embedding` is usually the embedding of the same text.
    pub fn new(text: impl Into<String>, embedding: impl Into<Embedding>) -> Hybrid {
        Hybrid {
            text: text.into(),
            embedding: embedding.into(),
            k: 10,
            filters: Vec::new(),
            tenant: None,
            depth: None,
            rrf_k: 60.0,
            semantic_weight: 1.0,
            keyword_weight: 1.0,
            ef_search: None,
            with_embeddings: false,
        }
    }

    pub fn k(mut self, k: u32) -> Hybrid {
        self.k = k;
        self
    }

    pub fn filter(mut self, filter: Filter) -> Hybrid {
        self.filters.push(filter);
        self
    }

    pub fn tenant(mut self, tenant: impl Into<serde_json::Value>) -> Hybrid {
        self.tenant = Some(tenant.into());
        self
    }

    /// Candidates taken from each ranking before fusing (default: 4k, at least 40).
    pub fn depth(mut self, depth: u32) -> Hybrid {
        self.depth = Some(depth);
        self
    }

    /// The RRF constant: a hit at rank r scores `weight / (rrf_k + r)` (default 60).
    pub fn rrf_k(mut self, k: f64) -> Hybrid {
        self.rrf_k = k;
        self
    }

    pub fn weights(mut self, semantic: f64, keyword: f64) -> Hybrid {
        self.semantic_weight = semantic;
        self.keyword_weight = keyword;
        self
    }

    pub fn ef_search(mut self, ef_search: u32) -> Hybrid {
        self.ef_search = Some(ef_search);
        self
    }

    /// Return each hit's embedding too (off by default for untyped searches; a typed search
    /// whose embedding field is not an `Option` always returns it).
    pub fn with_embeddings(mut self, yes: bool) -> Hybrid {
        self.with_embeddings = yes;
        self
    }
}

/// A hybrid result: the fused score and the rank the row had in each list (1 is best).
#[derive(Clone, Debug, PartialEq)]
pub struct HybridHit<T> {
    pub item: T,
    pub score: f64,
    pub semantic_rank: Option<u32>,
    pub keyword_rank: Option<u32>,
}
