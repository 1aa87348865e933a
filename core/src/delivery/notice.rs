//! Who is told what, and when: the domain [`Event`]s a transition emits, the notice rules a
//! procedure declares ([`NoticeRule`]), rendering a rule's templates into [`Notice`]s, and
//! the stored notice with its delivery status.
//!
//! Notices are computed with the transition and written with it (the outbox), so a
//! transition that happened is always told and one that did not is never told. Delivery is
//! the server's job (`src/outbox.rs`); the in-app inbox needs none: its notices are
//! delivered when they are written.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::case::{Card, CardKind, Case, CaseStatus, Effect, HistoryEvent};
use crate::office::RuleSet;
use crate::procedure::Procedure;

/// The built-in channel: notices shown to staff in the API (`GET /api/inbox`).
pub const INBOX: &str = "inbox";
/// The channel of notices that carry an event to a plugin's subscriber.
pub const SUBSCRIBER: &str = "subscriber";

/// Every event kind the engine emits.
pub const EVENT_KINDS: &[&str] = &[
    "case.received",
    "case.accepted",
    "case.not_accepted",
    "case.referred",
    "case.supplement_requested",
    "case.supplied",
    "case.decided",
    "case.withdrawn",
    "case.terminated",
    "case.rated",
    "case.follow_up_answered",
    "task.created",
    "task.claimed",
    "task.completed",
    "limit.warning",
    "limit.overdue",
];

/// Something that happened to a case, as plugins and notice rules see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Event {
    /// One of [`EVENT_KINDS`].
    pub kind: String,
    pub case: u64,
    pub case_number: String,
    pub procedure: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// The case status after the transition.
    pub status: CaseStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Groups the event concerns: the new task's group, a card's holders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Staff the event concerns: a task's assignee, a card's assignees.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub staff: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<Card>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The events of one committed transition, in a stable order.
pub fn events(before: Option<&Case>, after: &Case, h: &HistoryEvent) -> Vec<Event> {
    let base = |kind: &str| Event {
        kind: kind.to_string(),
        case: after.id,
        case_number: after.number.clone(),
        procedure: after.procedure.clone(),
        at: h.at,
        actor: h.actor.clone(),
        status: after.status,
        task: None,
        step: None,
        groups: Vec::new(),
        staff: Vec::new(),
        card: None,
        outcome: None,
        comment: h.comment.clone(),
    };
    let mut out = Vec::new();
    let old = before.map(|b| b.status);
    if before.is_none() {
        out.push(base("case.received"));
    }
    if h.action == "claimed" {
        out.push(Event {
            task: h.task.clone(),
            step: h.step.clone(),
            staff: vec![h.actor.clone()],
            ..base("task.claimed")
        });
    }
    if matches!(h.action.as_str(), "completed" | "returned") {
        out.push(Event {
            task: h.task.clone(),
            step: h.step.clone(),
            outcome: h.outcome.clone(),
            ..base("task.completed")
        });
    }
    let asked = after.supplement.is_some()
        && before.is_some_and(|b| b.supplement.is_none() || b.supplement != after.supplement);
    if asked {
        out.push(base("case.supplement_requested"));
    }
    if before.is_some_and(|b| b.supplement.is_some()) && after.supplement.is_none() {
        out.push(base("case.supplied"));
    }
    fn rating(c: Option<&Case>) -> Option<&crate::rating::Rating> {
        c.and_then(|c| c.rating.as_ref())
    }
    if rating(before).is_none() {
        if let Some(r) = rating(Some(after)) {
            out.push(Event {
                outcome: Some(r.score.to_string()),
                ..base("case.rated")
            });
        }
    }
    if rating(before).is_some_and(|r| r.reply.is_none()) {
        if let Some(r) = rating(Some(after)).filter(|r| r.reply.is_some()) {
            out.push(Event {
                outcome: r.outcome.clone(),
                comment: r.reply.clone(),
                ..base("case.follow_up_answered")
            });
        }
    }
    if old != Some(after.status) {
        let kind = match after.status {
            CaseStatus::InProgress if old == Some(CaseStatus::Submitted) => Some("case.accepted"),
            CaseStatus::NotAccepted => Some("case.not_accepted"),
            CaseStatus::Referred => Some("case.referred"),
            CaseStatus::Approved | CaseStatus::Rejected => Some("case.decided"),
            CaseStatus::Withdrawn => Some("case.withdrawn"),
            CaseStatus::Terminated => Some("case.terminated"),
            _ => None,
        };
        if let Some(k) = kind {
            out.push(Event {
                outcome: h.outcome.clone(),
                ..base(k)
            });
        }
    }
    for e in &h.effects {
        match e {
            Effect::TaskCreated {
                task,
                group,
                assignee,
            } => {
                let step = after.task(task).map(|t| t.step.clone());
                out.push(Event {
                    task: Some(task.clone()),
                    step,
                    groups: vec![group.clone()],
                    staff: assignee.iter().cloned().collect(),
                    ..base("task.created")
                });
            }
            Effect::CardIssued { card } => {
                let Some(c) = after.cards.iter().find(|c| c.id == *card) else {
                    continue;
                };
                let kind = match c.kind {
                    CardKind::Supervision => "limit.warning",
                    CardKind::Overdue => "limit.overdue",
                };
                out.push(Event {
                    step: c.step.clone(),
                    groups: c.holders.clone(),
                    staff: c.assignees.clone(),
                    card: Some(c.clone()),
                    ..base(kind)
                });
            }
            _ => {}
        }
    }
    out
}

