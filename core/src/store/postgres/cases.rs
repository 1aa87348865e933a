//! Reading cases and committing their changes: one transaction per commit.

use super::conn::Tx;

use super::{big, storable, unsigned, Pg, PgStore};
use crate::case::{Case, HistoryEvent, Task};
use crate::error::{Error, Result};
use crate::store::{
    split_event, stored_event, task_number, CaseTable, CaseWrite, FaultPoint, Outbox, Receipt,
};
use std::sync::atomic::Ordering;

pub(super) fn decode_case(bytes: &[u8]) -> Result<Case> {
    Ok(serde_json::from_slice(bytes)?)
}

impl CaseTable for PgStore {
    fn next_case_id(&self) -> Result<u64> {
        let row = self
            .conn()?
            .query_one("SELECT nextval('case_ids')", &[])
            .pg()?;
        Ok(unsigned(row.get(0)))
    }

    fn case(&self, id: u64) -> Result<Option<Case>> {
        // With its statistics entry, which a transition asks for next (one round trip
        // fewer per transition): kept for `case_figures` of the same case and revision.
        let Some(row) = self
            .conn()?
            .query_opt(
                "SELECT c.record, f.rev, f.figures FROM cases c
                 LEFT JOIN figures f ON f.case_id = c.id WHERE c.id = $1",
                &[&big(id)],
            )
            .pg()?
        else {
            return Ok(None);
        };
        let case = decode_case(row.get(0))?;
        let figures: Option<(i64, Vec<u8>)> = row.get::<_, Option<i64>>(1).zip(row.get(2));
        self.keep_read_with(&case, figures);
        Ok(Some(case))
    }

    fn case_to_change(&self, id: u64) -> Result<(Option<Case>, bool)> {
        let kept = self.changed.lock().get(&id).cloned();
        let Some((case, figures)) = kept.as_deref().cloned() else {
            return Ok((self.case(id)?, false));
        };
        // Its statistics entry as committed with it, for `case_figures`.
        self.keep_read_with(&case, Some(figures));
        Ok((Some(case), true))
    }

    fn case_id_by_number(&self, number: &str) -> Result<Option<u64>> {
        // Nothing stored holds a NUL (PostgreSQL text cannot).
        if !storable(number) {
            return Ok(None);
        }
        let row = self
            .conn()?
            .query_opt("SELECT id FROM cases WHERE number = $1", &[&number])
            .pg()?;
        Ok(row.map(|r| unsigned(r.get(0))))
    }

    fn history(&self, id: u64) -> Result<Vec<HistoryEvent>> {
        let rows = self
            .conn()?
            .query(
                "SELECT event FROM history WHERE case_id = $1 ORDER BY seq",
                &[&big(id)],
            )
            .pg()?;
        rows.iter()
            .map(|r| Ok(serde_json::from_slice(split_event(r.get(0)).0)?))
            .collect()
    }

