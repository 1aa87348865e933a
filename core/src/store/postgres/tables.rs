//! The other tables on PostgreSQL: indexes, timers, notices, the audit chain, the
//! office's administration, files.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::conn::Tx;
use chrono::{DateTime, Utc};

use super::cases::append_pending;
use super::{big, storable, unsigned, Pg, PgStore};
use crate::error::{Error, Result};
use crate::notice::{Notice, NoticeStatus};
use crate::store::{
    AuditTable, FileTable, Incident, IndexTable, NoticeTable, OfficeTable, Receipt, TimerGroup,
    TimerTable, TokenRecord, VersionRecord, WorkEntry,
};

impl PgStore {
    /// The case ids a query selects (its first column).
    fn ids(
        &self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<u64>> {
        let rows = self.conn()?.query(sql, params).pg()?;
        Ok(rows.iter().map(|r| unsigned(r.get(0))).collect())
    }
}

impl IndexTable for PgStore {
    fn visit_work(&self, group: &str, f: &mut dyn FnMut(&Arc<WorkEntry>)) -> Result<()> {
        // Nothing stored holds a NUL (PostgreSQL text cannot).
        if !storable(group) {
            return Ok(());
        }
        let rows = self
            .conn()?
            .query(
                "SELECT entry FROM work WHERE grp = $1 AND entry IS NOT NULL",
                &[&group],
            )
            .pg()?;
        for r in rows {
            f(&Arc::new(serde_json::from_slice(r.get(0))?));
        }
        Ok(())
    }

    fn cases_without_work(&self) -> Result<Vec<u64>> {
        self.ids(
            "SELECT DISTINCT case_id FROM work WHERE entry IS NULL ORDER BY case_id",
            &[],
        )
    }

    fn put_work(&self, case: &crate::case::Case, work: Vec<WorkEntry>) -> Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().pg()?;
        let rev: Option<i64> = tx
            .query_opt(
                "SELECT rev FROM cases WHERE id = $1 FOR UPDATE",
                &[&big(case.id)],
            )
            .pg()?
            .map(|r| r.get(0));
        if rev.map(unsigned) != Some(case.rev) {
            return Err(Error::Conflict(format!(
                "case {} changed while its work entries were written",
                case.number
            )));
        }
        for mut e in work {
            e.rev = case.rev;
            e.case_number = case.number.clone();
            tx.execute(
                "INSERT INTO work (grp, case_id, task, entry) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (grp, case_id, task) DO UPDATE SET entry = EXCLUDED.entry",
                &[
                    &e.task.group,
                    &big(case.id),
                    &e.task.id,
                    &serde_json::to_vec(&e)?,
                ],
            )
            .pg()?;
        }
        tx.commit().pg()
    }

    fn open_tasks_of_topic(&self, topic: &str) -> Result<Vec<(u64, String)>> {
        // Nothing stored holds a NUL (PostgreSQL text cannot).
        if !storable(topic) {
            return Ok(Vec::new());
        }
        let rows = self
            .conn()?
            .query(
                "SELECT case_id, task FROM topics WHERE topic = $1 ORDER BY case_id, task",
                &[&topic],
            )
            .pg()?;
        Ok(rows
            .iter()
            .map(|r| (unsigned(r.get(0)), r.get(1)))
            .collect())
    }

    fn cases_of_applicant(&self, applicant: &str) -> Result<Vec<u64>> {
        // Nothing stored holds a NUL (PostgreSQL text cannot).
        if !storable(applicant) {
            return Ok(Vec::new());
        }
        self.ids(
            "SELECT id FROM cases WHERE applicant = $1 ORDER BY id",
            &[&applicant],
        )
    }

    fn cases_of_bundle(&self, bundle: &str) -> Result<Vec<u64>> {
        // Nothing stored holds a NUL (PostgreSQL text cannot).
        if !storable(bundle) {
            return Ok(Vec::new());
        }
        self.ids(
            "SELECT id FROM cases WHERE bundle = $1 ORDER BY id",
            &[&bundle],
        )
    }

    fn cases_with_cards_for(&self, group: &str) -> Result<Vec<u64>> {
        // Nothing stored holds a NUL (PostgreSQL text cannot).
        if !storable(group) {
            return Ok(Vec::new());
        }
        self.ids(
            "SELECT case_id FROM card_groups WHERE grp = $1 ORDER BY case_id",
            &[&group],
        )
    }

