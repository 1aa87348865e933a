//! Hot reload: watches the scripts folder and reloads the office when it changes.
//!
//! The folder is watched recursively (never single files: editors save by rename), events
//! are debounced so one save compiles once, and a periodic rescan catches anything the
//! watcher missed (queue overflow, network file systems). Each trigger calls
//! [`Engine::reload`] on a plain thread, never on the request threads; the engine compares a
//! fingerprint of the files, so a rescan with nothing changed costs a read of the folder.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use guichet_core::Engine;
use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};

/// Keeps the watcher alive; dropping it stops watching and the rescan.
pub struct Watch {
    _debouncer: Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>,
    rescan: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.rescan.abort();
    }
}

fn reload(engine: &Engine, why: &str) {
    match engine.reload() {
        Ok(guichet_core::reload::ReloadOutcome::Unchanged) => {
            tracing::debug!(message = "scripts unchanged", trigger = why)
        }
        Ok(guichet_core::reload::ReloadOutcome::Live { changed }) => {
            tracing::info!(message = "reloaded scripts", trigger = why, changed = %changed.join(", "))
        }
        // The engine has logged each problem and kept the live rule set.
        Err(e) => tracing::warn!(message = "reload refused", trigger = why, error = %e),
    }
}

fn relevant(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    !(name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".tmp"))
}

/// Starts watching `dir`. Must be called inside a tokio runtime (for the rescan task).
pub fn start(
    engine: Arc<Engine>,
    dir: &Path,
    debounce: Duration,
    rescan: Duration,
) -> anyhow::Result<Watch> {
    // Weak references: the watcher must not keep the engine (and its store lock) alive
    // after the server stops.
    let on_event = Arc::downgrade(&engine);
    let mut debouncer = new_debouncer(debounce, move |res: DebounceEventResult| {
        let Some(engine) = on_event.upgrade() else {
            return;
        };
        match res {
            Ok(events) if events.iter().any(|e| relevant(&e.path)) => {
                reload(&engine, "file change")
            }
            Ok(_) => {}
            // Errors include a lost event queue: re-read everything.
            Err(e) => {
                tracing::warn!(message = "file watcher error; rescanning", error = %e);
                reload(&engine, "watcher error")
            }
        }
    })?;
    debouncer.watcher().watch(dir, RecursiveMode::Recursive)?;
    let weak = Arc::downgrade(&engine);
    let rescan = tokio::spawn(async move {
        let mut tick = tokio::time::interval(rescan);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(e) = weak.upgrade() else { return };
            let _ = tokio::task::spawn_blocking(move || reload(&e, "periodic rescan")).await;
        }
    });
    tracing::info!(message = "watching scripts", dir = %dir.display());
    Ok(Watch {
        _debouncer: debouncer,
        rescan,
    })
}
