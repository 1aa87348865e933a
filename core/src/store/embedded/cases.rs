//! Reading cases and committing their changes: the commit's order of writes, with the
//! case record as its commit point (see the module's doc).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sled::Batch;

use super::keys::*;
use super::{now_ms, SledStore, VersionOf, STRIPES};
use crate::case::{Case, HistoryEvent, Task};
use crate::error::{Error, Result};
use crate::store::{CaseTable, CaseWrite, FaultPoint, Outbox, Receipt};

impl CaseTable for SledStore {
    fn next_case_id(&self) -> Result<u64> {
        let t = self.t()?;
        Ok(t.db.generate_id()? + 1)
    }

    fn case(&self, id: u64) -> Result<Option<Case>> {
        let recent = self.recent.lock().get(id);
        if let Some(c) = recent {
            return Ok(Some(Case::clone(&c)));
        }
        let t = self.t()?;
        match t.state.get(case_key(id))? {
            None => Ok(None),
            Some(v) => Ok(Some(decode_case(&v)?)),
        }
    }

    fn case_id_by_number(&self, number: &str) -> Result<Option<u64>> {
        let t = self.t()?;
        let id = t
            .state
            .get(key(b'N', &[number.as_bytes()]))?
            .and_then(|v| be_u64(&v));
        // A number left by a crash before its case was written leads nowhere.
        match id {
            Some(id) if t.state.contains_key(case_key(id))? => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    fn history(&self, id: u64) -> Result<Vec<HistoryEvent>> {
        let t = self.t()?;
        let Some(len) = self.case(id)?.map(|c| c.history_len) else {
            return Ok(Vec::new());
        };
        // Events at or past `history_len` belong to a commit that did not happen.
        t.state
            .range(hist_key(id, 0)..hist_key(id, len))
            .values()
            .map(|v| Ok(serde_json::from_slice(split_event(&v?).0)?))
            .collect()
    }

    fn history_raw(&self, case: u64, seq: u64) -> Result<Option<Vec<u8>>> {
        let t = self.t()?;
        Ok(t.state.get(hist_key(case, seq))?.map(|v| v.to_vec()))
    }

    fn closed_tasks(&self, case: u64) -> Result<Vec<Task>> {
        let t = self.t()?;
        let Some(c) = self.case(case)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        // Format 2: a key per closed task.
        let mut prefix = vec![b't'];
        prefix.extend_from_slice(&case.to_be_bytes());
        for v in t.state.scan_prefix(prefix).values() {
            let t: Task = serde_json::from_slice(&v?)?;
            // A task the case still shows open was closed by a commit that did not happen.
            if c.task(&t.id).is_none() {
                out.push(t);
            }
        }
        // Format 3: with the events that closed them, below `history_len` (committed).
        for v in t
            .state
            .range(hist_key(case, 0)..hist_key(case, c.history_len))
            .values()
        {
            if let (_, Some(tasks)) = split_event(&v?) {
                out.extend(serde_json::from_slice::<Vec<Task>>(tasks)?);
            }
        }
        out.sort_by_key(|t| task_number(&t.id));
        Ok(out)
    }

    fn closed_task(&self, case: u64, task: &str) -> Result<Option<Task>> {
        let t = self.t()?;
        let Some(k) = task_key(case, task) else {
            return Ok(None);
        };
        if let Some(v) = t.state.get(k)? {
            return Ok(Some(serde_json::from_slice(&v)?));
        }
        Ok(self.closed_tasks(case)?.into_iter().find(|t| t.id == task))
    }

    fn commit(&self, writes: &mut [CaseWrite], outbox: Outbox<'_>) -> Result<Receipt> {
        let t = self.t()?;
        // Lock every stripe involved, in order, so two commits cannot deadlock.
        let mut stripes: Vec<usize> = writes
            .iter()
            .map(|w| (w.after.id % STRIPES as u64) as usize)
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _case_locks = stripes
            .iter()
            .map(|&i| self.stripes[i].lock())
            .collect::<Vec<_>>();
        {
            let mut recent = self.recent.lock();
            for w in writes.iter() {
                recent.drop_case(w.after.id);
            }
        }
        let mut counters = if writes.iter().any(|w| w.number_scope.is_some()) {
            Some(self.counters.lock())
        } else {
            None
        };
        for w in writes.iter() {
            let current = t.state.get(case_key(w.after.id))?.and_then(|v| be_u64(&v));
            if current != w.before.as_ref().map(|b| b.rev) {
                return Err(Error::Conflict(format!(
                    "case {} was changed by someone else; reload and try again",
                    if w.after.number.is_empty() {
                        w.after.id.to_string()
                    } else {
                        w.after.number.clone()
                    }
                )));
            }
        }
        // Work out every key first, so nothing is written if anything fails.
        let mut plans = Vec::with_capacity(writes.len());
        // Open cases leaving one procedure version and joining another.
        let mut moved: Vec<(Option<VersionOf>, Option<VersionOf>)> = Vec::new();
        let mut taken: Vec<(String, u64)> = Vec::new();
        let mut audit = Vec::with_capacity(writes.len());
        let mut work_changes = Vec::with_capacity(writes.len());
        for w in writes.iter() {
            let mut after = w.after.clone();
            let mut before_commit: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            if let (Some(scope), Some(counters)) = (&w.number_scope, counters.as_mut()) {
                let last = match taken.iter().rev().find(|(s, _)| s == scope) {
                    Some((_, n)) => *n,
                    None => match counters.get(scope) {
                        Some(n) => *n,
                        None => self.last_number(scope)?,
                    },
                };
                let n = last + 1;
                taken.push((scope.clone(), n));
                after.number = format!("{scope}-{n:06}");
                let id = after.id.to_be_bytes().to_vec();
                before_commit.push((number_key(scope, n), id.clone()));
                before_commit.push((key(b'N', &[after.number.as_bytes()]), id.clone()));
                before_commit.push((key(b'a', &[after.applicant.id.as_bytes(), &id]), vec![]));
                if let Some(b) = &after.bundle {
                    before_commit.push((key(b'b', &[b.as_bytes(), &id]), vec![]));
                }
            }
            let mut event = w.event.clone();
            event.seq = after.history_len;
            after.history_len += 1;
            after.rev += 1;
            let (open, closed): (Vec<Task>, Vec<Task>) =
                after.tasks.drain(..).partition(Task::is_open);
            after.tasks = open;
            // One key for the event and the tasks it closed; the audit entry vouches
            // for both.
            let stored_event = crate::store::stored_event(&event, &closed)?;
            audit.push(crate::audit::Record::transition(
                &after.number,
                after.id,
                &event,
                &stored_event,
            ));
            before_commit.push((hist_key(after.id, event.seq).to_vec(), stored_event));
            let old_keys: Vec<Vec<u8>> = w.before.as_ref().map(open_task_keys).unwrap_or_default();
            let new_keys = open_task_keys(&after);
            // The worklist's entries, rewritten with every commit (a claim changes one);
            // a task without one gets the bare key, and an entry when the engine opens.
            let entries: Vec<crate::store::WorkEntry> = w
                .work
                .iter()
                .filter(|e| after.task(&e.task.id).is_some_and(|t| t.is_open()))
                .map(|e| crate::store::WorkEntry {
                    rev: after.rev,
                    case_number: after.number.clone(),
                    ..e.clone()
                })
                .collect();
            let mut with_entry = Vec::with_capacity(entries.len());
            for e in &entries {
                let k = super::work::work_key(&e.task.group, after.id, &e.task.id);
                before_commit.push((k.clone(), serde_json::to_vec(e)?));
                with_entry.push(k);
            }
            for k in new_keys
                .iter()
                .filter(|k| !old_keys.contains(k) && !with_entry.contains(k))
            {
                before_commit.push((k.clone(), after.id.to_be_bytes().to_vec()));
            }
            work_changes.push(super::work::WorkChange {
                case: after.id,
                before: w
                    .before
                    .as_ref()
                    .map(|b| {
                        b.open_tasks()
                            .map(|t| (t.group.clone(), t.id.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
                after: entries,
            });
            let mut after_commit: Vec<Vec<u8>> = old_keys
                .into_iter()
                .filter(|k| !new_keys.contains(k))
                .collect();
            let old_v = w
                .before
                .as_ref()
                .filter(|b| b.status.is_open())
                .map(version_key);
            let new_v = Some(&after).filter(|a| a.status.is_open()).map(version_key);
            if old_v != new_v {
                if let Some(k) = new_v {
                    before_commit.push((k, vec![]));
                }
                if let Some(k) = old_v {
                    after_commit.push(k);
                }
                let of = |c: &Case| (c.procedure.clone(), c.version.clone());
                moved.push((
                    w.before.as_ref().filter(|b| b.status.is_open()).map(of),
                    Some(&after).filter(|a| a.status.is_open()).map(of),
                ));
            }
            if !w.timers.is_empty() {
                let mut timers = w.timers.clone();
                timers.sort_by_key(|t| t.at);
                let tail = pair_key(b'T', after.id, event.seq);
                let k = timer_key(timers[0].at, &tail[1..]);
                before_commit.push((k, super::timers::encode(&timers)));
            }
            for mut n in outbox(w.before.as_ref(), &after, &event) {
                n.case = after.id;
                n.case_number = after.number.clone();
                n.seq = event.seq;
                n.id = format!("{}-{}-{}", n.case, n.seq, n.n);
                before_commit.push((notice_key(&n), serde_json::to_vec(&n)?));
                for k in queue_key(&n).into_iter().chain(inbox_key(&n)) {
                    before_commit.push((k, vec![]));
                }
            }
            let old_cards: Vec<Vec<u8>> = w.before.as_ref().map(card_keys).unwrap_or_default();
            let new_cards = card_keys(&after);
            for k in new_cards.iter().filter(|k| !old_cards.contains(k)) {
                before_commit.push((k.clone(), vec![]));
            }
            after_commit.extend(old_cards.into_iter().filter(|k| !new_cards.contains(k)));
            let record = encode_case(&after)?;
            // The search entry and the figures carry the revision they describe, and are
            // written before the record like every index entry: one left by a commit that
            // did not happen names a revision its case never reached, and readers know it.
            // (A sled batch would make them atomic with the record, but takes the whole
            // tree's write lock: a third of the throughput, measured.)
            // Only when the search sees a change (most transitions leave it as it was).
            let listing = crate::search::CaseListing::of(&after);
            if w.before.as_ref().map(crate::search::CaseListing::of) != Some(listing.clone()) {
                before_commit.push((
                    listing_key(after.id).to_vec(),
                    with_rev(after.rev, &listing)?,
                ));
            }
            if let Some(f) = &w.figures {
                before_commit.push((figures_key(after.id).to_vec(), with_rev(after.rev, f)?));
            }
            plans.push((before_commit, record, after_commit, after, event));
        }
        self.load_chain_head(&t)?;
        let fault = self.fault.read().clone();
        if plans.len() == 1 {
            let (before_commit, record, after_commit, _, _) = &plans[0];
            for (k, v) in before_commit {
                t.state.insert(k.as_slice(), v.as_slice())?;
            }
            if let Some(f) = &fault {
                f(FaultPoint::BeforeRecord)?;
            }
            // The commit point.
            t.state.insert(case_key(plans[0].3.id), record.as_slice())?;
            // From here on the transition happened: what follows cannot turn it into an
            // error. Stale index entries that stay are filtered by their readers.
            let stale = fault
                .as_ref()
                .map_or(Ok(()), |f| f(FaultPoint::AfterRecord))
                .and_then(|()| {
                    after_commit.iter().try_for_each(|k| {
                        t.state.remove(k.as_slice()).map(drop).map_err(Error::from)
                    })
                });
            if let Err(e) = stale {
                tracing::warn!(message = "stale index entries left after a commit", case = plans[0].3.id, error = %e);
            }
        } else {
            let mut batch = Batch::default();
            for (before_commit, record, after_commit, after, _) in &plans {
                for (k, v) in before_commit {
                    batch.insert(k.as_slice(), v.as_slice());
                }
                batch.insert(&case_key(after.id), record.as_slice());
                for k in after_commit {
                    batch.remove(k.as_slice());
                }
            }
            if let Some(f) = &fault {
                f(FaultPoint::BeforeRecord)?;
            }
            t.state.apply_batch(batch)?;
        }
        // Numbers first: the next submission must not reuse one whatever happens below.
        if let Some(counters) = counters.as_mut() {
            for (scope, n) in taken {
                counters.insert(scope, n);
            }
        }
        // The commit happened: the worklists in memory follow.
        self.work.apply(work_changes);
        if !moved.is_empty() {
            if let Some(counts) = self.version_counts.lock().as_mut() {
                for (left, joined) in moved {
                    if let Some(n) = left.and_then(|v| counts.get_mut(&v)) {
                        *n = n.saturating_sub(1);
                    }
                    if let Some(v) = joined {
                        *counts.entry(v).or_insert(0) += 1;
                    }
                }
            }
        }
        let bytes: usize = plans
            .iter()
            .map(|(b, record, _, _, _)| {
                record.len() + b.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            })
            .sum();
        self.written_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_write_ms.store(now_ms(), Ordering::Relaxed);
        // After the case records: a crash in between loses at most the audit entries of a
        // transition the client was never told about, never leaves an entry for a
        // transition that did not happen.
        self.seal_audit(&t, audit);
        let copies: Vec<Arc<Case>> = plans.iter().map(|p| Arc::new(p.3.clone())).collect();
        let mut recent = self.recent.lock();
        for copy in copies {
            recent.put(copy);
        }
        drop(recent);
        for (w, (_, _, _, after, event)) in writes.iter_mut().zip(plans) {
            w.after = after;
            w.event = event;
        }
        Ok(self.written.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn flush(&self) -> Result<Receipt> {
        let _turn = self.flush_lock.lock();
        // Holds the gate: a checkpoint (which flushes everything itself) waits for this
        // flush, or this flush for it, never a flush of a database being closed.
        let t = self.t()?;
        self.flush_trees(&t)
    }

    fn flushed(&self) -> Receipt {
        self.flushed.load(Ordering::SeqCst)
    }
}

impl SledStore {
    /// The highest number issued in a counter scope. A number whose case was never
    /// written (a crash between the two) is removed, so numbering stays gap-free.
    fn last_number(&self, scope: &str) -> Result<u64> {
        let t = self.t()?;
        let mut prefix = key(b'n', &[scope.as_bytes()]);
        prefix.push(0);
        while let Some(kv) = t.state.scan_prefix(&prefix).next_back() {
            let (k, v) = kv?;
            let n =
                be_u64(&k[prefix.len()..]).ok_or_else(|| Error::Store("bad counter key".into()))?;
            let id = be_u64(&v).ok_or_else(|| Error::Store("bad counter value".into()))?;
            if t.state.contains_key(case_key(id))? {
                return Ok(n);
            }
            tracing::warn!(
                message = "removing a case number whose case was never written",
                scope,
                number = n
            );
            t.state.remove(&k)?;
            t.state
                .remove(key(b'N', &[format!("{scope}-{n:06}").as_bytes()]))?;
        }
        Ok(0)
    }
}