/// Text in one language, or per language (`#{ zh: "...", en: "..." }`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum Texts {
    One(String),
    ByLanguage(BTreeMap<String, String>),
}

impl Texts {
    fn pick(&self, language: &str) -> (&str, Option<String>) {
        match self {
            Texts::One(s) => (s, None),
            Texts::ByLanguage(m) => match m.get(language) {
                Some(s) => (s, Some(language.to_string())),
                None => m
                    .iter()
                    .next()
                    .map(|(l, s)| (s.as_str(), Some(l.clone())))
                    .unwrap_or(("", None)),
            },
        }
    }

    fn all(&self) -> Vec<(&str, &str)> {
        match self {
            Texts::One(s) => vec![("", s.as_str())],
            Texts::ByLanguage(m) => m.iter().map(|(l, s)| (l.as_str(), s.as_str())).collect(),
        }
    }
}

/// A procedure's rule: on an event, tell someone through some channels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NoticeRule {
    /// The event kind, one of [`EVENT_KINDS`].
    pub on: String,
    /// `applicant`, `holders` (the groups and staff the event concerns), `supervisor` (a
    /// card's supervisor group), `group:<id>` or `staff:<id>`.
    pub to: String,
    /// Channels to use. Default: `email` and `sms` for the applicant (those they gave an
    /// address for), `inbox` for staff.
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub subject: Option<Texts>,
    pub body: Texts,
}

impl NoticeRule {
    /// Load-time checks: known event, recipient and templates that compile.
    pub fn validate(&self, rules: &RuleSet, errs: &mut Vec<String>) {
        if !EVENT_KINDS.contains(&self.on.as_str()) {
            errs.push(format!(
                "notice on '{}': unknown event (one of {})",
                self.on,
                EVENT_KINDS.join(", ")
            ));
        }
        match self.to.split_once(':') {
            Some(("group", g)) if !rules.groups.contains_key(g) => errs.push(format!(
                "notice to '{}': group '{g}' does not exist",
                self.to
            )),
            Some(("staff", s)) if !rules.staff.contains_key(s) => errs.push(format!(
                "notice to '{}': staff '{s}' does not exist",
                self.to
            )),
            Some(("group" | "staff", _)) => {}
            None if matches!(self.to.as_str(), "applicant" | "holders" | "supervisor") => {}
            _ => errs.push(format!(
                "notice to '{}': expected applicant, holders, supervisor, group:<id> or staff:<id>",
                self.to
            )),
        }
    }
}

