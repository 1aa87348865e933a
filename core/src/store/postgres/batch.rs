//! Commits of one case each, from the node's engine threads, made together: the first
//! thread that finds no call under way takes every waiting commit into one call of
//! `guichet_commit_batch` (one round trip, one transaction) and answers the others, which wait
//! meanwhile. Under load a call carries several transitions, and what the database spends
//! per call (the round trip, the transaction, each statement of the function) is shared
//! among them; a commit that finds no other goes at once, as it would alone.
//!
//! The commits of a call are independent: a case changed since it was read is a conflict
//! for its own commit only (the function skips it and writes the others), and so is a
//! new case whose expected number another node took (its commit then draws one). A call that
//! fails is made again commit by commit, so that one commit the database refuses does
//! not fail the others with it.

use parking_lot::{Mutex, MutexGuard};
use std::collections::{HashMap, HashSet};

use super::cases::{conflict, CaseRows, Columns, COMMIT};
use super::{big, Pg, PgStore};
use crate::error::{Error, Result};

/// Commits in one call, at most (a call's arrays grow with it).
const MAX_CALL: usize = 64;

/// Calls under way at once, at most. One: the commits that arrive while it runs wait for
/// the next, which carries them all; with two, each call carried fewer, and the database
/// spent a fifth more CPU per transition for no more transitions per second
/// (docs/performance.md, "A sixth look"). The nodes' calls still run side by side.
/// (With more than one, a call carrying a scope's next new cases could reach the database
/// before the call carrying the numbers before theirs: they would be skipped and draw.)
const MAX_CALLS: usize = 1;

#[derive(Default)]
pub(super) struct Batcher {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Commits waiting for a call, each with its number.
    waiting: Vec<(u64, CaseRows)>,
    /// The next commit's number.
    next: u64,
    /// Calls under way.
    calling: usize,
    /// Answers not taken yet, by commit number.
    answers: HashMap<u64, Result<Option<CaseRows>>>,
    /// The threads waiting, by the number of their commit: each is woken for its own
    /// answer, or to make the next call, not all at every answer (under load a dozen
    /// threads wait; waking them all at each call was a sixth of the bench's context
    /// switches).
    asleep: HashMap<u64, std::thread::Thread>,
}

impl Batcher {
    /// Commits `rows` (one case; a new one with the number it expects) with whatever
    /// other commits are waiting; answers once the call that carried it has returned:
    /// `None` if the number a new case expected was not the next one (nothing written).
    /// `turn` is let go once the commit is queued (a new case's turn in its scope).
    pub(super) fn commit<T>(
        &self,
        store: &PgStore,
        rows: CaseRows,
        turn: T,
    ) -> Result<Option<CaseRows>> {
        let mut st = self.state.lock();
        let me = st.next;
        st.next += 1;
        st.waiting.push((me, rows));
        drop(turn);
        loop {
            if let Some(answer) = st.answers.remove(&me) {
                return answer;
            }
            if st.calling >= MAX_CALLS || st.waiting.is_empty() {
                st.asleep.insert(me, std::thread::current());
                // A wake-up between the unlock and the park is kept by the thread's
                // token: the park then returns at once.
                MutexGuard::unlocked(&mut st, std::thread::park);
                st.asleep.remove(&me);
                continue;
            }
            let call = take_call(&mut st);
            st.calling += 1;
            // Commits left over (more than a call carries, or a second one of a case) and
            // room for another call: the oldest of them makes it meanwhile.
            if st.calling < MAX_CALLS {
                wake_oldest(&st);
            }
            let numbers: Vec<u64> = call.iter().map(|(n, _)| *n).collect();
            let answers = MutexGuard::unlocked(&mut st, || {
                // A panic must not leave the others waiting for answers that never come.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.call_together(call)))
            });
            st.calling -= 1;
            let answers = answers.unwrap_or_else(|_| {
                numbers
                    .into_iter()
                    .map(|n| {
                        (
                            n,
                            Err(Error::Store("the commit failed unexpectedly".into())),
                        )
                    })
                    .collect()
            });
            for (n, answer) in answers {
                if let Some(t) = st.asleep.get(&n) {
                    t.unpark();
                }
                st.answers.insert(n, answer);
            }
            // The oldest commit still waiting makes the next call (this thread returns
            // with its own answer).
            wake_oldest(&st);
        }
    }
}

/// Wakes the thread of the oldest waiting commit, if it sleeps (one that does not will
/// look for itself).
fn wake_oldest(st: &State) {
    if let Some(t) = st.waiting.first().and_then(|(n, _)| st.asleep.get(n)) {
        t.unpark();
    }
}

/// The waiting commits for the next call, oldest first: one per case (a second commit of
/// a case, read at the same revision as the first, waits for the next call, where it is
/// a conflict if the first was written), at most [`MAX_CALL`].
fn take_call(st: &mut State) -> Vec<(u64, CaseRows)> {
    let mut cases = HashSet::new();
    let mut call = Vec::new();
    let mut later = Vec::new();
    for (n, rows) in st.waiting.drain(..) {
        if call.len() < MAX_CALL && cases.insert(rows.after.id) {
            call.push((n, rows));
        } else {
            later.push((n, rows));
        }
    }
    st.waiting = later;
    call
}

impl PgStore {
    /// One call for `commits`, answered commit by commit.
    fn call_together(&self, commits: Vec<(u64, CaseRows)>) -> Vec<(u64, Result<Option<CaseRows>>)> {
        let (numbers, rows): (Vec<u64>, Vec<CaseRows>) = commits.into_iter().unzip();
        match self.call_commit(&rows) {
            Ok(conflicts) => numbers
                .into_iter()
                .zip(rows)
                .map(|(n, r)| (n, answer(&conflicts, r)))
                .collect(),
            // Out of reach: whether the call was committed is unknown, and making it again
            // would answer a commit that was made with a conflict.
            Err(Error::Unavailable(m)) => numbers
                .into_iter()
                .map(|n| (n, Err(Error::Unavailable(m.clone()))))
                .collect(),
            Err(e) if rows.len() == 1 => vec![(numbers[0], Err(e))],
            // Refused, and rolled back: each again on its own, for its own answer.
            Err(_) => numbers
                .into_iter()
                .zip(rows)
                .map(|(n, r)| {
                    let answer = match self.call_commit(std::slice::from_ref(&r)) {
                        Ok(conflicts) => answer(&conflicts, r),
                        Err(e) => Err(e),
                    };
                    (n, answer)
                })
                .collect(),
        }
    }

    /// One call of `guichet_commit_batch` in a transaction of its own: the ids of the
    /// cases not written (changed since they were read, or new with a number taken).
    pub(super) fn call_commit(&self, rows: &[CaseRows]) -> Result<Vec<i64>> {
        let columns = Columns::of(rows);
        let mut conn = self.conn()?;
        Ok(conn.query_one(COMMIT, &columns.params()).pg()?.get(0))
    }
}

/// The answer to a commit of a call that returned `conflicts`: written, a conflict, or a
/// new case whose number was taken (`None`).
fn answer(conflicts: &[i64], r: CaseRows) -> Result<Option<CaseRows>> {
    if !conflicts.contains(&big(r.after.id)) {
        Ok(Some(r))
    } else if r.expects.is_some() {
        Ok(None)
    } else {
        Err(conflict(&r.after))
    }
}
