//! `CheckBatcher`: many tasks' checks answered by few `check_many` statements.

use std::collections::HashSet;

use sea_orm::DatabaseConnection;
use tokio::sync::oneshot;

use super::{Decision, RateLimiter};
use crate::coalesce::{Answer, Coalescer};
use crate::error::{Error, Result};

type Reply = oneshot::Sender<Result<Decision>>;

pub(super) struct CheckRequest {
    key: String,
    cost: u64,
    reply: Reply,
}

/// Coalesces concurrent checks into batched statements; see [`RateLimiter::batcher`]. Cheap
/// to clone; its tasks stop when the last clone is dropped.
#[derive(Clone)]
pub struct CheckBatcher {
    pub(super) limiter: &'static RateLimiter,
    pub(super) db: DatabaseConnection,
    pub(super) requests: Coalescer<CheckRequest>,
}

impl CheckBatcher {
    /// As [`RateLimiter::check`].
    pub async fn check(&self, key: &str) -> Result<Decision> {
        self.check_cost(key, 1).await
    }

    /// As [`RateLimiter::check_cost`]; a cost of 0 is a [`RateLimiter::peek`], sent alone.
    pub async fn check_cost(&self, key: &str, cost: u64) -> Result<Decision> {
        // Checked here so that one bad request cannot fail the batch it would have joined.
        self.limiter.check_key(key)?;
        if cost == 0 {
            return self.limiter.peek(&self.db, key).await;
        }
        self.limiter.check_cost_fits(cost)?;
        let (reply, answer) = oneshot::channel();
        let request = CheckRequest {
            key: key.to_string(),
            cost,
            reply,
        };
        let stopped = || {
            self.limiter
                .invalid("the check batcher's tasks stopped".to_string())
        };
        self.requests.send(request).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One of a batcher's loops: one `check_many` per batch, a repeated key waits for the next.
pub(super) struct CheckLoop {
    pub(super) limiter: &'static RateLimiter,
    pub(super) db: DatabaseConnection,
}

impl Answer for CheckLoop {
    type Request = CheckRequest;

    async fn answer(&mut self, batch: Vec<CheckRequest>) -> Vec<CheckRequest> {
        let mut seen = HashSet::with_capacity(batch.len());
        let (now, later): (Vec<CheckRequest>, Vec<CheckRequest>) = batch
            .into_iter()
            .partition(|request| seen.insert(request.key.clone()));
        let asked: Vec<(&str, u64)> = now.iter().map(|r| (r.key.as_str(), r.cost)).collect();
        match self.limiter.check_many(&self.db, &asked).await {
            Ok(decisions) => {
                for (request, decision) in now.into_iter().zip(decisions) {
                    let _ = request.reply.send(Ok(decision));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for request in now {
                    let _ = request.reply.send(Err(Error::Database {
                        facility: self.limiter.name().to_string(),
                        cause: sea_orm::DbErr::Custom(message.clone()),
                    }));
                }
            }
        }
        later
    }
}
