//! The key layout of the `state` tree (see the module's table) and the encoding of a
//! case record.

use sled::Tree;

use crate::case::Case;
use crate::error::{Error, Result};
use crate::notice::{Notice, NoticeStatus};

pub(super) fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    k.push(prefix);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

pub(super) fn case_key(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'c';
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

pub(super) fn task_key(case: u64, task: &str) -> Option<[u8; 17]> {
    let n: u64 = task.rsplit_once('-')?.1.parse().ok()?;
    Some(pair_key(b't', case, n))
}

pub(super) use crate::store::{split_event, task_number};

pub(super) fn hist_key(case: u64, seq: u64) -> [u8; 17] {
    pair_key(b'h', case, seq)
}

pub(super) fn pair_key(prefix: u8, case: u64, seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..9].copy_from_slice(&case.to_be_bytes());
    k[9..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Index entries for a case's open tasks: `g group \0 case \0 task`, and for external
/// tasks also `x topic \0 case \0 task`.
pub(super) fn open_task_keys(c: &Case) -> Vec<Vec<u8>> {
    let id = c.id.to_be_bytes();
    let mut keys = Vec::new();
    for t in c.open_tasks() {
        keys.push(key(b'g', &[t.group.as_bytes(), &id, t.id.as_bytes()]));
        if let Some(x) = &t.external {
            keys.push(key(b'x', &[x.topic.as_bytes(), &id, t.id.as_bytes()]));
        }
    }
    keys
}

/// `(case id, task id)` of a task index (`g` by group, `x` by topic) under `name`.
pub(super) fn task_index(state: &Tree, prefix_byte: u8, name: &str) -> Result<Vec<(u64, String)>> {
    let mut prefix = key(prefix_byte, &[name.as_bytes()]);
    prefix.push(0);
    state
        .scan_prefix(&prefix)
        .map(|kv| {
            let (k, _) = kv?;
            let rest = &k[prefix.len()..];
            let case = be_u64(rest).ok_or_else(|| Error::Store("bad task index key".into()))?;
            let task = String::from_utf8_lossy(rest.get(9..).unwrap_or_default()).to_string();
            Ok((case, task))
        })
        .collect()
}

/// The key of a timer group: `T`, the earliest time, then `tail` (case id and history
/// seq), which stays when the group moves on to its next timer.
pub(super) fn timer_key(at: chrono::DateTime<chrono::Utc>, tail: &[u8]) -> Vec<u8> {
    let ms = at.timestamp_millis().max(0) as u64;
    let mut k = Vec::with_capacity(9 + tail.len());
    k.push(b'T');
    k.extend_from_slice(&ms.to_be_bytes());
    k.extend_from_slice(tail);
    k
}

/// Index entries of a case's cards: one per group any of them is addressed to, so a
/// later card to the same groups (the breach after the warning) writes no key.
/// Rebuilds the card index from the cases it names: entries of cases with no live card
/// for the group go, format-3 entries (a key per card) become one per case and group.
/// Stores of format 4 and older kept every entry for ever.
pub(super) fn prune_card_index(state: &Tree) -> Result<()> {
    let mut old = Vec::new();
    let mut cases = std::collections::BTreeSet::new();
    for k in state.scan_prefix([b'K']).keys() {
        let k = k?;
        // `K`, group, `\0`, case id, and in format 3 the card id.
        let id = k[1..]
            .iter()
            .position(|b| *b == 0)
            .and_then(|z| k.get(z + 2..z + 10))
            .and_then(be_u64);
        cases.extend(id);
        old.push(k);
    }
    let mut live = std::collections::BTreeSet::new();
    for id in cases {
        if let Some(v) = state.get(case_key(id))? {
            live.extend(card_keys(&decode_case(&v)?));
        }
    }
    let mut pruned = 0;
    for k in old {
        if !live.contains(k.as_ref()) {
            state.remove(k)?;
            pruned += 1;
        }
    }
    for k in live {
        state.insert(k, vec![])?;
    }
    tracing::info!(message = "card index rebuilt", entries_removed = pruned);
    Ok(())
}

/// The card index of a case: its groups with cards still to be dealt with, those of an
/// open case or not yet answered. A closed case whose cards are all answered leaves the
/// index (its cards stay on the case), so listing cards reads only live ones.
pub(super) fn card_keys(c: &Case) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let open = c.status.is_open();
    for card in c.cards.iter().filter(|card| open || card.answer.is_none()) {
        for g in card.addressed_to() {
            out.push(key(b'K', &[g.as_bytes(), &c.id.to_be_bytes()]));
        }
    }
    out.sort();
    out.dedup();
    out
}

pub(super) fn version_key(c: &Case) -> Vec<u8> {
    key(
        b'v',
        &[
            c.procedure.as_bytes(),
            c.version.as_bytes(),
            &c.id.to_be_bytes(),
        ],
    )
}

pub(super) fn notice_tail(n: &Notice) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..8].copy_from_slice(&n.case.to_be_bytes());
    k[8..16].copy_from_slice(&n.seq.to_be_bytes());
    k[16..].copy_from_slice(&n.n.to_be_bytes());
    k
}

