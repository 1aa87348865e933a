//! The other tables of the embedded store: indexes, notices, administration.

use std::collections::BTreeMap;

use super::keys::*;
use super::{closed, SledStore};
use crate::error::{Error, Result};
use crate::notice::Notice;
use crate::store::{Incident, IndexTable, NoticeTable, OfficeTable, TokenRecord, VersionRecord};

impl IndexTable for SledStore {
    fn visit_work(
        &self,
        group: &str,
        f: &mut dyn FnMut(&std::sync::Arc<crate::store::WorkEntry>),
    ) -> Result<()> {
        let work = self.group_work(group)?;
        for e in work.read().values() {
            f(e);
        }
        Ok(())
    }

    fn cases_without_work(&self) -> Result<Vec<u64>> {
        self.cases_without_entries()
    }

    fn put_work(&self, case: &crate::case::Case, work: Vec<crate::store::WorkEntry>) -> Result<()> {
        self.write_entries(case, work)
    }

    fn open_tasks_of_topic(&self, topic: &str) -> Result<Vec<(u64, String)>> {
        let t = self.t()?;
        task_index(&t.state, b'x', topic)
    }

    fn cases_of_applicant(&self, applicant: &str) -> Result<Vec<u64>> {
        self.ids_under(b'a', applicant)
    }

    fn cases_of_bundle(&self, bundle: &str) -> Result<Vec<u64>> {
        self.ids_under(b'b', bundle)
    }