    fn history_raw(&self, case: u64, seq: u64) -> Result<Option<Vec<u8>>> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT event FROM history WHERE case_id = $1 AND seq = $2",
                &[&big(case), &big(seq)],
            )
            .pg()?;
        Ok(row.map(|r| r.get(0)))
    }

    fn closed_tasks(&self, case: u64) -> Result<Vec<Task>> {
        let rows = self
            .conn()?
            .query(
                "SELECT event FROM history WHERE case_id = $1 ORDER BY seq",
                &[&big(case)],
            )
            .pg()?;
        let mut out = Vec::new();
        for r in &rows {
            if let (_, Some(tasks)) = split_event(r.get(0)) {
                out.extend(serde_json::from_slice::<Vec<Task>>(tasks)?);
            }
        }
        out.sort_by_key(|t| task_number(&t.id));
        Ok(out)
    }

    fn closed_task(&self, case: u64, task: &str) -> Result<Option<Task>> {
        Ok(self.closed_tasks(case)?.into_iter().find(|t| t.id == task))
    }

    fn commit(&self, writes: &mut [CaseWrite], outbox: Outbox<'_>) -> Result<Receipt> {
        // Most commits change one case: made together with those of the other engine
        // threads (`batch.rs`), one transaction per call. A new case takes the number
        // after the last one its node took or handed out, if it knows it and no other
        // node took it meanwhile; or else, as a bundle's cases do, draws it first in a
        // transaction of its own, under the counter row's lock, which another node busy
        // taking numbers cannot keep it from. It holds its scope's turn until its commit
        // is queued (the scope's new cases queue in the order of their numbers, which a
        // call takes in turn), or, drawing, until it has drawn (the scope's other new
        // cases then expect the ones after it instead of drawing theirs at the same time).
        let slot = match writes {
            [w] if w.before.is_none() => w.number_scope.as_deref().map(|s| self.number_slot(s)),
            _ => None,
        };
        let mut turn = slot.as_ref().map(|s| s.lock());
        if let [w] = writes {
            let expects = match (&w.before, &w.number_scope, turn.as_deref_mut()) {
                (Some(_), None, _) => Some(None),
                (None, Some(scope), Some(Some(last))) => {
                    *last += 1;
                    Some(Some((scope.clone(), *last)))
                }
                _ => None,
            };
            if let Some(expects) = expects {
                let together = (|| {
                    let number = expects.as_ref().map(|(s, n)| format!("{s}-{n:06}"));
                    let mut rows = CaseRows::of(w, number, outbox)?;
                    rows.expects = expects;
                    if let Some(f) = self.fault() {
                        f(FaultPoint::BeforeRecord)?;
                    }
                    // The commit point.
                    self.batcher.commit(self, rows, turn.take())
                })();
                if let Ok(Some(r)) = together {
                    self.after_record();
                    self.written(w, r);
                    return Ok(self.receipt());
                }
                // The number handed out was not taken (nothing written): not known any more.
                if let Some(slot) = &slot {
                    let mut t = turn.take().unwrap_or_else(|| slot.lock());
                    *t = None;
                    turn = Some(t);
                }
                if let Err(e) = together {
                    self.forget(w.after.id);
                    return Err(e);
                }
                // Another node took it: drawn below.
            }
        }
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().pg()?;
        let mut rows = Vec::with_capacity(writes.len());
        let mut drawn = Vec::new();
        for w in writes.iter() {
            let number = match &w.number_scope {
                Some(scope) => {
                    let n: i64 = tx
                        .query_one(
                            "INSERT INTO counters (scope, last) VALUES ($1, 1)
                             ON CONFLICT (scope) DO UPDATE SET last = counters.last + 1
                             RETURNING last",
                            &[scope],
                        )
                        .pg()?
                        .get(0);
                    drawn.push((scope.as_str(), n));
                    Some(format!("{scope}-{n:06}"))
                }
                None => None,
            };
            rows.push(CaseRows::of(w, number, outbox)?);
        }
        let columns = Columns::of(&rows);
        let committed = (|| {
            let conflicts: Vec<i64> = tx.query_one(COMMIT, &columns.params()).pg()?.get(0);
            if let Some(c) = rows.iter().find(|r| conflicts.contains(&big(r.after.id))) {
                return Err(conflict(&c.after));
            }
            if let Some(f) = self.fault() {
                f(FaultPoint::BeforeRecord)?;
            }
            // The commit point.
            tx.commit().pg()
        })();
        if let Err(e) = committed {
            for r in &rows {
                self.forget(r.after.id);
            }
            return Err(e);
        }
        for (scope, n) in drawn {
            match turn.as_deref_mut() {
                // The scope's turn, held by this new case.
                Some(last) => *last = Some(last.map_or(n, |last| last.max(n))),
                None => self.took(scope, n),
            }
        }
        drop(turn);
        self.after_record();
        for (w, r) in writes.iter_mut().zip(rows) {
            self.written(w, r);
        }
        Ok(self.receipt())
    }

    fn flush(&self) -> Result<Receipt> {
        let _turn = self.flushing.lock();
        // Every commit up to `upto` has returned: its commit record is in the log before
        // the flush's, and the log is written to the disk in order.
        let upto = self.written.load(Ordering::SeqCst);
        if upto > self.durable.load(Ordering::SeqCst) {
            self.conn()?
                .execute(
                    "INSERT INTO guichet_flush (node, flushes) VALUES ($1, 1)
                     ON CONFLICT (node) DO UPDATE SET flushes = guichet_flush.flushes + 1",
                    &[&self.node],
                )
                .pg()?;
            self.durable.fetch_max(upto, Ordering::SeqCst);
        }
        Ok(self.durable.load(Ordering::SeqCst))
    }

    fn flushed(&self) -> Receipt {
        self.durable.load(Ordering::SeqCst)
    }
}

