//! The store's upkeep: every second, off the async threads, the engine follows what other
//! nodes of a shared store changed (a reload, delegations) and asks its store to do its
//! own maintenance (the embedded store checkpoints once `checkpoint_mb` were
//! written and nothing for `checkpoint_idle_secs`, so a start after a crash replays only
//! what was written since; sled 0.34 otherwise replays everything written since the
//! process opened the store, see docs/performance.md).

use std::sync::{Arc, Weak};
use std::time::Duration;

use guichet_core::Engine;

use crate::background::Stopping;

const EVERY: Duration = Duration::from_secs(1);

/// The data folder's size is measured this often (for `guichet_store_bytes`).
const MEASURE_EVERY: u32 = 15;

pub fn start(
    engine: &Arc<Engine>,
    data: std::path::PathBuf,
    mut stopping: Stopping,
) -> tokio::task::JoinHandle<()> {
    let weak: Weak<Engine> = Arc::downgrade(engine);
    tokio::spawn(async move {
        let mut ticks = 0u32;
        while stopping.sleep(EVERY).await {
            let Some(engine) = weak.upgrade() else { return };
            let measure = ticks.is_multiple_of(MEASURE_EVERY);
            ticks = ticks.wrapping_add(1);
            let data = data.clone();
            match tokio::task::spawn_blocking(move || {
                if measure {
                    metrics::gauge!("guichet_store_bytes")
                        .set(crate::telemetry::folder_bytes(&data) as f64);
                }
                // Nodes sharing a store: another node's reload and delegations.
                match engine.follow_shared() {
                    Ok(Some(what)) => tracing::info!(message = "shared store", what = %what),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(message = "rule set of another node refused", error = %e)
                    }
                }
                engine.maintain_store()
            })
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(message = "store maintenance failed", error = %e),
                Err(e) => tracing::error!(message = "store maintenance panicked", error = %e),
            }
        }
    })
}
