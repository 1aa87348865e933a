//! The runtime calls of a procedure's script: hooks and automatic steps (functions of its
//! file) and routing conditions (expressions over the case's data and applicant). Every
//! call runs under the sandbox's time budget; errors, including exceeded limits, come
//! back as text for the engine to report as a `script_error` that changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use rhai::{Dynamic, AST};
use serde_json::Value;

use super::sandbox::{with_budget, DEFAULT_BUDGET};

/// The compiled script behind one procedure version.
#[derive(Debug)]
pub struct ProcedureScript {
    pub source: String,
    pub(super) ast: AST,
    /// Each condition compiled with the file's functions, which it may call.
    pub(super) conditions: HashMap<String, AST>,
    pub(super) engine: Arc<rhai::Engine>,
}

impl ProcedureScript {
    /// Calls `name(arg)`. Nothing here can panic or hang.
    pub fn call(&self, name: &str, arg: &Value) -> Result<Value, String> {
        let arg = rhai::serde::to_dynamic(arg).map_err(|e| e.to_string())?;
        let mut scope = rhai::Scope::new();
        let opts = rhai::CallFnOptions::new()
            .eval_ast(false)
            .rewind_scope(true);
        let out: Dynamic = with_budget(DEFAULT_BUDGET, || {
            self.engine
                .call_fn_with_options(opts, &mut scope, &self.ast, name, (arg,))
        })
        .map_err(|e| format!("{name}: {}", describe(&e)))?;
        if out.is_unit() {
            return Ok(Value::Null);
        }
        rhai::serde::from_dynamic(&out)
            .map_err(|e| format!("{name} returned a value that is not data: {e}"))
    }

    /// Evaluates a step's group expression over the case data and applicant: the id of
    /// the group that handles the step for this case.
    pub fn group_of(&self, expr: &str, data: &Value, applicant: &Value) -> Result<String, String> {
        let out = self.eval(expr, data, applicant)?;
        out.into_string()
            .map_err(|t| format!("group `{expr}` gave a {t}, not a group id"))
    }

    fn eval(&self, expr: &str, data: &Value, applicant: &Value) -> Result<Dynamic, String> {
        let ast = self
            .conditions
            .get(expr)
            .ok_or_else(|| format!("`{expr}` was not compiled"))?;
        let mut scope = rhai::Scope::new();
        scope.push_dynamic(
            "data",
            rhai::serde::to_dynamic(data).map_err(|e| e.to_string())?,
        );
        scope.push_dynamic(
            "applicant",
            rhai::serde::to_dynamic(applicant).map_err(|e| e.to_string())?,
        );
        with_budget(DEFAULT_BUDGET, || {
            self.engine.eval_ast_with_scope(&mut scope, ast)
        })
        .map_err(|e| format!("`{expr}`: {}", describe(&e)))
    }

    /// Evaluates a routing condition over the case data and applicant.
    pub fn condition(&self, expr: &str, data: &Value, applicant: &Value) -> Result<bool, String> {
        let out = self
            .eval(expr, data, applicant)
            .map_err(|e| format!("condition {e}"))?;
        out.as_bool()
            .map_err(|t| format!("condition `{expr}` gave a {t}, not true or false"))
    }
}

/// What went wrong, in words an administrator acts on.
fn describe(e: &rhai::EvalAltResult) -> String {
    match e {
        rhai::EvalAltResult::ErrorTerminated(..) => {
            "the script took longer than its time budget (limits.script_ms) and was stopped".into()
        }
        other => other.to_string(),
    }
}
