//! Transactional handlers ([`Worker::handle_tx`](super::Worker::handle_tx)): the handler's
//! writes and its job's completion commit in one transaction, so a job's effects happen exactly
//! once.
//!
//! The worker begins a transaction, gives it to the handler as a [`JobTx`], and when the handler
//! hands it back, deletes (or archives) the job in that same transaction with the usual fence
//! (the job's id and attempt, still claimed) and commits. If the fence finds nothing (the lease
//! was lost and another worker holds the job, or it was cancelled), it rolls back instead: the
//! handler's writes vanish with it. A handler that fails, panics, times out or dies with its
//! process leaves no writes behind; its job is retried as any other.

use std::ops::Deref;

use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};

use super::job::HandlerResult;
use crate::cluster::Route;
use crate::queue::{JobToken, Queue};

/// The transaction a transactional handler writes in: its job completes in it. Pass `&tx` to
/// pgstack's accessors (it is a [`Route`]) and `&*tx` (a [`DatabaseTransaction`]) to SeaORM.
/// Return it from the handler to commit; drop it (return an error) to roll back.
pub struct JobTx {
    txn: DatabaseTransaction,
}

impl Deref for JobTx {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl Route for JobTx {
    type Conn = DatabaseTransaction;

    fn write(&self) -> &DatabaseTransaction {
        &self.txn
    }

    fn primary(&self) -> &DatabaseTransaction {
        &self.txn
    }

    fn read(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl std::fmt::Debug for JobTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobTx").finish_non_exhaustive()
    }
}

/// Opens the job's transaction.
pub(super) async fn begin(db: &DatabaseConnection) -> Result<JobTx, String> {
    db.begin()
        .await
        .map(|txn| JobTx { txn })
        .map_err(|e| format!("could not begin the job's transaction: {e}"))
}

/// Completes the job inside the handler's transaction and commits both, or rolls both back
/// when the job is no longer this worker's.
pub(super) async fn settle(queue: &'static Queue, tx: JobTx, token: JobToken) -> HandlerResult {
    match queue.complete(&tx.txn, &[token]).await {
        Ok(done) if done.is_empty() => {
            if let Err(e) = tx.txn.rollback().await {
                tracing::warn!(queue = queue.def().table, job = token.id, error = %e, "pgstack worker: rolling back a stale job's transaction failed (the server rolls it back when the connection closes)");
            }
            HandlerResult::Stale
        }
        Ok(_) => match tx.txn.commit().await {
            Ok(()) => HandlerResult::Settled,
            Err(e) => HandlerResult::Failed(format!(
                "the job's transaction did not commit (its writes were rolled back): {e}"
            )),
        },
        Err(e) => HandlerResult::Failed(format!(
            "completing the job in its transaction failed (its writes were rolled back): {e}"
        )),
    }
}
