//! The deadline scheduler: sleeps until the next timer (at most 50 ms, so timers set
//! meanwhile are not late by more than that), then fires every due timer off the async
//! threads and makes the issued cards durable. Timers live in the store, so after a
//! restart the first pass fires everything that fell due while the server was down, in
//! order.

use std::sync::{Arc, Weak};
use std::time::Duration;

use guichet_core::Engine;

use crate::background::Stopping;

/// Longest sleep between passes: bounds how late a timer set meanwhile (or a clock that
/// jumped) is noticed; a pass with nothing due costs microseconds.
const MAX_SLEEP: Duration = Duration::from_millis(50);
/// Timer groups handled per pass; a backlog is worked through pass after pass without
/// pause.
const BATCH: usize = 10_000;

pub fn start(engine: &Arc<Engine>, mut stopping: Stopping) -> tokio::task::JoinHandle<()> {
    let weak: Weak<Engine> = Arc::downgrade(engine);
    tokio::spawn(async move {
        loop {
            let Some(engine) = weak.upgrade() else { return };
            // A pass and the reading of the next timer, off the async threads. Flushed on
            // the same thread: the issued cards are one group of their own.
            let pass = tokio::task::spawn_blocking(move || {
                let r = engine.fire_due_timers(BATCH)?;
                if let Err(err) = engine.durable(r.ticket) {
                    tracing::error!(message = "cannot flush issued cards", error = %err);
                }
                let sleep = if r.groups == BATCH {
                    Duration::ZERO
                } else {
                    match engine.next_timer()? {
                        Some(at) => (at - engine.now())
                            .to_std()
                            .unwrap_or(Duration::ZERO)
                            .min(MAX_SLEEP),
                        None => MAX_SLEEP,
                    }
                };
                Ok::<_, guichet_core::Error>(sleep)
            })
            .await;
            let sleep = match pass {
                Ok(Ok(sleep)) => sleep,
                Ok(Err(e)) => {
                    tracing::error!(message = "scheduler pass failed", error = %e);
                    MAX_SLEEP
                }
                Err(e) => {
                    tracing::error!(message = "scheduler pass panicked", error = %e);
                    MAX_SLEEP
                }
            };
            if !stopping.sleep(sleep.max(Duration::from_millis(1))).await {
                return;
            }
        }
    })
}
