//! Cases (办件), their tasks (待办) and history events: the state the engine moves and the
//! store keeps. These types are serialized both to the store and onto the API, so every
//! field is a compatibility promise.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub type Data = Map<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum CaseStatus {
    /// Received, waiting for the intake decision at the window.
    Submitted,
    /// Accepted; steps are running.
    InProgress,
    /// Waiting on the applicant for supplementary materials (补正).
    Supplement,
    Approved,
    Rejected,
    /// Rejected at intake (e.g. needs no permit).
    NotAccepted,
    /// Sent to the competent office at intake.
    Referred,
    /// Ended because the applicant did not keep a commitment (容缺受理).
    Terminated,
    Withdrawn,
}

impl CaseStatus {
    pub fn is_open(self) -> bool {
        matches!(
            self,
            CaseStatus::Submitted | CaseStatus::InProgress | CaseStatus::Supplement
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Applicant {
    /// ID card number or unified social credit code: what links one applicant's cases.
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Preferred language for notices, e.g. `zh` or `en`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MaterialRef {
    /// The material id the procedure declares.
    pub id: String,
    /// File name as uploaded; its extension is checked against the accepted formats.
    pub file: String,
    /// For an uploaded file: the SHA-256 of its content (hex), under which the store keeps
    /// it. Recorded in the case and its history, so the audit chain vouches for which
    /// file was submitted. Absent for a material named without its content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Bytes of an uploaded file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl MaterialRef {
    /// A material named without its content (a reference to a file held elsewhere).
    pub fn named(id: impl Into<String>, file: impl Into<String>) -> MaterialRef {
        MaterialRef {
            id: id.into(),
            file: file.into(),
            sha256: None,
            size: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum TaskState {
    Open,
    Claimed,
    Completed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Task {
    /// `<case id>-<n>`: unique, and names its case so no lookup table is needed.
    pub id: String,
    pub step: String,
    pub step_name: String,
    pub group: String,
    /// Set when the step's mode names signers: only this staff member may act.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    pub state: TaskState,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The active step instance this task belongs to.
    pub token: u32,
    /// The step's deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<DateTime<Utc>>,
    /// An external task: what workers of this topic do, and its lease and retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<External>,
}

/// The state of an external task (an automatic step done by a worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct External {
    pub topic: String,
    /// Failed attempts left before the task becomes an incident.
    pub retries: u32,
    /// Who holds it, until when. An expired lease lets another worker fetch it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<DateTime<Utc>>,
    /// Not fetched before this time (a failure asked to wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Retries ran out: the task waits for an administrator.
    #[serde(default)]
    pub incident: bool,
}

impl External {
    /// Whether a worker may fetch it now.
    pub fn available(&self, now: DateTime<Utc>) -> bool {
        !self.incident
            && self.lease_until.is_none_or(|u| u <= now)
            && self.retry_at.is_none_or(|r| r <= now)
    }
}

impl Task {
    pub fn is_open(&self) -> bool {
        matches!(self.state, TaskState::Open | TaskState::Claimed)
    }
}

/// One active step instance. Parallel steps hold a token while their branches run; branch
/// tokens point at it through `parent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Token {
    pub id: u32,
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// Branches of a parallel step still running.
    #[serde(default)]
    pub pending: u32,
    /// Signers still to act in `sequential` mode, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue: Vec<String>,
    pub entered_at: DateTime<Utc>,
    /// When the step's own budget runs out (close of office on its last working day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Case {
    pub id: u64,
    /// Human-facing number, gap-free per procedure and year: `PLAN-LUP-2026-000042`.
    pub number: String,
    /// Short random code the applicant uses with the number to track the case.
    pub query_code: String,
    pub procedure: String,
    pub procedure_name: String,
    pub department: String,
    /// The procedure version the case started on and keeps.
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    pub applicant: Applicant,
    /// `window` or `online`.
    pub channel: String,
    pub status: CaseStatus,
    pub data: Data,
    pub materials: Vec<MaterialRef>,
    pub submitted_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// End of the promised limit (承诺时限), set at acceptance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promised_due: Option<DateTime<Utc>>,
    /// End of the statutory limit (法定时限), set at acceptance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statutory_due: Option<DateTime<Utc>>,
    /// Supervision cards (督办卡) and overdue escalations issued on this case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cards: Vec<Card>,
    /// The clock is stopped: waiting on the applicant, an excluded step, a suspension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_stop: Option<ClockStop>,
    /// Every stop so far, with how much working time it took off the clock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clock_stops: Vec<ClockStop>,
    /// Accepted with a commitment: what the applicant still owes, and by when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<Commitment>,
    /// The one extension of the statutory limit, if granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<Extension>,
    /// What the applicant was asked to supply, while the case waits on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplement: Option<SupplementRequest>,
    /// Open tasks. Completed and cancelled ones are kept apart
    /// (`Engine::closed_tasks`), so the record each transition rewrites stays small.
    pub tasks: Vec<Task>,
    pub tokens: Vec<Token>,
    /// Steps completed so far, in order: what a return may go back to.
    pub visited: Vec<String>,
    pub next_task: u32,
    pub next_token: u32,
    /// The limits of this case when the procedure's `limits` hook set them at acceptance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<CaseLimits>,
    /// The applicant's rating (好差评), once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<crate::rating::Rating>,
    /// What the last completion changed, while its handler may take it back (撤回):
    /// kept only by the commit of that completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub take_back: Option<crate::takeback::TakeBack>,
    /// Events in the history; the next event's sequence number.
    pub history_len: u64,
    /// Bumped on every write; a write against a stale revision is a conflict.
    pub rev: u64,
}

impl Case {
    /// A submitted case of procedure `p`, version `v`, with nothing else: the starting
    /// point of store tests, which need cases without an office.
    #[doc(hidden)]
    pub fn blank(id: u64) -> Case {
        Case {
            id,
            number: String::new(),
            query_code: "ABCDEFGH".into(),
            procedure: "p".into(),
            procedure_name: "P".into(),
            department: "d".into(),
            version: "v".into(),
            bundle: None,
            applicant: Applicant {
                id: "A1".into(),
                name: "A".into(),
                ..Default::default()
            },
            channel: "online".into(),
            status: CaseStatus::Submitted,
            data: Data::new(),
            materials: vec![],
            submitted_at: chrono::Utc::now(),
            accepted_at: None,
            decided_at: None,
            promised_due: None,
            statutory_due: None,
            cards: vec![],
            clock_stop: None,
            clock_stops: vec![],
            supplement: None,
            extension: None,
            commitment: None,
            tasks: vec![],
            tokens: vec![],
            visited: vec![],
            next_task: 0,
            next_token: 0,
            limits: None,
            rating: None,
            take_back: None,
            history_len: 0,
            rev: 0,
        }
    }

    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    pub fn open_tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter().filter(|t| t.is_open())
    }

    /// The steps the case currently is at (what the applicant sees as "where it is").
    pub fn current_steps(&self) -> Vec<String> {
        let mut v: Vec<String> = self.open_tasks().map(|t| t.step_name.clone()).collect();
        v.dedup();
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum StopKind {
    /// Waiting on the applicant (supplement request after acceptance).
    Applicant,
    /// A step the procedure excludes from the limits (hearing, expert review).
    ExcludedStep,
    /// Declared by staff with a reason.
    Suspension,
}

/// A stop of a case's clock: why, who, from when, until when, and the working days lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClockStop {
    pub kind: StopKind,
    pub reason: String,
    pub by: String,
    pub since: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Working days every deadline moved by when the clock resumed.
    #[serde(default)]
    pub days: u32,
}

/// A case's own promised and statutory limits, in working days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CaseLimits {
    pub promised_days: u32,
    pub statutory_days: u32,
}

/// Accept with a commitment (容缺受理): the main materials are complete, minor ones are
/// promised by a date; the case is terminated if the promise is not kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Commitment {
    pub items: Vec<String>,
    /// Close of office on the promised date.
    pub due: DateTime<Utc>,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// An extension of the statutory limit: granted once, with a reason, by the approver group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Extension {
    pub days: u32,
    pub reason: String,
    pub by: String,
    pub at: DateTime<Utc>,
    /// The statutory end before the extension.
    pub previous_due: DateTime<Utc>,
}

/// A request for supplementary materials (补正), listing everything missing at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SupplementRequest {
    pub items: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub by: String,
    pub at: DateTime<Utc>,
    /// Requested at intake (before acceptance): no clock is running.
    pub before_acceptance: bool,
}

/// Which limit a card or timer is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Limit {
    /// A step's own budget.
    Step,
    Promised,
    Statutory,
    /// The date an applicant promised a missing item by (accept with commitment).
    Commitment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum CardKind {
    /// Issued at a warning threshold, before the limit runs out.
    Supervision,
    /// Issued when the limit has passed: the escalation.
    Overdue,
}

/// A supervision card: a record addressed to the holders of a late step and a supervisor
/// group, answered with a reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Card {
    /// Unique within the case and derived from the timer that issued it, so a timer that
    /// fires twice (a crash between the two writes) cannot issue two cards.
    pub id: String,
    pub kind: CardKind,
    pub limit: Limit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// What triggered it: `75%`, `10d` (days before the end) or `breach`.
    pub threshold: String,
    pub due: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    /// Groups holding the late work.
    pub holders: Vec<String>,
    /// Staff named on the late tasks, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignees: Vec<String>,
    /// Group that supervises (or, for an overdue card, that the case escalates to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<CardAnswer>,
}

impl Card {
    /// The groups the card is addressed to: its holders and its supervisor.
    pub fn addressed_to(&self) -> impl Iterator<Item = &str> {
        self.holders
            .iter()
            .chain(&self.supervisor)
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CardAnswer {
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A moment at which the engine must look at a case: a warning threshold or the end of a
/// limit. Kept in a durable index ordered by time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    pub at: DateTime<Utc>,
    pub case: u64,
    pub limit: Limit,
    /// The step instance, for step limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u32>,
    pub threshold: String,
    /// The limit's end when the timer was set; a timer whose limit has moved since (a
    /// stopped clock) or ended (step completed) does nothing.
    pub limit_due: DateTime<Utc>,
}

impl Timer {
    /// The id of the card this timer issues.
    pub fn card_id(&self) -> String {
        match self.token {
            Some(t) => format!("step-{t}-{}", self.threshold),
            None => format!("{:?}-{}", self.limit, self.threshold).to_lowercase(),
        }
    }
}

/// What a transition did besides the action itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Effect {
    StepEntered {
        step: String,
    },
    StepCompleted {
        step: String,
        outcome: String,
    },
    TaskCreated {
        task: String,
        group: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignee: Option<String>,
    },
    TaskCancelled {
        task: String,
    },
    AutoStepRan {
        step: String,
        outcome: String,
    },
    HookRan {
        hook: String,
    },
    BranchJoined {
        step: String,
    },
    Decided {
        status: CaseStatus,
    },
    CardIssued {
        card: String,
    },
    ClockStopped {
        reason: String,
    },
    ClockResumed {
        days: u32,
    },
}

/// One entry of a case's append-only history: who, when, what, why, and what data changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HistoryEvent {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// The action: `submitted`, `accepted`, `completed`, `returned`, `transferred`, ...
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Keys of the case data this transition set, with their new values.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data_changed: Data,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<Effect>,
    /// Materials this transition received (a submission, a supplement), each with the
    /// SHA-256 of an uploaded file: the audit chain, which vouches for the event, vouches
    /// for which files were submitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materials: Vec<MaterialRef>,
    /// When a deputy acted: whose task it was (see `access::Delegation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

impl HistoryEvent {
    /// An event with no task, step, outcome, comment, data or effects; the store assigns
    /// `seq`. Callers fill in what applies with struct update syntax.
    pub fn new(
        at: DateTime<Utc>,
        actor: impl Into<String>,
        action: impl Into<String>,
    ) -> HistoryEvent {
        HistoryEvent {
            seq: 0,
            at,
            actor: actor.into(),
            action: action.into(),
            task: None,
            step: None,
            outcome: None,
            comment: None,
            data_changed: Data::new(),
            effects: Vec::new(),
            materials: Vec::new(),
            on_behalf_of: None,
        }
    }
}
