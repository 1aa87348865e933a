//! The embedded store's records for a copy to another backend (`store::copy`): read
//! through the key layout, keeping only what committed (events, notices and timers below
//! their case's `history_len`, figures not past its revision, numbers whose case exists).

use std::collections::{BTreeMap, HashMap};

use super::keys::*;
use super::SledStore;
use crate::error::{Error, Result};
use crate::store::copy::Item;

impl SledStore {
    pub(super) fn export_impl(&self, f: &mut dyn FnMut(Item) -> Result<()>) -> Result<()> {
        let t = self.t()?;
        self.write_audit_block(&t)?;
        if t.state.scan_prefix([b't']).next().is_some() {
            return Err(Error::Validation(
                "this store keeps closed tasks in the layout of format 2; open it with a server \
                 of this version and close every case it still reads that way first"
                    .into(),
            ));
        }
        // (history_len, rev) of every case.
        let mut cases: HashMap<u64, (u64, u64)> = HashMap::new();
        for v in t.state.scan_prefix([b'c']).values() {
            let c = decode_case(&v?)?;
            cases.insert(c.id, (c.history_len, c.rev));
            f(Item::Case(Box::new(c)))?;
        }
        let committed = |case: u64, seq: u64| cases.get(&case).is_some_and(|(len, _)| seq < *len);
        let pair = |k: &[u8], at: usize| -> Option<(u64, u64)> {
            Some((
                be_u64(k.get(at..at + 8)?)?,
                be_u64(k.get(at + 8..at + 16)?)?,
            ))
        };
        for kv in t.state.scan_prefix([b'h']) {
            let (k, v) = kv?;
            let (case, seq) = pair(&k, 1).ok_or_else(|| Error::Store("bad history key".into()))?;
            if committed(case, seq) {
                f(Item::Event {
                    case,
                    seq,
                    stored: v.to_vec(),
                })?;
            }
        }
        for v in t.state.scan_prefix([b'o']).values() {
            let n: crate::notice::Notice = serde_json::from_slice(&v?)?;
            if committed(n.case, n.seq) {
                f(Item::Notice(Box::new(n)))?;
            }
        }
        for kv in t.state.scan_prefix([b'T']) {
            let (k, v) = kv?;
            let timers = super::timers::decode(&v)?;
            // Groups of format 3 on name the transition that set them; older ones do not.
            let set_by = matches!(v.first(), Some(&super::timers::TIMERS_BINARY) | Some(b'['))
                .then(|| pair(&k, 9))
                .flatten();
            if timers.is_empty() || set_by.is_some_and(|(c, s)| !committed(c, s)) {
                continue;
            }
            f(Item::Timers(timers))?;
        }
        for kv in t.state.scan_prefix([b'Q']) {
            let (k, v) = kv?;
            if be_u64(&k[1..]).is_some_and(|id| cases.contains_key(&id)) {
                f(Item::Listing(split_rev(&v)?.1))?;
            }
        }
        for kv in t.state.scan_prefix([b'S']) {
            let (k, v) = kv?;
            let Some(id) = be_u64(&k[1..]) else { continue };
            let (rev, figures) = split_rev(&v)?;
            if cases.get(&id).is_some_and(|(_, r)| rev <= *r) {
                f(Item::Figures {
                    case: id,
                    rev,
                    figures,
                })?;
            }
        }
        let mut counters: BTreeMap<String, u64> = BTreeMap::new();
        for kv in t.state.scan_prefix([b'n']) {
            let (k, v) = kv?;
            // `n`, the scope, a zero byte, the number (8 bytes, which may hold zeros too).
            let Some(z) = k.len().checked_sub(9).filter(|z| *z >= 1 && k[*z] == 0) else {
                continue;
            };
            let (Some(n), Some(id)) = (be_u64(&k[z + 1..]), be_u64(&v)) else {
                continue;
            };
            if cases.contains_key(&id) {
                let scope = String::from_utf8_lossy(&k[1..z]).to_string();
                let last = counters.entry(scope).or_insert(0);
                *last = (*last).max(n);
            }
        }
        for (scope, last) in counters {
            f(Item::Counter { scope, last })?;
        }
        for kv in t.audit.iter() {
            let (k, block) = kv?;
            let first = be_u64(&k).ok_or_else(|| Error::Store("bad audit key".into()))?;
            for (i, line) in block.split(|&b| b == b'\n').enumerate() {
                f(Item::Audit {
                    seq: first + i as u64,
                    line: line.to_vec(),
                })?;
            }
        }
        for v in t.versions.iter().values() {
            f(Item::Version(serde_json::from_slice(&v?)?))?;
        }
        for kv in t.tokens.iter() {
            let (k, v) = kv?;
            f(Item::Token {
                hash: String::from_utf8_lossy(&k).to_string(),
                record: serde_json::from_slice(&v)?,
            })?;
        }
        for v in t.incidents.iter().values() {
            f(Item::Incident(serde_json::from_slice(&v?)?))?;
        }
        for kv in t.meta.iter() {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).to_string();
            // The embedded store's own.
            if key != "format_version" {
                f(Item::Meta {
                    key,
                    value: v.to_vec(),
                })?;
            }
        }
        drop(t);
        self.export_files(f)
    }

    /// The uploaded files, from `files/<2 hex>/<sha256>`.
    fn export_files(&self, f: &mut dyn FnMut(Item) -> Result<()>) -> Result<()> {
        let dir = self.files_dir();
        let Ok(shards) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for shard in shards {
            let shard = shard.map_err(|e| Error::Store(format!("files: {e}")))?;
            if !shard.path().is_dir() {
                continue;
            }
            for file in
                std::fs::read_dir(shard.path()).map_err(|e| Error::Store(format!("files: {e}")))?
            {
                let file = file.map_err(|e| Error::Store(format!("files: {e}")))?;
                let name = file.file_name().to_string_lossy().to_string();
                if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                let bytes = std::fs::read(file.path())
                    .map_err(|e| Error::Store(format!("files: {name}: {e}")))?;
                f(Item::File {
                    sha256: name,
                    bytes,
                })?;
            }
        }
        Ok(())
    }

    pub(super) fn is_empty_impl(&self) -> Result<bool> {
        let t = self.t()?;
        Ok(t.state.scan_prefix([b'c']).next().is_none() && t.audit.is_empty())
    }
}