pub(super) fn notice_key(n: &Notice) -> Vec<u8> {
    let mut k = vec![b'o'];
    k.extend_from_slice(&notice_tail(n));
    k
}

pub(super) fn queue_key(n: &Notice) -> Option<Vec<u8>> {
    let at = n
        .next_attempt
        .filter(|_| n.status == NoticeStatus::Queued)?;
    let mut k = vec![b'q'];
    k.extend_from_slice(&(at.timestamp_millis().max(0) as u64).to_be_bytes());
    k.extend_from_slice(&notice_tail(n));
    Some(k)
}

/// A value that describes a case at revision `rev`: the revision (u64 BE), then JSON.
pub(super) fn with_rev(rev: u64, v: &impl serde::Serialize) -> Result<Vec<u8>> {
    let mut out = rev.to_be_bytes().to_vec();
    serde_json::to_writer(&mut out, v)?;
    Ok(out)
}

/// The revision and the value of [`with_rev`]'s encoding.
pub(super) fn split_rev<T: serde::de::DeserializeOwned>(v: &[u8]) -> Result<(u64, T)> {
    let rev = be_u64(v).ok_or_else(|| Error::Store("bad revisioned value".into()))?;
    Ok((rev, serde_json::from_slice(&v[8..])?))
}

/// `Q`, case id: the case's entry in the search index.
pub(super) fn listing_key(case: u64) -> [u8; 9] {
    let mut k = [b'Q'; 9];
    k[1..].copy_from_slice(&case.to_be_bytes());
    k
}

/// `S`, case id: the case's contribution to the statistics.
pub(super) fn figures_key(case: u64) -> [u8; 9] {
    let mut k = [b'S'; 9];
    k[1..].copy_from_slice(&case.to_be_bytes());
    k
}

/// `F`, when it failed (ms, u64 BE), case id, seq, n: the failed notices an administrator
/// looks through, newest last.
pub(super) fn failed_key(n: &Notice) -> Option<Vec<u8>> {
    if n.status != NoticeStatus::Failed {
        return None;
    }
    let at = n.done_at.unwrap_or(n.created_at);
    let mut k = vec![b'F'];
    k.extend_from_slice(&(at.timestamp_millis().max(0) as u64).to_be_bytes());
    k.extend_from_slice(&notice_tail(n));
    Some(k)
}

/// Format 6 added the failed-notice index: an older store builds it once on open.
pub(super) fn build_failed_index(state: &Tree) -> Result<()> {
    let mut built = 0;
    for v in state.scan_prefix([b'o']).values() {
        let n: Notice = serde_json::from_slice(&v?)?;
        if let Some(k) = failed_key(&n) {
            state.insert(k, vec![])?;
            built += 1;
        }
    }
    tracing::info!(message = "failed-notice index built", entries = built);
    Ok(())
}

pub(super) fn inbox_key(n: &Notice) -> Option<Vec<u8>> {
    if n.channel != crate::notice::INBOX {
        return None;
    }
    Some(key(b'i', &[n.address.as_bytes(), &notice_tail(n)]))
}

pub(super) fn number_key(scope: &str, n: u64) -> Vec<u8> {
    key(b'n', &[scope.as_bytes(), &n.to_be_bytes()])
}

pub(super) fn be_u64(b: &[u8]) -> Option<u64> {
    b.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// A stored case is its revision (8 bytes, big-endian) followed by its JSON, so the
/// conflict check reads 8 bytes instead of parsing the case.
pub(super) fn encode_case(c: &Case) -> serde_json::Result<Vec<u8>> {
    let mut v = c.rev.to_be_bytes().to_vec();
    serde_json::to_writer(&mut v, c)?;
    Ok(v)
}

pub(super) fn decode_case(bytes: &[u8]) -> Result<Case> {
    Ok(serde_json::from_slice(bytes.get(8..).unwrap_or_default())?)
}
