//! Procedures (事项) as an administrator declares them in a script, and the static checks
//! that turn a declaration into something the engine may run (`check`: every reference
//! resolves, every step is reachable and can reach an end, parallel branches join).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod check;

pub use check::{compute_scopes, valid_id};

/// The id of the implicit first step: acceptance at the window (受理).
pub const INTAKE_STEP: &str = "intake";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Procedure {
    pub id: String,
    pub name: String,
    /// The name in other languages, by language tag (`zh`, `en`): what the service guide
    /// and the pages show a reader of that language.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    pub department: String,
    /// Prefix of case numbers; defaults to the id upper-cased with `.` turned into `-`.
    #[serde(default)]
    pub number_prefix: Option<String>,
    /// Working days the office promises (承诺时限); 0 for an immediate item (即办件).
    pub promised_days: u32,
    /// With `promised_days: 0`: the promise in working hours instead (an immediate item
    /// done within two hours of office time).
    #[serde(default)]
    pub promised_hours: Option<u32>,
    /// The legal maximum (法定时限); never below the promised limit.
    pub statutory_days: u32,
    /// The group that accepts cases at the window (and follows up low ratings).
    pub intake: String,
    /// The window's own limit to decide on acceptance (行政许可法 art. 32: five working
    /// days), and what happens when it passes.
    #[serde(default)]
    pub intake_limit: Option<IntakeLimit>,
    /// `false` for an internal procedure (a staff request): submitted by staff only,
    /// accepted on submission, it starts at its first step with no window step; the
    /// public pages do not offer it.
    #[serde(default = "yes")]
    pub window: bool,
    #[serde(default)]
    pub guide: Guide,
    #[serde(default)]
    pub materials: Vec<Material>,
    #[serde(default)]
    pub fields: Vec<Field>,
    /// Where an accepted case goes first.
    pub start: Route,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub hooks: Hooks,
    /// Whether and how the statutory limit may be extended (once).
    #[serde(default)]
    pub extension: Option<ExtensionPolicy>,
    /// When limits turn yellow and who supervises them.
    #[serde(default)]
    pub warnings: crate::limits::WarningPolicy,
    /// Who is told what on which event (receipts, supplement requests, decisions, cards).
    #[serde(default)]
    pub notices: Vec<crate::notice::NoticeRule>,
    /// Ratings (好差评): the score that opens a follow-up, by which group, in how long.
    #[serde(default)]
    pub rating: crate::rating::RatingPolicy,
    /// `notices`' templates, compiled.
    #[serde(skip)]
    pub templates: Arc<crate::notice::Templates>,
    /// Hash of the source file this version was loaded from.
    #[serde(skip)]
    pub version: String,
    /// Path of the file, relative to the scripts folder.
    #[serde(skip)]
    pub file: String,
    /// Compiled script behind hooks, automatic steps and conditions.
    #[serde(skip)]
    pub script: Option<Arc<crate::script::ProcedureScript>>,
    /// For each step, the branch containing it as `<parallel step>/<branch entry>`
    /// (`None`: top level). Sibling branches have different scopes.
    #[serde(skip)]
    pub scopes: BTreeMap<String, Option<String>>,
}

/// A statutory limit may be extended once by `days` working days, by a member of
/// `approver` with a reason (typically 10 days, by the department head).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ExtensionPolicy {
    pub days: u32,
    pub approver: String,
}

/// How long the window has to accept, refuse or ask for a supplement, counted from the
/// receipt (or from the applicant's answer to a supplement asked at intake).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IntakeLimit {
    pub days: u32,
    #[serde(default)]
    pub lapse: Lapse,
}

/// What the passing of the intake limit does, besides the overdue card to the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Lapse {
    /// Nothing more: the window still decides.
    #[default]
    Warn,
    /// The application counts as accepted from its receipt (行政许可法 art. 32): the
    /// engine accepts it and its limits run from the receipt.
    Accept,
}

/// The public service guide (办事指南) text of a procedure.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Guide {
    #[serde(default)]
    pub description: Option<String>,
    /// Who may apply (个人 / 法人, and any condition), as the office states it.
    #[serde(default)]
    pub who_may_apply: Option<String>,
    #[serde(default)]
    pub window: Option<String>,
    /// Opening hours of the window.
    #[serde(default)]
    pub hours: Option<String>,
    #[serde(default)]
    pub fees: Option<String>,
    #[serde(default)]
    pub legal_basis: Option<String>,
    #[serde(default)]
    pub contact: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Material {
    pub id: String,
    pub name: String,
    /// The name in other languages (see `Procedure::names`).
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub required: bool,
    /// Accepted file extensions, lower case (`pdf`, `jpg`); empty accepts any.
    #[serde(default)]
    pub formats: Vec<String>,
    /// Largest upload accepted, in MiB (default 10).
    #[serde(default)]
    pub max_mb: Option<u32>,
}

