//! Rhai: the sandboxed engine, the loader that turns a scripts folder into a validated
//! [`RuleSet`], and the runtime calls of hooks, automatic steps and routing conditions.
//!
//! A script declares the office by calling `office`, `department`, `group`, `staff`,
//! `procedure` and `bundle` with object maps; the loader records each call with its file and
//! position, so every later validation error points at the declaration that caused it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use rhai::module_resolvers::FileModuleResolver;
use rhai::{Dynamic, EvalAltResult, NativeCallContext, Position, AST};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Location, ScriptProblem};
use crate::office::{Bundle, Department, Group, OfficeInfo, RuleSet, Staff};
use crate::procedure::{Procedure, Route, StepKind};

/// Limits that keep a script from taking the server down (PITFALLS.md: all off by default).
const MAX_OPERATIONS: u64 = 1_000_000;
const MAX_CALL_LEVELS: usize = 32;
const MAX_STRING: usize = 1 << 20;
const MAX_ARRAY: usize = 10_000;
const MAX_MAP: usize = 10_000;

/// The compiled script behind one procedure version.
#[derive(Debug)]
pub struct ProcedureScript {
    pub source: String,
    ast: AST,
    conditions: HashMap<String, AST>,
    engine: Arc<rhai::Engine>,
}

/// Resolves `import` only to files inside the scripts folder.
struct SandboxResolver {
    root: PathBuf,
    inner: FileModuleResolver,
}

impl rhai::ModuleResolver for SandboxResolver {
    fn resolve(
        &self,
        engine: &rhai::Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<rhai::Shared<rhai::Module>, Box<EvalAltResult>> {
        let rel = Path::new(path);
        let escapes = rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        let inside = !escapes
            && self
                .root
                .join(format!("{path}.rhai"))
                .canonicalize()
                .is_ok_and(|p| p.starts_with(&self.root));
        if !inside {
            // Not ErrorModuleNotFound: Rhai swallows that one into a generic message.
            return Err(EvalAltResult::ErrorRuntime(
                format!("import \"{path}\": imports must stay inside the scripts folder").into(),
                pos,
            )
            .into());
        }
        let _ = source;
        self.inner.resolve(engine, None, path, pos)
    }
}

/// Rhai modules from plugins, callable from scripts as `name::function(...)`.
pub type Modules = [(String, rhai::Shared<rhai::Module>)];

/// A Rhai engine with every limit set, `import` confined to `root`, and the plugins'
/// modules.
pub fn sandboxed_engine(root: &Path, modules: &Modules) -> rhai::Engine {
    let mut e = rhai::Engine::new();
    for (name, m) in modules {
        e.register_static_module(name.as_str(), m.clone());
    }
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    e.set_module_resolver(SandboxResolver {
        inner: FileModuleResolver::new_with_path(root.clone()),
        root,
    });
    e.set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(MAX_STRING)
        .set_max_array_size(MAX_ARRAY)
        .set_max_map_size(MAX_MAP)
        .set_max_modules(32)
        .set_max_variables(1_000)
        .set_max_functions(1_000);
    e.on_print(|s| tracing::info!(target: "guichet::script", message = s));
    e.on_debug(
        |s, src, pos| tracing::debug!(target: "guichet::script", message = s, source = src, %pos),
    );
    e
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeclKind {
    Office,
    Department,
    Group,
    Staff,
    Procedure,
    Bundle,
    Calendar,
}

struct Decl {
    kind: DeclKind,
    value: Value,
    at: Location,
}

#[derive(Default)]
struct Collector {
    file: String,
    decls: Vec<Decl>,
}

fn loader_engine(root: &Path, modules: &Modules, col: Arc<Mutex<Collector>>) -> rhai::Engine {
    let mut e = sandboxed_engine(root, modules);
    for (name, kind) in [
        ("office", DeclKind::Office),
        ("department", DeclKind::Department),
        ("group", DeclKind::Group),
        ("staff", DeclKind::Staff),
        ("procedure", DeclKind::Procedure),
        ("bundle", DeclKind::Bundle),
        ("calendar", DeclKind::Calendar),
    ] {
        let col = col.clone();
        e.register_fn(
            name,
            move |ctx: NativeCallContext, m: rhai::Map| -> Result<(), Box<EvalAltResult>> {
                let value: Value = rhai::serde::from_dynamic(&Dynamic::from_map(m))?;
                let pos = ctx.call_position();
                let mut c = col.lock();
                let at = location(&c.file, pos);
                c.decls.push(Decl { kind, value, at });
                Ok(())
            },
        );
    }
    e
}

fn location(file: &str, pos: Position) -> Location {
    Location {
        file: file.to_string(),
        line: pos.line().unwrap_or(0),
        column: pos.position().unwrap_or(0),
    }
}

/// Hash identifying one version of a script file.
pub fn version_of(source: &str) -> String {
    hex::encode(&Sha256::digest(source.as_bytes())[..8])
}

/// Reads every `*.rhai` file under `dir` (recursively, in path order), skipping hidden and
/// editor temp files. Paths are relative to `dir`, with `/` separators.
pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, Vec<ScriptProblem>> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                problems.push(problem(
                    &d.display().to_string(),
                    0,
                    0,
                    format!("cannot read folder: {e}"),
                ));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || name.ends_with('~') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".rhai") {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                match std::fs::read_to_string(&path) {
                    Ok(src) => files.push((rel, src)),
                    Err(e) => problems.push(problem(&rel, 0, 0, format!("cannot read: {e}"))),
                }
            }
        }
    }
    files.sort();
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(problems)
    }
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

