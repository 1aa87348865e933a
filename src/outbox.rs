//! The delivery loop: drains the outbox the engine fills with every transition. Each due
//! notice goes to its channel (or subscriber) with a timeout; the result is recorded on
//! the notice (sent, delivered, retried later with back-off, failed with the reason).
//! A channel that is down only delays its own notices: deliveries run concurrently and
//! transitions never wait for them. After a crash, notices that were due are sent again
//! (at least once); receivers deduplicate by the notice id.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use guichet_core::notice::Notice;
use guichet_core::plugin::{Delivered, DeliveryError};
use guichet_core::Engine;

use crate::background::Stopping;
use crate::config::OutboxConfig;

/// Longest sleep between passes: how late a notice queued meanwhile may start.
const MAX_SLEEP: Duration = Duration::from_millis(200);
/// Notices delivered per pass, concurrently.
const BATCH: usize = 64;

pub fn start(
    engine: &Arc<Engine>,
    config: &OutboxConfig,
    mut stopping: Stopping,
) -> tokio::task::JoinHandle<()> {
    let weak: Weak<Engine> = Arc::downgrade(engine);
    let policy = config.policy();
    let timeout = Duration::from_millis(config.timeout_ms.max(1));
    tokio::spawn(async move {
        loop {
            let Some(engine) = weak.upgrade() else { return };
            let e = engine.clone();
            let due = tokio::task::spawn_blocking(move || e.due_notices(BATCH)).await;
            let due = match due {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    tracing::error!(message = "outbox pass failed", error = %e);
                    Vec::new()
                }
                Err(e) => {
                    tracing::error!(message = "outbox pass panicked", error = %e);
                    Vec::new()
                }
            };
            let busy = due.len() == BATCH;
            metrics::gauge!("guichet_outbox_due").set(due.len() as f64);
            let results = join_all(due.iter().map(|n| deliver(&engine, n, timeout))).await;
            let e = engine.clone();
            let policy = policy.clone();
            // Recording the results and reading when the next notice is due, off the
            // async threads.
            let settled = tokio::task::spawn_blocking(move || {
                for (n, r) in due.into_iter().zip(results) {
                    let id = n.id.clone();
                    match e.settle(n, r, &policy) {
                        Ok(n) => {
                            let result = match n.status {
                                guichet_core::notice::NoticeStatus::Sent => "sent",
                                guichet_core::notice::NoticeStatus::Delivered => "delivered",
                                guichet_core::notice::NoticeStatus::Failed => "failed",
                                _ => "retry",
                            };
                            metrics::counter!("guichet_notices_total", "result" => result)
                                .increment(1);
                        }
                        Err(err) => {
                            tracing::error!(message = "cannot record a delivery", notice = %id, error = %err)
                        }
                    }
                }
                if busy {
                    return Duration::ZERO;
                }
                match e.next_notice() {
                    Ok(Some(at)) => (at - e.now())
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(MAX_SLEEP),
                    _ => MAX_SLEEP,
                }
            })
            .await;
            let sleep = settled.unwrap_or_else(|_| {
                tracing::error!(message = "recording deliveries panicked");
                MAX_SLEEP
            });
            drop(engine);
            if !stopping.sleep(sleep.max(Duration::from_millis(1))).await {
                return;
            }
        }
    })
}

async fn deliver(
    engine: &Engine,
    n: &Notice,
    timeout: Duration,
) -> Result<Delivered, DeliveryError> {
    let plugins = engine.plugins();
    let attempt = async {
        if n.channel == guichet_core::notice::SUBSCRIBER {
            let Some(s) = plugins.find_subscriber(&n.address) else {
                return Err(DeliveryError::Permanent(format!(
                    "subscriber '{}' is not on this server",
                    n.address
                )));
            };
            let Some(event) = &n.payload else {
                return Err(DeliveryError::Permanent("notice has no event".into()));
            };
            s.on_event(&n.id, event).await.map(|_| Delivered::Delivered)
        } else {
            match plugins.channels().get(&n.channel) {
                Some(c) => c.deliver(n).await,
                None => Err(DeliveryError::Permanent(format!(
                    "channel '{}' is not configured on this server",
                    n.channel
                ))),
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(DeliveryError::Transient(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}
