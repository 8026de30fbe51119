//! The `Cached` trait `#[derive(Cached)]` implements.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Cache, Compute, Expiry};
use crate::cluster::Route;
use crate::error::Result;

/// A type stored in a cache, implemented by `#[derive(Cached)]`:
///
/// ```ignore
/// #[derive(Serialize, Deserialize, Cached)]
/// #[pgstack(cache = "pages", key = "path", ttl = "10m")]   // ttl overrides default_ttl
/// struct Page { path: String, html: String }
///
/// page.store(&db).await?;
/// let again = Page::load(&db, "/about").await?;
/// ```
pub trait Cached: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// `Expiry::After(ttl)` from `#[pgstack(ttl = "...")]`, else the spec's default.
    const EXPIRY: Expiry;

    /// The cache the type lives in.
    fn cache() -> &'static Cache;

    /// The key of a value given its key field (with the `prefix`, if any).
    fn key_for(id: &str) -> String;

    /// This value's key: its key field, through [`Cached::key_for`].
    fn cache_key(&self) -> String;

    /// Stores this value under its key.
    fn store<'a, C: Route>(&'a self, db: &'a C) -> impl Future<Output = Result<()>> + Send + 'a {
        async move {
            Self::cache()
                .set_with(db, &self.cache_key(), self, Self::EXPIRY)
                .await
        }
    }

    /// The live value whose key field is `id`.
    fn load<'a, C: Route>(
        db: &'a C,
        id: &'a str,
    ) -> impl Future<Output = Result<Option<Self>>> + Send + 'a {
        async move { Self::cache().get(db, &Self::key_for(id)).await }
    }

    /// Deletes the value whose key field is `id`; `true` if a live one was there.
    fn forget<'a, C: Route>(
        db: &'a C,
        id: &'a str,
    ) -> impl Future<Output = Result<bool>> + Send + 'a {
        async move { Self::cache().delete(db, &Self::key_for(id)).await }
    }

    /// The live value for `id`, or `compute`'s, computed once across concurrent callers.
    fn load_or_compute<'a, C, F, Fut, E>(
        db: &'a C,
        id: &'a str,
        compute: F,
    ) -> impl Future<Output = Result<Self>> + Send + 'a
    where
        C: Route,
        F: FnOnce() -> Fut + Send + 'a,
        Fut: Future<Output = std::result::Result<Self, E>> + Send + 'a,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'a,
    {
        async move {
            let options = Compute {
                expiry: Self::EXPIRY,
                ..Compute::default()
            };
            Self::cache()
                .get_or_compute(db, &Self::key_for(id), options, compute)
                .await
        }
    }
}