    fn open_cases_by_version(&self) -> Result<BTreeMap<(String, String), u64>> {
        let rows = self
            .conn()?
            .query(
                "SELECT procedure, version, count(*) FROM cases WHERE open
                 GROUP BY procedure, version",
                &[],
            )
            .pg()?;
        Ok(rows
            .iter()
            .map(|r| ((r.get(0), r.get(1)), unsigned(r.get(2))))
            .collect())
    }

    fn open_cases_of_version(&self, procedure: &str, version: &str) -> Result<Vec<u64>> {
        // Nothing stored holds a NUL (PostgreSQL text cannot).
        if !storable(procedure) || !storable(version) {
            return Ok(Vec::new());
        }
        self.ids(
            "SELECT id FROM cases WHERE open AND procedure = $1 AND version = $2 ORDER BY id",
            &[&procedure, &version],
        )
    }

    fn listing(&self, case: u64) -> Result<Option<crate::search::CaseListing>> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT listing FROM listings WHERE case_id = $1",
                &[&big(case)],
            )
            .pg()?;
        row.map(|r| Ok(serde_json::from_slice(r.get(0))?))
            .transpose()
    }

    fn listings(
        &self,
        after: Option<u64>,
        newest_first: bool,
        f: &mut dyn FnMut(crate::search::CaseListing) -> Result<bool>,
    ) -> Result<()> {
        // A page at a time, so a search that stops early reads little.
        const PAGE: i64 = 256;
        let mut conn = self.conn()?;
        let mut from = after.map(big);
        loop {
            let rows = match (newest_first, from) {
                (true, Some(a)) => conn.query(
                    "SELECT case_id, listing FROM listings WHERE case_id < $1
                     ORDER BY case_id DESC LIMIT $2",
                    &[&a, &PAGE],
                ),
                (true, None) => conn.query(
                    "SELECT case_id, listing FROM listings ORDER BY case_id DESC LIMIT $1",
                    &[&PAGE],
                ),
                (false, Some(a)) => conn.query(
                    "SELECT case_id, listing FROM listings WHERE case_id > $1
                     ORDER BY case_id LIMIT $2",
                    &[&a, &PAGE],
                ),
                (false, None) => conn.query(
                    "SELECT case_id, listing FROM listings ORDER BY case_id LIMIT $1",
                    &[&PAGE],
                ),
            }
            .pg()?;
            for r in &rows {
                if !f(serde_json::from_slice(r.get(1))?)? {
                    return Ok(());
                }
            }
            match rows.last() {
                Some(r) if rows.len() as i64 == PAGE => from = Some(r.get(0)),
                _ => return Ok(()),
            }
        }
    }

    fn complete_listing(&self, case: u64) -> Result<bool> {
        let Some(c) = crate::store::CaseTable::case(self, case)? else {
            return Ok(false);
        };
        let n = self
            .conn()?
            .execute(
                "INSERT INTO listings (case_id, listing) VALUES ($1, $2)
                 ON CONFLICT (case_id) DO NOTHING",
                &[
                    &big(case),
                    &serde_json::to_vec(&crate::search::CaseListing::of(&c))?,
                ],
            )
            .pg()?;
        Ok(n > 0)
    }

    fn case_figures(
        &self,
        case: &crate::case::Case,
    ) -> Result<Option<(u64, crate::stats::CaseFigures)>> {
        // Read with the case, at its revision (a transition reads its case, then this).
        let entry = match self.read_with_case(case) {
            Some(entry) => entry,
            None => self
                .conn()?
                .query_opt(
                    "SELECT rev, figures FROM figures WHERE case_id = $1",
                    &[&big(case.id)],
                )
                .pg()?
                .map(|r| (r.get(0), r.get(1))),
        };
        entry
            .map(|(rev, bytes): (i64, Vec<u8>)| {
                Ok((unsigned(rev), serde_json::from_slice(&bytes)?))
            })
            .transpose()
    }

    fn visit_figures(&self, f: &mut dyn FnMut(u64, crate::stats::CaseFigures)) -> Result<Vec<u64>> {
        // Written in the transaction of the case's commit: never past the case.
        let rows = self
            .conn()?
            .query("SELECT case_id, figures FROM figures", &[])
            .pg()?;
        for r in rows {
            f(unsigned(r.get(0)), serde_json::from_slice(r.get(1))?);
        }
        Ok(Vec::new())
    }

    fn put_figures(
        &self,
        case: u64,
        rev: u64,
        figures: &crate::stats::CaseFigures,
    ) -> Result<bool> {
        let n = self
            .conn()?
            .execute(
                "INSERT INTO figures (case_id, rev, figures)
                 SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM cases WHERE id = $1 AND rev = $2)
                 ON CONFLICT (case_id) DO UPDATE SET rev = EXCLUDED.rev, figures = EXCLUDED.figures",
                &[&big(case), &big(rev), &serde_json::to_vec(figures)?],
            )
            .pg()?;
        Ok(n > 0)
    }
}

