//! Rhai: the sandboxed engine ([`sandbox`]: limits, a time budget per engine call, capped
//! output, imports confined to the scripts folder), the loader that turns a scripts folder
//! into a validated [`RuleSet`](crate::office::RuleSet) ([`loader`]), and the runtime calls
//! of hooks, automatic steps and routing conditions ([`runtime`]).

pub mod loader;
pub mod runtime;
pub mod sandbox;
pub mod scenario;

pub use loader::{
    load_dir, load_dir_with, load_sources, load_sources_with, load_version, read_dir, version_of,
};
pub use runtime::ProcedureScript;
pub use sandbox::{sandboxed_engine, with_budget, Modules, ScriptOutput, DEFAULT_BUDGET};
