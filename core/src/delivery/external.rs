//! External tasks: automatic steps that name a `topic` are done by workers, in any
//! language over the API or in the server by a plugin's step handler. A worker fetches
//! and locks tasks of its topics with a lease, then completes them with data or reports a
//! failure. An expired lease makes a task available again; failures retry until the
//! step's `retries` run out, and then the task is an incident an administrator retries.
//!
//! Every lock, completion and failure is a committed transition with its history event.

use chrono::Duration;

use crate::case::{Case, Data, External, Task};
use crate::engine::{Actor, Committed, Engine};
use crate::error::{Error, Result};
use crate::form::{check_data, Filler};
use crate::plugin::Job;
use crate::store::Incident;
use crate::tasks::set_task;

/// Longest lease a worker may ask for.
pub const MAX_LEASE: Duration = Duration::hours(1);

/// A fetched task with its lease.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Locked {
    #[serde(flatten)]
    pub job: Job,
    pub worker: String,
    pub lease_until: chrono::DateTime<chrono::Utc>,
}

/// Who is asking: a staff member (a worker's token), checked against the step's group, or
/// a plugin inside the server.
#[derive(Debug, Clone, Copy)]
enum Caller<'a> {
    Staff(&'a str),
    Plugin,
}

fn caller(actor: &Actor) -> Result<Caller<'_>> {
    match actor {
        Actor::Staff(s) => Ok(Caller::Staff(s)),
        _ => Err(Error::Forbidden(
            "external tasks are fetched with a worker's staff token".into(),
        )),
    }
}

impl Engine {
    /// Fetches up to `max` available tasks of `topics` from the caller's groups and locks
    /// them for `worker` for `lease`.
    pub fn fetch_and_lock(
        &self,
        actor: &Actor,
        worker: &str,
        topics: &[String],
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<Locked>, u64)> {
        self.fetch_inner(caller(actor)?, worker, topics, max, lease)
    }

    /// [`Engine::fetch_and_lock`] for a plugin's step handler, from every group.
    pub fn fetch_for_plugin(
        &self,
        worker: &str,
        topics: &[String],
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<Locked>, u64)> {
        self.fetch_inner(Caller::Plugin, worker, topics, max, lease)
    }

