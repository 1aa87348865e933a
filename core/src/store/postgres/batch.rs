//! Group commit: the one-case commits that threads of this node make at the same time are
//! written by one call (`guichet_commit`, in autocommit: one transaction, one round trip,
//! one flush of the log) instead of a transaction each. A thread whose commit is waiting
//! becomes the batch's leader when fewer than [`LEADERS`] batches are under way, takes
//! every waiting commit and writes them; the others wait for their result. Each commit of
//! a batch succeeds or fails on its own: a case changed meanwhile is a conflict for its
//! commit only, and a batch that fails as a whole is written again one commit at a time,
//! so that an error belongs to the commit that caused it.

use std::collections::HashMap;

use parking_lot::{Condvar, Mutex};

use super::cases::{conflict, CaseRows, Columns, COMMIT};
use super::{big, Pg, PgStore};
use crate::case::{Case, HistoryEvent};
use crate::error::Result;
use crate::store::FaultPoint;

/// Batches written at the same time by one node: one fills while another is written (on
/// a connection each); more would only queue in the database.
const LEADERS: usize = 2;
/// The most commits in one call.
const MOST: usize = 256;

#[derive(Default)]
pub(super) struct Batches {
    queue: Mutex<Queue>,
    done: Condvar,
}

#[derive(Default)]
struct Queue {
    next: u64,
    waiting: Vec<(u64, CaseRows)>,
    results: HashMap<u64, Result<(Case, HistoryEvent)>>,
    leaders: usize,
}

impl Batches {
    /// Writes one case (not a new one) with the commits of other threads; returns the case
    /// and its event as written.
    pub(super) fn commit(&self, store: &PgStore, rows: CaseRows) -> Result<(Case, HistoryEvent)> {
        let mut q = self.queue.lock();
        let ticket = q.next;
        q.next += 1;
        q.waiting.push((ticket, rows));
        loop {
            if let Some(result) = q.results.remove(&ticket) {
                return result;
            }
            if q.leaders < LEADERS && q.waiting.iter().any(|(t, _)| *t == ticket) {
                q.leaders += 1;
                let batch = take(&mut q.waiting);
                drop(q);
                let results = write(store, batch);
                q = self.queue.lock();
                q.leaders -= 1;
                q.results.extend(results);
                self.done.notify_all();
                continue;
            }
            self.done.wait(&mut q);
        }
    }
}

/// The next batch: waiting commits in arrival order, one per case (a second commit of a
/// case waits for the next batch, where it finds the first one's revision).
fn take(waiting: &mut Vec<(u64, CaseRows)>) -> Vec<(u64, CaseRows)> {
    let mut batch = Vec::new();
    let mut rest = Vec::new();
    for (ticket, rows) in waiting.drain(..) {
        if batch.len() < MOST
            && !batch
                .iter()
                .any(|(_, r): &(u64, CaseRows)| r.after.id == rows.after.id)
        {
            batch.push((ticket, rows));
        } else {
            rest.push((ticket, rows));
        }
    }
    *waiting = rest;
    batch
}

type Outcome = (u64, Result<(Case, HistoryEvent)>);

/// Writes a batch; its commits' results by ticket.
fn write(store: &PgStore, batch: Vec<(u64, CaseRows)>) -> Vec<Outcome> {
    let (tickets, rows): (Vec<u64>, Vec<CaseRows>) = batch.into_iter().unzip();
    match call(store, &rows) {
        Ok(conflicts) => tickets
            .into_iter()
            .zip(rows)
            .map(|(t, r)| {
                if conflicts.contains(&big(r.after.id)) {
                    (t, Err(conflict(&r.after)))
                } else {
                    (t, Ok((r.after, r.event)))
                }
            })
            .collect(),
        Err(e) if rows.len() == 1 => vec![(tickets[0], Err(e))],
        Err(_) => tickets
            .into_iter()
            .zip(rows)
            .flat_map(|(t, r)| write(store, vec![(t, r)]))
            .collect(),
    }
}

/// One call of `guichet_commit`; the ids of the cases that changed meanwhile.
fn call(store: &PgStore, rows: &[CaseRows]) -> Result<Vec<i64>> {
    let columns = Columns::of(rows);
    let mut conn = store.conn()?;
    if let Some(f) = store.fault() {
        f(FaultPoint::BeforeRecord)?;
    }
    let conflicts = conn.query_one(COMMIT, &columns.params()).pg()?.get(0);
    if let Some(f) = store.fault() {
        if let Err(e) = f(FaultPoint::AfterRecord) {
            tracing::warn!(message = "fault after the commit point ignored", error = %e);
        }
    }
    Ok(conflicts)
}
