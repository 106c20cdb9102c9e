//! Polling: asking the senders about messages that await a person (a WeCom
//! confirmation, a call task) and settling those that have an answer.

use std::time::Duration;

use super::policy::address;
use super::sender::PollOutcome;
use super::{Dispatcher, PollReport, outbound};
use crate::base::clock::Clock;
use crate::store::StoreError;
use crate::store::shared::{SharedStore, blocking};

impl Dispatcher {
    /// Asks the senders about messages that await a person and were not
    /// asked for `every`, and settles those that have an answer.
    pub async fn poll_awaiting(
        &self,
        store: &SharedStore,
        clock: Clock,
        every: Duration,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<PollReport, StoreError> {
        let mut report = PollReport::default();
        let now = clock.now();
        let before = now.timestamp() - every.as_secs() as i64;
        let channels = self.channels();
        let limit = self.settings.batch_size;
        let waiting =
            blocking(store, move |s| s.awaiting_to_poll(before, &channels, limit)).await?;
        for message in waiting {
            if stop() {
                break;
            }
            let Some(route) = self.routes.get(&message.channel) else {
                continue;
            };
            let Some(provider_id) = message.provider_id.clone() else {
                continue;
            };
            report.polled += 1;
            let address = address(&message, route).unwrap_or_default().to_string();
            let outbound = outbound(&message, &address, clock.now());
            let answer = route.sender.poll(&provider_id, &outbound).await;
            let id = message.id;
            let at = clock.now().timestamp();
            let sender_name = route.sender_name.clone();
            match answer {
                PollOutcome::Sent => {
                    report.sent += 1;
                    blocking(store, move |s| s.mark_delivered(id, at)).await?;
                }
                PollOutcome::Failed { error } => {
                    report.failed += 1;
                    tracing::info!(id, channel = message.channel.as_str(), %error, "awaiting message failed");
                    blocking(store, move |s| s.mark_failed(id, &sender_name, &error, at)).await?;
                }
                PollOutcome::OptedOut { reason } => {
                    report.opted_out += 1;
                    blocking(store, move |s| {
                        s.mark_opted_out(id, &sender_name, &reason, at)
                    })
                    .await?;
                }
                PollOutcome::Pending => {
                    report.pending += 1;
                    blocking(store, move |s| s.mark_polled(id, None, at)).await?;
                }
                PollOutcome::Unknown { error } => {
                    report.pending += 1;
                    let note = format!("could not ask the provider: {error}");
                    blocking(store, move |s| s.mark_polled(id, Some(&note), at)).await?;
                }
            }
        }
        Ok(report)
    }
}
