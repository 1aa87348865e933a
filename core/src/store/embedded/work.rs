//! The worklist's index: each open task's [`WorkEntry`] as the value of its `g` key
//! (`g group \0 case \0 task`), and in memory, per group once a worklist has asked for
//! it, kept current by every commit. Listing a group's work then touches neither sled nor
//! its cases.
//!
//! Entries written by a commit that failed before its case record can stay in sled; when
//! a group is loaded, an entry whose revision is not its case's is left out.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::keys::{be_u64, case_key, key};
use super::{closed, SledStore};
use crate::case::Case;
use crate::error::{Error, Result};
use crate::store::WorkEntry;

/// The open tasks of one group by `(case id, task id)`.
pub(super) type GroupWork = Arc<RwLock<HashMap<(u64, String), Arc<WorkEntry>>>>;

/// The groups loaded so far.
#[derive(Default)]
pub(super) struct WorkCache {
    groups: Mutex<HashMap<String, GroupWork>>,
}

/// The `g` key of a task of a case.
pub(super) fn work_key(group: &str, case: u64, task: &str) -> Vec<u8> {
    key(
        b'g',
        &[group.as_bytes(), &case.to_be_bytes(), task.as_bytes()],
    )
}

/// `(case id, task id)` of a `g` key under `prefix` (`g group \0`).
fn parse_key(k: &[u8], prefix_len: usize) -> Option<(u64, String)> {
    let rest = k.get(prefix_len..)?;
    let case = be_u64(rest)?;
    let task = String::from_utf8_lossy(rest.get(9..).unwrap_or_default()).to_string();
    Some((case, task))
}

/// What a commit changes in the cache: a case's open tasks before and after.
pub(super) struct WorkChange {
    pub case: u64,
    /// `(group, task id)` of the tasks open before.
    pub before: Vec<(String, String)>,
    pub after: Vec<WorkEntry>,
}

impl WorkCache {
    /// Applies committed changes to the groups loaded (others load them from sled).
    pub(super) fn apply(&self, changes: Vec<WorkChange>) {
        let groups = self.groups.lock();
        if groups.is_empty() {
            return;
        }
        for c in changes {
            for (g, task) in c.before {
                if let Some(m) = groups.get(&g) {
                    m.write().remove(&(c.case, task));
                }
            }
            for e in c.after {
                if let Some(m) = groups.get(&e.task.group) {
                    m.write().insert((c.case, e.task.id.clone()), Arc::new(e));
                }
            }
        }
    }
}

impl SledStore {
    /// The open tasks of `group`, loaded from sled on first use.
    pub(super) fn group_work(&self, group: &str) -> Result<GroupWork> {
        if let Some(m) = self.work.groups.lock().get(group) {
            return Ok(m.clone());
        }
        // Loaded with no commit under way (they hold the gate for reading), so no commit
        // falls between the scan and the cache; every commit after keeps it current.
        let _alone = self.gate.write();
        if let Some(m) = self.work.groups.lock().get(group) {
            return Ok(m.clone());
        }
        let trees = self.open.read().clone().ok_or_else(closed)?;
        let mut prefix = key(b'g', &[group.as_bytes()]);
        prefix.push(0);
        let mut map = HashMap::new();
        for kv in trees.state.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let Some((case, task)) = parse_key(&k, prefix.len()) else {
                continue;
            };
            // Older entries (no value) are written again when the engine opens.
            let Ok(e) = serde_json::from_slice::<WorkEntry>(&v) else {
                continue;
            };
            let rev = trees.state.get(case_key(case))?.and_then(|r| be_u64(&r));
            if rev == Some(e.rev) {
                map.insert((case, task), Arc::new(e));
            }
        }
        let m: GroupWork = Arc::new(RwLock::new(map));
        self.work.groups.lock().insert(group.to_string(), m.clone());
        Ok(m)
    }

    /// Cases with an open task whose `g` key holds no entry (written before entries
    /// existed); a bare key whose task is no longer open is removed. Runs alone (no
    /// commit under way), so no key of a commit in progress is taken for a stale one.
    pub(super) fn cases_without_entries(&self) -> Result<Vec<u64>> {
        let bare = {
            let t = self.t()?;
            let mut bare = Vec::new();
            for kv in t.state.scan_prefix([b'g']) {
                let (k, v) = kv?;
                if serde_json::from_slice::<WorkEntry>(&v).is_err() {
                    bare.push(k.to_vec());
                }
            }
            bare
        };
        if bare.is_empty() {
            return Ok(Vec::new());
        }
        let _alone = self.gate.write();
        let trees = self.open.read().clone().ok_or_else(closed)?;
        let mut out = Vec::new();
        for k in bare {
            let Some(z) = k[1..].iter().position(|b| *b == 0) else {
                continue;
            };
            let Some((case, task)) = parse_key(&k, z + 2) else {
                continue;
            };
            let open = match trees.state.get(case_key(case))? {
                Some(record) => super::keys::decode_case(&record)?
                    .task(&task)
                    .is_some_and(|t| t.is_open()),
                None => false,
            };
            if open {
                out.push(case);
            } else {
                trees.state.remove(k)?;
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Writes the entries of `case`'s open tasks if it is still at its revision.
    pub(super) fn write_entries(&self, case: &Case, work: Vec<WorkEntry>) -> Result<()> {
        let t = self.t()?;
        let _case = self.stripes[(case.id % super::STRIPES as u64) as usize].lock();
        let rev = t.state.get(case_key(case.id))?.and_then(|r| be_u64(&r));
        if rev != Some(case.rev) {
            return Err(Error::Conflict(format!(
                "case {} changed while its work entries were written",
                case.number
            )));
        }
        let mut after = Vec::with_capacity(work.len());
        for mut e in work {
            e.rev = case.rev;
            e.case_number = case.number.clone();
            let v = serde_json::to_vec(&e)?;
            t.state
                .insert(work_key(&e.task.group, case.id, &e.task.id), v)?;
            after.push(e);
        }
        self.work.apply(vec![WorkChange {
            case: case.id,
            before: Vec::new(),
            after,
        }]);
        Ok(())
    }
}
