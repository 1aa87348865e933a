//! What "durable" means for the embedded store. sled's flush writes its log with
//! `sync_file_range`, which neither flushes the disk's cache nor the file's size, and its
//! blobs (values too large for the log) not at all: a process crash loses nothing flushed,
//! a power cut may. With `Durability::Fsync` (the default) each flush is followed by an
//! `fdatasync` of the log and of every blob written since, still once per group commit.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// How far an acknowledged write is carried before the client is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// On the disk itself: survives a process crash and a power cut.
    #[default]
    Fsync,
    /// Handed to the operating system: survives a process crash, not a power cut.
    Flush,
}

/// The files a flush makes durable: sled's log (`db`) and its blobs.
pub(super) struct SyncedFiles {
    log: File,
    blobs: PathBuf,
    /// Blob files already synced (sled never rewrites one; it removes old ones).
    synced: Mutex<HashSet<OsString>>,
}

impl SyncedFiles {
    pub(super) fn open(path: &Path) -> Result<SyncedFiles> {
        let log = File::open(path.join("db"))
            .map_err(|e| Error::Store(format!("cannot open the store's log: {e}")))?;
        Ok(SyncedFiles {
            log,
            blobs: path.join("blobs"),
            synced: Mutex::new(HashSet::new()),
        })
    }

    /// After sled's flush: the log's data and size, then each new blob and, if there was
    /// one, the blobs folder (which names it), on the disk.
    pub(super) fn sync(&self) -> Result<()> {
        let failed =
            |what: &str, e: std::io::Error| Error::Store(format!("fdatasync of {what}: {e}"));
        self.log.sync_data().map_err(|e| failed("the log", e))?;
        let Ok(entries) = std::fs::read_dir(&self.blobs) else {
            return Ok(());
        };
        let mut synced = self.synced.lock();
        let mut new = false;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if synced.contains(&name) {
                continue;
            }
            // A blob sled removed meanwhile needs no sync.
            if let Ok(f) = File::open(entry.path()) {
                f.sync_data().map_err(|e| failed("a blob", e))?;
            }
            synced.insert(name);
            new = true;
        }
        if new {
            File::open(&self.blobs)
                .and_then(|d| d.sync_all())
                .map_err(|e| failed("the blobs folder", e))?;
        }
        Ok(())
    }
}
