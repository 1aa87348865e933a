//! A scenario's office (`World`): the engine on a temporary store with a manual clock,
//! the cases the scenario made, and the actions and checks the scenario's functions call.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rhai::{Array, Dynamic, Map};

use crate::case::{Applicant, Case, Data, MaterialRef, Task};
use crate::clock::{Clock, ManualClock};
use crate::engine::{Committed, Submission};
use crate::plugin::Registrar;
use crate::store::SledStore;
use crate::{Actor, Engine};

/// Where a scenario's clock starts unless it says otherwise: the opening of the first
/// working day on or after this date.
const DEFAULT_START: (i32, u32, u32) = (2026, 3, 2);

/// The worker name under which scenarios complete external tasks.
const WORKER: &str = "scenario";

/// A scenario's office: the engine on a temporary store, its clock, the cases it made.
pub(super) struct World {
    pub(super) engine: Engine,
    pub(super) clock: Arc<ManualClock>,
    /// Case number → case id, for the cases this scenario submitted.
    pub(super) cases: HashMap<String, u64>,
    /// Case number → the task a scenario completed last on it, and by whom.
    pub(super) completed: HashMap<String, (String, String)>,
    _dir: tempfile::TempDir,
}

pub(super) type Fail = String;

impl World {
    pub(super) fn open(scripts: &Path, plugins: Arc<Registrar>) -> Result<World, Fail> {
        let dir =
            tempfile::tempdir().map_err(|e| format!("cannot make a temporary folder: {e}"))?;
        let store = SledStore::open(&dir.path().join("store"), 16 << 20)
            .map_err(|e| format!("cannot open a temporary store: {e}"))?;
        let (y, m, d) = DEFAULT_START;
        let first = NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        let clock = Arc::new(ManualClock::new(first.and_time(NaiveTime::MIN).and_utc()));
        let engine = Engine::open_with(Arc::new(store), scripts, clock.clone(), plugins)
            .map_err(|e| format!("cannot open the office: {e}"))?;
        let rules = engine.rules();
        clock.set(
            rules
                .calendar
                .opening_of(rules.calendar.add_working_days(first, 0)),
        );
        Ok(World {
            engine,
            clock,
            cases: HashMap::new(),
            completed: HashMap::new(),
            _dir: dir,
        })
    }

    pub(super) fn case(&self, number: &str) -> Result<Case, Fail> {
        let id = self
            .cases
            .get(number)
            .ok_or_else(|| format!("no case {number} in this scenario"))?;
        self.engine.case(*id).map_err(|e| e.to_string())
    }

    pub(super) fn keep(&mut self, c: &Committed) {
        for case in &c.cases {
            self.cases.insert(case.number.clone(), case.id);
        }
    }

    /// The open task of `step` (the first, for a step with several).
    pub(super) fn task(&self, case: &Case, step: &str) -> Result<Task, Fail> {
        self.task_for(case, step, None)
    }

