//! Records copied from another store (`store::copy`): each batch in one transaction. The
//! worklist's entries are left for the engine, which writes them when it opens (the open
//! tasks are indexed here with none).

use super::cases::carded;
use super::conn::Tx;
use super::tables::insert_notice;
use super::{big, Pg, PgStore};
use crate::case::Case;
use crate::error::{Error, Result};
use crate::store::copy::Item;

impl PgStore {
    pub(super) fn import_items(&self, items: Vec<Item>) -> Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().pg()?;
        for item in items {
            match item {
                Item::Case(c) => {
                    put_case(&mut tx, &c)?;
                    index_case(&mut tx, &c)?;
                    tx.execute(
                        "SELECT setval('case_ids', GREATEST($1, (SELECT last_value FROM case_ids)))",
                        &[&big(c.id)],
                    )
                    .pg()?;
                }
                Item::Event { case, seq, stored } => {
                    tx.execute(
                        "INSERT INTO history (case_id, seq, event) VALUES ($1, $2, $3)",
                        &[&big(case), &big(seq), &stored],
                    )
                    .pg()?;
                }
                Item::Notice(n) => insert_notice(&mut tx, &n)?,
                Item::Timers(mut timers) => {
                    timers.sort_by_key(|t| t.at);
                    tx.execute(
                        "INSERT INTO timers (due, timers) VALUES ($1, $2)",
                        &[&timers[0].at, &serde_json::to_vec(&timers)?],
                    )
                    .pg()?;
                }
                Item::Listing(l) => {
                    tx.execute(
                        "INSERT INTO listings (case_id, listing) VALUES ($1, $2)",
                        &[&big(l.id), &serde_json::to_vec(&l)?],
                    )
                    .pg()?;
                }
                Item::Figures { case, rev, figures } => {
                    tx.execute(
                        "INSERT INTO figures (case_id, rev, figures) VALUES ($1, $2, $3)",
                        &[&big(case), &big(rev), &serde_json::to_vec(&figures)?],
                    )
                    .pg()?;
                }
                Item::Counter { scope, last } => {
                    tx.execute(
                        "INSERT INTO counters (scope, last) VALUES ($1, $2)
                         ON CONFLICT (scope) DO UPDATE SET last = GREATEST(counters.last, $2)",
                        &[&scope, &big(last)],
                    )
                    .pg()?;
                }
                Item::Audit { seq, line } => {
                    let entry: crate::audit::Entry = serde_json::from_slice(&line)?;
                    if entry.seq != seq {
                        return Err(Error::Store(format!(
                            "audit entry {seq} names itself {}",
                            entry.seq
                        )));
                    }
                    tx.execute(
                        "INSERT INTO audit (seq, entry) VALUES ($1, $2)",
                        &[&big(seq), &line],
                    )
                    .pg()?;
                    // Entries come in order: the head follows the last one.
                    tx.execute(
                        "UPDATE audit_head SET next = $1, hash = $2 WHERE next = $3",
                        &[&big(seq + 1), &entry.hash, &big(seq)],
                    )
                    .pg()?;
                }
                Item::Version(v) => {
                    tx.execute(
                        "INSERT INTO versions (procedure, version, record) VALUES ($1, $2, $3)",
                        &[&v.procedure, &v.version, &serde_json::to_vec(&v)?],
                    )
                    .pg()?;
                }
                Item::Token { hash, record } => {
                    tx.execute(
                        "INSERT INTO tokens (hash, record) VALUES ($1, $2)",
                        &[&hash, &serde_json::to_vec(&record)?],
                    )
                    .pg()?;
                }
                Item::Incident(i) => {
                    tx.execute(
                        "INSERT INTO incidents (id, record) VALUES ($1, $2)",
                        &[&big(i.id), &serde_json::to_vec(&i)?],
                    )
                    .pg()?;
                    tx.execute(
                        "SELECT setval('incidents_id_seq', GREATEST($1, (SELECT last_value FROM incidents_id_seq)))",
                        &[&big(i.id)],
                    )
                    .pg()?;
                }
                Item::Meta { key, value } => {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ($1, $2)
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                        &[&key, &value],
                    )
                    .pg()?;
                }
                Item::File { sha256, bytes } => {
                    use sha2::Digest;
                    if hex::encode(sha2::Sha256::digest(&bytes)) != sha256 {
                        return Err(Error::Store(format!(
                            "file {sha256} does not match its name: not copied"
                        )));
                    }
                    tx.execute(
                        "INSERT INTO files (sha256, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&sha256, &bytes],
                    )
                    .pg()?;
                }
            }
        }
        tx.commit().pg()
    }

    pub(super) fn is_empty_impl(&self) -> Result<bool> {
        let row = self
            .conn()?
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM cases) AND NOT EXISTS (SELECT 1 FROM audit)
                     AND NOT EXISTS (SELECT 1 FROM audit_pending)",
                &[],
            )
            .pg()?;
        Ok(row.get(0))
    }
}

/// Writes an imported case's row.
fn put_case(tx: &mut Tx<'_>, case: &Case) -> Result<()> {
    tx.execute(
        "INSERT INTO cases (id, rev, number, procedure, version, applicant, bundle, open, record)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &big(case.id),
            &big(case.rev),
            &case.number,
            &case.procedure,
            &case.version,
            &case.applicant.id,
            &case.bundle,
            &case.status.is_open(),
            &serde_json::to_vec(case)?,
        ],
    )
    .pg()?;
    Ok(())
}

/// Indexes an imported case: its open tasks by group (their worklist entries left for the
/// engine) and by topic, its cards by group.
fn index_case(tx: &mut Tx<'_>, case: &Case) -> Result<()> {
    let id = big(case.id);
    let (mut groups, mut tasks, mut work) = (Vec::new(), Vec::new(), Vec::new());
    let (mut topics, mut external) = (Vec::new(), Vec::new());
    for t in case.open_tasks() {
        groups.push(t.group.as_str());
        tasks.push(t.id.as_str());
        work.push(None::<Vec<u8>>);
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
    let carded = carded(case);
    if !carded.is_empty() {
        tx.execute(
            "INSERT INTO card_groups (grp, case_id) SELECT g, $2 FROM unnest($1::text[]) AS x(g)",
            &[&carded, &id],
        )
        .pg()?;
    }
    Ok(())
}