/// Statistics entries kept from case reads, at most (a case read for a page is never asked
/// for its entry: all are dropped when this many are kept).
const READ_WITH_CASES: usize = 4096;

impl PgStore {
    /// Notes that this node took number `n` of `scope`.
    fn took(&self, scope: &str, n: i64) {
        let slot = self.number_slot(scope);
        let mut last = slot.lock();
        *last = Some(last.map_or(n, |last| last.max(n)));
    }

    /// The last number of `scope` this node took or handed out to a new case, if it knows
    /// it.
    fn number_slot(&self, scope: &str) -> super::NumberSlot {
        self.numbers
            .lock()
            .entry(scope.to_string())
            .or_default()
            .clone()
    }
}

/// Cases kept as this node last committed them, at most (all are dropped when this many
/// are kept).
const CHANGED_CASES: usize = 4096;

impl PgStore {
    fn keep_read_with(&self, case: &Case, figures: Option<(i64, Vec<u8>)>) {
        let mut read = self.read_with_cases.lock();
        if read.len() >= READ_WITH_CASES {
            read.clear();
        }
        read.insert(case.id, (case.rev, figures));
    }

    /// Hands a case as written back to its write, and keeps it with its statistics entry
    /// for its next change (`case_to_change`): unless the commit wrote no statistics
    /// entry (which one the case has is then not known here), or a later revision is
    /// kept already.
    fn written(&self, w: &mut CaseWrite, r: CaseRows) {
        match r.figures {
            Some(figures) => {
                // Made before the lock: engine threads take it for every commit.
                let kept = std::sync::Arc::new((r.after.clone(), (big(r.after.rev), figures)));
                let mut changed = self.changed.lock();
                if changed
                    .get(&r.after.id)
                    .is_none_or(|k| k.0.rev < r.after.rev)
                {
                    if changed.len() >= CHANGED_CASES {
                        changed.clear();
                    }
                    changed.insert(r.after.id, kept);
                }
            }
            None => self.forget(r.after.id),
        }
        w.after = r.after;
        w.event = r.event;
    }

    fn forget(&self, case: u64) {
        self.changed.lock().remove(&case);
    }

    /// The statistics entry read with `case` at its revision, if it was (taken: each read
    /// serves one transition).
    pub(super) fn read_with_case(&self, case: &Case) -> Option<Option<(i64, Vec<u8>)>> {
        let mut read = self.read_with_cases.lock();
        match read.get(&case.id) {
            Some((rev, _)) if *rev == case.rev => read.remove(&case.id).map(|(_, f)| f),
            _ => None,
        }
    }

    fn after_record(&self) {
        if let Some(f) = self.fault() {
            if let Err(e) = f(FaultPoint::AfterRecord) {
                tracing::warn!(message = "fault after the commit point ignored", error = %e);
            }
        }
    }
}

pub(super) fn conflict(c: &Case) -> Error {
    Error::Conflict(format!(
        "case {} was changed by someone else; reload and try again",
        if c.number.is_empty() {
            c.id.to_string()
        } else {
            c.number.clone()
        }
    ))
}

/// The call that writes the cases of a commit (schema5.sql); answers the ids of the cases
/// not written: those not at the revision they were read at, and new cases whose
/// expected number was not the next one.
pub(super) const COMMIT: &str =
    "SELECT guichet_commit_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
     $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, \
     $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40)";