    /// The open task of `step` that `by` may take (named for him, or for no one).
    pub(super) fn task_for(&self, case: &Case, step: &str, by: Option<&str>) -> Result<Task, Fail> {
        let mine = |t: &&Task| by.is_none_or(|b| t.assignee.as_deref().is_none_or(|a| a == b));
        case.open_tasks()
            .filter(|t| t.step == step)
            .find(mine)
            .or_else(|| case.open_tasks().find(|t| t.step == step))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "case {} has no open task at step '{step}'; open steps: {}",
                    case.number,
                    open_steps(case).join(", ")
                )
            })
    }

    /// Who acts on a task unless the scenario names someone: its assignee, the member who
    /// claimed it, else the first member of its group.
    pub(super) fn handler(&self, task: &Task) -> Result<String, Fail> {
        if let Some(s) = task.assignee.clone().or_else(|| task.claimed_by.clone()) {
            return Ok(s);
        }
        let rules = self.engine.rules();
        rules
            .groups
            .get(&task.group)
            .and_then(|g| g.members.first().cloned())
            .ok_or_else(|| {
                format!(
                    "group '{}' of step '{}' has no member",
                    task.group, task.step
                )
            })
    }

    /// A staff action on the open task of `step`, by its handler: refused as `what`.
    pub(super) fn on_task(
        &mut self,
        number: &str,
        step: &str,
        what: &str,
        action: impl FnOnce(&Engine, &Actor, &str) -> crate::Result<Committed>,
    ) -> Result<(), Fail> {
        let case = self.case(number)?;
        let task = self.task(&case, step)?;
        let by = Actor::Staff(self.handler(&task)?);
        let done = action(&self.engine, &by, &task.id).map_err(|e| refused(what, e))?;
        self.keep(&done);
        Ok(())
    }

    /// An action of the applicant (or on the case as a whole) on case `number`.
    pub(super) fn on_case(
        &mut self,
        number: &str,
        what: &str,
        action: impl FnOnce(&Engine, &Case) -> crate::Result<Committed>,
    ) -> Result<(), Fail> {
        let case = self.case(number)?;
        let done = action(&self.engine, &case).map_err(|e| refused(what, e))?;
        self.keep(&done);
        Ok(())
    }

    /// Moves the clock to `target`, firing each timer when it falls due, in order.
    pub(super) fn advance_to(&self, target: DateTime<Utc>) -> Result<(), Fail> {
        let now = self.clock.now();
        // Before the first case, a scenario may start at any date.
        if target < now && self.cases.is_empty() {
            self.clock.set(target);
            return Ok(());
        }
        if target < now {
            return Err(format!(
                "the clock only moves forward (it is {})",
                self.engine.rules().calendar.local_time_text(now)
            ));
        }
        for _ in 0..100_000 {
            match self.engine.next_timer().map_err(|e| e.to_string())? {
                Some(t) if t <= target => {
                    if t > self.clock.now() {
                        self.clock.set(t);
                    }
                    let fired = self
                        .engine
                        .fire_due_timers(10_000)
                        .map_err(|e| e.to_string())?;
                    if fired.groups == 0 {
                        break;
                    }
                }
                _ => break,
            }
        }
        self.clock.set(target);
        Ok(())
    }
}

pub(super) fn open_steps(case: &Case) -> Vec<String> {
    let mut v: Vec<String> = case.open_tasks().map(|t| t.step.clone()).collect();
    v.sort();
    v.dedup();
    if v.is_empty() {
        v.push("none".into());
    }
    v
}

pub(super) fn refused(what: &str, e: crate::error::Error) -> Fail {
    format!("{what} refused ({}): {e}", e.code())
}

pub(super) fn to_data(map: Map) -> Result<Data, Fail> {
    rhai::serde::from_dynamic(&Dynamic::from_map(map)).map_err(|e| format!("data: {e}"))
}

pub(super) fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The arguments of a task action: `outcome`, `data`, `by`, `comment`.
#[derive(Default)]
pub(super) struct Act {
    pub(super) outcome: Option<String>,
    pub(super) data: Data,
    pub(super) by: Option<String>,
    pub(super) comment: Option<String>,
}

impl Act {
    pub(super) fn from_map(m: Map) -> Result<Act, Fail> {
        let mut act = Act::default();
        for (k, v) in m {
            match k.as_str() {
                "outcome" => act.outcome = Some(v.to_string()),
                "by" => act.by = Some(v.to_string()),
                "comment" => act.comment = Some(v.to_string()),
                "data" => {
                    act.data = to_data(v.try_cast::<Map>().ok_or("data must be a map")?)?;
                }
                other => {
                    return Err(format!(
                        "unknown option '{other}' (outcome, data, by, comment)"
                    ))
                }
            }
        }
        Ok(act)
    }
}

pub(super) fn parse_local(text: &str) -> Result<NaiveDateTime, Fail> {
    let t = text.trim();
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M"))
        .map_err(|_| format!("'{text}' is not a local time like \"2026-03-02 09:00\""))
}

/// A material named by its id, as a file of its first accepted format.
pub(super) fn material(proc: &crate::procedure::Procedure, id: &str) -> MaterialRef {
    let format = proc
        .materials
        .iter()
        .find(|m| m.id == id)
        .and_then(|m| m.formats.first().cloned())
        .unwrap_or_else(|| "pdf".into());
    MaterialRef::named(id, format!("{id}.{format}"))
}