    fn cases_with_cards_for(&self, group: &str) -> Result<Vec<u64>> {
        let t = self.t()?;
        let mut prefix = key(b'K', &[group.as_bytes()]);
        prefix.push(0);
        // Stores before format 4 had a key per card (the card id after the case id).
        let mut ids = t
            .state
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                be_u64(&k?[prefix.len()..]).ok_or_else(|| Error::Store("bad card index key".into()))
            })
            .collect::<Result<Vec<u64>>>()?;
        ids.dedup();
        Ok(ids)
    }

    fn open_cases_by_version(&self) -> Result<BTreeMap<(String, String), u64>> {
        if let Some(counts) = self.version_counts.lock().as_ref() {
            return Ok(counts
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k.clone(), *n))
                .collect());
        }
        // Counted once per process, with no commit under way (they hold the gate for
        // reading); every commit after keeps the counts current.
        let _alone = self.gate.write();
        let trees = self.open.read().clone().ok_or_else(closed)?;
        let t = &trees;
        let mut out = BTreeMap::new();
        for k in t.state.scan_prefix([b'v']).keys() {
            let k = k?;
            let parts: Vec<&[u8]> = k[1..].splitn(3, |b| *b == 0).collect();
            let [p, v, id] = parts.as_slice() else {
                continue;
            };
            // An entry whose case was never written is what a crash can leave; skip it.
            if be_u64(id).is_some_and(|id| t.state.contains_key(case_key(id)).unwrap_or(false)) {
                *out.entry((
                    String::from_utf8_lossy(p).to_string(),
                    String::from_utf8_lossy(v).to_string(),
                ))
                .or_insert(0) += 1;
            }
        }
        *self.version_counts.lock() = Some(out.clone().into_iter().collect());
        Ok(out)
    }

    fn open_cases_of_version(&self, procedure: &str, version: &str) -> Result<Vec<u64>> {
        let t = self.t()?;
        let mut prefix = key(b'v', &[procedure.as_bytes(), version.as_bytes()]);
        prefix.push(0);
        let mut out = Vec::new();
        for k in t.state.scan_prefix(&prefix).keys() {
            if let Some(id) = be_u64(&k?[prefix.len()..]) {
                if t.state.contains_key(case_key(id))? {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    fn listing(&self, case: u64) -> Result<Option<crate::search::CaseListing>> {
        let t = self.t()?;
        match t.state.get(listing_key(case))? {
            None => Ok(None),
            Some(v) => Ok(Some(split_rev::<crate::search::CaseListing>(&v)?.1)),
        }
    }

    fn listings(
        &self,
        after: Option<u64>,
        newest_first: bool,
        f: &mut dyn FnMut(crate::search::CaseListing) -> Result<bool>,
    ) -> Result<()> {
        let t = self.t()?;
        let (start, end) = match (after, newest_first) {
            (Some(a), true) => (listing_key(0), listing_key(a)),
            (Some(a), false) => (listing_key(a.saturating_add(1)), listing_key(u64::MAX)),
            (None, _) => (listing_key(0), listing_key(u64::MAX)),
        };
        let range = t.state.range(start..end);
        let mut visit = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool> {
            let (_, v) = kv?;
            f(split_rev(&v)?.1)
        };
        if newest_first {
            for kv in range.rev() {
                if !visit(kv)? {
                    break;
                }
            }
        } else {
            for kv in range {
                if !visit(kv)? {
                    break;
                }
            }
        }
        Ok(())
    }

    fn complete_listing(&self, case: u64) -> Result<bool> {
        let t = self.t()?;
        let _lock = self.stripes[(case % super::STRIPES as u64) as usize].lock();
        if t.state.contains_key(listing_key(case))? {
            return Ok(false);
        }
        let Some(v) = t.state.get(case_key(case))? else {
            return Ok(false);
        };
        let c = decode_case(&v)?;
        t.state.insert(
            listing_key(case),
            with_rev(c.rev, &crate::search::CaseListing::of(&c))?,
        )?;
        Ok(true)
    }

    fn case_figures(
        &self,
        case: &crate::case::Case,
    ) -> Result<Option<(u64, crate::stats::CaseFigures)>> {
        self.figures_of(case.id)
    }

    fn visit_figures(&self, f: &mut dyn FnMut(u64, crate::stats::CaseFigures)) -> Result<Vec<u64>> {
        self.each_figures(f)
    }

    fn put_figures(
        &self,
        case: u64,
        rev: u64,
        figures: &crate::stats::CaseFigures,
    ) -> Result<bool> {
        self.rewrite_figures(case, rev, figures)
    }
}

impl SledStore {
    fn ids_under(&self, prefix: u8, id: &str) -> Result<Vec<u64>> {
        let t = self.t()?;
        let mut p = key(prefix, &[id.as_bytes()]);
        p.push(0);
        t.state
            .scan_prefix(&p)
            .keys()
            .map(|k| {
                let k = k?;
                be_u64(&k[p.len()..]).ok_or_else(|| Error::Store("bad index key".into()))
            })
            .collect()
    }
}

impl SledStore {
    pub(super) fn figures_of(&self, case: u64) -> Result<Option<(u64, crate::stats::CaseFigures)>> {
        let t = self.t()?;
        match t.state.get(figures_key(case))? {
            None => Ok(None),
            Some(v) => Ok(Some(split_rev(&v)?)),
        }
    }

    pub(super) fn each_figures(
        &self,
        f: &mut dyn FnMut(u64, crate::stats::CaseFigures),
    ) -> Result<Vec<u64>> {
        let t = self.t()?;
        let mut stale = Vec::new();
        for kv in t.state.scan_prefix([b'S']) {
            let (k, v) = kv?;
            let id = be_u64(&k[1..]).ok_or_else(|| Error::Store("bad figures key".into()))?;
            let (rev, figures) = split_rev(&v)?;
            let current = t.state.get(case_key(id))?.and_then(|c| be_u64(&c));
            match current {
                // Written at this revision or before it (later commits changed no figure).
                Some(r) if rev <= r => f(id, figures),
                Some(_) => stale.push(id),
                // Left by the submission of a case that never was.
                None => {}
            }
        }
        Ok(stale)
    }

    pub(super) fn rewrite_figures(
        &self,
        case: u64,
        rev: u64,
        figures: &crate::stats::CaseFigures,
    ) -> Result<bool> {
        let t = self.t()?;
        let _lock = self.stripes[(case % super::STRIPES as u64) as usize].lock();
        let current = t.state.get(case_key(case))?.and_then(|v| be_u64(&v));
        if current != Some(rev) {
            return Ok(false);
        }
        t.state.insert(figures_key(case), with_rev(rev, figures)?)?;
        Ok(true)
    }
}

impl NoticeTable for SledStore {
    fn notices_of_case(&self, case: u64) -> Result<Vec<Notice>> {
        let t = self.t()?;
        let mut prefix = vec![b'o'];
        prefix.extend_from_slice(&case.to_be_bytes());
        t.state
            .scan_prefix(&prefix)
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    fn notice(&self, case: u64, seq: u64, n: u32) -> Result<Option<Notice>> {
        let t = self.t()?;
        let mut k = vec![b'o'];
        k.extend_from_slice(&case.to_be_bytes());
        k.extend_from_slice(&seq.to_be_bytes());
        k.extend_from_slice(&n.to_be_bytes());
        match t.state.get(k)? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        }
    }

    fn put_notice(&self, notice: &Notice) -> Result<()> {
        let t = self.t()?;
        let old = self.notice(notice.case, notice.seq, notice.n)?;
        let new_q = queue_key(notice);
        // New queue entry first: a crash in between leaves a duplicate (delivered twice,
        // deduplicated by id), never a notice out of the queue.
        if let Some(k) = &new_q {
            t.state.insert(k.as_slice(), &[] as &[u8])?;
        }
        t.state
            .insert(notice_key(notice), serde_json::to_vec(notice)?)?;
        if let Some(k) = old.as_ref().and_then(queue_key) {
            if Some(&k) != new_q.as_ref() {
                t.state.remove(k)?;
            }
        }
        let new_f = failed_key(notice);
        if let Some(k) = &new_f {
            t.state.insert(k.as_slice(), &[] as &[u8])?;
        }
        if let Some(k) = old.as_ref().and_then(failed_key) {
            if Some(&k) != new_f.as_ref() {
                t.state.remove(k)?;
            }
        }
        Ok(())
    }

    fn due_notices(&self, now: chrono::DateTime<chrono::Utc>, limit: usize) -> Result<Vec<Notice>> {
        let t = self.t()?;
        let mut end = vec![b'q'];
        end.extend_from_slice(&((now.timestamp_millis().max(0) as u64) + 1).to_be_bytes());
        let mut out = Vec::new();
        for k in t.state.range(vec![b'q']..end).keys() {
            let k = k?;
            let tail = &k[9..];
            let (Some(case), Some(seq)) = (be_u64(tail), be_u64(&tail[8..])) else {
                continue;
            };
            let n = tail
                .get(16..20)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .unwrap_or(0);
            match self.notice(case, seq, n)? {
                // The record moved on (a queue entry left by a crash in put_notice).
                Some(rec) if queue_key(&rec).as_deref() == Some(&k[..]) => out.push(rec),
                _ => {
                    t.state.remove(&k)?;
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn next_notice(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let t = self.t()?;
        Ok(t.state
            .scan_prefix([b'q'])
            .keys()
            .next()
            .transpose()?
            .and_then(|k| be_u64(&k[1..]))
            .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64)))
    }

    fn remove_notice(&self, notice: &Notice) -> Result<()> {
        let t = self.t()?;
        let index = queue_key(notice)
            .into_iter()
            .chain(inbox_key(notice))
            .chain(failed_key(notice));
        for k in index {
            t.state.remove(k)?;
        }
        t.state.remove(notice_key(notice))?;
        Ok(())
    }

    fn failed_notices(&self, limit: usize) -> Result<Vec<Notice>> {
        let t = self.t()?;
        let mut out = Vec::new();
        for k in t.state.scan_prefix([b'F']).keys().rev() {
            let k = k?;
            let tail = &k[9..];
            let (Some(case), Some(seq), Some(n)) = (
                be_u64(tail),
                tail.get(8..).and_then(be_u64),
                tail.get(16..20)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes),
            ) else {
                return Err(Error::Store("bad failed-notice key".into()));
            };
            match self.notice(case, seq, n)? {
                Some(rec) if failed_key(&rec).as_deref() == Some(&k[..]) => out.push(rec),
                // A retry moved it on between its two writes.
                _ => {
                    t.state.remove(&k)?;
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn inbox(&self, staff: &str) -> Result<Vec<(u64, u64, u32)>> {
        let t = self.t()?;
        let mut prefix = key(b'i', &[staff.as_bytes()]);
        prefix.push(0);
        t.state
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k?;
                let t = &k[prefix.len()..];
                match (be_u64(t), t.get(8..).and_then(be_u64), t.get(16..20)) {
                    (Some(c), Some(s), Some(n)) => {
                        Ok((c, s, u32::from_be_bytes(n.try_into().unwrap_or_default())))
                    }
                    _ => Err(Error::Store("bad inbox key".into())),
                }
            })
            .collect()
    }
}

impl OfficeTable for SledStore {
    fn put_version(&self, rec: &VersionRecord) -> Result<bool> {
        let t = self.t()?;
        let k = key(0, &[rec.procedure.as_bytes(), rec.version.as_bytes()]);
        let bytes = serde_json::to_vec(rec)?;
        let prev = t
            .versions
            .compare_and_swap(&k[1..], None as Option<&[u8]>, Some(bytes))?;
        Ok(prev.is_ok())
    }

    fn version(&self, procedure: &str, version: &str) -> Result<Option<VersionRecord>> {
        let t = self.t()?;
        let k = key(0, &[procedure.as_bytes(), version.as_bytes()]);
        match t.versions.get(&k[1..])? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        }
    }

    fn versions(&self) -> Result<Vec<VersionRecord>> {
        let t = self.t()?;
        let mut v: Vec<VersionRecord> = t
            .versions
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect::<Result<_>>()?;
        v.sort_by(|a, b| (&a.procedure, a.first_loaded).cmp(&(&b.procedure, b.first_loaded)));
        Ok(v)
    }

    fn put_token(&self, hash: &str, rec: &TokenRecord) -> Result<()> {
        let t = self.t()?;
        t.tokens.insert(hash.as_bytes(), serde_json::to_vec(rec)?)?;
        Ok(())
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let t = self.t()?;
        match t.tokens.get(hash.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        }
    }

    fn tokens(&self) -> Result<Vec<(String, TokenRecord)>> {
        let t = self.t()?;
        t.tokens
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((
                    String::from_utf8_lossy(&k).to_string(),
                    serde_json::from_slice(&v)?,
                ))
            })
            .collect()
    }

    fn record_incident(&self, incident: Incident) -> Result<()> {
        self.incident_impl(incident)
    }

    fn incidents(&self, limit: usize) -> Result<Vec<Incident>> {
        let t = self.t()?;
        t.incidents
            .iter()
            .rev()
            .take(limit)
            .map(|kv| Ok(serde_json::from_slice(&kv?.1)?))
            .collect()
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let t = self.t()?;
        Ok(t.meta.get(key)?.map(|v| v.to_vec()))
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let t = self.t()?;
        t.meta.insert(key, value)?;
        Ok(())
    }
}
