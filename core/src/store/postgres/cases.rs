//! Reading cases and committing their changes: one transaction per commit.

use super::conn::Tx;

use super::{big, storable, unsigned, Pg, PgStore};
use crate::case::{Case, HistoryEvent, Task};
use crate::error::{Error, Result};
use crate::store::{
    split_event, stored_event, task_number, CaseTable, CaseWrite, FaultPoint, Outbox, Receipt,
};

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
        let row = self
            .conn()?
            .query_opt("SELECT record FROM cases WHERE id = $1", &[&big(id)])
            .pg()?;
        row.map(|r| decode_case(r.get(0))).transpose()
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
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().pg()?;
        // Cases locked in id order, so two commits of the same cases cannot deadlock.
        let mut order: Vec<usize> = (0..writes.len()).collect();
        order.sort_by_key(|&i| writes[i].after.id);
        // A one-case commit checks the revision in its update; several cases are locked
        // first, all of them, in order.
        for &i in order.iter().filter(|_| writes.len() > 1) {
            let w = &writes[i];
            let current: Option<i64> = tx
                .query_opt(
                    "SELECT rev FROM cases WHERE id = $1 FOR UPDATE",
                    &[&big(w.after.id)],
                )
                .pg()?
                .map(|r| r.get(0));
            if current.map(unsigned) != w.before.as_ref().map(|b| b.rev) {
                return Err(conflict(&w.after));
            }
        }
        let mut audit = Vec::with_capacity(writes.len());
        let mut done = Vec::with_capacity(writes.len());
        for &i in &order {
            let (after, event, record) = write_case(&mut tx, &writes[i], outbox)?;
            audit.push(record);
            done.push((i, after, event));
        }
        append_pending(&mut tx, &audit)?;
        if let Some(f) = self.fault() {
            f(FaultPoint::BeforeRecord)?;
        }
        // The commit point.
        tx.commit().pg()?;
        if let Some(f) = self.fault() {
            if let Err(e) = f(FaultPoint::AfterRecord) {
                tracing::warn!(message = "fault after the commit point ignored", error = %e);
            }
        }
        for (i, after, event) in done {
            writes[i].after = after;
            writes[i].event = event;
        }
        Ok(self.receipt())
    }

    fn flush(&self) -> Result<Receipt> {
        // Durable at commit (synchronous_commit): every commit so far is.
        Ok(self.written.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn flushed(&self) -> Receipt {
        self.written.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn conflict(c: &Case) -> Error {
    Error::Conflict(format!(
        "case {} was changed by someone else; reload and try again",
        if c.number.is_empty() {
            c.id.to_string()
        } else {
            c.number.clone()
        }
    ))
}

/// Writes one case of a commit with everything it carries; returns the case and the event
/// as written and its audit record.
fn write_case(
    tx: &mut Tx<'_>,
    w: &CaseWrite,
    outbox: Outbox<'_>,
) -> Result<(Case, HistoryEvent, crate::audit::Record)> {
    let mut after = w.after.clone();
    let id = big(after.id);
    if let Some(scope) = &w.number_scope {
        let n: i64 = tx
            .query_one(
                "INSERT INTO counters (scope, last) VALUES ($1, 1)
                 ON CONFLICT (scope) DO UPDATE SET last = counters.last + 1
                 RETURNING last",
                &[scope],
            )
            .pg()?
            .get(0);
        after.number = format!("{scope}-{n:06}");
    }
    let mut event = w.event.clone();
    event.seq = after.history_len;
    after.history_len += 1;
    after.rev += 1;
    let (open, closed): (Vec<Task>, Vec<Task>) = after.tasks.drain(..).partition(Task::is_open);
    after.tasks = open;
    let stored = stored_event(&event, &closed)?;
    let record = crate::audit::Record::transition(&after.number, after.id, &event, &stored);
    // The case row first: its update checks the revision and locks the row, so a commit
    // of the same case under way meanwhile makes this one a conflict, not a clash of
    // history keys.
    put_case(tx, &after, w.before.as_ref().map(|b| b.rev))?;
    tx.execute(
        "INSERT INTO history (case_id, seq, event) VALUES ($1, $2, $3)",
        &[&id, &big(event.seq), &stored],
    )
    .pg()?;
    let entries: Vec<crate::store::WorkEntry> = w
        .work
        .iter()
        .map(|e| crate::store::WorkEntry {
            rev: after.rev,
            case_number: after.number.clone(),
            ..e.clone()
        })
        .collect();
    index_case(tx, &after, &entries)?;
    if !w.timers.is_empty() {
        let mut timers = w.timers.clone();
        timers.sort_by_key(|t| t.at);
        tx.execute(
            "INSERT INTO timers (due, timers) VALUES ($1, $2)",
            &[&timers[0].at, &serde_json::to_vec(&timers)?],
        )
        .pg()?;
    }
    for mut n in outbox(w.before.as_ref(), &after, &event) {
        n.case = after.id;
        n.case_number = after.number.clone();
        n.seq = event.seq;
        n.id = format!("{}-{}-{}", n.case, n.seq, n.n);
        super::tables::insert_notice(tx, &n)?;
    }
    let listing = crate::search::CaseListing::of(&after);
    if w.before.as_ref().map(crate::search::CaseListing::of) != Some(listing.clone()) {
        tx.execute(
            "INSERT INTO listings (case_id, listing) VALUES ($1, $2)
             ON CONFLICT (case_id) DO UPDATE SET listing = EXCLUDED.listing",
            &[&id, &serde_json::to_vec(&listing)?],
        )
        .pg()?;
    }
    if let Some(f) = &w.figures {
        tx.execute(
            "INSERT INTO figures (case_id, rev, figures) VALUES ($1, $2, $3)
             ON CONFLICT (case_id) DO UPDATE SET rev = EXCLUDED.rev, figures = EXCLUDED.figures",
            &[&id, &big(after.rev), &serde_json::to_vec(f)?],
        )
        .pg()?;
    }
    Ok((after, event, record))
}

/// Writes a case's row: a new case (`before` none), or one still at revision `before`.
pub(super) fn put_case(tx: &mut Tx<'_>, after: &Case, before: Option<u64>) -> Result<()> {
    let id = big(after.id);
    let bytes = serde_json::to_vec(&after)?;
    let open = after.status.is_open();
    if before.is_none() {
        tx.execute(
            "INSERT INTO cases (id, rev, number, procedure, version, applicant, bundle, open, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &id,
                &big(after.rev),
                &after.number,
                &after.procedure,
                &after.version,
                &after.applicant.id,
                &after.bundle,
                &open,
                &bytes,
            ],
        )
        .pg()?;
    } else {
        // Only over the revision it was read at (the check of a one-case commit).
        let changed = tx
            .execute(
                "UPDATE cases SET rev = $2, number = $3, procedure = $4, version = $5, open = $6,
                 record = $7 WHERE id = $1 AND rev = $8",
                &[
                    &id,
                    &big(after.rev),
                    &after.number,
                    &after.procedure,
                    &after.version,
                    &open,
                    &bytes,
                    &big(before.unwrap_or_default()),
                ],
            )
            .pg()?;
        if changed != 1 {
            return Err(conflict(after));
        }
    }
    Ok(())
}

/// Rewrites what indexes a case: its open tasks by group (with the worklist `entries` the
/// engine gave, by task) and by topic, its cards by group.
pub(super) fn index_case(
    tx: &mut Tx<'_>,
    after: &Case,
    entries: &[crate::store::WorkEntry],
) -> Result<()> {
    let id = big(after.id);
    let open = after.status.is_open();
    // The worklist (every open task, with the entry the engine described), the external
    // tasks by topic and the groups with cards to deal with, rewritten: one statement to
    // clear them, one per table to fill (a round trip each costs more than the rows).
    tx.execute(
        "WITH w AS (DELETE FROM work WHERE case_id = $1),
              t AS (DELETE FROM topics WHERE case_id = $1)
         DELETE FROM card_groups WHERE case_id = $1",
        &[&id],
    )
    .pg()?;
    let (mut groups, mut tasks, mut work) = (Vec::new(), Vec::new(), Vec::new());
    let (mut topics, mut external) = (Vec::new(), Vec::new());
    for t in after.open_tasks() {
        let entry = entries
            .iter()
            .find(|e| e.task.id == t.id)
            .map(serde_json::to_vec)
            .transpose()?;
        groups.push(t.group.as_str());
        tasks.push(t.id.as_str());
        work.push(entry);
        if let Some(x) = &t.external {
            topics.push(x.topic.as_str());
            external.push(t.id.as_str());
        }
    }
    if !tasks.is_empty() {
        tx.execute(
            "INSERT INTO work (grp, case_id, task, entry)
             SELECT g, $2, t, e FROM unnest($1::text[], $3::text[], $4::bytea[]) AS x(g, t, e)",
            &[&groups, &id, &tasks, &work],
        )
        .pg()?;
    }
    if !external.is_empty() {
        tx.execute(
            "INSERT INTO topics (topic, case_id, task)
             SELECT p, $2, t FROM unnest($1::text[], $3::text[]) AS x(p, t)",
            &[&topics, &id, &external],
        )
        .pg()?;
    }
    let mut carded: Vec<&str> = after
        .cards
        .iter()
        .filter(|card| open || card.answer.is_none())
        .flat_map(|card| card.addressed_to())
        .collect();
    carded.sort_unstable();
    carded.dedup();
    if !carded.is_empty() {
        tx.execute(
            "INSERT INTO card_groups (grp, case_id) SELECT g, $2 FROM unnest($1::text[]) AS x(g)",
            &[&carded, &id],
        )
        .pg()?;
    }
    Ok(())
}

/// Commits audit records with the transaction, to be sealed into the chain after
/// ([`PgStore::seal_audit`]), in the order of their ids: a later transition of a case
/// waits for the earlier one's commit (its row lock), so its records come after.
pub(super) fn append_pending(tx: &mut Tx<'_>, records: &[crate::audit::Record]) -> Result<()> {
    for r in records {
        tx.execute(
            "INSERT INTO audit_pending (record) VALUES ($1)",
            &[&serde_json::to_vec(r)?],
        )
        .pg()?;
    }
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
            for r in &rows {
                let record: crate::audit::Record = serde_json::from_slice(r.get(1))?;
                let entry = record.seal(seq, &prev);
                tx.execute(
                    "INSERT INTO audit (seq, entry) VALUES ($1, $2)",
                    &[&big(seq), &entry.to_line()],
                )
                .pg()?;
                seq += 1;
                prev = entry.hash;
                ids.push(r.get(0));
            }
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
