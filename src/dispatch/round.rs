//! One dispatch round: claim a batch of due messages, send up to
//! `concurrency` of them at a time, commit their outcomes in groups, and
//! give back what a stop or a failed commit left unsent. The permits held
//! from hand-over to commit are the whole at-least-once window.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::health::Book;
use super::policy::OptOuts;
use super::{DispatchReport, Dispatcher};
use crate::base::clock::Clock;
use crate::base::metrics;
use crate::store::StoreError;
use crate::store::outbox::{Settle, Settled};
use crate::store::shared::{SharedStore, blocking};

impl Dispatcher {
    /// One round: claim a batch of due messages, send up to `concurrency`
    /// of them at a time, and write their outcomes in groups (one
    /// transaction per group). A message holds one of `concurrency` permits
    /// from before it is sent until its outcome is committed, so at most
    /// `concurrency` messages are ever between "handed to the provider" and
    /// "result durable" — the whole at-least-once window after a crash. The
    /// round ends only when every outcome is committed, so nothing is
    /// claimed again before its result is durable.
    pub async fn round(
        &self,
        store: &SharedStore,
        clock: Clock,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<DispatchReport, StoreError> {
        let limit = self.settings.batch_size;
        let now = clock.now().timestamp();
        // Paused senders' channels are left alone, but for one message of
        // each whose probe is due.
        let health = Book::load(store).await?;
        let claims = self.claims(&health, now);
        let mut claimed = blocking(store, move |s| s.claim_due(now, &claims.open, limit)).await?;
        for channels in claims.probes {
            claimed.extend(blocking(store, move |s| s.claim_due(now, &channels, 1)).await?);
        }
        let claimed_count = claimed.len();
        if claimed.is_empty() {
            return Ok(DispatchReport::default());
        }
        let claimed_ids: Vec<i64> = claimed.iter().map(|m| m.id).collect();
        let caps = match self.cap_book(store, &claimed, now).await {
            Ok(caps) => caps,
            Err(e) => {
                release_unsettled(store, claimed_ids, clock, stop).await;
                return Err(e);
            }
        };
        let opt_outs = OptOuts::default();
        let permits = Arc::new(Semaphore::new(self.concurrency()));
        let (tx, rx) = mpsc::unbounded_channel::<(Settle, OwnedSemaphorePermit)>();
        let mut remaining = claimed.into_iter().peekable();

        let sends = async {
            let mut in_flight = FuturesUnordered::new();
            let mut started = 0usize;
            loop {
                // In-flight sends always finish; new ones start only until
                // a stop (the first one of a round always starts).
                let may_start = remaining.peek().is_some() && (started == 0 || !stop());
                tokio::select! {
                    biased;
                    Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                    permit = permits.clone().acquire_owned(), if may_start => {
                        let permit = permit.expect("the semaphore is never closed");
                        let Some(message) = remaining.next() else { continue };
                        started += 1;
                        let tx = tx.clone();
                        let caps = &caps;
                        let opt_outs = &opt_outs;
                        let health = &health;
                        in_flight.push(async move {
                            let outcome = self.handle(clock, message, caps, opt_outs, health, stop).await;
                            // The writer is gone only if it failed; the
                            // round reports that error.
                            let _ = tx.send((outcome, permit));
                        });
                    }
                    else => break,
                }
            }
            drop(tx);
            Ok::<_, StoreError>(())
        };
        let ((), mut report) = match tokio::try_join!(sends, self.write_outcomes(store, rx)) {
            Ok(done) => done,
            Err(e) => {
                release_unsettled(store, claimed_ids, clock, stop).await;
                return Err(e);
            }
        };

        let unsent: Vec<i64> = remaining.map(|m| m.id).collect();
        if !unsent.is_empty() {
            report.released += unsent.len();
            let now = clock.now().timestamp();
            blocking(store, move |s| s.release(&unsent, now)).await?;
        }
        let learned = health.changed();
        if !learned.is_empty() {
            blocking(store, move |s| s.save_sender_health(&learned)).await?;
        }
        report.claimed = claimed_count;
        Ok(report)
    }

    fn concurrency(&self) -> usize {
        (self.settings.concurrency as usize).max(1)
    }

    /// Commits outcomes as they arrive, each group in one transaction: all
    /// that waited while the previous commit ran, up to `concurrency`. The
    /// permits of a group are returned only once it is committed.
    async fn write_outcomes(
        &self,
        store: &SharedStore,
        mut outcomes: mpsc::UnboundedReceiver<(Settle, OwnedSemaphorePermit)>,
    ) -> Result<DispatchReport, StoreError> {
        let mut report = DispatchReport::default();
        while let Some(first) = outcomes.recv().await {
            let mut group = vec![first];
            while group.len() < self.concurrency() {
                match outcomes.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let (settles, permits): (Vec<Settle>, Vec<OwnedSemaphorePermit>) =
                group.into_iter().unzip();
            let (settles, done) = commit(store, settles).await?;
            drop(permits);
            metrics::global().group_committed(settles.len());
            for (settle, settled) in settles.iter().zip(done) {
                self.count(settle, settled, &mut report);
            }
        }
        Ok(report)
    }

    /// Counts a committed outcome in the report and the metrics.
    fn count(&self, settle: &Settle, settled: Settled, report: &mut DispatchReport) {
        let settle = match (settle, settled) {
            (Settle::FallBack { id, note, .. }, Settled::FellBack(to)) => {
                tracing::info!(id, to = to.as_str(), why = %note, "falling back");
                report.fell_back += 1;
                metrics::global().dispatched("fell_back");
                return;
            }
            (Settle::FallBack { otherwise, .. }, _) => otherwise.as_ref(),
            (other, _) => other,
        };
        let (field, name) = match settle {
            Settle::Sent { .. } => (&mut report.sent, "sent"),
            Settle::Awaiting { .. } => (&mut report.awaiting, "awaiting"),
            Settle::Deferred { .. } => (&mut report.deferred, "deferred"),
            Settle::Retry { .. } => (&mut report.retried, "retried"),
            Settle::Failed { .. } => (&mut report.failed, "failed"),
            Settle::Suppressed { .. } => (&mut report.suppressed, "suppressed"),
            Settle::OptedOut { .. } => (&mut report.opted_out, "opted_out"),
            Settle::Release { .. } | Settle::FallBack { .. } => (&mut report.released, "released"),
        };
        *field += 1;
        metrics::global().dispatched(name);
    }
}

/// Writes a group of outcomes in one transaction. A failed commit (the
/// database busy beyond its timeout) is tried again a few times before the
/// round gives up; nothing of the group is durable until one succeeds.
async fn commit(
    store: &SharedStore,
    settles: Vec<Settle>,
) -> Result<(Vec<Settle>, Vec<Settled>), StoreError> {
    let settles = Arc::new(settles);
    let mut tries = 0;
    loop {
        let group = settles.clone();
        match blocking(store, move |s| s.settle(&group)).await {
            Ok(done) => {
                let settles = Arc::try_unwrap(settles).unwrap_or_else(|shared| (*shared).clone());
                return Ok((settles, done));
            }
            Err(e) if tries < 3 => {
                tries += 1;
                tracing::warn!(error = %e, tries, "could not write dispatch outcomes; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// After a round failed (its outcomes could not be committed: the database
/// held by another process past the busy timeout), gives every message of
/// the round still in `sending` back to the queue, the attempt undone, so
/// the next round sends it instead of it waiting for a restart. Those a
/// provider had accepted are sent again: at most `concurrency`, the same
/// window as a crash. Tried until it succeeds or the dispatcher stops (a
/// restart requeues them then).
async fn release_unsettled(
    store: &SharedStore,
    ids: Vec<i64>,
    clock: Clock,
    stop: &(dyn Fn() -> bool + Sync),
) {
    let ids = Arc::new(ids);
    let mut wait = Duration::from_secs(1);
    loop {
        let round = ids.clone();
        let now = clock.now().timestamp();
        // In doubt, not merely released: some may have reached their
        // provider before the round failed to record it.
        match blocking(store, move |s| s.requeue_in_doubt(&round, now)).await {
            Ok(requeued) => {
                tracing::warn!(
                    messages = requeued,
                    "dispatch round failed; its unsettled messages are back in the queue, in doubt"
                );
                return;
            }
            Err(e) if !stop() => {
                tracing::warn!(error = %e, retry_in = ?wait,
                    "cannot give a failed round's messages back to the queue yet; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                tracing::error!(error = %e,
                    "stopping with a failed round's messages in sending; the next start requeues them");
                return;
            }
        }
    }
}