impl TimerTable for PgStore {
    fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<TimerGroup>> {
        // Taken with a lease: other nodes skip them until it ends (then the node that took
        // them is presumed dead and they are taken again); this node sees them again
        // until it settles them.
        let until = Utc::now() + self.lease;
        let rows = self
            .conn()?
            .query(
                "UPDATE timers SET leased_by = $3, leased_until = $4 WHERE id IN (
                     SELECT id FROM timers
                     WHERE due <= $1
                       AND (leased_until IS NULL OR leased_until < now() OR leased_by = $3)
                     ORDER BY due, id LIMIT $2
                     FOR UPDATE SKIP LOCKED)
                 RETURNING id, due, timers",
                &[&now, &big(limit as u64), &self.node, &until],
            )
            .pg()?;
        let mut groups: Vec<(DateTime<Utc>, i64, Vec<crate::case::Timer>)> = Vec::new();
        for r in rows {
            let id: i64 = r.get(0);
            match serde_json::from_slice::<Vec<crate::case::Timer>>(r.get(2)) {
                Ok(mut timers) => {
                    timers.sort_by_key(|t| t.at);
                    groups.push((r.get(1), id, timers));
                }
                Err(e) => {
                    tracing::error!(message = "unreadable timer group removed", id, error = %e);
                    self.conn()?
                        .execute("DELETE FROM timers WHERE id = $1", &[&id])
                        .pg()?;
                }
            }
        }
        groups.sort_by_key(|(due, id, _)| (*due, *id));
        Ok(groups
            .into_iter()
            .map(|(_, id, timers)| TimerGroup {
                key: id.to_be_bytes().to_vec(),
                timers,
            })
            .collect())
    }

    fn next_timer(&self) -> Result<Option<DateTime<Utc>>> {
        let row = self
            .conn()?
            .query_one(
                // The first free group, and the first lease to end (a group is taken once due,
                // so its lease ends after that): each the first entry of an index, whatever
                // the planner's figures say (the table keeps every timer set until it is due).
                "SELECT LEAST(
                     (SELECT due FROM timers WHERE leased_until IS NULL ORDER BY due LIMIT 1),
                     (SELECT min(leased_until) FROM timers))",
                &[],
            )
            .pg()?;
        Ok(row.get(0))
    }

    fn settle_timers(&self, group: &TimerGroup, pending: &[crate::case::Timer]) -> Result<()> {
        let id = group
            .key
            .as_slice()
            .try_into()
            .map(i64::from_be_bytes)
            .map_err(|_| Error::Store("bad timer group key".into()))?;
        let conn = &mut self.conn()?;
        match pending.iter().map(|t| t.at).min() {
            Some(first) => conn.execute(
                "UPDATE timers SET due = $2, timers = $3, leased_by = NULL, leased_until = NULL
                 WHERE id = $1",
                &[&id, &first, &serde_json::to_vec(pending)?],
            ),
            None => conn.execute("DELETE FROM timers WHERE id = $1", &[&id]),
        }
        .pg()?;
        Ok(())
    }
}

/// Where a notice stands in the delivery queue, the failed list and an inbox.
pub(super) fn notice_columns(
    n: &Notice,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<&str>) {
    let queued = n.next_attempt.filter(|_| n.status == NoticeStatus::Queued);
    let failed = (n.status == NoticeStatus::Failed).then(|| n.done_at.unwrap_or(n.created_at));
    let inbox = (n.channel == crate::notice::INBOX).then_some(n.address.as_str());
    (queued, failed, inbox)
}

pub(super) fn insert_notice(tx: &mut Tx<'_>, n: &Notice) -> Result<()> {
    let (queued, failed, inbox) = notice_columns(n);
    tx.execute(
        "INSERT INTO notices (case_id, seq, n, notice, queued_for, failed_at, inbox)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &big(n.case),
            &big(n.seq),
            &i64::from(n.n),
            &serde_json::to_vec(n)?,
            &queued,
            &failed,
            &inbox,
        ],
    )
    .pg()?;
    Ok(())
}

fn notices(rows: Vec<postgres::Row>) -> Result<Vec<Notice>> {
    rows.iter()
        .map(|r| Ok(serde_json::from_slice(r.get(0))?))
        .collect()
}

