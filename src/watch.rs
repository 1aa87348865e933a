//! Hot reload: watches the scripts folder and reloads the office when it changes.
//!
//! The folder is watched recursively (never single files: editors save by rename). Only
//! events that can change what a file holds count (created, written, renamed, removed):
//! inotify also reports every *open* and *close* of a file, and a reload reads every
//! script, so counting those made an idle server reload itself several times a second.
//! Events are debounced so one save compiles once, and the same thread rescans the folder
//! when nothing happened for a while (queue overflow, network file systems). Each trigger
//! calls [`Engine::reload`] on this thread, never on the request threads; the engine
//! compares a fingerprint of the files, so a rescan with nothing changed costs a read of
//! the folder, and a folder it already refused is not compiled again.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use guichet_core::Engine;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// Keeps the watcher alive; [`Watch::stop`] (or dropping it) stops watching and the rescan.
pub struct Watch {
    watcher: Option<RecommendedWatcher>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// Stops watching and waits for a reload under way to finish (blocking: call it off
    /// the async threads). The engine is no longer referenced once this returns.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        // Dropping the watcher drops the channel's sender: the thread wakes and ends.
        self.watcher.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.halt();
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
        Err(e) => tracing::debug!(message = "reload refused", trigger = why, error = %e),
    }
}

fn relevant_path(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    !(name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".tmp"))
}

/// Whether an event can have changed what the scripts folder holds.
pub fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other => true,
        // Permissions and timestamps do not change a script.
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        // A file closed after writing; every other access is a read (ours included).
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
    }
}

fn relevant(event: &notify::Result<notify::Event>) -> bool {
    match event {
        Ok(e) => {
            e.need_rescan()
                || (changes_content(&e.kind) && e.paths.iter().any(|p| relevant_path(p)))
        }
        // Errors include a lost event queue: re-read everything.
        Err(_) => true,
    }
}

/// Starts watching `dir`: changes go live `debounce` after the last event, and the folder
/// is read again after `rescan` without events.
pub fn start(
    engine: Arc<Engine>,
    dir: &Path,
    debounce: Duration,
    rescan: Duration,
) -> anyhow::Result<Watch> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    // A weak reference: the watcher must not keep the engine (and its store lock) alive
    // after the server stops.
    let weak = Arc::downgrade(&engine);
    let thread = std::thread::Builder::new()
        .name("script-watch".into())
        .spawn(move || watch(weak, rx, debounce, rescan))?;
    tracing::info!(message = "watching scripts", dir = %dir.display());
    Ok(Watch {
        watcher: Some(watcher),
        thread: Some(thread),
    })
}

fn watch(
    engine: Weak<Engine>,
    events: mpsc::Receiver<notify::Result<notify::Event>>,
    debounce: Duration,
    rescan: Duration,
) {
    let mut next_rescan = Instant::now() + rescan;
    // When the last relevant event came, while a change waits for quiet.
    let mut pending: Option<Instant> = None;
    loop {
        let wake = pending.map_or(next_rescan, |last| (last + debounce).min(next_rescan));
        match events.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(event) if relevant(&event) => {
                if let Err(e) = &event {
                    tracing::warn!(message = "file watcher error; rescanning", error = %e);
                }
                pending = Some(Instant::now());
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let changed = pending.is_some_and(|last| now >= last + debounce);
        if !changed && now < next_rescan {
            continue;
        }
        // Either way the reload reads the whole folder.
        pending = None;
        next_rescan = now + rescan;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        reload(
            &engine,
            if changed {
                "file change"
            } else {
                "periodic rescan"
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    #[test]
    fn only_events_that_can_change_a_script_count() {
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
        ] {
            assert!(changes_content(&kind), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
        ] {
            assert!(!changes_content(&kind), "{kind:?}");
        }
    }
}
