//! The `Job` trait `#[derive(Queue)]` implements.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{EnqueueOptions, Enqueued, NewJob, Queue};
use crate::cluster::Route;
use crate::error::Result;

/// A typed job: a payload type bound to a queue, implemented by `#[derive(Queue)]`.
///
/// ```ignore
/// #[derive(Serialize, Deserialize, Queue)]
/// #[pgstack(queue = "emails")]
/// struct SendEmail { to: String }
///
/// SendEmail { to: "a@example.com".into() }.enqueue(&txn).await?;
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The `kind` stored with each job; the type's name unless `#[pgstack(kind = "...")]`.
    const KIND: &'static str;

    /// The queue the type belongs to.
    fn queue() -> &'static Queue;

    /// Enqueues this job now.
    fn enqueue<'a, C: Route>(
        &'a self,
        db: &'a C,
    ) -> impl Future<Output = Result<Enqueued>> + Send + 'a {
        async move {
            Self::queue()
                .enqueue(db, Self::KIND, self, &EnqueueOptions::default())
                .await
        }
    }

    /// Enqueues this job with a delay, run time, priority, unique key or attempt limit.
    fn enqueue_with<'a, C: Route>(
        &'a self,
        db: &'a C,
        options: &'a EnqueueOptions,
    ) -> impl Future<Output = Result<Enqueued>> + Send + 'a {
        async move { Self::queue().enqueue(db, Self::KIND, self, options).await }
    }

    /// Enqueues many jobs of this type in one statement.
    fn enqueue_many<'a, C: Route>(
        db: &'a C,
        jobs: &'a [Self],
    ) -> impl Future<Output = Result<Vec<Enqueued>>> + Send + 'a {
        async move {
            let batch = jobs
                .iter()
                .map(|job| NewJob::json(Self::KIND, job))
                .collect::<Result<Vec<_>>>()?;
            Self::queue().enqueue_many(db, &batch).await
        }
    }
}