fn yes() -> bool {
    true
}

fn default_retries() -> u32 {
    3
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Text,
    Integer,
    Number,
    Boolean,
    Date,
    Enum,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub id: String,
    pub label: String,
    /// The label in other languages (see `Procedure::names`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    /// Filled in by staff during processing, not by the applicant.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Allowed values of an `enum` field.
    #[serde(default)]
    pub values: Vec<String>,
    /// A regular expression the whole value must match (`string` fields).
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(skip)]
    pub regex: Option<regex::Regex>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    #[serde(default)]
    pub on_submit: Option<String>,
    #[serde(default)]
    pub on_accept: Option<String>,
    #[serde(default)]
    pub on_decide: Option<String>,
    /// Called at acceptance with the case: `#{ promised_days, statutory_days }` for this
    /// case (a small request an immediate item, a large one five days), instead of the
    /// procedure's.
    #[serde(default)]
    pub limits: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    #[default]
    Task,
    Auto,
    Parallel,
}

/// How a step with several handlers is decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One task for the group; any member takes it.
    #[default]
    Single,
    /// 会签: every signer must approve.
    All,
    /// 或签: the first signer to act decides.
    Any,
    /// Signers act in turn, each after the previous approved.
    Sequential,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    pub name: String,
    /// The name in other languages (see `Procedure::names`).
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    #[serde(default)]
    pub kind: StepKind,
    /// The group that handles the step: a group id, or an expression over the case that
    /// gives one (`data.district + ".branch"`).
    #[serde(default)]
    pub group: Option<String>,
    /// When this step's budget turns yellow and who supervises it, instead of the
    /// procedure's `warnings` (which apply to its limits and to steps without their own).
    #[serde(default)]
    pub warnings: Option<crate::limits::WarningPolicy>,
    /// Instead of `group`: a function of the script, called with the case, that returns
    /// the group's id (the judge's chamber chosen at filing, the officer for an industry).
    #[serde(default)]
    pub assign: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    /// Staff who sign in `all`, `any` and `sequential` modes; empty means every member.
    #[serde(default)]
    pub signers: Vec<String>,
    /// The step's own budget in working days; `0` is a same-day step, due at the close of
    /// the working day it starts on. Without it the step has no budget of its own.
    #[serde(default)]
    pub days: Option<u32>,
    /// Instead of `days`: the step's budget in working hours, counted inside office hours
    /// on working days (an on-site visit within four hours).
    #[serde(default)]
    pub hours: Option<u32>,
    /// `false` for steps whose time does not count against the limits (hearing, expert
    /// review): the clock stops while the case is in them.
    #[serde(default = "yes")]
    pub counted: bool,
    /// The Rhai function an automatic step runs.
    #[serde(default)]
    pub run: Option<String>,
    /// Instead of `run`: the topic of an external task. Workers of the step's group fetch
    /// and lock it over the API, or a plugin's step handler runs it in the server.
    #[serde(default)]
    pub topic: Option<String>,
    /// Failed attempts of an external task before it becomes an incident.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Entry steps of the branches of a parallel step.
    #[serde(default)]
    pub branches: Vec<String>,
    /// The branch whose department leads a parallel review (informative).
    #[serde(default)]
    pub lead: Option<String>,
    /// Where the case goes when the step is approved.
    #[serde(default)]
    pub next: Option<Route>,
    /// Routes of other outcomes; `reject` defaults to `@rejected`.
    #[serde(default)]
    pub outcomes: BTreeMap<String, Route>,
    /// Earlier steps a handler may return the case to; absent means any visited step.
    #[serde(default)]
    pub return_to: Option<Vec<String>>,
    #[serde(default)]
    pub on_enter: Option<String>,
    #[serde(default)]
    pub on_complete: Option<String>,
}

/// Where a case goes: a fixed target, or the first rule whose condition holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum Route {
    To(String),
    Rules(Vec<Rule>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A Rhai expression over `data` and `applicant`; absent means "otherwise".
    #[serde(default)]
    pub when: Option<String>,
    pub to: String,
}

