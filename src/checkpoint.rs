//! Store checkpoints: once enough was written and the office has been quiet for a while,
//! the store's recovery point is brought up to date, so a start after a crash replays
//! only what was written since (sled 0.34 otherwise replays everything written since the
//! process opened the store; see docs/performance.md).

use std::sync::{Arc, Weak};
use std::time::Duration;

use guichet_core::Engine;

use crate::background::Stopping;

const EVERY: Duration = Duration::from_secs(1);

pub fn start(
    engine: &Arc<Engine>,
    after_mb: u64,
    idle: Duration,
    mut stopping: Stopping,
) -> Option<tokio::task::JoinHandle<()>> {
    if after_mb == 0 {
        return None;
    }
    let weak: Weak<Engine> = Arc::downgrade(engine);
    Some(tokio::spawn(async move {
        while stopping.sleep(EVERY).await {
            let Some(engine) = weak.upgrade() else { return };
            let r =
                tokio::task::spawn_blocking(move || engine.checkpoint(after_mb << 20, idle)).await;
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(message = "store checkpoint failed", error = %e),
                Err(e) => tracing::error!(message = "store checkpoint panicked", error = %e),
            }
        }
    }))
}
