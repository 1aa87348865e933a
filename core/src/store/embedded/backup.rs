//! A consistent copy of the embedded store while the server runs. Every store call waits
//! at the gate while sled's files are flushed and copied (the time a copy of the database
//! file takes); the uploaded files, written once and never changed, are copied after.

use std::path::Path;
use std::time::{Duration, Instant};

use super::SledStore;
use crate::error::{Error, Result};
use crate::store::BackupReport;

/// How long a backup waits for the store calls in progress to finish, at most.
const GATE_PATIENCE: Duration = Duration::from_secs(60);

impl SledStore {
    pub(super) fn backup_impl(&self, to: &Path) -> Result<BackupReport> {
        let io = |what: &str, e: std::io::Error| Error::Store(format!("backup: {what}: {e}"));
        if to.exists()
            && std::fs::read_dir(to)
                .map_err(|e| io("reading the target", e))?
                .next()
                .is_some()
        {
            return Err(Error::Validation(format!(
                "{} is not empty: a backup goes to a new folder",
                to.display()
            )));
        }
        // A folder the server cannot make is the caller's to fix: nothing was copied.
        std::fs::create_dir_all(to)
            .map_err(|e| Error::Validation(format!("cannot create {}: {e}", to.display())))?;
        let started = Instant::now();
        let deadline = started + GATE_PATIENCE;
        let gate = loop {
            if let Some(g) = self.gate.try_write_for(Duration::from_millis(500)) {
                break g;
            }
            if Instant::now() > deadline {
                return Err(Error::Unavailable(
                    "the store stayed busy; try the backup again".into(),
                ));
            }
        };
        let waited = started.elapsed();
        let trees = self.open.read().clone().ok_or_else(super::closed)?;
        // Everything committed so far is in the files, and nothing changes them until the
        // gate opens again.
        self.flush_trees(&trees)?;
        let mut report = BackupReport::default();
        copy_tree(&self.path, to, &mut report, &|name| {
            name != "files" && name != "guichet.lock" && !name.contains("generating")
        })?;
        drop(trees);
        drop(gate);
        report.held_ms = (started.elapsed() - waited).as_millis() as u64;
        let files = self.files_dir();
        if files.is_dir() {
            copy_tree(&files, &to.join("files"), &mut report, &|_| true)?;
        }
        sync_tree(to).map_err(|e| io("syncing the copy", e))?;
        report.ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}

/// Copies `from` into `to` (created), recursively, the entries `keep` accepts at the top.
fn copy_tree(
    from: &Path,
    to: &Path,
    report: &mut BackupReport,
    keep: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let io = |e: std::io::Error| Error::Store(format!("backup: copying {}: {e}", from.display()));
    std::fs::create_dir_all(to).map_err(io)?;
    for entry in std::fs::read_dir(from).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !keep(&name) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(&name), report, &|_| true)?;
        } else {
            report.bytes += std::fs::copy(&path, to.join(&name)).map_err(io)?;
            report.files += 1;
        }
    }
    Ok(())
}

/// Puts the copy on the disk: every file, then every folder that names them.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}