/// A resolved route target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Step(String),
    Approved,
    Rejected,
    /// End of a parallel branch.
    Join,
}

impl Target {
    pub fn parse(s: &str) -> Target {
        match s {
            "@approved" => Target::Approved,
            "@rejected" => Target::Rejected,
            "@join" => Target::Join,
            other => Target::Step(other.to_string()),
        }
    }
}

impl Route {
    /// Every target the route may lead to, with the rule conditions.
    pub fn targets(&self) -> Vec<&str> {
        match self {
            Route::To(t) => vec![t.as_str()],
            Route::Rules(rules) => rules.iter().map(|r| r.to.as_str()).collect(),
        }
    }
}

impl Procedure {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Compiles the notice templates; returns what does not compile.
    pub fn compile_templates(&mut self) -> Vec<String> {
        let (t, errs) = crate::notice::Templates::compile(&self.notices);
        self.templates = Arc::new(t);
        errs
    }

    pub fn number_prefix(&self) -> String {
        self.number_prefix
            .clone()
            .unwrap_or_else(|| self.id.to_uppercase().replace(['.', '_'], "-"))
    }

    pub fn field(&self, id: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.id == id)
    }

    /// The route a step takes on an outcome, if the step allows that outcome.
    pub fn route_for<'a>(&'a self, step: &'a Step, outcome: &str) -> Option<RouteRef<'a>> {
        if outcome == "approve" {
            return step.next.as_ref().map(RouteRef::Route);
        }
        match step.outcomes.get(outcome) {
            Some(r) => Some(RouteRef::Route(r)),
            None if outcome == "reject" => Some(RouteRef::Rejected),
            None => None,
        }
    }

    /// The outcomes a handler of the step may choose.
    /// The outcomes a task of `step` may be completed with (the window's intake decision
    /// for the intake step).
    pub fn task_outcomes(&self, step: &str) -> Vec<String> {
        if step == INTAKE_STEP {
            return vec!["accept".into(), "reject".into(), "refer".into()];
        }
        if step == crate::rating::FOLLOW_UP_STEP {
            return crate::rating::FOLLOW_UP_OUTCOMES.map(String::from).to_vec();
        }
        self.step(step)
            .map(|s| self.outcomes_of(s))
            .unwrap_or_default()
    }

    pub fn outcomes_of(&self, step: &Step) -> Vec<String> {
        let mut out = vec!["approve".to_string()];
        if !step.outcomes.contains_key("reject") {
            out.push("reject".into());
        }
        out.extend(step.outcomes.keys().cloned());
        out
    }
}

impl Procedure {
    /// The promised and statutory limits of `case` in working days: the ones its `limits`
    /// hook set at acceptance, else the procedure's.
    pub fn limits_of(&self, case: &crate::case::Case) -> (u32, u32) {
        case.limits
            .map(|l| (l.promised_days, l.statutory_days))
            .unwrap_or((self.promised_days, self.statutory_days))
    }

    /// The promised limit of `case` as a budget: its working hours if the procedure
    /// promises hours (and the case's own limits do not say otherwise), else its days.
    pub fn promised_budget(&self, case: &crate::case::Case) -> crate::limits::Budget {
        use crate::limits::Budget;
        match (self.promised_hours, &case.limits) {
            (Some(h), None) => Budget::Hours(h),
            _ => Budget::Days(self.limits_of(case).0),
        }
    }

    /// The warning policy of a limit: a step's own when it has one, else the procedure's.
    pub fn warnings_for(&self, step: Option<&str>) -> &crate::limits::WarningPolicy {
        step.and_then(|s| self.step(s))
            .and_then(|s| s.warnings.as_ref())
            .unwrap_or(&self.warnings)
    }
}

impl Step {
    /// Whether the step's group is worked out per case (an `assign` function, or a `group`
    /// that is an expression rather than a group id).
    pub fn dynamic_group(&self) -> bool {
        self.assign.is_some() || self.group.as_deref().is_some_and(|g| !valid_id(g))
    }

    /// The step's own budget, in working days or hours; none if it has none.
    pub fn budget(&self) -> Option<crate::limits::Budget> {
        use crate::limits::Budget;
        self.days
            .map(Budget::Days)
            .or(self.hours.map(Budget::Hours))
    }
}

/// A route as the engine follows it: either declared, or the implicit rejection.
pub enum RouteRef<'a> {
    Route(&'a Route),
    Rejected,
}
