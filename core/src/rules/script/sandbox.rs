//! The sandbox every script runs in: Rhai's size limits, a wall-clock budget per engine
//! call, capped and rate-limited output, and `import` confined to the scripts folder.
//!
//! Rhai counts operations, not time: one `sort` of a 10,000-item array is one operation,
//! so a loop of them ran for 49 s inside the operation limit. The budget is a deadline in
//! a thread-local, checked from Rhai's progress callback; nested calls (an engine call that
//! runs hooks, conditions and automatic steps) share the outermost deadline.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rhai::module_resolvers::FileModuleResolver;
use rhai::{Dynamic, EvalAltResult, Position};

/// Limits that keep a script from taking the server down (PITFALLS.md: all off by default).
const MAX_OPERATIONS: u64 = 1_000_000;
const MAX_CALL_LEVELS: usize = 32;
const MAX_STRING: usize = 1 << 20;
const MAX_ARRAY: usize = 10_000;
const MAX_MAP: usize = 10_000;
/// The deadline is read every this many operations (reading the clock costs more than
/// an operation).
const CHECK_EVERY: u64 = 256;

/// Time scripts may take within one engine call when the caller sets no budget.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(1);

/// Bytes of `print`/`debug` output one engine call may log.
const OUTPUT_PER_CALL: usize = 4 * 1024;
/// Lines of script output logged per second by the whole server; the rest are counted.
const OUTPUT_LINES_PER_SEC: u64 = 50;

