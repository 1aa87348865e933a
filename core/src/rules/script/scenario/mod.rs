//! Procedure tests: scenario files in `scripts/tests/` that prove a procedure before it
//! goes live. Each `fn test_…()` in a file is one scenario, run on an empty store in a
//! temporary folder with a manual clock, through the engine's own calls: submit this data,
//! expect this step, complete it with this outcome, advance three working days, expect a
//! yellow level and a card to this group, expect the decision. A failed expectation is
//! reported with its file and line.
//!
//! The functions a scenario calls are listed in `docs/scripting.md` ("Procedure tests").

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rhai::{Dynamic, EvalAltResult, AST};

use crate::error::{Location, ScriptProblem};
use crate::plugin::Registrar;

mod functions;
mod world;

use world::World;

/// The folder of scenario files, inside the scripts folder.
pub const TESTS_DIR: &str = "tests";

/// One scenario's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub file: String,
    /// The function's name (`test_…`).
    pub name: String,
    pub line: usize,
    /// Why it failed, where.
    pub failure: Option<ScriptProblem>,
}

/// What a run of the procedure tests found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// Files that could not be read or compiled, or hold no scenario.
    pub problems: Vec<ScriptProblem>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.failure.is_none()).count()
    }

    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.passed()
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.failed() == 0
    }
}

/// Runs every scenario under `scripts/tests/` (whose name contains `filter`, if given)
/// against the procedures of `scripts`, each on a fresh store.
pub fn run_dir(scripts: &Path, plugins: Arc<Registrar>, filter: Option<&str>) -> Report {
    let mut report = Report::default();
    let dir = scripts.join(TESTS_DIR);
    if !dir.is_dir() {
        return report;
    }
    let files = match super::loader::read_dir(&dir) {
        Ok(f) => f,
        Err(problems) => {
            report.problems = problems;
            return report;
        }
    };
    let compiler = scenario_engine();
    for (rel, source) in files {
        let file = format!("{TESTS_DIR}/{rel}");
        let ast = match compiler.compile(&source) {
            Ok(ast) => ast,
            Err(e) => {
                report.problems.push(problem(
                    &file,
                    e.1.line().unwrap_or(0),
                    e.1.position().unwrap_or(0),
                    super::loader::plain_parse_message(&e.0),
                ));
                continue;
            }
        };
        let mut names: Vec<(usize, String)> = ast
            .iter_functions()
            .filter(|f| f.name.starts_with("test_") && f.params.is_empty())
            .map(|f| (line_of_fn(&source, f.name), f.name.to_string()))
            .collect();
        names.sort();
        if names.is_empty() {
            report.problems.push(problem(
                &file,
                0,
                0,
                "no scenario: name each one `fn test_something()`".into(),
            ));
            continue;
        }
        for (line, name) in names {
            if filter.is_some_and(|f| !name.contains(f) && !file.contains(f)) {
                continue;
            }
            let failure = run_one(scripts, plugins.clone(), &ast, &name)
                .err()
                .map(|(l, c, m)| problem(&file, l, c, m));
            report.outcomes.push(Outcome {
                file: file.clone(),
                name,
                line,
                failure,
            });
        }
    }
    report
}

fn problem(file: &str, line: usize, column: usize, message: String) -> ScriptProblem {
    ScriptProblem {
        location: Location {
            file: file.to_string(),
            line,
            column,
        },
        message,
    }
}

fn line_of_fn(source: &str, name: &str) -> usize {
    let needle = format!("fn {name}(");
    source
        .lines()
        .position(|l| l.trim_start().starts_with(&needle))
        .map_or(0, |i| i + 1)
}

/// The engine scenarios are compiled and run with: no sandbox of its own beyond limits
/// (an administrator's own test, run by the command line), enough for long scenarios.
fn scenario_engine() -> rhai::Engine {
    let mut e = rhai::Engine::new();
    e.set_max_operations(50_000_000);
    e.set_max_call_levels(64);
    e.set_max_expr_depths(64, 64);
    e.set_max_string_size(1 << 20);
    e.set_max_array_size(100_000);
    e.set_max_map_size(100_000);
    e
}

/// Runs one scenario; a failure is its line, column and message.
fn run_one(
    scripts: &Path,
    plugins: Arc<Registrar>,
    ast: &AST,
    name: &str,
) -> Result<(), (usize, usize, String)> {
    let world = World::open(scripts, plugins).map_err(|m| (0, 0, m))?;
    let world = Arc::new(Mutex::new(world));
    let mut engine = scenario_engine();
    functions::register(&mut engine, &world);
    let mut scope = rhai::Scope::new();
    match engine.call_fn::<Dynamic>(&mut scope, ast, name, ()) {
        Ok(_) => Ok(()),
        Err(e) => {
            let mut inner = *innermost(*e);
            let pos = inner.take_position();
            Err((
                pos.line().unwrap_or(0),
                pos.position().unwrap_or(0),
                message_of(&inner),
            ))
        }
    }
}

/// A scenario's own failure as written; Rhai's errors (a typo, a wrong type) as Rhai says.
pub(super) fn message_of(e: &EvalAltResult) -> String {
    match e {
        EvalAltResult::ErrorRuntime(d, _) => d.to_string(),
        other => other.to_string(),
    }
}

/// The error a nested call chain ends in: where the scenario really failed.
pub(super) fn innermost(e: EvalAltResult) -> Box<EvalAltResult> {
    match e {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => innermost(*inner),
        other => Box::new(other),
    }
}
