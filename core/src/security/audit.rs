//! The audit log: one entry per action (case transitions, tokens, reloads, migrations,
//! logins, refused authorizations), each carrying the SHA-256 hash of the entry before it.
//! Changing, removing or inserting an entry behind the server's back breaks the chain;
//! [`verify`] walks it and names the first entry that does not match. An entry for a case
//! transition also carries the digest of the history event it records (as stored, with
//! the tasks it closed), so editing a case's history or its closed tasks is caught too.
//!
//! The store assigns sequence numbers and hashes under one lock
//! ([`AuditTable::append_audit`]), so the chain's order is the order in which actions were
//! committed.
//!
//! [`AuditTable::append_audit`]: crate::store::AuditTable::append_audit

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::case::HistoryEvent;
use crate::error::Result;
use crate::store::Store;

/// The hash the first entry points back to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an action is, before the store places it in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Record {
    pub at: DateTime<Utc>,
    /// A staff id, `admin`, `applicant`, `scheduler`, a worker, or `anonymous`.
    pub actor: String,
    /// `case.<history action>` for transitions; `token.issued`, `token.revoked`,
    /// `scripts.reloaded`, `scripts.refused`, `migration.applied`, `login`,
    /// `authorization.refused`, `applicant.guess_refused`, ...
    pub action: String,
    /// What was acted on: `case:42`, `token:ab12cd34ef56`, `scripts`, a route.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For a case transition: which history event, and its digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventRef>,
}

/// A case history event an entry vouches for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EventRef {
    pub case: u64,
    pub number: String,
    pub seq: u64,
    /// SHA-256 of the event exactly as stored.
    pub digest: String,
}

/// An entry of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Entry {
    pub seq: u64,
    #[serde(flatten)]
    pub record: Record,
    /// The hash of entry `seq - 1` ([`GENESIS`] for the first).
    pub prev: String,
    /// SHA-256 over `prev` and this entry's content.
    pub hash: String,
}