    fn fetch_inner(
        &self,
        who: Caller<'_>,
        worker: &str,
        topics: &[String],
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<Locked>, u64)> {
        check_worker(worker)?;
        if topics.is_empty() {
            return Err(Error::Validation("name at least one topic".into()));
        }
        if lease <= Duration::zero() || lease > MAX_LEASE {
            return Err(Error::Validation(format!(
                "lease must be between 1 ms and {} s",
                MAX_LEASE.num_seconds()
            )));
        }
        let rules = self.rules();
        let mut out = Vec::new();
        let mut ticket = 0;
        'topics: for topic in topics {
            for (case_id, task_id) in self.store().open_tasks_of_topic(topic)? {
                if out.len() >= max {
                    break 'topics;
                }
                let Some(case) = self.store().case(case_id)? else {
                    continue;
                };
                let now = self.now();
                // The index may be ahead of the case (an unfinished commit): trust the case.
                let wanted = case.task(&task_id).filter(|t| {
                    let may = match who {
                        Caller::Staff(s) => rules.is_member(s, &t.group),
                        Caller::Plugin => true,
                    };
                    may && t.external.as_ref().is_some_and(|x| x.available(now))
                });
                let Some(task) = wanted.cloned() else {
                    continue;
                };
                let until = now + lease;
                let w = worker.to_string();
                let res = self.act_inner(
                    &history_actor(who, worker),
                    case,
                    task,
                    "locked",
                    None,
                    |flow, task| {
                        set_task(flow, &task.id, |t| {
                            if let Some(x) = t.external.as_mut() {
                                x.worker = Some(w);
                                x.lease_until = Some(until);
                            }
                        });
                        Ok(None)
                    },
                );
                match res {
                    Ok(c) => {
                        ticket = ticket.max(c.ticket);
                        if let Some(job) = job_of(c.case(), &task_id) {
                            out.push(Locked {
                                job,
                                worker: worker.to_string(),
                                lease_until: until,
                            });
                        }
                    }
                    // Another worker locked it first.
                    Err(Error::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((out, ticket))
    }

    /// The worker holding the lease completes the task; the case moves on.
    pub fn complete_external(
        &self,
        actor: &Actor,
        worker: &str,
        task_id: &str,
        outcome: Option<String>,
        data: Data,
    ) -> Result<Committed> {
        self.complete_external_inner(caller(actor)?, worker, task_id, outcome, data)
    }

    pub fn complete_for_plugin(
        &self,
        worker: &str,
        task_id: &str,
        outcome: Option<String>,
        data: Data,
    ) -> Result<Committed> {
        self.complete_external_inner(Caller::Plugin, worker, task_id, outcome, data)
    }

    fn complete_external_inner(
        &self,
        who: Caller<'_>,
        worker: &str,
        task_id: &str,
        outcome: Option<String>,
        data: Data,
    ) -> Result<Committed> {
        let (case, task) = self.leased(who, worker, task_id)?;
        let outcome = outcome.unwrap_or_else(|| "approve".into());
        let name = history_actor(who, worker).name();
        let o = outcome.clone();
        self.act_inner(
            &history_actor(who, worker),
            case,
            task,
            "completed",
            None,
            move |flow, task| {
                // A worker's data is checked like a clerk's: against the field types.
                let mut merged = flow.case.data.clone();
                merged.extend(data.clone());
                let errs = check_data(flow.proc, &data, &merged, Filler::Staff, false);
                if !errs.is_empty() {
                    return Err(Error::Invalid(errs));
                }
                flow.merge(data);
                flow.complete_task(&task.id, &name, &o, None)?;
                Ok(Some(o.clone()))
            },
        )
    }

    /// The worker holding the lease reports a failure. With retries left the task is
    /// fetchable again (after `retry_in`); without, it becomes an incident.
    pub fn fail_external(
        &self,
        actor: &Actor,
        worker: &str,
        task_id: &str,
        message: &str,
        retries: Option<u32>,
        retry_in: Duration,
    ) -> Result<Committed> {
        self.fail_inner(caller(actor)?, worker, task_id, message, retries, retry_in)
    }

    pub fn fail_for_plugin(
        &self,
        worker: &str,
        task_id: &str,
        message: &str,
        retry_in: Duration,
    ) -> Result<Committed> {
        self.fail_inner(Caller::Plugin, worker, task_id, message, None, retry_in)
    }

    fn fail_inner(
        &self,
        who: Caller<'_>,
        worker: &str,
        task_id: &str,
        message: &str,
        retries: Option<u32>,
        retry_in: Duration,
    ) -> Result<Committed> {
        if message.trim().is_empty() || message.len() > 4000 {
            return Err(Error::Validation(
                "a failure needs a message (at most 4000 bytes)".into(),
            ));
        }
        if retries.is_some_and(|r| r > 100) {
            return Err(Error::Validation("retries must be at most 100".into()));
        }
        if retry_in < Duration::zero() || retry_in > MAX_LEASE {
            return Err(Error::Validation(
                "retry_in_ms must be between 0 and 1 hour".into(),
            ));
        }
        let (case, task) = self.leased(who, worker, task_id)?;
        let left = retries.unwrap_or_else(|| {
            task.external
                .as_ref()
                .map_or(0, |x| x.retries.saturating_sub(1))
        });
        let incident = left == 0;
        let now = self.now();
        let msg = message.to_string();
        let (case_id, procedure) = (case.id, case.procedure.clone());
        let committed = self.act_inner(
            &history_actor(who, worker),
            case,
            task,
            if incident { "incident" } else { "failed" },
            Some(msg.clone()),
            |flow, task| {
                set_task(flow, &task.id, |t| {
                    if let Some(x) = t.external.as_mut() {
                        x.retries = left;
                        x.worker = None;
                        x.lease_until = None;
                        x.error = Some(msg.clone());
                        x.incident = incident;
                        x.retry_at =
                            (!incident && retry_in > Duration::zero()).then(|| now + retry_in);
                    }
                });
                Ok(None)
            },
        )?;
        if incident {
            let rec = Incident {
                id: 0,
                at: now,
                code: "external_task_failed".into(),
                message: message.to_string(),
                actor: worker.to_string(),
                action: "external_task".into(),
                procedure: Some(procedure),
                case: Some(case_id),
                task: Some(task_id.to_string()),
            };
            self.store().record_incident(rec)?;
        }
        Ok(committed)
    }

    /// The administrator gives an incident's task new retries; workers can fetch it again.
    pub fn retry_external(&self, actor: &Actor, task_id: &str, retries: u32) -> Result<Committed> {
        if *actor != Actor::Admin {
            return Err(Error::Forbidden(
                "only the administrator may retry an incident".into(),
            ));
        }
        if retries == 0 || retries > 100 {
            return Err(Error::Validation(
                "retries must be between 1 and 100".into(),
            ));
        }
        let (case, task) = self.external_task(task_id)?;
        if !task.external.as_ref().is_some_and(|x| x.incident) {
            return Err(Error::InvalidTransition(format!(
                "task {task_id} is not an incident"
            )));
        }
        self.act_inner(actor, case, task, "retried", None, |flow, task| {
            set_task(flow, &task.id, |t| {
                if let Some(x) = t.external.as_mut() {
                    x.incident = false;
                    x.retries = retries;
                    x.retry_at = None;
                }
            });
            Ok(None)
        })
    }

    /// Open external tasks that are incidents, for the administrator: those of every
    /// topic the live procedures name.
    pub fn external_incidents(&self) -> Result<Vec<(Case, Task)>> {
        let rules = self.rules();
        let mut topics: Vec<&str> = rules
            .procedures
            .values()
            .flat_map(|p| p.steps.iter().filter_map(|s| s.topic.as_deref()))
            .collect();
        topics.sort_unstable();
        topics.dedup();
        let mut out = Vec::new();
        for topic in topics {
            for (case_id, task_id) in self.store().open_tasks_of_topic(topic)? {
                let Some(case) = self.store().case(case_id)? else {
                    continue;
                };
                if let Some(t) = case
                    .task(&task_id)
                    .filter(|t| t.external.as_ref().is_some_and(|x| x.incident))
                {
                    let t = t.clone();
                    out.push((case, t));
                }
            }
        }
        Ok(out)
    }

    fn external_task(&self, task_id: &str) -> Result<(Case, Task)> {
        let missing = || Error::NotFound(format!("external task {task_id} not found"));
        let case_id: u64 = task_id
            .split_once('-')
            .and_then(|(c, _)| c.parse().ok())
            .ok_or_else(missing)?;
        let case = self.store().case(case_id)?.ok_or_else(missing)?;
        let task = case.task(task_id).filter(|t| t.external.is_some()).cloned();
        match task {
            Some(t) => Ok((case, t)),
            None => match self.store().closed_task(case_id, task_id)? {
                Some(t) if t.external.is_some() => Err(Error::Conflict(
                    format!("external task {task_id} is already {:?}", t.state).to_lowercase(),
                )),
                _ => Err(missing()),
            },
        }
    }

    /// The task, if `worker` holds an unexpired lease on it and may work its group.
    fn leased(&self, who: Caller<'_>, worker: &str, task_id: &str) -> Result<(Case, Task)> {
        check_worker(worker)?;
        let (case, task) = self.external_task(task_id)?;
        if let Caller::Staff(s) = who {
            if !self.rules().is_member(s, &task.group) {
                return Err(Error::Forbidden(format!(
                    "only workers of group '{}' may work this task",
                    task.group
                )));
            }
        }
        let x: &External = task
            .external
            .as_ref()
            .ok_or_else(|| Error::NotFound(format!("external task {task_id} not found")))?;
        let now = self.now();
        let held = x.worker.as_deref() == Some(worker) && x.lease_until.is_some_and(|u| u > now);
        if !held {
            return Err(Error::Conflict(format!(
                "worker '{worker}' holds no lease on task {task_id} (expired or never locked); fetch it again"
            )));
        }
        Ok((case, task))
    }
}

fn check_worker(worker: &str) -> Result<()> {
    let ok = !worker.is_empty()
        && worker.len() <= 64
        && worker
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Validation(
            "worker must be 1-64 letters, digits, '-', '_', '.' or ':'".into(),
        ))
    }
}

fn history_actor(who: Caller<'_>, worker: &str) -> Actor {
    match who {
        Caller::Staff(s) => Actor::Staff(format!("{s}/{worker}")),
        Caller::Plugin => Actor::Staff(format!("plugin:{worker}")),
    }
}

fn job_of(case: &Case, task_id: &str) -> Option<Job> {
    let t = case.task(task_id)?;
    let x = t.external.as_ref()?;
    Some(Job {
        task: t.id.clone(),
        topic: x.topic.clone(),
        case: case.id,
        case_number: case.number.clone(),
        procedure: case.procedure.clone(),
        step: t.step.clone(),
        data: case.data.clone(),
        applicant: case.applicant.clone(),
        retries: x.retries,
    })
}