pub(super) fn submit(
    w: &mut World,
    procedure: &str,
    data: Map,
    options: Map,
) -> Result<String, Fail> {
    let rules = w.engine.rules();
    let proc = rules
        .procedures
        .get(procedure)
        .ok_or_else(|| format!("no procedure '{procedure}'"))?
        .clone();
    let mut applicant = Applicant {
        id: "110101199003070011".into(),
        name: "Test Applicant".into(),
        ..Default::default()
    };
    let mut materials: Option<Vec<MaterialRef>> = None;
    let mut actor = Actor::Public;
    for (k, v) in options {
        match k.as_str() {
            "applicant" => {
                applicant = rhai::serde::from_dynamic(&v).map_err(|e| format!("applicant: {e}"))?
            }
            "materials" => {
                let ids = v
                    .try_cast::<Array>()
                    .ok_or("materials must be a list of ids")?;
                materials = Some(
                    ids.into_iter()
                        .map(|id| material(&proc, &id.to_string()))
                        .collect(),
                );
            }
            "by" => actor = Actor::Staff(v.to_string()),
            other => {
                return Err(format!(
                    "unknown option '{other}' (applicant, materials, by)"
                ))
            }
        }
    }
    // Unless the scenario lists them, every required material is handed in.
    let materials = materials.unwrap_or_else(|| {
        proc.materials
            .iter()
            .filter(|m| m.required)
            .map(|m| material(&proc, &m.id))
            .collect()
    });
    let sub = Submission {
        procedure: procedure.to_string(),
        applicant,
        data: to_data(data)?,
        materials,
    };
    let c = w
        .engine
        .submit(&actor, sub)
        .map_err(|e| refused("submission", e))?;
    w.keep(&c);
    Ok(c.case().number.clone())
}

pub(super) fn complete(w: &mut World, number: &str, step: &str, act: Act) -> Result<(), Fail> {
    let case = w.case(number)?;
    let task = w.task_for(&case, step, act.by.as_deref())?;
    if task.external.is_some() {
        return Err(format!(
            "step '{step}' is an external task: complete it with external()"
        ));
    }
    let by = match act.by {
        Some(b) => b,
        None => w.handler(&task)?,
    };
    let outcome = match act.outcome {
        Some(o) => o,
        None => {
            let proc = w.engine.procedure_of(&case).map_err(|e| e.to_string())?;
            let outcomes = proc
                .step(step)
                .map(|s| proc.outcomes_of(s))
                .unwrap_or_else(|| vec!["accept".to_string()]);
            outcomes
                .first()
                .cloned()
                .ok_or_else(|| format!("step '{step}' has no outcome"))?
        }
    };
    let c = w
        .engine
        .complete(
            &Actor::Staff(by.clone()),
            &task.id,
            &outcome,
            act.comment,
            act.data,
        )
        .map_err(|e| refused(&format!("completing '{step}'"), e))?;
    w.keep(&c);
    w.completed
        .insert(number.to_string(), (task.id.clone(), by));
    Ok(())
}

/// A bundle (一件事): the shared fields once, and per procedure its own data; every
/// required material of each handed in. The numbers of its cases, in the bundle's order.
pub(super) fn submit_bundle(
    w: &mut World,
    bundle: &str,
    shared: Map,
    items: Map,
) -> Result<Vec<String>, Fail> {
    let rules = w.engine.rules();
    let mut list = Vec::new();
    for (procedure, data) in items {
        let proc = rules
            .procedures
            .get(procedure.as_str())
            .ok_or_else(|| format!("no procedure '{procedure}'"))?;
        list.push(crate::engine::BundleItem {
            procedure: procedure.to_string(),
            data: to_data(
                data.try_cast::<Map>()
                    .ok_or("each item's data must be a map")?,
            )?,
            materials: proc
                .materials
                .iter()
                .filter(|m| m.required)
                .map(|m| material(proc, &m.id))
                .collect(),
        });
    }
    // In the bundle's own order, whatever the order of the map.
    if let Some(b) = rules.bundles.get(bundle) {
        list.sort_by_key(|it| b.procedures.iter().position(|p| *p == it.procedure));
    }
    let applicant = Applicant {
        id: "91330100MA2B3C4D5E".into(),
        name: "Test Company".into(),
        ..Default::default()
    };
    let done = w
        .engine
        .submit_bundle(&Actor::Public, bundle, applicant, to_data(shared)?, list)
        .map_err(|e| refused("the bundle", e))?;
    w.keep(&done);
    Ok(done.cases.iter().map(|c| c.number.clone()).collect())
}

