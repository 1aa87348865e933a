//! Timer groups: the timers one transition set, under one `T` key due at the earliest,
//! binary-encoded (format 4); JSON groups (format 3) and single JSON timers (format 2)
//! are still read.

use super::keys::*;
use super::{SledStore, Trees, STRIPES};
use crate::error::{Error, Result};
use crate::store::{Incident, TimerGroup, TimerTable};

impl TimerTable for SledStore {
    fn due_timers(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<TimerGroup>> {
        let t = self.t()?;
        let end = timer_key(now + chrono::Duration::milliseconds(1), &[]);
        let mut out = Vec::new();
        for kv in t.state.range(vec![b'T']..end) {
            if out.len() == limit {
                break;
            }
            let (k, v) = kv?;
            match decode(&v) {
                Ok(mut timers) => {
                    // Format 2 kept a card id after the case, not a sequence number.
                    let set_by = matches!(v.first(), Some(&TIMERS_BINARY) | Some(b'['))
                        .then(|| {
                            k.get(9..17)
                                .and_then(be_u64)
                                .zip(k.get(17..25).and_then(be_u64))
                        })
                        .flatten();
                    if let Some((case, seq)) = set_by {
                        match self.timers_committed(&t, case, seq)? {
                            Some(true) => {}
                            // Its transition is being committed: the next pass sees it.
                            Some(false) => continue,
                            None => {
                                tracing::warn!(
                                    message = "timers of a transition that never committed removed",
                                    case,
                                    seq
                                );
                                t.state.remove(&k)?;
                                continue;
                            }
                        }
                    }
                    timers.sort_by_key(|t| t.at);
                    out.push(TimerGroup {
                        key: k.to_vec(),
                        timers,
                    });
                }
                // A value that cannot be read would stay first in the index and stop
                // every timer behind it: move it out of the way, where an administrator
                // sees it.
                Err(e) => {
                    let case = k.get(9..17).and_then(be_u64);
                    tracing::error!(message = "unreadable timer group removed", case = ?case, error = %e);
                    self.incident_impl(Incident {
                        id: 0,
                        at: chrono::Utc::now(),
                        code: "bad_timer".into(),
                        message: format!(
                            "unreadable timer group removed ({e}); its warnings and escalations will not come: {}",
                            hex::encode(&v[..v.len().min(256)])
                        ),
                        actor: "scheduler".into(),
                        action: "timers".into(),
                        procedure: None,
                        case,
                        task: None,
                    })?;
                    t.state.remove(&k)?;
                }
            }
        }
        Ok(out)
    }

    fn next_timer(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let t = self.t()?;
        match t.state.scan_prefix([b'T']).keys().next() {
            None => Ok(None),
            Some(k) => {
                let ms = be_u64(k?.get(1..).unwrap_or_default())
                    .ok_or_else(|| Error::Store("bad timer key".into()))?;
                Ok(chrono::DateTime::from_timestamp_millis(ms as i64))
            }
        }
    }

    fn settle_timers(&self, group: &TimerGroup, pending: &[crate::case::Timer]) -> Result<()> {
        if pending.len() == group.timers.len() {
            return Ok(());
        }
        let t = self.t()?;
        // The rest first: a crash in between leaves both, and the fired timers fire
        // again into the cards they already issued, which does nothing.
        if let Some(first) = pending.iter().map(|t| t.at).min() {
            let tail = group.key.get(9..).unwrap_or_default();
            t.state.insert(timer_key(first, tail), encode(pending))?;
        }
        t.state.remove(group.key.as_slice())?;
        Ok(())
    }
}

impl SledStore {
    /// Whether the transition that set a timer group (`seq` of `case`) is committed. Its
    /// timers are written just before its case record: `Some(false)` while a commit of
    /// the case is under way, `None` if none is and the record never came (a crash or a
    /// failed write left the group).
    fn timers_committed(&self, t: &Trees, case: u64, seq: u64) -> Result<Option<bool>> {
        let committed = |s: &SledStore| -> Result<bool> {
            let history_len = match s.recent.lock().get(case) {
                Some(c) => c.history_len,
                None => t
                    .state
                    .get(case_key(case))?
                    .map(|v| decode_case(&v))
                    .transpose()?
                    .map_or(0, |c| c.history_len),
            };
            Ok(history_len > seq)
        };
        if committed(self)? {
            return Ok(Some(true));
        }
        // A commit holds its case's stripe from before its first write to after its case
        // record; holding it here, a record still missing is missing for good.
        let Some(_stripe) = self.stripes[(case % STRIPES as u64) as usize].try_lock() else {
            return Ok(Some(false));
        };
        Ok(committed(self)?.then_some(true))
    }
}

/// First byte of a timer group in the binary encoding (JSON starts with `[` or `{`).
pub(super) const TIMERS_BINARY: u8 = 1;

/// A timer group as written since format 4: [`TIMERS_BINARY`], the count (u32 BE), then
/// per timer its time
/// and its limit's end (seconds i64 and nanoseconds u32, BE), case id (u64 BE), limit (u8),
/// token (u8 flag, u32 BE) and threshold (u32 BE length, UTF-8). A quarter of the JSON's size,
/// and read without parsing dates: a deadline burst reads and rewrites ten thousand groups.
pub(super) fn encode(timers: &[crate::case::Timer]) -> Vec<u8> {
    use crate::case::Limit;
    let mut v = Vec::with_capacity(1 + timers.len() * 48);
    v.push(TIMERS_BINARY);
    v.extend_from_slice(&(timers.len() as u32).to_be_bytes());
    let time = |v: &mut Vec<u8>, t: chrono::DateTime<chrono::Utc>| {
        v.extend_from_slice(&t.timestamp().to_be_bytes());
        v.extend_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
    };
    for t in timers {
        time(&mut v, t.at);
        time(&mut v, t.limit_due);
        v.extend_from_slice(&t.case.to_be_bytes());
        v.push(match t.limit {
            Limit::Step => 0,
            Limit::Promised => 1,
            Limit::Statutory => 2,
            Limit::Commitment => 3,
        });
        match t.token {
            Some(k) => {
                v.push(1);
                v.extend_from_slice(&k.to_be_bytes());
            }
            None => v.extend_from_slice(&[0; 5]),
        }
        // Thresholds are short labels (`75%`, `10d`, `breach`); written whole whatever
        // their length, so a group always reads back as written.
        v.extend_from_slice(&(t.threshold.len() as u32).to_be_bytes());
        v.extend_from_slice(t.threshold.as_bytes());
    }
    v
}

/// The timers under a `T` key: a binary group (format 4), a JSON group (format 3), or a
/// single JSON timer as stores of format 2 wrote.
pub(super) fn decode(v: &[u8]) -> Result<Vec<crate::case::Timer>> {
    use crate::case::Limit;
    match v.first() {
        Some(&b'{') => return Ok(vec![serde_json::from_slice(v)?]),
        Some(&TIMERS_BINARY) => {}
        _ => return Ok(serde_json::from_slice(v)?),
    }
    let mut r = Reader { v, pos: 1 };
    let count = u32::from_be_bytes(r.array()?);
    let mut out = Vec::new();
    for _ in 0..count {
        let at = r.time()?;
        let limit_due = r.time()?;
        let case = u64::from_be_bytes(r.array()?);
        let limit = match r.take(1)?[0] {
            0 => Limit::Step,
            1 => Limit::Promised,
            2 => Limit::Statutory,
            3 => Limit::Commitment,
            _ => return Err(Reader::bad()),
        };
        let flag = r.take(1)?[0];
        let token = u32::from_be_bytes(r.array()?);
        let token = (flag != 0).then_some(token);
        let n = u32::from_be_bytes(r.array()?) as usize;
        let threshold = std::str::from_utf8(r.take(n)?)
            .map_err(|_| Reader::bad())?
            .to_string();
        out.push(crate::case::Timer {
            at,
            case,
            limit,
            token,
            threshold,
            limit_due,
        });
    }
    if r.pos != v.len() {
        return Err(Reader::bad());
    }
    Ok(out)
}

/// Reads a binary timer group field by field; running short is an error, not a panic.
struct Reader<'a> {
    v: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bad() -> Error {
        Error::Store("bad timer group value".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let field = self.v.get(self.pos..self.pos + n).ok_or_else(Self::bad)?;
        self.pos += n;
        Ok(field)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| Self::bad())
    }

    fn time(&mut self) -> Result<chrono::DateTime<chrono::Utc>> {
        let secs = i64::from_be_bytes(self.array()?);
        let nanos = u32::from_be_bytes(self.array()?);
        chrono::DateTime::from_timestamp(secs, nanos).ok_or_else(Self::bad)
    }
}
