//! Ratings (好差评): after its decision an applicant rates the service once, 1 to 5 with
//! tags and a comment, online or told to the window; a rating at or below the
//! procedure's threshold opens a follow-up task (整改) for the group the script names,
//! under its own limit, whose outcome and reply the applicant reads when tracking.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::case::{Case, CaseStatus, Effect, HistoryEvent, Task, TaskState};
use crate::engine::{Actor, Committed, Engine};
use crate::error::{Error, Result};
use crate::flow::Flow;

/// The step id of a follow-up task (reserved: no procedure step may use it).
pub const FOLLOW_UP_STEP: &str = "follow_up";
/// What completing a follow-up says: the problem was put right, or explained.
pub const FOLLOW_UP_OUTCOMES: [&str; 2] = ["resolved", "explained"];

/// How a procedure handles its ratings (`rating: #{ threshold: 2, group: "...", days: 5 }`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RatingPolicy {
    /// A score at or below this opens a follow-up (default 2: dissatisfied or worse).
    #[serde(default = "default_threshold")]
    pub threshold: u8,
    /// The group that follows up; default: the procedure's intake group.
    #[serde(default)]
    pub group: Option<String>,
    /// Working days the follow-up has (default 5).
    #[serde(default = "default_days")]
    pub days: u32,
    /// Tags an applicant may tick (`"slow"`, `"unclear"`...); any short tag if empty.
    #[serde(default)]
    pub tags: Vec<String>,
}

fn default_threshold() -> u8 {
    2
}

fn default_days() -> u32 {
    5
}

impl Default for RatingPolicy {
    fn default() -> Self {
        RatingPolicy {
            threshold: default_threshold(),
            group: None,
            days: default_days(),
            tags: Vec::new(),
        }
    }
}

/// A case's rating, with the follow-up's answer once given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Rating {
    /// 1 (very dissatisfied) to 5 (very satisfied).
    pub score: u8,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
    /// `online` (the applicant) or `window` (recorded by staff).
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_by: Option<String>,
    /// The follow-up task a low score opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<String>,
    /// Its outcome (`resolved` or `explained`) and reply to the applicant, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replied_at: Option<DateTime<Utc>>,
}

/// A rating as given.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RatingRequest {
    /// 1 (very dissatisfied) to 5 (very satisfied).
    pub score: u8,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// Whether a case can be rated now: closed by a decision (a withdrawn case has none).
pub fn may_be_rated(c: &Case) -> bool {
    !c.status.is_open() && c.status != CaseStatus::Withdrawn && c.rating.is_none()
}

impl Engine {
    /// Records a rating of a decided case: the applicant's (online, `actor` public or the
    /// case's applicant, whose access the caller checked) or one given at the window
    /// (staff). Once per case. A score at or below the threshold opens the follow-up.
    pub fn rate(&self, actor: &Actor, case_id: u64, r: RatingRequest) -> Result<Committed> {
        let (channel, recorded_by) = match actor {
            Actor::Public | Actor::Applicant(_) => ("online", None),
            Actor::Staff(s) => ("window", Some(s.clone())),
            Actor::Admin => {
                return Err(Error::Forbidden(
                    "a rating is the applicant's, given online or at the window".into(),
                ))
            }
        };
        let case = self.case(case_id)?;
        if let Actor::Staff(_) = actor {
            if !self.can_see(actor, &case) {
                return Err(Error::NotFound(format!("case {case_id} not found")));
            }
        }
        if case.rating.is_some() {
            return Err(Error::Conflict(format!(
                "case {} is already rated",
                case.number
            )));
        }
        if !may_be_rated(&case) {
            return Err(Error::InvalidTransition(format!(
                "case {} has no decision to rate yet",
                case.number
            )));
        }
        let proc = self.procedure_of(&case)?;
        let policy = &proc.rating;
        if !(1..=5).contains(&r.score) {
            return Err(Error::Validation("a score is 1 to 5".into()));
        }
        let tags: Vec<String> = r.tags.iter().map(|t| t.trim().to_string()).collect();
        if tags.len() > 10 || tags.iter().any(|t| t.is_empty() || t.chars().count() > 40) {
            return Err(Error::Validation(
                "at most 10 tags of 1 to 40 characters".into(),
            ));
        }
        if let Some(t) = tags
            .iter()
            .find(|t| !policy.tags.is_empty() && !policy.tags.contains(t))
        {
            return Err(Error::Validation(format!(
                "'{t}' is not a tag of this service; its tags: {}",
                policy.tags.join(", ")
            )));
        }
        let comment = r
            .comment
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        if comment.as_ref().is_some_and(|c| c.len() > 2000) {
            return Err(Error::Validation("a comment has at most 2000 bytes".into()));
        }
        let rules = self.rules();
        let now = self.now();
        let mut flow = Flow::new(&proc, &rules, case.clone(), now);
        let follow_up = if r.score <= policy.threshold {
            let group = policy.group.clone().unwrap_or_else(|| proc.intake.clone());
            Some(flow.open_follow_up(&group, policy.days))
        } else {
            None
        };
        flow.case.rating = Some(Rating {
            score: r.score,
            tags,
            comment: comment.clone(),
            at: now,
            channel: channel.to_string(),
            recorded_by,
            follow_up,
            outcome: None,
            reply: None,
            replied_at: None,
        });
        let event = HistoryEvent {
            outcome: Some(r.score.to_string()),
            comment,
            effects: flow.effects,
            ..HistoryEvent::new(now, actor.name(), "rated")
        };
        self.commit_change(case, flow.case, event, flow.timers)
    }
}

impl Flow<'_> {
    /// Opens the follow-up of a low rating for `group`, due in `days` working days;
    /// returns its task id.
    pub(crate) fn open_follow_up(&mut self, group: &str, days: u32) -> String {
        self.case.next_task += 1;
        let id = format!("{}-{}", self.case.id, self.case.next_task);
        self.effects.push(Effect::TaskCreated {
            task: id.clone(),
            group: group.to_string(),
            assignee: None,
        });
        self.case.tasks.push(Task {
            id: id.clone(),
            step: FOLLOW_UP_STEP.to_string(),
            step_name: "Follow-up of a rating (整改)".to_string(),
            group: group.to_string(),
            assignee: None,
            claimed_by: None,
            state: TaskState::Open,
            created_at: self.now,
            completed_at: None,
            completed_by: None,
            outcome: None,
            comment: None,
            token: 0,
            due: Some(self.rules.calendar.deadline(self.now, days)),
            external: None,
        });
        id
    }

    /// Completes a follow-up: its outcome and reply go with the rating, for the
    /// applicant; the case stays as it was decided.
    pub(crate) fn complete_follow_up(
        &mut self,
        outcome: &str,
        reply: Option<&String>,
    ) -> Result<()> {
        if !FOLLOW_UP_OUTCOMES.contains(&outcome) {
            return Err(Error::Validation(format!(
                "a follow-up ends {}",
                FOLLOW_UP_OUTCOMES.join(" or ")
            )));
        }
        let Some(reply) = reply.filter(|r| !r.trim().is_empty()) else {
            return Err(Error::Validation(
                "a follow-up needs a reply to the applicant (the comment)".into(),
            ));
        };
        let now = self.now;
        if let Some(r) = self.case.rating.as_mut() {
            r.outcome = Some(outcome.to_string());
            r.reply = Some(reply.trim().to_string());
            r.replied_at = Some(now);
        }
        Ok(())
    }
}
