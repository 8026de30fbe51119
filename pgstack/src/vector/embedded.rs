//! The `Embedded` trait `#[derive(Embedded)]` implements.

use std::future::Future;

use super::{Collection, Hit, Hybrid, HybridHit, Key, Progress, Record, Search};
use crate::cluster::Route;
use crate::error::Result;

/// A type bound to a collection by `#[derive(Embedded)]`; the provided methods read and write
/// it through the collection.
pub trait Embedded: Sized + Send + Sync + 'static {
    /// The collection's handle (built from the spec at compile time).
    fn collection() -> &'static Collection;

    /// The row this value is written as.
    fn to_record(&self) -> Result<Record>;

    /// The value a row reads as. A row without an embedding reads as `None` into an
    /// `Option` embedding field and is an error for a required one.
    fn from_record(record: Record) -> Result<Self>;

    /// Whether the type's embedding field is required (not an `Option`): then every search
    /// selects the embedding, so a hit always carries it. The derive implements this.
    fn embedding_required() -> bool {
        false
    }

    /// Inserts or replaces this row.
    fn upsert<'a, C: Route>(&'a self, db: &'a C) -> impl Future<Output = Result<()>> + Send + 'a {
        async move { Self::collection().upsert(db, &self.to_record()?).await }
    }

    /// Inserts or replaces many rows in large statements; returns how many were written.
    fn upsert_many<'a, C: Route>(
        db: &'a C,
        items: &'a [Self],
    ) -> impl Future<Output = Result<u64>> + Send + 'a {
        async move {
            Self::collection()
                .load(db, items.len(), items.iter().map(Self::to_record), &mut ())
                .await
        }
    }

    /// [`Embedded::upsert_many`], reporting progress (e.g. to a [`ProgressBar`]).
    fn upsert_many_with_progress<'a, C: Route, P: Progress + Send>(
        db: &'a C,
        items: &'a [Self],
        progress: &'a mut P,
    ) -> impl Future<Output = Result<u64>> + Send + 'a {
        async move {
            Self::collection()
                .load(db, items.len(), items.iter().map(Self::to_record), progress)
                .await
        }
    }

    /// The row with this key, embedding included.
    fn get<'a, C: Route>(
        db: &'a C,
        key: impl Into<Key> + Send + 'a,
    ) -> impl Future<Output = Result<Option<Self>>> + Send + 'a {
        async move {
            match Self::collection().get(db, key).await? {
                Some(record) => Self::from_record(record).map(Some),
                None => Ok(None),
            }
        }
    }

    /// Deletes the row with this key; false when there was none.
    fn delete<'a, C: Route>(
        db: &'a C,
        key: impl Into<Key> + Send + 'a,
    ) -> impl Future<Output = Result<bool>> + Send + 'a {
        async move { Self::collection().delete(db, key).await }
    }

    /// Nearest neighbours, closest first.
    fn search<'a, C: Route>(
        db: &'a C,
        search: &'a Search,
    ) -> impl Future<Output = Result<Vec<Hit<Self>>>> + Send + 'a {
        async move {
            let embeddings = search.with_embeddings || Self::embedding_required();
            Self::collection()
                .search_with(db, search, embeddings)
                .await?
                .into_iter()
                .map(|hit| {
                    Ok(Hit {
                        item: Self::from_record(hit.item)?,
                        distance: hit.distance,
                    })
                })
                .collect()
        }
    }

    /// Semantic and full-text rankings fused, best first.
    fn hybrid<'a, C: Route>(
        db: &'a C,
        hybrid: &'a Hybrid,
    ) -> impl Future<Output = Result<Vec<HybridHit<Self>>>> + Send + 'a {
        async move {
            let embeddings = hybrid.with_embeddings || Self::embedding_required();
            Self::collection()
                .hybrid_with(db, hybrid, embeddings)
                .await?
                .into_iter()
                .map(|hit| {
                    Ok(HybridHit {
                        item: Self::from_record(hit.item)?,
                        score: hit.score,
                        semantic_rank: hit.semantic_rank,
                        keyword_rank: hit.keyword_rank,
                    })
                })
                .collect()
        }
    }
}