impl NoticeTable for PgStore {
    fn notices_of_case(&self, case: u64) -> Result<Vec<Notice>> {
        let rows = self
            .conn()?
            .query(
                "SELECT notice FROM notices WHERE case_id = $1 ORDER BY seq, n",
                &[&big(case)],
            )
            .pg()?;
        notices(rows)
    }

    fn notice(&self, case: u64, seq: u64, n: u32) -> Result<Option<Notice>> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT notice FROM notices WHERE case_id = $1 AND seq = $2 AND n = $3",
                &[&big(case), &big(seq), &i64::from(n)],
            )
            .pg()?;
        row.map(|r| Ok(serde_json::from_slice(r.get(0))?))
            .transpose()
    }

    fn put_notice(&self, n: &Notice) -> Result<()> {
        let (queued, failed, inbox) = notice_columns(n);
        self.conn()?
            .execute(
                "INSERT INTO notices (case_id, seq, n, notice, queued_for, failed_at, inbox)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (case_id, seq, n) DO UPDATE SET notice = EXCLUDED.notice,
                     queued_for = EXCLUDED.queued_for, failed_at = EXCLUDED.failed_at,
                     inbox = EXCLUDED.inbox, leased_by = NULL, leased_until = NULL",
                &[
                    &big(n.case),
                    &big(n.seq),
                    &i64::from(n.n),
                    &serde_json::to_vec(n)?,
                    &queued,
                    &failed,
                    &inbox,
                ],
            )
            .pg()?;
        Ok(())
    }

    fn due_notices(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Notice>> {
        // Taken with a lease, as timers are: one node delivers a notice; another takes it
        // over if that node dies before recording the attempt (put_notice ends the lease).
        let until = Utc::now() + self.lease;
        let rows = self
            .conn()?
            .query(
                "WITH taken AS (
                     UPDATE notices SET leased_by = $3, leased_until = $4
                     WHERE (case_id, seq, n) IN (
                         SELECT case_id, seq, n FROM notices
                         WHERE queued_for <= $1
                           AND (leased_until IS NULL OR leased_until < now() OR leased_by = $3)
                         ORDER BY queued_for, case_id, seq, n LIMIT $2
                         FOR UPDATE SKIP LOCKED)
                     RETURNING notice, queued_for, case_id, seq, n)
                 SELECT notice FROM taken ORDER BY queued_for, case_id, seq, n",
                &[&now, &big(limit as u64), &self.node, &until],
            )
            .pg()?;
        notices(rows)
    }

    fn next_notice(&self) -> Result<Option<DateTime<Utc>>> {
        let row = self
            .conn()?
            .query_one("SELECT min(queued_for) FROM notices", &[])
            .pg()?;
        Ok(row.get(0))
    }

    fn remove_notice(&self, n: &Notice) -> Result<()> {
        self.conn()?
            .execute(
                "DELETE FROM notices WHERE case_id = $1 AND seq = $2 AND n = $3",
                &[&big(n.case), &big(n.seq), &i64::from(n.n)],
            )
            .pg()?;
        Ok(())
    }

    fn failed_notices(&self, limit: usize) -> Result<Vec<Notice>> {
        let rows = self
            .conn()?
            .query(
                "SELECT notice FROM notices WHERE failed_at IS NOT NULL
                 ORDER BY failed_at DESC, case_id DESC, seq DESC, n DESC LIMIT $1",
                &[&big(limit as u64)],
            )
            .pg()?;
        notices(rows)
    }

    fn inbox(&self, staff: &str) -> Result<Vec<(u64, u64, u32)>> {
        // Nothing stored holds a NUL (PostgreSQL text cannot).
        if !storable(staff) {
            return Ok(Vec::new());
        }
        let rows = self
            .conn()?
            .query(
                "SELECT case_id, seq, n FROM notices WHERE inbox = $1 ORDER BY case_id, seq, n",
                &[&staff],
            )
            .pg()?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    unsigned(r.get(0)),
                    unsigned(r.get(1)),
                    u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                )
            })
            .collect())
    }
}

impl AuditTable for PgStore {
    fn append_audit(&self, records: Vec<crate::audit::Record>) -> Result<Receipt> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().pg()?;
        append_pending(&mut tx, &records)?;
        tx.commit().pg()?;
        Ok(self.receipt())
    }

    fn audit_raw(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        // What committed so far is in the chain before it is read.
        self.seal_audit()?;
        let rows = self
            .conn()?
            .query(
                "SELECT seq, entry FROM audit WHERE seq >= $1 ORDER BY seq LIMIT $2",
                &[&big(from), &big(limit as u64)],
            )
            .pg()?;
        Ok(rows
            .iter()
            .map(|r| (unsigned(r.get(0)), r.get(1)))
            .collect())
    }
}

