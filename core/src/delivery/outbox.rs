//! The outbox as the engine serves it: the notices of a case, the queue the server's
//! delivery loop drains, what a delivery attempt changes (retries with back-off, giving
//! up with the reason), and the staff inbox.

use chrono::{DateTime, Duration, Utc};

use crate::case::Case;
use crate::engine::{Actor, Engine};
use crate::error::{Error, Result};
use crate::notice::{Notice, NoticeStatus, INBOX};
use crate::plugin::{Delivered, DeliveryError};

/// How often and how long a failing notice is retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay after the first failure; doubled after each further one.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Attempts before a notice fails for good.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::seconds(5),
            max_delay: Duration::hours(1),
            max_attempts: 12,
        }
    }
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts.
    pub fn delay(&self, attempts: u32) -> Duration {
        let factor = 1i32 << attempts.saturating_sub(1).min(20);
        (self.first_delay * factor).min(self.max_delay)
    }
}

/// A notice left by a crash before its case was written is dropped once it is this old:
/// younger ones may belong to a commit still in progress.
const ORPHAN_AGE_SECS: i64 = 60;

/// Parses a notice id `<case>-<seq>-<n>`.
pub fn parse_notice_id(id: &str) -> Option<(u64, u64, u32)> {
    let mut it = id.split('-');
    let (c, s, n) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    Some((c.parse().ok()?, s.parse().ok()?, n.parse().ok()?))
}

impl Engine {
    /// The notices of a case that its committed history caused.
    pub fn notices(&self, case: &Case) -> Result<Vec<Notice>> {
        Ok(self
            .store()
            .notices_of_case(case.id)?
            .into_iter()
            .filter(|n| n.seq < case.history_len)
            .collect())
    }

    /// Queued notices due now whose transition is committed, oldest first.
    pub fn due_notices(&self, limit: usize) -> Result<Vec<Notice>> {
        let now = self.now();
        let mut out = Vec::new();
        for n in self.store().due_notices(now, limit)? {
            let committed = self
                .store()
                .case(n.case)?
                .is_some_and(|c| n.seq < c.history_len);
            if committed {
                out.push(n);
            } else if now - n.created_at > Duration::seconds(ORPHAN_AGE_SECS) {
                tracing::warn!(message = "dropping a notice whose transition was never committed", notice = %n.id);
                self.store().remove_notice(&n)?;
            }
        }
        Ok(out)
    }

    pub fn next_notice(&self) -> Result<Option<DateTime<Utc>>> {
        self.store().next_notice()
    }

    /// Records the result of one delivery attempt and returns the notice as stored.
    pub fn settle(
        &self,
        mut n: Notice,
        result: std::result::Result<Delivered, DeliveryError>,
        policy: &RetryPolicy,
    ) -> Result<Notice> {
        let now = self.now();
        n.attempts += 1;
        match result {
            Ok(d) => {
                n.status = match d {
                    Delivered::Sent => NoticeStatus::Sent,
                    Delivered::Delivered => NoticeStatus::Delivered,
                };
                n.next_attempt = None;
                n.done_at = Some(now);
                n.error = None;
            }
            Err(DeliveryError::Permanent(e)) => {
                n.status = NoticeStatus::Failed;
                n.next_attempt = None;
                n.done_at = Some(now);
                n.error = Some(e);
            }
            Err(DeliveryError::Transient(e)) if n.attempts >= policy.max_attempts => {
                n.status = NoticeStatus::Failed;
                n.next_attempt = None;
                n.done_at = Some(now);
                n.error = Some(format!("gave up after {} attempts: {e}", n.attempts));
            }
            Err(DeliveryError::Transient(e)) => {
                n.next_attempt = Some(now + policy.delay(n.attempts));
                n.error = Some(e);
            }
        }
        self.store().put_notice(&n)?;
        if n.status == NoticeStatus::Failed {
            tracing::warn!(message = "notice failed", notice = %n.id, channel = %n.channel, error = n.error.as_deref().unwrap_or_default());
        }
        Ok(n)
    }

    /// Queues a failed notice again (an administrator fixed the channel or the address).
    pub fn retry_notice(&self, actor: &Actor, id: &str) -> Result<Notice> {
        if *actor != Actor::Admin {
            return Err(Error::Forbidden(
                "only the administrator may retry notices".into(),
            ));
        }
        let mut n = self.notice_by_id(id)?;
        if n.status != NoticeStatus::Failed {
            return Err(Error::InvalidTransition(format!(
                "notice {id} is {:?}, not failed",
                n.status
            )));
        }
        n.status = NoticeStatus::Queued;
        n.attempts = 0;
        n.next_attempt = Some(self.now());
        n.done_at = None;
        self.store().put_notice(&n)?;
        Ok(n)
    }

    /// Notices that failed for good, the latest failure first: what an administrator
    /// looks through before fixing a channel and retrying.
    pub fn failed_notices(&self, actor: &Actor, limit: usize) -> Result<Vec<Notice>> {
        if *actor != Actor::Admin {
            return Err(Error::Forbidden(
                "only the administrator may list failed notices".into(),
            ));
        }
        self.store().failed_notices(limit)
    }

    fn notice_by_id(&self, id: &str) -> Result<Notice> {
        let missing = || Error::NotFound(format!("notice {id} not found"));
        let (c, s, k) = parse_notice_id(id).ok_or_else(missing)?;
        let case = self.store().case(c)?.ok_or_else(missing)?;
        self.store()
            .notice(c, s, k)?
            .filter(|n| n.seq < case.history_len)
            .ok_or_else(missing)
    }

    /// A staff member's in-app inbox: cards, escalations and reminders, newest first.
    pub fn inbox(&self, actor: &Actor, unread_only: bool) -> Result<Vec<Notice>> {
        let Actor::Staff(me) = actor else {
            return Err(Error::Forbidden("the inbox belongs to staff".into()));
        };
        let mut out = Vec::new();
        for (c, s, k) in self.store().inbox(me)? {
            let Some(case) = self.store().case(c)? else {
                continue;
            };
            if let Some(n) = self
                .store()
                .notice(c, s, k)?
                .filter(|n| n.seq < case.history_len)
            {
                if !unread_only || n.read_at.is_none() {
                    out.push(n);
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Marks an inbox notice read; only its addressee may.
    pub fn mark_read(&self, actor: &Actor, id: &str) -> Result<Notice> {
        let mut n = self.notice_by_id(id)?;
        let mine = matches!(actor, Actor::Staff(s) if n.channel == INBOX && n.address == *s);
        if !mine {
            // Someone else's notice looks like a missing one.
            return Err(Error::NotFound(format!("notice {id} not found")));
        }
        if n.read_at.is_none() {
            n.read_at = Some(self.now());
            self.store().put_notice(&n)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            first_delay: Duration::seconds(2),
            max_delay: Duration::seconds(30),
            max_attempts: 5,
        };
        let d: Vec<i64> = (1..=6).map(|a| p.delay(a).num_seconds()).collect();
        assert_eq!(d, vec![2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn notice_ids_parse_strictly() {
        assert_eq!(parse_notice_id("12-3-0"), Some((12, 3, 0)));
        assert_eq!(parse_notice_id("12-3"), None);
        assert_eq!(parse_notice_id("12-3-0-1"), None);
        assert_eq!(parse_notice_id("a-3-0"), None);
    }
}