/// A procedure's notice templates, compiled once when its version loads: rendering runs
/// inside the commit of every transition that sends a notice.
#[derive(Debug, Default)]
pub struct Templates(minijinja::Environment<'static>);

fn template_name(rule: usize, part: &str, lang: &str) -> String {
    format!("{rule}/{part}/{lang}")
}

impl Templates {
    /// Compiles every rule's subject and body in every language; each template that does
    /// not compile is a load error naming the rule.
    pub fn compile(rules: &[NoticeRule]) -> (Templates, Vec<String>) {
        let mut env = template_env();
        let mut errs = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            for (part, texts) in [("subject", r.subject.as_ref()), ("body", Some(&r.body))] {
                for (lang, src) in texts.map(Texts::all).unwrap_or_default() {
                    let name = template_name(i, part, lang);
                    if let Err(e) = env.add_template_owned(name, src.to_string()) {
                        let lang = if lang.is_empty() {
                            String::new()
                        } else {
                            format!(" ({lang})")
                        };
                        errs.push(format!(
                            "notice on '{}' to '{}': {part}{lang}: template: {e}",
                            r.on, r.to
                        ));
                    }
                }
            }
        }
        (Templates(env), errs)
    }

    /// Renders part `part` of rule `rule` in `lang` (or the language it falls back to,
    /// returned with the text).
    fn render(
        &self,
        rule: usize,
        part: &str,
        texts: &Texts,
        lang: &str,
        ctx: &Value,
    ) -> Result<(String, Option<String>), String> {
        let (_, used) = texts.pick(lang);
        let name = template_name(rule, part, used.as_deref().unwrap_or(""));
        self.0
            .get_template(&name)
            .and_then(|t| t.render(ctx))
            .map(|text| (text, used))
            .map_err(|e| e.to_string())
    }
}

fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // Plain text: notices are e-mails and SMS, not HTML pages.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_fuel(Some(100_000));
    env
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum NoticeStatus {
    /// Waiting for (another) delivery attempt.
    Queued,
    /// Handed over to the next hop (an SMTP relay).
    Sent,
    /// Confirmed by the receiver (a webhook answered, written to an inbox).
    Delivered,
    /// Given up, with the reason.
    Failed,
}

/// One message to one recipient through one channel, kept in the outbox with its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Notice {
    /// `<case id>-<history seq>-<n>`: stable across retries, so receivers deduplicate by it.
    pub id: String,
    pub case: u64,
    pub case_number: String,
    /// The history event that caused it.
    pub seq: u64,
    pub n: u32,
    pub event: String,
    pub channel: String,
    /// Who: `applicant`, `staff:<id>`, or `subscriber:<name>`.
    pub recipient: String,
    /// Where: an e-mail address, a phone number, a staff id.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// The event itself, for subscribers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Event>,
    pub status: NoticeStatus,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Inbox notices: when the staff member marked it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
}

impl Notice {
    pub fn is_pending(&self) -> bool {
        self.status == NoticeStatus::Queued
    }
}