/// Loads and validates a whole scripts folder.
pub fn load_dir(dir: &Path) -> Result<RuleSet, Vec<ScriptProblem>> {
    load_dir_with(dir, &[])
}

/// [`load_dir`] with the plugins' script modules.
pub fn load_dir_with(dir: &Path, modules: &Modules) -> Result<RuleSet, Vec<ScriptProblem>> {
    let files = read_dir(dir)?;
    load_sources_with(dir, &files, modules)
}

struct FileScript {
    source: String,
    ast: AST,
}

/// Compiles and runs each file, then builds and validates the rule set. All problems are
/// reported together, so an administrator fixes them in one pass.
pub fn load_sources(
    root: &Path,
    files: &[(String, String)],
) -> Result<RuleSet, Vec<ScriptProblem>> {
    load_sources_with(root, files, &[])
}

/// [`load_sources`] with the plugins' script modules.
pub fn load_sources_with(
    root: &Path,
    files: &[(String, String)],
    modules: &Modules,
) -> Result<RuleSet, Vec<ScriptProblem>> {
    let col = Arc::new(Mutex::new(Collector::default()));
    let loader = loader_engine(root, modules, col.clone());
    let runtime = Arc::new(sandboxed_engine(root, modules));
    let mut problems = Vec::new();
    let mut scripts: BTreeMap<String, Arc<FileScript>> = BTreeMap::new();
    for (file, source) in files {
        let ast = match loader.compile(source) {
            Ok(ast) => ast,
            Err(e) => {
                problems.push(problem(
                    file,
                    e.1.line().unwrap_or(0),
                    e.1.position().unwrap_or(0),
                    e.0.to_string(),
                ));
                continue;
            }
        };
        col.lock().file = file.clone();
        if let Err(e) = loader.run_ast(&ast) {
            let pos = e.position();
            problems.push(problem(
                file,
                pos.line().unwrap_or(0),
                pos.position().unwrap_or(0),
                e.unwrap_inner().to_string(),
            ));
            continue;
        }
        scripts.insert(
            file.clone(),
            Arc::new(FileScript {
                source: source.clone(),
                ast,
            }),
        );
    }
    let decls = std::mem::take(&mut col.lock().decls);
    let mut rules = RuleSet::default();
    let mut office_seen = false;
    let mut calendar_seen = false;
    let mut calendar_errs: Vec<(Location, String)> = Vec::new();
    let mut proc_decls = Vec::new();
    for d in decls {
        let at = d.at.clone();
        let mut dup = |kind: &str, id: &str| {
            problems.push(ScriptProblem {
                location: at.clone(),
                message: format!("{kind} '{id}' is declared twice"),
            })
        };
        let res: Result<(), serde_json::Error> = (|| {
            match d.kind {
                DeclKind::Office => {
                    if office_seen {
                        dup("office", "office");
                    }
                    office_seen = true;
                    rules.office = serde_json::from_value::<OfficeInfo>(d.value.clone())?;
                }
                DeclKind::Department => {
                    let x: Department = serde_json::from_value(d.value.clone())?;
                    if rules.departments.contains_key(&x.id) {
                        dup("department", &x.id);
                    }
                    rules.departments.insert(x.id.clone(), x);
                }
                DeclKind::Group => {
                    let x: Group = serde_json::from_value(d.value.clone())?;
                    if rules.groups.contains_key(&x.id) {
                        dup("group", &x.id);
                    }
                    rules.groups.insert(x.id.clone(), x);
                }
                DeclKind::Staff => {
                    let x: Staff = serde_json::from_value(d.value.clone())?;
                    if rules.staff.contains_key(&x.id) {
                        dup("staff", &x.id);
                    }
                    rules.staff.insert(x.id.clone(), x);
                }
                DeclKind::Bundle => {
                    let x: Bundle = serde_json::from_value(d.value.clone())?;
                    if rules.bundles.contains_key(&x.id) {
                        dup("bundle", &x.id);
                    }
                    rules.bundles.insert(x.id.clone(), x);
                }
                DeclKind::Procedure => proc_decls.push((d.at.clone(), d.value.clone())),
                DeclKind::Calendar => {
                    if calendar_seen {
                        dup("calendar", "calendar");
                    }
                    calendar_seen = true;
                    let spec: crate::calendar::CalendarSpec =
                        serde_json::from_value(d.value.clone())?;
                    match crate::calendar::Calendar::from_spec(&spec) {
                        Ok(c) => rules.calendar = c,
                        Err(errs) => {
                            calendar_errs.extend(errs.into_iter().map(|m| (at.clone(), m)))
                        }
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            problems.push(ScriptProblem {
                location: d.at.clone(),
                message: format!("{:?}: {e}", d.kind).to_lowercase(),
            });
        }
    }
    problems.extend(
        calendar_errs
            .into_iter()
            .map(|(location, m)| ScriptProblem {
                location,
                message: format!("calendar: {m}"),
            }),
    );
    for g in rules.groups.values() {
        if !rules.departments.contains_key(&g.department) {
            problems.push(problem(
                "",
                0,
                0,
                format!(
                    "group '{}': department '{}' does not exist",
                    g.id, g.department
                ),
            ));
        }
    }
    problems.extend(
        rules
            .unknown_staff()
            .into_iter()
            .map(|m| problem("", 0, 0, m)),
    );
    for (at, value) in proc_decls {
        let Some(file) = scripts.get(&at.file) else {
            continue;
        };
        match build_procedure(value, file, &at.file, runtime.clone()) {
            Err(msgs) => problems.extend(msgs.into_iter().map(|m| ScriptProblem {
                location: at.clone(),
                message: m,
            })),
            Ok(mut p) => {
                let errs = p.validate(&rules);
                if !errs.is_empty() {
                    problems.extend(errs.into_iter().map(|m| ScriptProblem {
                        location: at.clone(),
                        message: format!("procedure '{}': {m}", p.id),
                    }));
                } else if rules.procedures.contains_key(&p.id) {
                    problems.push(ScriptProblem {
                        location: at.clone(),
                        message: format!("procedure '{}' is declared twice", p.id),
                    });
                } else {
                    rules.procedures.insert(p.id.clone(), Arc::new(p));
                }
            }
        }
    }
    for b in rules.bundles.values() {
        for p in &b.procedures {
            if !rules.procedures.contains_key(p) {
                problems.push(problem(
                    "",
                    0,
                    0,
                    format!("bundle '{}': unknown procedure '{p}'", b.id),
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

fn build_procedure(
    value: Value,
    file: &FileScript,
    file_name: &str,
    engine: Arc<rhai::Engine>,
) -> Result<Procedure, Vec<String>> {
    let mut p: Procedure =
        serde_json::from_value(value).map_err(|e| vec![format!("procedure: {e}")])?;
    let mut errs = Vec::new();
    let fns: Vec<(String, usize)> = file
        .ast
        .iter_functions()
        .map(|f| (f.name.to_string(), f.params.len()))
        .collect();
    let mut need_fn = |name: &Option<String>, ctx: &str| {
        if let Some(n) = name {
            if !fns.iter().any(|(f, arity)| f == n && *arity == 1) {
                errs.push(format!(
                    "procedure '{}': {ctx}: function `{n}(c)` is not defined in {file_name}",
                    p.id
                ));
            }
        }
    };
    need_fn(&p.hooks.on_submit, "hooks.on_submit");
    need_fn(&p.hooks.on_accept, "hooks.on_accept");
    need_fn(&p.hooks.on_decide, "hooks.on_decide");
    for s in &p.steps {
        let ctx = format!("step '{}'", s.id);
        need_fn(&s.on_enter, &format!("{ctx} on_enter"));
        need_fn(&s.on_complete, &format!("{ctx} on_complete"));
        if s.kind == StepKind::Auto && s.topic.is_none() {
            need_fn(&s.run, &format!("{ctx} run"));
        }
    }
    let mut conditions = HashMap::new();
    let mut routes: Vec<(&str, &Route)> = vec![("start", &p.start)];
    for s in &p.steps {
        routes.extend(s.next.iter().map(|r| (s.id.as_str(), r)));
        routes.extend(s.outcomes.values().map(|r| (s.id.as_str(), r)));
    }
    for (ctx, r) in routes {
        if let Route::Rules(rules) = r {
            for cond in rules.iter().filter_map(|r| r.when.as_ref()) {
                match engine.compile_expression(cond) {
                    Ok(ast) => {
                        conditions.insert(cond.clone(), ast);
                    }
                    Err(e) => errs.push(format!(
                        "procedure '{}': step '{ctx}': condition `{cond}`: {} (column {} of the condition)",
                        p.id,
                        e.0,
                        e.1.position().unwrap_or(0)
                    )),
                }
            }
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    p.version = version_of(&file.source);
    p.file = file_name.to_string();
    p.script = Some(Arc::new(ProcedureScript {
        source: file.source.clone(),
        ast: file.ast.clone_functions_only(),
        conditions,
        engine,
    }));
    Ok(p)
}

/// Rebuilds one procedure version from its stored source, for cases that started on a
/// version no longer on disk. Office references are not re-validated: the case already ran.
pub fn load_version(
    root: &Path,
    file: &str,
    source: &str,
    procedure: &str,
    modules: &Modules,
) -> Result<Procedure, String> {
    let col = Arc::new(Mutex::new(Collector {
        file: file.to_string(),
        decls: Vec::new(),
    }));
    let loader = loader_engine(root, modules, col.clone());
    let ast = loader.compile(source).map_err(|e| e.to_string())?;
    loader.run_ast(&ast).map_err(|e| e.to_string())?;
    let decls = std::mem::take(&mut col.lock().decls);
    let value = decls
        .into_iter()
        .find(|d| {
            d.kind == DeclKind::Procedure
                && d.value.get("id").and_then(Value::as_str) == Some(procedure)
        })
        .ok_or_else(|| format!("procedure '{procedure}' is not in the stored source"))?
        .value;
    let fs = FileScript {
        source: source.to_string(),
        ast,
    };
    let mut p = build_procedure(value, &fs, file, Arc::new(sandboxed_engine(root, modules)))
        .map_err(|e| e.join("; "))?;
    for f in &mut p.fields {
        if let Some(pat) = &f.pattern {
            f.regex = regex::Regex::new(&format!("^(?:{pat})$")).ok();
        }
    }
    p.scopes = crate::procedure::compute_scopes(&p).map_err(|e| e.join("; "))?;
    let errs = p.compile_templates();
    if !errs.is_empty() {
        return Err(errs.join("; "));
    }
    Ok(p)
}

impl ProcedureScript {
    /// Calls `name(arg)`. Errors, including exceeded limits, come back as text for the
    /// engine to report; nothing here can panic or hang.
    pub fn call(&self, name: &str, arg: &Value) -> Result<Value, String> {
        let arg = rhai::serde::to_dynamic(arg).map_err(|e| e.to_string())?;
        let mut scope = rhai::Scope::new();
        let opts = rhai::CallFnOptions::new()
            .eval_ast(false)
            .rewind_scope(true);
        let out: Dynamic = self
            .engine
            .call_fn_with_options(opts, &mut scope, &self.ast, name, (arg,))
            .map_err(|e| format!("{name}: {e}"))?;
        if out.is_unit() {
            return Ok(Value::Null);
        }
        rhai::serde::from_dynamic(&out)
            .map_err(|e| format!("{name} returned a value that is not data: {e}"))
    }

    /// Evaluates a routing condition over the case data and applicant.
    pub fn condition(&self, expr: &str, data: &Value, applicant: &Value) -> Result<bool, String> {
        let ast = self
            .conditions
            .get(expr)
            .ok_or_else(|| format!("condition `{expr}` was not compiled"))?;
        let mut scope = rhai::Scope::new();
        scope.push_dynamic(
            "data",
            rhai::serde::to_dynamic(data).map_err(|e| e.to_string())?,
        );
        scope.push_dynamic(
            "applicant",
            rhai::serde::to_dynamic(applicant).map_err(|e| e.to_string())?,
        );
        let out: Dynamic = self
            .engine
            .eval_ast_with_scope(&mut scope, ast)
            .map_err(|e| format!("condition `{expr}`: {e}"))?;
        out.as_bool()
            .map_err(|t| format!("condition `{expr}` gave a {t}, not true or false"))
    }
}