thread_local! {
    /// When the scripts of the engine call running on this thread must stop.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Output bytes this engine call has logged.
    static OUTPUT: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` with a script budget: scripts called inside stop with an error once `budget`
/// has passed. Inside another budget, the outer one holds (the whole engine call shares it).
pub fn with_budget<T>(budget: Duration, f: impl FnOnce() -> T) -> T {
    if DEADLINE.with(Cell::get).is_some() {
        return f();
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DEADLINE.with(|d| d.set(None));
            OUTPUT.with(|o| o.set(0));
        }
    }
    DEADLINE.with(|d| d.set(Some(Instant::now() + budget)));
    let _reset = Reset;
    f()
}

/// Script output, counted for the whole server: what was logged and what was dropped.
pub struct ScriptOutput;

static LOGGED_LINES: AtomicU64 = AtomicU64::new(0);
static DROPPED_LINES: AtomicU64 = AtomicU64::new(0);
/// Second (since start) of the current rate window, and lines logged in it.
static WINDOW: Mutex<(u64, u64)> = Mutex::new((0, 0));

impl ScriptOutput {
    /// Lines logged since start.
    pub fn logged() -> u64 {
        LOGGED_LINES.load(Ordering::Relaxed)
    }

    /// Lines dropped since start (over the per-call cap or the rate).
    pub fn dropped() -> u64 {
        DROPPED_LINES.load(Ordering::Relaxed)
    }

    /// Whether a line of `len` bytes may be logged now.
    fn admit(len: usize) -> bool {
        let within_call = OUTPUT.with(|o| {
            let used = o.get();
            o.set(used.saturating_add(len));
            used + len <= OUTPUT_PER_CALL
        });
        let within_rate = within_call && {
            static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            let second = START.get_or_init(Instant::now).elapsed().as_secs();
            let mut w = WINDOW.lock();
            if w.0 != second {
                *w = (second, 0);
            }
            w.1 += 1;
            w.1 <= OUTPUT_LINES_PER_SEC
        };
        if within_rate {
            LOGGED_LINES.fetch_add(1, Ordering::Relaxed);
        } else {
            DROPPED_LINES.fetch_add(1, Ordering::Relaxed);
        }
        within_rate
    }
}

/// Rhai modules from plugins, callable from scripts as `name::function(...)`.
pub type Modules = [(String, rhai::Shared<rhai::Module>)];

/// Resolves `import` only to files inside the scripts folder: first among the files being
/// loaded (a stored rule set loads exactly as it was saved), then on disk (an old
/// procedure version rebuilt alone).
struct SandboxResolver {
    root: PathBuf,
    files: Arc<HashMap<String, String>>,
    inner: FileModuleResolver,
    /// Modules compiled from `files`, by path: each is imported by many procedures.
    compiled: Mutex<HashMap<String, rhai::Shared<rhai::Module>>>,
}

impl rhai::ModuleResolver for SandboxResolver {
    fn resolve(
        &self,
        engine: &rhai::Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<rhai::Shared<rhai::Module>, Box<EvalAltResult>> {
        let rel = Path::new(path);
        let escapes = rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        let outside = || {
            // Not ErrorModuleNotFound: Rhai swallows that one into a generic message.
            Box::new(EvalAltResult::ErrorRuntime(
                format!("import \"{path}\": imports must stay inside the scripts folder").into(),
                pos,
            ))
        };
        if escapes {
            return Err(outside());
        }
        let key = format!("{}.rhai", path.trim_start_matches("./"));
        if let Some(source) = self.files.get(&key) {
            if let Some(m) = self.compiled.lock().get(&key) {
                return Ok(m.clone());
            }
            let ast = engine.compile(source).map_err(|e| {
                Box::new(EvalAltResult::ErrorInModule(
                    path.to_string(),
                    Box::new(e.into()),
                    pos,
                ))
            })?;
            let module: rhai::Shared<rhai::Module> =
                rhai::Module::eval_ast_as_new(rhai::Scope::new(), &ast, engine)?.into();
            self.compiled.lock().insert(key, module.clone());
            return Ok(module);
        }
        let inside = self
            .root
            .join(&key)
            .canonicalize()
            .is_ok_and(|p| p.starts_with(&self.root));
        if !inside {
            return Err(outside());
        }
        self.inner.resolve(engine, None, path, pos)
    }
}

/// A Rhai engine with every limit set, the time budget enforced, output capped, `import`
/// confined to `root`, and the plugins' modules.
pub fn sandboxed_engine(root: &Path, modules: &Modules) -> rhai::Engine {
    sandboxed_engine_over(root, modules, Arc::default())
}

/// As [`sandboxed_engine`], resolving imports among `files` (path relative to `root`,
/// with its `.rhai`) before the disk.
pub(crate) fn sandboxed_engine_over(
    root: &Path,
    modules: &Modules,
    files: Arc<HashMap<String, String>>,
) -> rhai::Engine {
    let mut e = rhai::Engine::new();
    for (name, m) in modules {
        e.register_static_module(name.as_str(), m.clone());
    }
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    e.set_module_resolver(SandboxResolver {
        inner: FileModuleResolver::new_with_path(root.clone()),
        root,
        files,
        compiled: Mutex::new(HashMap::new()),
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
    e.on_progress(|ops| {
        if ops % CHECK_EVERY != 0 {
            return None;
        }
        let late = DEADLINE
            .with(Cell::get)
            .is_some_and(|d| Instant::now() >= d);
        late.then(|| Dynamic::from("the script took longer than its time budget"))
    });
    e.on_print(|s| {
        if ScriptOutput::admit(s.len()) {
            tracing::info!(target: "guichet::script", message = s)
        }
    });
    e.on_debug(|s, src, pos| {
        if ScriptOutput::admit(s.len()) {
            tracing::debug!(target: "guichet::script", message = s, source = src, %pos)
        }
    });
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_that_runs_past_its_budget_stops_with_an_error() {
        let e = sandboxed_engine(Path::new("."), &[]);
        // Each sort of 10,000 items is one operation: the operation limit alone let this
        // run for most of a minute.
        let script = "let a = []; for i in 0..10000 { a.push(10000 - i) } loop { a.sort(); }";
        let started = Instant::now();
        let out = with_budget(Duration::from_millis(200), || e.run(script));
        let err = out.expect_err("must stop");
        assert!(
            matches!(*err, EvalAltResult::ErrorTerminated(..)),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn nested_budgets_share_the_outer_deadline() {
        let e = sandboxed_engine(Path::new("."), &[]);
        let started = Instant::now();
        let err = with_budget(Duration::from_millis(100), || {
            with_budget(Duration::from_secs(60), || e.run("loop { let x = 1; }"))
        });
        assert!(err.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn script_output_is_capped_per_call() {
        let e = sandboxed_engine(Path::new("."), &[]);
        let (logged, dropped) = (ScriptOutput::logged(), ScriptOutput::dropped());
        let _ = with_budget(Duration::from_secs(5), || {
            e.run(r#"for i in 0..10000 { print("a line of about forty bytes, again and again") }"#)
        });
        // About a hundred lines fit in the cap; everything else is dropped, not logged.
        assert!(ScriptOutput::logged() - logged <= (OUTPUT_PER_CALL / 40) as u64);
        assert!(ScriptOutput::dropped() - dropped >= 9_000);
    }
}