/// Builds the notices of a transition's events: the procedure's rules plus one per
/// subscriber that wants the event. `seq` is set by the store.
pub fn notices_for(
    rules: &RuleSet,
    proc: &Procedure,
    case: &Case,
    events: &[Event],
    plugins: &crate::plugin::Registrar,
    now: DateTime<Utc>,
) -> Vec<Notice> {
    let mut out: Vec<Notice> = Vec::new();
    let blank = |event: &Event, channel: &str, recipient: String, address: String| Notice {
        id: String::new(),
        case: case.id,
        case_number: case.number.clone(),
        seq: 0,
        n: 0,
        event: event.kind.clone(),
        channel: channel.to_string(),
        recipient,
        address,
        language: None,
        subject: String::new(),
        body: String::new(),
        payload: None,
        status: NoticeStatus::Queued,
        attempts: 0,
        created_at: now,
        next_attempt: Some(now),
        done_at: None,
        error: None,
        read_at: None,
    };
    for ev in events {
        for s in plugins.subscribers() {
            let kinds = s.events();
            if kinds.is_empty() || kinds.contains(&ev.kind) {
                let name = s.name().to_string();
                out.push(Notice {
                    payload: Some(ev.clone()),
                    ..blank(ev, SUBSCRIBER, format!("subscriber:{name}"), name)
                });
            }
        }
        for (i, rule) in proc
            .notices
            .iter()
            .enumerate()
            .filter(|(_, r)| r.on == ev.kind)
        {
            // Rendered once per language, whatever the number of recipients.
            let mut rendered: HashMap<String, Result<Rendered, String>> = HashMap::new();
            for (recipient, channel, address, language) in recipients(rules, case, ev, rule) {
                // The rendered text is the message; the event stays with subscribers
                // only, which keeps the outbox record (written with every transition) small.
                let mut n = blank(ev, &channel, recipient, address);
                let lang = language
                    .or_else(|| rules.office.language.clone())
                    .unwrap_or_else(|| "zh".into());
                let text = rendered.entry(lang.clone()).or_insert_with(|| {
                    let ctx = context(rules, proc, case, ev, &lang);
                    let t = &proc.templates;
                    let subject = match &rule.subject {
                        Some(s) => t.render(i, "subject", s, &lang, &ctx)?.0,
                        None => String::new(),
                    };
                    let (body, used) = t.render(i, "body", &rule.body, &lang, &ctx)?;
                    Ok(Rendered {
                        subject,
                        body,
                        language: used,
                    })
                });
                match text {
                    Ok(r) => {
                        n.subject = r.subject.clone();
                        n.body = r.body.clone();
                        n.language = r.language.clone();
                    }
                    Err(e) => {
                        // A template that fails at run time must not fail the transition:
                        // the notice is kept as failed, with the reason.
                        n.status = NoticeStatus::Failed;
                        n.error = Some(format!("template: {e}"));
                    }
                }
                if n.status == NoticeStatus::Queued {
                    if n.channel == INBOX {
                        n.status = NoticeStatus::Delivered;
                    } else if !plugins.channels().contains_key(&n.channel) {
                        // Kept, failed, so the administrator sees what this server cannot
                        // send; not queued, since no retry can succeed.
                        n.status = NoticeStatus::Failed;
                        n.error = Some(format!(
                            "channel '{}' is not configured on this server",
                            n.channel
                        ));
                    }
                }
                if n.status != NoticeStatus::Queued {
                    n.next_attempt = None;
                    n.done_at = Some(now);
                }
                out.push(n);
            }
        }
    }
    for (i, n) in out.iter_mut().enumerate() {
        n.n = i as u32;
    }
    out
}

struct Rendered {
    subject: String,
    body: String,
    language: Option<String>,
}

/// `(recipient, channel, address, language)` for each message a rule sends on an event.
fn recipients(
    rules: &RuleSet,
    case: &Case,
    ev: &Event,
    rule: &NoticeRule,
) -> Vec<(String, String, String, Option<String>)> {
    let mut out = Vec::new();
    if rule.to == "applicant" {
        let a = &case.applicant;
        let channels = if rule.channels.is_empty() {
            vec!["email".to_string(), "sms".to_string()]
        } else {
            rule.channels.clone()
        };
        for ch in channels {
            let address = match ch.as_str() {
                "email" => a.email.clone(),
                "sms" => a.phone.clone(),
                // A webhook to an applicant's messaging account uses the phone number.
                _ => a.phone.clone().or(a.email.clone()),
            };
            if let Some(address) = address.filter(|s| !s.trim().is_empty()) {
                out.push(("applicant".into(), ch, address, a.language.clone()));
            }
        }
        return out;
    }
    let mut staff: Vec<String> = Vec::new();
    let add_group = |g: &str, staff: &mut Vec<String>| {
        if let Some(g) = rules.groups.get(g) {
            staff.extend(g.members.iter().cloned());
        }
    };
    match rule.to.split_once(':') {
        Some(("group", g)) => add_group(g, &mut staff),
        Some(("staff", s)) => staff.push(s.to_string()),
        _ if rule.to == "supervisor" => {
            if let Some(g) = ev.card.as_ref().and_then(|c| c.supervisor.as_ref()) {
                add_group(g, &mut staff);
            }
        }
        _ => {
            // holders: the named staff if the event names any, else the groups' members.
            if ev.staff.is_empty() {
                for g in &ev.groups {
                    add_group(g, &mut staff);
                }
            } else {
                staff.extend(ev.staff.iter().cloned());
            }
        }
    }
    staff.sort();
    staff.dedup();
    let channels = if rule.channels.is_empty() {
        vec![INBOX.to_string()]
    } else {
        rule.channels.clone()
    };
    for s in staff {
        let person = rules.staff.get(&s);
        for ch in &channels {
            let address = match ch.as_str() {
                INBOX => Some(s.clone()),
                "email" => person.and_then(|p| p.email.clone()),
                _ => person.and_then(|p| p.phone.clone()),
            };
            if let Some(address) = address {
                out.push((format!("staff:{s}"), ch.clone(), address, None));
            }
        }
    }
    out
}

