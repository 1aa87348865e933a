//! The recently committed cases, kept parsed.

use std::sync::Arc;

use crate::case::Case;

/// The cases committed most recently, as written, so the action that follows a commit on
/// the same case (claim then complete, the next step of a chain, a parallel branch) does
/// not parse its record again: parsing was 7 % of the CPU of a transition. Only commits
/// fill it, holding the case's stripe lock; a commit first drops the entries of its
/// cases, so a commit that fails half-way leaves readers to the tree, never to a stale copy.
#[derive(Default)]
pub(super) struct Recent {
    /// Each with the stamp of the `put` that wrote it.
    pub(super) cases: std::collections::HashMap<u64, (Arc<Case>, u64)>,
    /// `(case, stamp)`, oldest first; an entry whose stamp is no longer the case's is
    /// stale (the case was dropped or written again since) and skipped.
    pub(super) order: std::collections::VecDeque<(u64, u64)>,
    stamp: u64,
}

/// Cases kept in [`Recent`]: a few MiB.
pub(super) const RECENT_CASES: usize = 4096;

impl Recent {
    pub(super) fn get(&self, id: u64) -> Option<Arc<Case>> {
        self.cases.get(&id).map(|(c, _)| c.clone())
    }

    pub(super) fn drop_case(&mut self, id: u64) {
        self.cases.remove(&id);
    }

    /// Callers copy the case before taking the lock.
    pub(super) fn put(&mut self, c: Arc<Case>) {
        self.stamp += 1;
        self.order.push_back((c.id, self.stamp));
        self.cases.insert(c.id, (c, self.stamp));
        while self.cases.len() > RECENT_CASES {
            let Some((id, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.cases.get(&id).is_some_and(|(_, s)| *s == stamp) {
                self.cases.remove(&id);
            }
        }
        // Stale entries (a case written again, or dropped) go once they outnumber the rest.
        if self.order.len() > 2 * RECENT_CASES {
            let cases = &self.cases;
            self.order
                .retain(|(id, stamp)| cases.get(id).is_some_and(|(_, s)| s == stamp));
        }
    }
}