/// One case of a commit as the database writes it: the case and its event as written
/// (handed back to the engine), and the bytes of every row it carries.
pub(super) struct CaseRows {
    pub(super) after: Case,
    pub(super) event: HistoryEvent,
    before: Option<i64>,
    record: Vec<u8>,
    stored: Vec<u8>,
    listing: Option<Vec<u8>>,
    figures: Option<Vec<u8>>,
    audit: Vec<u8>,
    /// Whether the case as read had index rows of each kind (work, topics, cards) to clear.
    indexed: [bool; 3],
    /// Open tasks: (group, task, worklist entry).
    work: Vec<(String, String, Option<Vec<u8>>)>,
    /// External tasks: (topic, task).
    topics: Vec<(String, String)>,
    /// Groups with cards still to deal with.
    carded: Vec<String>,
    timers: Option<(chrono::DateTime<chrono::Utc>, Vec<u8>)>,
    /// Each notice with its bytes.
    notices: Vec<(crate::notice::Notice, Vec<u8>)>,
    /// For a new case, the number it expects to take: its scope and place (checked and
    /// taken by `guichet_commit_batch`).
    pub(super) expects: Option<(String, i64)>,
}

impl CaseRows {
    /// Works out what a case write stores, `number` being the one drawn for a new case.
    pub(super) fn of(
        w: &CaseWrite,
        number: Option<String>,
        outbox: Outbox<'_>,
    ) -> Result<CaseRows> {
        let mut after = w.after.clone();
        if let Some(number) = number {
            after.number = number;
        }
        let mut event = w.event.clone();
        event.seq = after.history_len;
        after.history_len += 1;
        after.rev += 1;
        let (open, closed): (Vec<Task>, Vec<Task>) = after.tasks.drain(..).partition(Task::is_open);
        after.tasks = open;
        let stored = stored_event(&event, &closed)?;
        let audit = crate::audit::Record::transition(&after.number, after.id, &event, &stored);
        let mut work = Vec::new();
        let mut topics = Vec::new();
        for t in after.open_tasks() {
            let entry = w
                .work
                .iter()
                .find(|e| e.task.id == t.id)
                .map(|e| {
                    serde_json::to_vec(&crate::store::WorkEntry {
                        rev: after.rev,
                        case_number: after.number.clone(),
                        ..e.clone()
                    })
                })
                .transpose()?;
            work.push((t.group.clone(), t.id.clone(), entry));
            if let Some(x) = &t.external {
                topics.push((x.topic.clone(), t.id.clone()));
            }
        }
        let indexed = w.before.as_ref().map_or([false; 3], |b| {
            [
                b.open_tasks().next().is_some(),
                b.open_tasks().any(|t| t.external.is_some()),
                !carded(b).is_empty(),
            ]
        });
        let carded = carded(&after);
        let timers = if w.timers.is_empty() {
            None
        } else {
            let mut timers = w.timers.clone();
            timers.sort_by_key(|t| t.at);
            Some((timers[0].at, serde_json::to_vec(&timers)?))
        };
        let notices = outbox(w.before.as_ref(), &after, &event)
            .into_iter()
            .map(|mut n| {
                n.case = after.id;
                n.case_number = after.number.clone();
                n.seq = event.seq;
                n.id = format!("{}-{}-{}", n.case, n.seq, n.n);
                let bytes = serde_json::to_vec(&n)?;
                Ok((n, bytes))
            })
            .collect::<Result<_>>()?;
        let listing = crate::search::CaseListing::of(&after);
        let listing = (w.before.as_ref().map(crate::search::CaseListing::of)
            != Some(listing.clone()))
        .then(|| serde_json::to_vec(&listing))
        .transpose()?;
        Ok(CaseRows {
            before: w.before.as_ref().map(|b| big(b.rev)),
            record: serde_json::to_vec(&after)?,
            stored,
            listing,
            figures: w.figures.as_ref().map(serde_json::to_vec).transpose()?,
            audit: serde_json::to_vec(&audit)?,
            indexed,
            work,
            topics,
            carded,
            timers,
            notices,
            expects: None,
            after,
            event,
        })
    }
}

/// The groups with cards of a case still to deal with (all answered, once it is closed).
pub(super) fn carded(case: &Case) -> Vec<String> {
    let open = case.status.is_open();
    let mut carded: Vec<String> = case
        .cards
        .iter()
        .filter(|card| open || card.answer.is_none())
        .flat_map(|card| card.addressed_to())
        .map(str::to_string)
        .collect();
    carded.sort_unstable();
    carded.dedup();
    carded
}