/// What a template sees. Documented in docs/notifications.md; keep the two in step.
fn context(rules: &RuleSet, proc: &Procedure, case: &Case, ev: &Event, lang: &str) -> Value {
    let cal = &rules.calendar;
    let date = |t: Option<DateTime<Utc>>| {
        t.map(|t| cal.local_date(t).format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    let step_name = ev
        .step
        .as_ref()
        .and_then(|s| proc.step(s).map(|s| s.name.clone()).or(Some(s.clone())))
        .unwrap_or_else(|| case.current_steps().join(", "));
    let bring: Vec<String> = if let Some(s) = &case.supplement {
        s.items.clone()
    } else if let Some(c) = &case.commitment {
        c.items.clone()
    } else {
        Vec::new()
    };
    json!({
        "event": ev.kind,
        "actor": ev.actor,
        "comment": ev.comment,
        "outcome": ev.outcome,
        "language": lang,
        "office": rules.office.name,
        "case": {
            "number": case.number,
            "query_code": case.query_code,
            "procedure": case.procedure,
            "procedure_name": case.procedure_name,
            "department": case.department,
            "status": case.status,
            "applicant": case.applicant.name,
            "data": case.data,
            "submitted": date(Some(case.submitted_at)),
            "promised_due": date(case.promised_due),
            "statutory_due": date(case.statutory_due),
        },
        "step": step_name,
        // The tracking page with the number and code filled in: one click to follow the
        // case, answer a request or rate the decision.
        "track_link": rules.office.website.as_deref().map(|w| format!(
            "{}/track?number={}&code={}&lang={lang}",
            w.trim_end_matches('/'),
            case.number,
            case.query_code
        )),
        "deadline": date(ev.card.as_ref().map(|c| c.due).or(case.promised_due)),
        "bring": bring,
        "card": ev.card,
        "task": ev.task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles `body` as the only rule of a procedure and renders it.
    fn render(body: &Texts, lang: &str, ctx: &Value) -> Result<(String, Option<String>), String> {
        let rule = NoticeRule {
            on: "case.received".into(),
            to: "applicant".into(),
            channels: Vec::new(),
            subject: None,
            body: body.clone(),
        };
        let (t, errs) = Templates::compile(std::slice::from_ref(&rule));
        assert!(errs.is_empty(), "{errs:?}");
        t.render(0, "body", body, lang, ctx)
    }

    #[test]
    fn a_template_in_the_applicants_language_wins_and_falls_back_to_another() {
        let t = Texts::ByLanguage(
            [
                ("en".to_string(), "Case {{ n }}".to_string()),
                ("zh".to_string(), "办件 {{ n }}".to_string()),
            ]
            .into(),
        );
        let ctx = json!({"n": "X-1"});
        assert_eq!(render(&t, "zh", &ctx).unwrap().0, "办件 X-1");
        assert_eq!(render(&t, "en", &ctx).unwrap().0, "Case X-1");
        let (text, used) = render(&t, "fr", &ctx).unwrap();
        assert_eq!((text.as_str(), used.as_deref()), ("Case X-1", Some("en")));
    }

    #[test]
    fn a_template_runs_out_of_fuel_instead_of_looping() {
        let t = Texts::One(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
                .into(),
        );
        assert!(render(&t, "zh", &json!({})).is_err());
    }

    #[test]
    fn a_template_that_does_not_compile_is_a_load_error_naming_the_rule() {
        let rule = NoticeRule {
            on: "case.decided".into(),
            to: "applicant".into(),
            channels: Vec::new(),
            subject: None,
            body: Texts::ByLanguage([("en".to_string(), "{% if %}".to_string())].into()),
        };
        let (_, errs) = Templates::compile(&[rule]);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("notice on 'case.decided' to 'applicant': body (en): template:"),
            "{}",
            errs[0]
        );
    }
}
