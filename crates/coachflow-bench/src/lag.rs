//! A RabbitMQ consumer bound to `#` on the run's exchange that notes when each event
//! arrives, by its CloudEvents id (`tenants/{t}/engagements/{e}/events/{sequence}`, the
//! AMQP `message_id`), to measure the lag from a command's acknowledgement to receipt.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;

use crate::load::{Acks, ack_key};
use crate::stats::Latencies;

/// Receipt times by [`ack_key`], and the messages whose id named no engagement of the run.
#[derive(Debug, Default)]
pub struct Receipts {
    pub times: HashMap<u64, Instant>,
    pub messages: u64,
    pub duplicates: u64,
    pub foreign: u64,
    pub last: Option<Instant>,
}

/// A running consumer; [`LagConsumer::finish`] stops it once nothing arrived for a while.
#[derive(Debug)]
pub struct LagConsumer {
    received: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<Receipts>>,
}

impl LagConsumer {
    /// Binds an exclusive queue to `exchange` (declared by the caller) and starts consuming
    /// without acknowledgements (the broker pushes as fast as it can).
    pub async fn start(url: &str, exchange: &str, id_prefix: &str) -> anyhow::Result<LagConsumer> {
        let connection = Connection::connect(
            url,
            ConnectionProperties::default().with_connection_name("coachflow-bench lag".into()),
        )
        .await
        .context("cannot connect to RabbitMQ")?;
        let channel = connection.create_channel().await?;
        channel.basic_qos(5000, BasicQosOptions::default()).await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut deliveries = channel
            .basic_consume(
                queue.name().clone(),
                "coachflow-bench".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let (count_sender, received) = watch::channel(0u64);
        let (stop, mut stopped) = watch::channel(false);
        let marker = format!("/engagements/{id_prefix}");
        let task = tokio::spawn(async move {
            let _keep = (connection, channel);
            let mut receipts = Receipts::default();
            loop {
                let delivery = tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => break,
                    delivery = deliveries.next() => delivery,
                };
                let Some(delivery) = delivery else { break };
                let delivery = delivery.context("the consumer failed")?;
                let at = Instant::now();
                receipts.messages += 1;
                receipts.last = Some(at);
                let id = delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_owned());
                match id.as_deref().and_then(|id| parse_id(id, &marker)) {
                    Some(key) => {
                        if receipts.times.insert(key, at).is_some() {
                            receipts.duplicates += 1;
                        }
                    }
                    None => receipts.foreign += 1,
                }
                count_sender.send_replace(receipts.messages);
            }
            Ok(receipts)
        });
        Ok(LagConsumer { received, stop, task })
    }

    /// Waits until `quiet` passes without a message (or `timeout`), then stops.
    pub async fn finish(mut self, quiet: Duration, timeout: Duration) -> anyhow::Result<Receipts> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(quiet.min(left), self.received.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let _ = self.stop.send(true);
        self.task.await.context("the consumer panicked")?
    }
}

/// The [`ack_key`] of `tenants/{t}/engagements/{prefix}{index}/events/{sequence}`.
fn parse_id(id: &str, marker: &str) -> Option<u64> {
    let (_, rest) = id.split_once(marker)?;
    let (index, sequence) = rest.split_once("/events/")?;
    Some(ack_key(index.parse().ok()?, sequence.parse().ok()?))
}

/// The lag of every received event a command appended: from the command's
/// acknowledgement to receipt (0 when the event arrived before the reply did). Returns the
/// lags and how many events arrived before their command's reply.
pub fn lags(acks: &Acks, receipts: &Receipts) -> (Latencies, u64) {
    let mut lags = Latencies::new();
    let mut early = 0;
    for (key, received) in &receipts.times {
        if let Some(acknowledged) = acks.get(key) {
            match received.checked_duration_since(*acknowledged) {
                Some(lag) => lags.record(lag),
                None => {
                    early += 1;
                    lags.record(Duration::ZERO);
                }
            }
        }
    }
    (lags, early)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_map_to_engagement_and_sequence() {
        let marker = "/engagements/e";
        assert_eq!(
            parse_id("tenants/acme/engagements/e0000042/events/17", marker),
            Some(ack_key(42, 17))
        );
        assert_eq!(parse_id("tenants/acme/engagements/other/events/17", marker), None);
        assert_eq!(parse_id("tenants/acme/engagements/e12", marker), None);
    }

    #[test]
    fn lag_runs_from_acknowledgement_to_receipt() {
        let base = Instant::now();
        let acks: Acks = [(ack_key(1, 1), base), (ack_key(1, 2), base + Duration::from_millis(10))].into();
        let mut receipts = Receipts::default();
        receipts.times.insert(ack_key(1, 1), base + Duration::from_millis(4));
        receipts.times.insert(ack_key(1, 2), base + Duration::from_millis(5));
        receipts.times.insert(ack_key(2, 1), base);
        let (lags, early) = lags(&acks, &receipts);
        assert_eq!(lags.count(), 2);
        assert_eq!(early, 1);
        assert!((lags.max_ms() - 4.0).abs() < 0.01);
    }
}