impl Record {
    pub fn new(
        at: DateTime<Utc>,
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
    ) -> Record {
        Record {
            at,
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            detail: None,
            event: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Record {
        self.detail = Some(detail.into());
        self
    }

    /// The record of a committed case transition; `stored` is the event as written.
    pub fn transition(number: &str, case: u64, event: &HistoryEvent, stored: &[u8]) -> Record {
        Record {
            at: event.at,
            actor: event.actor.clone(),
            action: format!("case.{}", event.action),
            target: format!("case:{case}"),
            detail: None,
            event: Some(EventRef {
                case,
                number: number.to_string(),
                seq: event.seq,
                digest: digest(stored),
            }),
        }
    }

    /// Places the record in the chain after an entry with hash `prev`.
    pub fn seal(self, seq: u64, prev: &str) -> Entry {
        let hash = entry_hash(seq, &self, prev);
        Entry {
            seq,
            record: self,
            prev: prev.to_string(),
            hash,
        }
    }
}

impl Entry {
    /// The entry as one JSON line, as the store keeps it. Strings, numbers and an
    /// optional nested struct: serializing cannot fail.
    pub fn to_line(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn entry_hash(seq: u64, record: &Record, prev: &str) -> String {
    // serde_json writes struct fields in declaration order, so this is canonical.
    let body = serde_json::to_vec(record).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(&body);
    hex::encode(h.finalize())
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Verdict {
    /// Entries checked.
    pub entries: u64,
    /// Hash of the last entry checked: an external archive keeps it to prove later that
    /// nothing before it changed.
    pub head: String,
    /// The first entry that does not match, if any.
    pub broken: Option<Break>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Break {
    pub seq: u64,
    pub reason: String,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Walks the whole chain from the first entry and checks every link, every entry's own
/// hash, and every history event a transition entry vouches for.
pub fn verify(store: &dyn Store) -> Result<Verdict> {
    const PAGE: usize = 1000;
    let mut expected_seq = 0u64;
    let mut prev = GENESIS.to_string();
    loop {
        let page = store.audit_raw(expected_seq, PAGE)?;
        let n = page.len();
        for (seq, bytes) in page {
            let fail = |reason: String| Verdict {
                entries: seq,
                head: prev.clone(),
                broken: Some(Break { seq, reason }),
            };
            if seq != expected_seq {
                return Ok(fail(format!(
                    "entry {expected_seq} is missing (next stored entry is {seq})"
                )));
            }
            let entry: Entry = match serde_json::from_slice(&bytes) {
                Ok(e) => e,
                Err(e) => return Ok(fail(format!("entry {seq} is unreadable: {e}"))),
            };
            if entry.seq != seq {
                return Ok(fail(format!("entry {seq} says it is entry {}", entry.seq)));
            }
            if entry.prev != prev {
                return Ok(fail(format!(
                    "entry {seq} does not point to the hash of entry {}",
                    seq.wrapping_sub(1)
                )));
            }
            if entry_hash(seq, &entry.record, &entry.prev) != entry.hash {
                return Ok(fail(format!(
                    "entry {seq} was changed after it was written (its hash does not match its content)"
                )));
            }
            if let Some(ev) = &entry.record.event {
                match store.history_raw(ev.case, ev.seq)? {
                    None => {
                        return Ok(fail(format!(
                            "entry {seq}: history event {} of case {} is missing",
                            ev.seq, ev.number
                        )))
                    }
                    Some(stored) if digest(&stored) != ev.digest => {
                        return Ok(fail(format!(
                        "entry {seq}: history event {} of case {} was changed after it was written",
                        ev.seq, ev.number
                    )))
                    }
                    Some(_) => {}
                }
            }
            prev = entry.hash;
            expected_seq = seq + 1;
        }
        if n < PAGE {
            return Ok(Verdict {
                entries: expected_seq,
                head: prev,
                broken: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_field_changes_the_hash() {
        let at = DateTime::parse_from_rfc3339("2026-01-05T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = Record::new(at, "admin", "token.issued", "token:1").seal(0, GENESIS);
        let mut b = a.record.clone();
        b.actor = "mallory".into();
        assert_ne!(a.hash, b.seal(0, GENESIS).hash);
        // The same content after a different predecessor is a different entry.
        assert_ne!(a.hash, a.record.clone().seal(0, &a.hash).hash);
        assert_eq!(a.hash, a.record.clone().seal(0, GENESIS).hash);
    }
}

/// What an auditor looks for; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Exactly this actor (`li.wei`, `admin`, `anonymous`, ...).
    pub actor: Option<String>,
    /// Actions starting with this (`case.`, `token.`, `authorization.refused`).
    pub action: Option<String>,
    /// Exactly this target (`case:42`, `token:ab12cd34ef56`).
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    pub fn matches(&self, e: &Entry) -> bool {
        let r = &e.record;
        self.actor.as_ref().is_none_or(|a| *a == r.actor)
            && self
                .action
                .as_ref()
                .is_none_or(|a| r.action.starts_with(a.as_str()))
            && self.target.as_ref().is_none_or(|t| *t == r.target)
            && self.since.is_none_or(|s| r.at >= s)
            && self.until.is_none_or(|u| r.at < u)
    }
}

/// A page of matching entries, and where to go on if the scan stopped early.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Found {
    pub entries: Vec<Entry>,
    /// The sequence number to pass as `from` for more; none when the log was read to
    /// its end.
    pub next: Option<u64>,
}

/// Entries from `from` on that match `filter`, at most `limit`, reading at most `budget`
/// entries (so one request stays bounded on a long log).
pub fn search(
    store: &dyn Store,
    filter: &Filter,
    from: u64,
    limit: usize,
    budget: usize,
) -> Result<Found> {
    let mut entries = Vec::new();
    let mut at = from;
    let mut read = 0usize;
    loop {
        let page = store.audit_raw(at, 1000)?;
        let Some(last) = page.last().map(|(seq, _)| *seq) else {
            return Ok(Found {
                entries,
                next: None,
            });
        };
        for (seq, bytes) in page {
            read += 1;
            let e: Entry = serde_json::from_slice(&bytes).map_err(|err| {
                crate::error::Error::Store(format!("audit entry {seq} is unreadable: {err}"))
            })?;
            if filter.matches(&e) {
                entries.push(e);
                if entries.len() >= limit {
                    return Ok(Found {
                        entries,
                        next: Some(seq + 1),
                    });
                }
            }
            if read >= budget {
                return Ok(Found {
                    entries,
                    next: Some(seq + 1),
                });
            }
        }
        at = last + 1;
    }
}

/// Writes every entry as stored, one JSON object per line, oldest first (the export the
/// API and the CLI offer).
pub fn export(store: &dyn Store, out: &mut impl std::io::Write) -> Result<()> {
    let broken = |e: std::io::Error| crate::error::Error::Store(format!("export interrupted: {e}"));
    let mut from = Some(0);
    while let Some(at) = from {
        let (lines, next) = export_page(store, at)?;
        out.write_all(&lines).map_err(broken)?;
        from = next;
    }
    Ok(())
}

/// Entries exported per page.
pub const EXPORT_PAGE: usize = 1000;

/// One page of [`export`]: the lines of the entries from sequence number `from` (at most
/// [`EXPORT_PAGE`]), and where the next page starts (`None` after the last entry). A
/// streaming reader takes the log page by page and never holds it whole.
pub fn export_page(store: &dyn Store, from: u64) -> Result<(Vec<u8>, Option<u64>)> {
    let page = store.audit_raw(from, EXPORT_PAGE)?;
    let Some(last) = page.last().map(|(seq, _)| *seq) else {
        return Ok((Vec::new(), None));
    };
    let mut out = Vec::with_capacity(page.iter().map(|(_, b)| b.len() + 1).sum());
    for (_, bytes) in &page {
        out.extend_from_slice(bytes);
        out.push(b'\n');
    }
    let next = (page.len() == EXPORT_PAGE).then_some(last + 1);
    Ok((out, next))
}
