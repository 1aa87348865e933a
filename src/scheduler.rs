//! The deadline scheduler: sleeps until the next timer (at most 50 ms, so timers set
//! meanwhile are not late by more than that), then fires every due timer off the async
//! threads and makes the issued cards durable. Timers live in the store, so after a
//! restart the first pass fires everything that fell due while the server was down, in
//! order.

use std::sync::{Arc, Weak};
use std::time::Duration;

use guichet_core::Engine;

/// Longest sleep between passes: bounds how late a timer set meanwhile (or a clock that
/// jumped) is noticed; a pass with nothing due costs microseconds.
const MAX_SLEEP: Duration = Duration::from_millis(50);
/// Timer groups handled per pass; a backlog is worked through pass after pass without
/// pause.
const BATCH: usize = 10_000;

pub fn start(engine: &Arc<Engine>) -> tokio::task::JoinHandle<()> {
    let weak: Weak<Engine> = Arc::downgrade(engine);
    tokio::spawn(async move {
        loop {
            let Some(engine) = weak.upgrade() else { return };
            let e = engine.clone();
            // Flushed on the same thread: the issued cards are one group of their own.
            let report = tokio::task::spawn_blocking(move || {
                let r = e.fire_due_timers(BATCH)?;
                if let Err(err) = e.durable(r.ticket) {
                    tracing::error!(message = "cannot flush issued cards", error = %err);
                }
                Ok::<_, guichet_core::Error>(r)
            })
            .await;
            let mut busy = false;
            match report {
                Ok(Ok(r)) => busy = r.groups == BATCH,
                Ok(Err(e)) => tracing::error!(message = "scheduler pass failed", error = %e),
                Err(e) => tracing::error!(message = "scheduler pass panicked", error = %e),
            }
            let sleep = if busy {
                Duration::ZERO
            } else {
                match engine.next_timer() {
                    Ok(Some(at)) => (at - engine.now())
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(MAX_SLEEP),
                    _ => MAX_SLEEP,
                }
            };
            drop(engine);
            tokio::time::sleep(sleep.max(Duration::from_millis(1))).await;
        }
    })
}
