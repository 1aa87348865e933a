//! The loader: reads a scripts folder, runs each file with the declaration functions
//! (`office`, `department`, `group`, `staff`, `procedure`, `bundle`, `calendar`) that
//! record each call with its file and position, and builds and validates the
//! [`RuleSet`], so every error points at the declaration that caused it. All problems of
//! a folder are reported together.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rhai::{Dynamic, EvalAltResult, NativeCallContext, Position, AST};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::runtime::ProcedureScript;
use super::sandbox::{sandboxed_engine_over, with_budget, Modules};

/// Time one file may take to run at load (declarations are quick; a loop is a mistake).
const LOAD_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);
use crate::error::{Location, ScriptProblem};
use crate::office::{Bundle, Department, Group, OfficeInfo, RuleSet, Staff};
use crate::procedure::{Procedure, Route, StepKind};

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

fn loader_engine(
    root: &Path,
    modules: &Modules,
    files: Arc<HashMap<String, String>>,
    col: Arc<Mutex<Collector>>,
) -> rhai::Engine {
    let mut e = sandboxed_engine_over(root, modules, files);
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
/// editor temp files and the procedure tests (`tests/` at the top: scenarios, not rules).
/// Paths are relative to `dir`, with `/` separators.
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
                if d.as_path() != dir || name != super::scenario::TESTS_DIR {
                    stack.push(path);
                }
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
    // Imports resolve among the files being loaded: a rule set loaded from the store is
    // exactly the one that was saved, whatever the folder holds now.
    let sources: Arc<HashMap<String, String>> = Arc::new(files.iter().cloned().collect());
    let loader = loader_engine(root, modules, sources.clone(), col.clone());
    let runtime = Arc::new(sandboxed_engine_over(root, modules, sources));
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
                    plain_parse_message(&e.0),
                ));
                continue;
            }
        };
        col.lock().file = file.clone();
        if let Err(e) = with_budget(LOAD_BUDGET, || loader.run_ast(&ast)) {
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
        // A problem that names a step, a field or a key points at its line.
        let at_fault = |m: &str| match line_at_fault(&file.source, at.line, m) {
            Some((line, column)) => Location {
                line,
                column,
                ..at.clone()
            },
            None => at.clone(),
        };
        match build_procedure(value, file, &at.file, runtime.clone()) {
            Err(msgs) => problems.extend(msgs.into_iter().map(|m| ScriptProblem {
                location: at_fault(&m),
                message: m,
            })),
            Ok(mut p) => {
                let errs = p.validate(&rules);
                if !errs.is_empty() {
                    problems.extend(errs.into_iter().map(|m| ScriptProblem {
                        location: at_fault(&m),
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
        // A shared field is one field: declared by a procedure of the bundle, of one type
        // wherever it is declared, and entered by the applicant (not internal).
        for f in &b.fields {
            let decls: Vec<(&str, &crate::procedure::Field)> = b
                .procedures
                .iter()
                .filter_map(|p| rules.procedures.get(p))
                .filter_map(|p| {
                    p.fields
                        .iter()
                        .find(|x| &x.id == f)
                        .map(|x| (p.id.as_str(), x))
                })
                .collect();
            let mut say =
                |m: String| problems.push(problem("", 0, 0, format!("bundle '{}': {m}", b.id)));
            match decls.first() {
                None => say(format!(
                    "field '{f}' is not a field of any of its procedures"
                )),
                Some((_, first)) => {
                    for (p, x) in &decls {
                        if x.kind != first.kind {
                            say(format!("field '{f}' has another type in procedure '{p}'"));
                        }
                        if x.internal {
                            say(format!("field '{f}' is internal in procedure '{p}': staff fill it, not the applicant"));
                        }
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

/// The line of what a problem's message names, searched from the procedure's own line: the
/// step or field (`step 'x'`, `field 'x'`, written `id: "x"`) or the key serde did not
/// know (`unknown field `nxt``, written `nxt:`).
fn line_at_fault(source: &str, from: usize, message: &str) -> Option<(usize, usize)> {
    fn quoted<'a>(m: &'a str, before: &str, open: char, close: char) -> Option<&'a str> {
        let rest = &m[m.find(before)? + before.len()..];
        let rest = rest.strip_prefix(open)?;
        Some(&rest[..rest.find(close)?])
    }
    let needle = if let Some(id) =
        quoted(message, "step ", '\'', '\'').or_else(|| quoted(message, "field ", '\'', '\''))
    {
        format!("id:\"{id}\"")
    } else {
        format!("{}:", quoted(message, "unknown field ", '`', '`')?)
    };
    source
        .lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| {
            let compact: String = l.chars().filter(|c| !c.is_whitespace()).collect();
            compact.contains(&needle)
        })
        .map(|(i, l)| (i + 1, l.len() - l.trim_start().len() + 1))
}

/// Rhai's parser messages in the words of someone writing a procedure.
pub fn plain_parse_message(e: &rhai::ParseErrorType) -> String {
    use rhai::ParseErrorType as P;
    match e {
        P::MissingToken(t, what) if what.contains("object map") && t == "}" => {
            "a map `#{ ... }` is not closed: a '}' is missing before this point".into()
        }
        P::MissingToken(t, what) if what.contains("object map") && t == "," => {
            "a ',' is missing between two entries of a map `#{ ... }`".into()
        }
        P::MissingToken(t, what) if what.contains("array") && t == "]" => {
            "a list `[ ... ]` is not closed: a ']' is missing before this point".into()
        }
        P::MissingToken(t, what) if what.contains("array") && t == "," => {
            "a ',' is missing between two items of a list `[ ... ]`".into()
        }
        P::MissingToken(t, _) if t == ")" => {
            "a parenthesis is not closed: a ')' is missing before this point".into()
        }
        P::MissingToken(t, _) if t == ";" => {
            "a ';' is missing at the end of the statement before this point".into()
        }
        P::MissingToken(t, what) => format!("a '{t}' is missing {what}"),
        P::UnexpectedEOF => {
            "the file ends in the middle of something: a bracket, brace or quote is not closed"
                .into()
        }
        P::VariableUndefined(v) => {
            format!("'{v}' is not defined here (a text needs quotes: \"{v}\")")
        }
        P::DuplicatedProperty(k) => format!("the key '{k}' is written twice in one map"),
        P::BadInput(rhai::LexError::UnterminatedString) => {
            "a text is not closed: a '\"' is missing".into()
        }
        other => other.to_string(),
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
    need_fn(&p.hooks.limits, "hooks.limits");
    for s in &p.steps {
        let ctx = format!("step '{}'", s.id);
        need_fn(&s.assign, &format!("{ctx} assign"));
        need_fn(&s.on_enter, &format!("{ctx} on_enter"));
        need_fn(&s.on_complete, &format!("{ctx} on_complete"));
        if s.kind == StepKind::Auto && s.topic.is_none() {
            need_fn(&s.run, &format!("{ctx} run"));
        }
    }
    let functions = file.ast.clone_functions_only();
    let known = known_functions(&engine);
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
                        let ast = functions.merge(&ast);
                        for call in unknown_calls(&known, &ast) {
                            errs.push(format!(
                                "procedure '{}': step '{ctx}': condition `{cond}` calls {call}, which does not exist",
                                p.id
                            ));
                        }
                        // A misspelt field reads as nothing and routes every case the
                        // wrong way without a word: refused here instead.
                        let fields: Vec<&str> = p.fields.iter().map(|f| f.id.as_str()).collect();
                        for name in undeclared_reads(&ast, "data", &fields) {
                            errs.push(format!(
                                "procedure '{}': step '{ctx}': condition `{cond}` reads data.{name}, which is not a field of the procedure (its fields: {})",
                                p.id,
                                fields.join(", ")
                            ));
                        }
                        for name in undeclared_reads(&ast, "applicant", &APPLICANT_FIELDS) {
                            errs.push(format!(
                                "procedure '{}': step '{ctx}': condition `{cond}` reads applicant.{name}; an applicant has {}",
                                p.id,
                                APPLICANT_FIELDS.join(", ")
                            ));
                        }
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
    // Group expressions, compiled and checked as conditions are.
    let fields: Vec<&str> = p.fields.iter().map(|f| f.id.as_str()).collect();
    for s in p.steps.iter().filter(|s| s.assign.is_none()) {
        let Some(expr) = s.group.as_ref().filter(|g| !crate::procedure::valid_id(g)) else {
            continue;
        };
        let ctx = format!("procedure '{}': step '{}': group `{expr}`", p.id, s.id);
        match engine.compile_expression(expr) {
            Ok(ast) => {
                let ast = functions.merge(&ast);
                for call in unknown_calls(&known, &ast) {
                    errs.push(format!("{ctx} calls {call}, which does not exist"));
                }
                for name in undeclared_reads(&ast, "data", &fields) {
                    errs.push(format!(
                        "{ctx} reads data.{name}, which is not a field of the procedure (its fields: {})",
                        fields.join(", ")
                    ));
                }
                for name in undeclared_reads(&ast, "applicant", &APPLICANT_FIELDS) {
                    errs.push(format!("{ctx} reads applicant.{name}"));
                }
                conditions.insert(expr.clone(), ast);
            }
            Err(e) => errs.push(format!(
                "{ctx}: {} (column {} of the expression)",
                e.0,
                e.1.position().unwrap_or(0)
            )),
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
    let loader = loader_engine(root, modules, Arc::default(), col.clone());
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
    let runtime = Arc::new(sandboxed_engine_over(root, modules, Arc::default()));
    let mut p = build_procedure(value, &fs, file, runtime).map_err(|e| e.join("; "))?;
    for f in &mut p.fields {
        if let Some(pat) = &f.pattern {
            // It compiled when this version was live; a regex crate that no longer
            // accepts it must refuse the version, never drop the field's check.
            let re = regex::Regex::new(&format!("^(?:{pat})$"))
                .map_err(|e| format!("field '{}': pattern: {e}", f.id))?;
            f.regex = Some(re);
        }
    }
    p.scopes = crate::procedure::compute_scopes(&p).map_err(|e| e.join("; "))?;
    let errs = p.compile_templates();
    if !errs.is_empty() {
        return Err(errs.join("; "));
    }
    Ok(p)
}

/// Every function a script running on `engine` can call, as `(name, parameters)`; names
/// of plugin modules' functions are qualified (`idcard::valid`).
fn known_functions(engine: &rhai::Engine) -> HashSet<(String, usize)> {
    engine
        .collect_fn_metadata(
            None,
            |info| {
                let name = if info.namespace.is_empty() {
                    info.metadata.name.to_string()
                } else {
                    format!("{}::{}", info.namespace, info.metadata.name)
                };
                Some((name, info.metadata.num_params))
            },
            true,
        )
        .into_iter()
        .collect()
}

/// Keywords Rhai handles itself rather than as registered functions.
const BUILT_IN: &[&str] = &[
    "type_of",
    "print",
    "debug",
    "Fn",
    "call",
    "curry",
    "is_def_var",
    "is_def_fn",
    "is_shared",
    "eval",
];

/// What a condition may read of the applicant.
const APPLICANT_FIELDS: [&str; 5] = ["id", "name", "phone", "email", "language"];

/// Names that `ast` (outside the functions it defines) reads of the map variable `var`
/// (`var.name` or `var["name"]`) and that are not among `declared`.
fn undeclared_reads(ast: &AST, var: &str, declared: &[&str]) -> Vec<String> {
    use rhai::{ASTNode, Expr};
    let is_var = |e: &Expr| matches!(e, Expr::Variable(x, ..) if x.1.as_str() == var);
    // The first property of a chain: `data.a` or `data.a.b` or `data.a.f()`.
    fn first_property(e: &Expr) -> Option<String> {
        match e {
            Expr::Property(p, _) => Some(p.2.to_string()),
            Expr::Dot(x, ..) | Expr::Index(x, ..) => first_property(&x.lhs),
            Expr::MethodCall(..) => None,
            _ => None,
        }
    }
    let mut out = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let read = match path.last() {
            Some(ASTNode::Expr(Expr::Dot(x, ..))) if is_var(&x.lhs) => first_property(&x.rhs),
            Some(ASTNode::Expr(Expr::Index(x, ..))) if is_var(&x.lhs) => match &x.rhs {
                Expr::StringConstant(s, _) => Some(s.to_string()),
                _ => None,
            },
            _ => None,
        };
        if let Some(name) = read {
            if !declared.contains(&name.as_str()) && !out.contains(&name) {
                out.push(name);
            }
        }
        true
    });
    out
}

/// Calls in `ast` (outside the functions it defines) of functions that exist neither
/// among `known` nor in `ast` itself, named as `name/arity`. A condition that calls one
/// would fail every case at run time.
fn unknown_calls(known: &HashSet<(String, usize)>, ast: &AST) -> Vec<String> {
    use rhai::{ASTNode, Expr, FnCallExpr, Stmt};
    let named = |call: &FnCallExpr| {
        if call.namespace.is_empty() {
            call.name.to_string()
        } else {
            format!("{}::{}", call.namespace, call.name)
        }
    };
    let defined: HashSet<(String, usize)> = ast
        .iter_functions()
        .map(|f| (f.name.to_string(), f.params.len()))
        .collect();
    let exists = |name: &str, arity: usize| {
        let key = (name.to_string(), arity);
        BUILT_IN.contains(&name) || known.contains(&key) || defined.contains(&key)
    };
    let mut missing = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let call =
            match path.last() {
                // A call is a statement of its own when it is the whole expression.
                Some(
                    ASTNode::Expr(Expr::FnCall(call, _)) | ASTNode::Stmt(Stmt::FnCall(call, _)),
                ) if !call.is_operator_call() => Some((named(call), call.args.len())),
                // `x.f(a)` calls `f(x, a)`.
                Some(ASTNode::Expr(Expr::MethodCall(call, _))) => {
                    Some((call.name.to_string(), call.args.len() + 1))
                }
                _ => None,
            };
        if let Some((name, arity)) = call {
            let shown = format!("{name}/{arity}");
            if !exists(&name, arity) && !missing.contains(&shown) {
                missing.push(shown);
            }
        }
        true
    });
    missing
}