/// The arguments of [`COMMIT`] for the cases of a commit: one array per column.
#[derive(Default)]
pub(super) struct Columns<'a> {
    id: Vec<i64>,
    before: Vec<Option<i64>>,
    rev: Vec<i64>,
    number: Vec<&'a str>,
    procedure: Vec<&'a str>,
    version: Vec<&'a str>,
    applicant: Vec<&'a str>,
    bundle: Vec<Option<&'a str>>,
    open: Vec<bool>,
    record: Vec<&'a [u8]>,
    seq: Vec<i64>,
    event: Vec<&'a [u8]>,
    listing: Vec<Option<&'a [u8]>>,
    figures_rev: Vec<i64>,
    figures: Vec<Option<&'a [u8]>>,
    audit: Vec<&'a [u8]>,
    had_work: Vec<bool>,
    had_topics: Vec<bool>,
    had_cards: Vec<bool>,
    work_case: Vec<i64>,
    work_grp: Vec<&'a str>,
    work_task: Vec<&'a str>,
    work_entry: Vec<Option<&'a [u8]>>,
    topic_case: Vec<i64>,
    topic: Vec<&'a str>,
    topic_task: Vec<&'a str>,
    card_case: Vec<i64>,
    card_grp: Vec<&'a str>,
    timer_case: Vec<i64>,
    timer_due: Vec<chrono::DateTime<chrono::Utc>>,
    timers: Vec<&'a [u8]>,
    notices: Notices<'a>,
    /// The number a new case expects to take: its scope and place (see `schema5.sql`).
    scope: Vec<Option<&'a str>>,
    place: Vec<Option<i64>>,
}

/// The notices' columns.
#[derive(Default)]
pub(super) struct Notices<'a> {
    case: Vec<i64>,
    seq: Vec<i64>,
    n: Vec<i64>,
    notice: Vec<&'a [u8]>,
    queued: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    failed: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    inbox: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    pub(super) fn of(rows: &'a [CaseRows]) -> Columns<'a> {
        let mut c = Columns::default();
        // The cases that exist in id order: `guichet_commit_batch` then locks them in that
        // order as it updates them (two calls over the same cases cannot deadlock) without
        // a statement to lock them first; new cases expecting numbers after them, a
        // scope's in the order of their numbers, which the function takes in turn. A
        // case's records keep their order (a stable sort): the audit chain only needs the
        // order of each case's own transitions.
        let mut sorted: Vec<&CaseRows> = rows.iter().collect();
        sorted.sort_by(|a, b| (&a.expects, a.after.id).cmp(&(&b.expects, b.after.id)));
        for r in sorted {
            let a = &r.after;
            let id = big(a.id);
            c.id.push(id);
            c.before.push(r.before);
            c.rev.push(big(a.rev));
            c.number.push(&a.number);
            c.procedure.push(&a.procedure);
            c.version.push(&a.version);
            c.applicant.push(&a.applicant.id);
            c.bundle.push(a.bundle.as_deref());
            c.open.push(a.status.is_open());
            c.record.push(&r.record);
            c.scope.push(r.expects.as_ref().map(|(s, _)| s.as_str()));
            c.place.push(r.expects.as_ref().map(|(_, n)| *n));
            c.seq.push(big(r.event.seq));
            c.event.push(&r.stored);
            c.listing.push(r.listing.as_deref());
            c.figures_rev.push(big(a.rev));
            c.figures.push(r.figures.as_deref());
            c.audit.push(&r.audit);
            c.had_work.push(r.indexed[0]);
            c.had_topics.push(r.indexed[1]);
            c.had_cards.push(r.indexed[2]);
            for (grp, task, entry) in &r.work {
                c.work_case.push(id);
                c.work_grp.push(grp);
                c.work_task.push(task);
                c.work_entry.push(entry.as_deref());
            }
            for (topic, task) in &r.topics {
                c.topic_case.push(id);
                c.topic.push(topic);
                c.topic_task.push(task);
            }
            for grp in &r.carded {
                c.card_case.push(id);
                c.card_grp.push(grp);
            }
            if let Some((due, timers)) = &r.timers {
                c.timer_case.push(id);
                c.timer_due.push(*due);
                c.timers.push(timers);
            }
            for (n, bytes) in &r.notices {
                c.notices.push(n, bytes);
            }
        }
        c
    }

    pub(super) fn params(&self) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
        let n = &self.notices;
        vec![
            &self.id,
            &self.before,
            &self.rev,
            &self.number,
            &self.procedure,
            &self.version,
            &self.applicant,
            &self.bundle,
            &self.open,
            &self.record,
            &self.seq,
            &self.event,
            &self.listing,
            &self.figures_rev,
            &self.figures,
            &self.audit,
            &self.had_work,
            &self.had_topics,
            &self.had_cards,
            &self.work_case,
            &self.work_grp,
            &self.work_task,
            &self.work_entry,
            &self.topic_case,
            &self.topic,
            &self.topic_task,
            &self.card_case,
            &self.card_grp,
            &self.timer_case,
            &self.timer_due,
            &self.timers,
            &n.case,
            &n.seq,
            &n.n,
            &n.notice,
            &n.queued,
            &n.failed,
            &n.inbox,
            &self.scope,
            &self.place,
        ]
    }
}