impl OfficeTable for PgStore {
    fn put_version(&self, rec: &VersionRecord) -> Result<bool> {
        let n = self
            .conn()?
            .execute(
                "INSERT INTO versions (procedure, version, record) VALUES ($1, $2, $3)
                 ON CONFLICT (procedure, version) DO NOTHING",
                &[&rec.procedure, &rec.version, &serde_json::to_vec(rec)?],
            )
            .pg()?;
        Ok(n > 0)
    }

    fn version(&self, procedure: &str, version: &str) -> Result<Option<VersionRecord>> {
        // Nothing stored holds a NUL (PostgreSQL text cannot).
        if !storable(procedure) || !storable(version) {
            return Ok(None);
        }
        let row = self
            .conn()?
            .query_opt(
                "SELECT record FROM versions WHERE procedure = $1 AND version = $2",
                &[&procedure, &version],
            )
            .pg()?;
        row.map(|r| Ok(serde_json::from_slice(r.get(0))?))
            .transpose()
    }

    fn versions(&self) -> Result<Vec<VersionRecord>> {
        let rows = self
            .conn()?
            .query("SELECT record FROM versions", &[])
            .pg()?;
        let mut v: Vec<VersionRecord> = rows
            .iter()
            .map(|r| Ok(serde_json::from_slice(r.get(0))?))
            .collect::<Result<_>>()?;
        v.sort_by(|a, b| (&a.procedure, a.first_loaded).cmp(&(&b.procedure, b.first_loaded)));
        Ok(v)
    }

    fn put_token(&self, hash: &str, rec: &TokenRecord) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO tokens (hash, record) VALUES ($1, $2)
                 ON CONFLICT (hash) DO UPDATE SET record = EXCLUDED.record",
                &[&hash, &serde_json::to_vec(rec)?],
            )
            .pg()?;
        Ok(())
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        // Nothing stored holds a NUL (PostgreSQL text cannot).
        if !storable(hash) {
            return Ok(None);
        }
        let row = self
            .conn()?
            .query_opt("SELECT record FROM tokens WHERE hash = $1", &[&hash])
            .pg()?;
        row.map(|r| Ok(serde_json::from_slice(r.get(0))?))
            .transpose()
    }

    fn tokens(&self) -> Result<Vec<(String, TokenRecord)>> {
        let rows = self
            .conn()?
            .query("SELECT hash, record FROM tokens ORDER BY hash", &[])
            .pg()?;
        rows.iter()
            .map(|r| Ok((r.get(0), serde_json::from_slice(r.get(1))?)))
            .collect()
    }

    fn record_incident(&self, mut incident: Incident) -> Result<()> {
        let mut conn = self.conn()?;
        let id: i64 = conn
            .query_one("SELECT nextval('incidents_id_seq')", &[])
            .pg()?
            .get(0);
        incident.id = unsigned(id);
        conn.execute(
            "INSERT INTO incidents (id, record) VALUES ($1, $2)",
            &[&id, &serde_json::to_vec(&incident)?],
        )
        .pg()?;
        Ok(())
    }

    fn incidents(&self, limit: usize) -> Result<Vec<Incident>> {
        let rows = self
            .conn()?
            .query(
                "SELECT record FROM incidents ORDER BY id DESC LIMIT $1",
                &[&big(limit as u64)],
            )
            .pg()?;
        rows.iter()
            .map(|r| Ok(serde_json::from_slice(r.get(0))?))
            .collect()
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        // Nothing stored holds a NUL (PostgreSQL text cannot).
        if !storable(key) {
            return Ok(None);
        }
        let row = self
            .conn()?
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .pg()?;
        Ok(row.map(|r| r.get(0)))
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&key, &value],
            )
            .pg()?;
        Ok(())
    }
}

impl FileTable for PgStore {
    fn put_file(&self, bytes: &[u8]) -> Result<String> {
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(bytes));
        self.conn()?
            .execute(
                "INSERT INTO files (sha256, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&sha, &bytes],
            )
            .pg()?;
        Ok(sha)
    }

    fn file(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        // Nothing stored holds a NUL (PostgreSQL text cannot).
        if !storable(sha256) {
            return Ok(None);
        }
        let row = self
            .conn()?
            .query_opt("SELECT bytes FROM files WHERE sha256 = $1", &[&sha256])
            .pg()?;
        Ok(row.map(|r| r.get(0)))
    }
}