/// 撤回 of the task the scenario completed last on the case, by its handler or `by`.
pub(super) fn take_back(w: &mut World, number: &str, by: Option<String>) -> Result<(), Fail> {
    let (task, handler) = w
        .completed
        .get(number)
        .cloned()
        .ok_or_else(|| format!("nothing was completed on case {number} in this scenario"))?;
    let done = w
        .engine
        .take_back(&Actor::Staff(by.unwrap_or(handler)), &task, None)
        .map_err(|e| refused("taking back", e))?;
    w.keep(&done);
    Ok(())
}

pub(super) fn external(w: &mut World, number: &str, step: &str, act: Act) -> Result<(), Fail> {
    let case = w.case(number)?;
    let task = w.task(&case, step)?;
    let Some(ext) = &task.external else {
        return Err(format!("step '{step}' is not an external task"));
    };
    w.engine
        .fetch_for_plugin(
            WORKER,
            std::slice::from_ref(&ext.topic),
            10_000,
            Duration::hours(1),
        )
        .map_err(|e| refused("fetching external tasks", e))?;
    let c = w
        .engine
        .complete_for_plugin(WORKER, &task.id, act.outcome, act.data)
        .map_err(|e| refused(&format!("completing external step '{step}'"), e))?;
    w.keep(&c);
    Ok(())
}

/// Registers the functions a scenario calls.
/// `commitment`), `step`, `threshold` (`50%`, `10d`, `breach`).
/// A card on the case that matches every key of `want`: `to` (a group it is addressed
/// to), `kind` (`supervision`, `overdue`), `limit` (`step`, `promised`, `statutory`,
pub(super) fn expect_card(w: &mut World, number: &str, want: Map) -> Result<(), Fail> {
    let case = w.case(number)?;
    let describe = |k: &crate::case::Card| {
        let v = serde_json::to_value(k).unwrap_or_default();
        format!(
            "{} {} card{} at {} to {}",
            text_of(&v["kind"]),
            text_of(&v["limit"]),
            k.step
                .as_ref()
                .map(|s| format!(" of step {s}"))
                .unwrap_or_default(),
            k.threshold,
            k.addressed_to().collect::<Vec<_>>().join(", ")
        )
    };
    let matches = |k: &crate::case::Card| -> Result<bool, Fail> {
        let v = serde_json::to_value(k).unwrap_or_default();
        for (key, value) in &want {
            let value = value.to_string();
            let ok = match key.as_str() {
                "to" => k.addressed_to().any(|g| g == value),
                "kind" | "limit" | "step" | "threshold" => text_of(&v[key.as_str()]) == value,
                other => {
                    return Err(format!(
                        "unknown key '{other}' (to, kind, limit, step, threshold)"
                    ))
                }
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    };
    for k in &case.cards {
        if matches(k)? {
            return Ok(());
        }
    }
    let have: Vec<String> = case.cards.iter().map(describe).collect();
    Err(format!(
        "expected a card {} on case {number}; it has {}",
        serde_json::to_string(
            &rhai::serde::from_dynamic::<serde_json::Value>(&Dynamic::from_map(want))
                .unwrap_or_default()
        )
        .unwrap_or_default(),
        if have.is_empty() {
            "none".into()
        } else {
            have.join("; ")
        }
    ))
}

/// The applicant answers a supplement request: `data` and `materials` (ids), by default
/// every required material again.
pub(super) fn supply(w: &mut World, number: &str, options: Map) -> Result<(), Fail> {
    let case = w.case(number)?;
    let proc = w.engine.procedure_of(&case).map_err(|e| e.to_string())?;
    let mut data = Data::new();
    let mut ids: Option<Vec<String>> = None;
    for (k, v) in options {
        match k.as_str() {
            "data" => data = to_data(v.try_cast::<Map>().ok_or("data must be a map")?)?,
            "materials" => {
                let list = v
                    .try_cast::<Array>()
                    .ok_or("materials must be a list of ids")?;
                ids = Some(list.into_iter().map(|x| x.to_string()).collect());
            }
            other => return Err(format!("unknown option '{other}' (data, materials)")),
        }
    }
    let ids = ids.unwrap_or_else(|| {
        proc.materials
            .iter()
            .filter(|m| m.required)
            .map(|m| m.id.clone())
            .collect()
    });
    let materials = ids.iter().map(|id| material(&proc, id)).collect();
    let done = w
        .engine
        .supply(&case.number, &case.query_code, data, materials)
        .map_err(|e| refused("the supplement", e))?;
    w.keep(&done);
    Ok(())
}