impl<'a> Notices<'a> {
    fn push(&mut self, n: &'a crate::notice::Notice, bytes: &'a [u8]) {
        let (queued, failed, inbox) = super::tables::notice_columns(n);
        self.case.push(big(n.case));
        self.seq.push(big(n.seq));
        self.n.push(i64::from(n.n));
        self.notice.push(bytes);
        self.queued.push(queued);
        self.failed.push(failed);
        self.inbox.push(inbox);
    }
}

/// Commits audit records with the transaction, to be sealed into the chain after
/// ([`PgStore::seal_audit`]), in the order of their ids: a later transition of a case
/// waits for the earlier one's commit (its row lock), so its records come after.
pub(super) fn append_pending(tx: &mut Tx<'_>, records: &[crate::audit::Record]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let bytes = records
        .iter()
        .map(serde_json::to_vec)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // `WITH ORDINALITY` keeps the records' order in their ids.
    tx.execute(
        "INSERT INTO audit_pending (record)
         SELECT r FROM unnest($1::bytea[]) WITH ORDINALITY AS t(r, i) ORDER BY i",
        &[&bytes],
    )
    .pg()?;
    Ok(())
}

impl PgStore {
    /// Seals the pending audit records into the chain, oldest first, under the lock of the
    /// head row (one node at a time); returns how many.
    pub(super) fn seal_audit(&self) -> Result<u64> {
        const BATCH: i64 = 5000;
        let mut sealed = 0;
        let mut conn = self.conn()?;
        loop {
            let mut tx = conn.transaction().pg()?;
            let head = tx
                .query_opt("SELECT next, hash FROM audit_head FOR UPDATE", &[])
                .pg()?
                .ok_or_else(|| Error::Store("the audit chain's head row is missing".into()))?;
            let (mut seq, mut prev): (u64, String) = (unsigned(head.get(0)), head.get(1));
            let rows = tx
                .query(
                    "SELECT id, record FROM audit_pending ORDER BY id LIMIT $1",
                    &[&BATCH],
                )
                .pg()?;
            if rows.is_empty() {
                return Ok(sealed);
            }
            let mut ids: Vec<i64> = Vec::with_capacity(rows.len());
            let mut seqs: Vec<i64> = Vec::with_capacity(rows.len());
            let mut lines: Vec<Vec<u8>> = Vec::with_capacity(rows.len());
            for r in &rows {
                let record: crate::audit::Record = serde_json::from_slice(r.get(1))?;
                let entry = record.seal(seq, &prev);
                seqs.push(big(seq));
                lines.push(entry.to_line());
                seq += 1;
                prev = entry.hash;
                ids.push(r.get(0));
            }
            // One statement per batch: a row per round trip cost the database more CPU
            // than the transitions whose records it sealed.
            tx.execute(
                "INSERT INTO audit (seq, entry) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                &[&seqs, &lines],
            )
            .pg()?;
            tx.execute("DELETE FROM audit_pending WHERE id = ANY($1)", &[&ids])
                .pg()?;
            tx.execute(
                "UPDATE audit_head SET next = $1, hash = $2",
                &[&big(seq), &prev],
            )
            .pg()?;
            tx.commit().pg()?;
            sealed += rows.len() as u64;
            if (rows.len() as i64) < BATCH {
                return Ok(sealed);
            }
        }
    }
}
