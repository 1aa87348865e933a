//! The audit chain's appends: entries sealed under one lock as transitions commit, and
//! written as blocks before every flush (see the module's doc).

use super::keys::*;
use super::{SledStore, Trees};
use crate::error::{Error, Result};
use crate::store::{AuditTable, Incident, Receipt};

use std::sync::atomic::Ordering;

/// The audit chain's head and the entries sealed but not yet written.
#[derive(Default)]
pub(super) struct Chain {
    /// Next sequence number and the last entry's hash; `None` until read from the tree.
    head: Option<(u64, String)>,
    /// First sequence number and the entries' JSON lines.
    block: Option<(u64, Vec<u8>)>,
}

/// A block this large is written without waiting for the next flush. Small on purpose:
/// sled writes a leaf (up to 17 entries before it splits) whole when it consolidates, and
/// a write over a quarter of its 512 KiB segment goes to a blob file of its own, created
/// and written in the committing thread. With 1 MiB blocks that was a tenth of the CPU of
/// a deadline burst; 17 blocks of 6 KiB stay under it.
pub(super) const MAX_AUDIT_BLOCK: usize = 6 * 1024;

impl SledStore {
    /// Reads the chain's head from the tree if it is not known yet. A commit calls it
    /// before its commit point, so that sealing its entry after it cannot fail.
    pub(super) fn load_chain_head(&self, t: &Trees) -> Result<()> {
        let mut chain = self.audit_chain.lock();
        if chain.head.is_none() {
            chain.head = Some(match t.audit.last()? {
                None => (0, crate::audit::GENESIS.to_string()),
                Some((_, block)) => {
                    let line = block.split(|&b| b == b'\n').next_back().unwrap_or_default();
                    let last: crate::audit::Entry = serde_json::from_slice(line)?;
                    (last.seq + 1, last.hash)
                }
            });
        }
        Ok(())
    }

    /// Seals `records` into the chain, in order, under the chain's lock; they join the
    /// block [`SledStore::write_audit_block`] writes next. Cannot fail once the head is
    /// loaded: a block too large to wait is written here, and if that write fails the
    /// block stays for the next flush (which then fails, so nobody is told it is durable).
    pub(super) fn seal_audit(&self, t: &Trees, records: Vec<crate::audit::Record>) {
        if records.is_empty() {
            return;
        }
        let mut chain = self.audit_chain.lock();
        let (mut seq, mut prev) = chain
            .head
            .take()
            .unwrap_or_else(|| (0, crate::audit::GENESIS.to_string()));
        let mut lines = Vec::with_capacity(records.len());
        for r in records {
            let entry = r.seal(seq, &prev);
            lines.push(entry.to_line());
            seq += 1;
            prev = entry.hash;
        }
        let first = seq - lines.len() as u64;
        let block = chain.block.get_or_insert_with(|| (first, Vec::new()));
        for line in lines {
            if !block.1.is_empty() {
                block.1.push(b'\n');
            }
            block.1.extend_from_slice(&line);
        }
        chain.head = Some((seq, prev));
        if chain
            .block
            .as_ref()
            .is_some_and(|b| b.1.len() > MAX_AUDIT_BLOCK)
        {
            if let Err(e) = Self::write_block(t, &mut chain) {
                tracing::error!(message = "audit block not written; kept for the next flush", error = %e);
            }
        }
    }

    pub(super) fn append_audit_impl(&self, records: Vec<crate::audit::Record>) -> Result<()> {
        let t = self.t()?;
        self.load_chain_head(&t)?;
        self.seal_audit(&t, records);
        Ok(())
    }

    /// Writes the audit entries sealed since the last block. Callers hold the gate.
    /// Writes the audit block and flushes: every commit so far is then durable. Returns
    /// the ticket it covers.
    pub(super) fn flush_trees(&self, trees: &Trees) -> Result<u64> {
        // Read first: every commit up to `target` has sealed its audit entry by now.
        let target = self.written.load(Ordering::SeqCst);
        self.write_audit_block(trees)?;
        trees.db.flush()?;
        if self.durability == super::Durability::Fsync {
            trees.files.sync()?;
        }
        Ok(self.flushed.fetch_max(target, Ordering::SeqCst).max(target))
    }

    pub(super) fn write_audit_block(&self, trees: &Trees) -> Result<()> {
        let mut chain = self.audit_chain.lock();
        Self::write_block(trees, &mut chain)
    }

    pub(super) fn write_block(trees: &Trees, chain: &mut Chain) -> Result<()> {
        // Under the chain's lock, so blocks go to the log in order and a crash can only
        // lose a suffix of the chain.
        if let Some((first, bytes)) = chain.block.take() {
            if let Err(e) = trees.audit.insert(first.to_be_bytes(), bytes.as_slice()) {
                chain.block = Some((first, bytes));
                return Err(e.into());
            }
        }
        Ok(())
    }

    pub(super) fn incident_impl(&self, mut incident: Incident) -> Result<()> {
        let t = self.t()?;
        incident.id = t.db.generate_id()?;
        t.incidents
            .insert(incident.id.to_be_bytes(), serde_json::to_vec(&incident)?)?;
        Ok(())
    }
}

impl AuditTable for SledStore {
    fn append_audit(&self, records: Vec<crate::audit::Record>) -> Result<Receipt> {
        self.append_audit_impl(records)?;
        Ok(self.written.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn audit_raw(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let t = self.t()?;
        self.write_audit_block(&t)?;
        // The block holding `from` starts at or before it.
        let start = match t.audit.range(..=from.to_be_bytes()).next_back() {
            Some(kv) => kv?.0.to_vec(),
            None => from.to_be_bytes().to_vec(),
        };
        let mut out = Vec::new();
        for kv in t.audit.range(start..) {
            let (k, block) = kv?;
            let first = be_u64(&k).ok_or_else(|| Error::Store("bad audit key".into()))?;
            for (i, line) in block.split(|&b| b == b'\n').enumerate() {
                let seq = first + i as u64;
                if seq < from {
                    continue;
                }
                if out.len() >= limit {
                    return Ok(out);
                }
                out.push((seq, line.to_vec()));
            }
        }
        Ok(out)
    }
}
