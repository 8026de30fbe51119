//! Coalescing: many tasks' single requests answered by few statements, the way a pipelining
//! client answers many commands per round trip. Used by [`crate::cache::CacheReader`] and
//! [`crate::rate_limit::CheckBatcher`].
//!
//! `loops` tasks share one queue. One loop at a time takes everything queued (up to
//! `max_batch`) and answers it with one statement; while it waits for PostgreSQL, the next loop
//! collects the requests that arrive meanwhile. So a lone request goes out at once, and under
//! load each statement carries what arrived during the previous one's round trip.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

/// What one loop does with a batch. Each loop owns its answerer (and so, say, its connection).
pub(crate) trait Answer: Send + 'static {
    type Request: Send + 'static;

    /// Answers the requests it can (each carries its reply channel) and returns the ones to
    /// answer in this loop's next batch, e.g. a second request for a key already in this one.
    fn answer(
        &mut self,
        batch: Vec<Self::Request>,
    ) -> impl Future<Output = Vec<Self::Request>> + Send;
}

/// Where requests go in; the loops stop when the last clone is dropped and the queue is empty.
pub(crate) struct Coalescer<R> {
    requests: mpsc::UnboundedSender<R>,
}

impl<R> Clone for Coalescer<R> {
    fn clone(&self) -> Self {
        Coalescer {
            requests: self.requests.clone(),
        }
    }
}

impl<R: Send + 'static> Coalescer<R> {
    /// Spawns one loop per answerer `make(i)` for `i < loops`. Must run in a tokio runtime.
    pub(crate) fn spawn<A, F>(loops: usize, max_batch: usize, mut make: F) -> Coalescer<R>
    where
        A: Answer<Request = R>,
        F: FnMut(usize) -> A,
    {
        let (requests, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..loops.max(1) {
            tokio::spawn(run(make(i), receiver.clone(), max_batch.max(1)));
        }
        Coalescer { requests }
    }

    /// Queues a request; gives it back if every loop has stopped.
    pub(crate) fn send(&self, request: R) -> Result<(), R> {
        self.requests.send(request).map_err(|e| e.0)
    }
}

async fn run<A: Answer>(
    mut answerer: A,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<A::Request>>>,
    max_batch: usize,
) {
    let mut left: Vec<A::Request> = Vec::new();
    loop {
        let batch = if left.is_empty() {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = vec![first];
            drain(&mut receiver, &mut batch, max_batch);
            batch
        } else {
            // Work carried over goes out now. Waiting for the queue here could wait forever:
            // the loop holding it may be waiting for requests that only come once these are
            // answered.
            let mut batch = std::mem::take(&mut left);
            if let Ok(mut receiver) = receiver.try_lock() {
                drain(&mut receiver, &mut batch, max_batch);
            }
            batch
        };
        left = answerer.answer(batch).await;
    }
}

/// Moves what is queued into `batch`, up to `max_batch`, without waiting.
fn drain<R>(receiver: &mut mpsc::UnboundedReceiver<R>, batch: &mut Vec<R>, max_batch: usize) {
    while batch.len() < max_batch {
        match receiver.try_recv() {
            Ok(request) => batch.push(request),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    /// Doubles numbers; a number already in the batch waits for the next one. Records batches.
    struct Doubler {
        batches: Arc<std::sync::Mutex<Vec<Vec<u32>>>>,
    }

    impl Answer for Doubler {
        type Request = (u32, oneshot::Sender<u32>);

        async fn answer(&mut self, batch: Vec<Self::Request>) -> Vec<Self::Request> {
            let mut seen = Vec::new();
            let mut left = Vec::new();
            for (n, reply) in batch {
                if seen.contains(&n) {
                    left.push((n, reply));
                } else {
                    seen.push(n);
                    let _ = reply.send(n * 2);
                }
            }
            if let Ok(mut batches) = self.batches.lock() {
                batches.push(seen);
            }
            tokio::task::yield_now().await;
            left
        }
    }

    #[tokio::test]
    async fn batches_answer_everything_and_repeat_keys_wait_a_round() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let coalescer = Coalescer::spawn(1, 100, |_| Doubler {
            batches: batches.clone(),
        });
        let mut answers = Vec::new();
        for n in [1, 2, 1, 3, 1] {
            let (reply, answer) = oneshot::channel();
            assert!(coalescer.send((n, reply)).is_ok());
            answers.push(answer);
        }
        let mut got = Vec::new();
        for answer in answers {
            got.push(answer.await.unwrap_or(0));
        }
        assert_eq!(got, vec![2, 4, 2, 6, 2]);
        let batches = batches.lock().map(|b| b.clone()).unwrap_or_default();
        // All five were queued before the loop ran: one statement for 1, 2, 3, then one per
        // repeat of 1.
        assert_eq!(batches, vec![vec![1, 2, 3], vec![1], vec![1]]);
    }

    #[tokio::test]
    async fn carried_work_does_not_wait_for_an_idle_loop() {
        // Two loops: one takes both requests for key 1 and must answer the second itself
        // while the other sits on the empty queue.
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let coalescer = Coalescer::spawn(2, 100, |_| Doubler {
            batches: batches.clone(),
        });
        let (first, first_answer) = oneshot::channel();
        let (second, second_answer) = oneshot::channel();
        assert!(coalescer.send((1, first)).is_ok());
        assert!(coalescer.send((1, second)).is_ok());
        let both = async { (first_answer.await, second_answer.await) };
        let answers = tokio::time::timeout(std::time::Duration::from_secs(5), both).await;
        assert!(
            matches!(answers, Ok((Ok(2), Ok(2)))),
            "both answered: {answers:?}"
        );
    }
}
