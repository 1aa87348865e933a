//! Moving a whole store to another backend (`guichet store copy`): every committed record
//! in a form no backend's layout shows through ([`Item`]), read from one store and written
//! into an empty other, then checked: the same cases, events and audit chain (same entries,
//! same head hash), and the chain verifies.

use crate::case::{Case, Timer};
use crate::error::{Error, Result};
use crate::notice::Notice;
use crate::search::CaseListing;
use crate::stats::CaseFigures;

use super::{Incident, Store, TokenRecord, VersionRecord};

/// One committed record of a store.
#[derive(Debug, Clone)]
pub enum Item {
    Case(Box<Case>),
    /// A history event exactly as stored (the bytes the audit chain vouches for).
    Event {
        case: u64,
        seq: u64,
        stored: Vec<u8>,
    },
    Notice(Box<Notice>),
    /// The pending timers one transition set.
    Timers(Vec<Timer>),
    Listing(CaseListing),
    Figures {
        case: u64,
        rev: u64,
        figures: CaseFigures,
    },
    /// The last number drawn in a counter scope.
    Counter {
        scope: String,
        last: u64,
    },
    /// An audit entry exactly as stored.
    Audit {
        seq: u64,
        line: Vec<u8>,
    },
    Version(VersionRecord),
    Token {
        hash: String,
        record: TokenRecord,
    },
    Incident(Incident),
    Meta {
        key: String,
        value: Vec<u8>,
    },
    File {
        sha256: String,
        bytes: Vec<u8>,
    },
}

/// What a copy wrote, and the audit chain it checked.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CopyReport {
    pub cases: u64,
    pub events: u64,
    pub notices: u64,
    pub timer_groups: u64,
    pub audit_entries: u64,
    pub files: u64,
    pub others: u64,
    /// The audit chain's head hash, the same in both stores.
    pub audit_head: String,
}

/// Records written per call of [`Store::import`].
const BATCH: usize = 500;

/// Copies every record of `from` into `to`, which must hold no case and no audit entry,
/// then checks that `to` holds the same cases and the same audit chain, and that it
/// verifies. `from` must not be in use (no server on it).
pub fn copy(from: &dyn Store, to: &dyn Store) -> Result<CopyReport> {
    if !to.is_empty()? {
        return Err(Error::Validation(
            "the target store already holds cases or audit entries: copy into an empty one".into(),
        ));
    }
    let source = crate::audit::verify(from)?;
    if let Some(b) = &source.broken {
        return Err(Error::Validation(format!(
            "the source's audit chain is broken at entry {}: not copied",
            b.seq
        )));
    }
    let mut report = CopyReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    from.export(&mut |item| {
        match &item {
            Item::Case(_) => report.cases += 1,
            Item::Event { .. } => report.events += 1,
            Item::Notice(_) => report.notices += 1,
            Item::Timers(_) => report.timer_groups += 1,
            Item::Audit { .. } => report.audit_entries += 1,
            Item::File { .. } => report.files += 1,
            _ => report.others += 1,
        }
        batch.push(item);
        if batch.len() == BATCH {
            to.import(std::mem::take(&mut batch))?;
        }
        Ok(())
    })?;
    to.import(batch)?;
    let copied = crate::audit::verify(to)?;
    if copied.broken.is_some()
        || copied.entries != source.entries
        || copied.head != source.head
        || copied.entries != report.audit_entries
    {
        return Err(Error::Store(format!(
            "the copy's audit chain differs from the source's ({} entries, head {} against {} entries, head {}): do not use the copy",
            copied.entries, copied.head, source.entries, source.head
        )));
    }
    // Every case readable, with its whole history, in the copy.
    let mut checked = 0u64;
    let mut missing: Option<u64> = None;
    from.listings(None, false, &mut |l| {
        let a = from.case(l.id)?;
        let b = to.case(l.id)?;
        let same = match (&a, &b) {
            (Some(a), Some(b)) => {
                a.rev == b.rev
                    && a.number == b.number
                    && to.history(l.id)?.len() as u64 == b.history_len
            }
            (None, None) => true,
            _ => false,
        };
        if !same {
            missing = Some(l.id);
            return Ok(false);
        }
        checked += 1;
        Ok(true)
    })?;
    if let Some(id) = missing {
        return Err(Error::Store(format!(
            "case {id} differs between the source and the copy: do not use the copy"
        )));
    }
    report.audit_head = copied.head;
    Ok(report)
}
