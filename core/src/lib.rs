//! Guichet's engine: procedures scripted in Rhai, cases moved through them, state kept in
//! a durable store. No HTTP here: the server crate is the only one that speaks the wire.
//!
//! # Layout
//! The folders group the modules by concern; each module is also exported at the crate's
//! root (`guichet_core::case`, `guichet_core::tasks`), the one path code outside a folder
//! uses.
//! - [`model`]: what an office declares and what is stored.
//!   - [`office`]: departments, groups, staff and the [`office::RuleSet`] loaded from scripts.
//!   - [`procedure`]: procedure declarations and their static validation.
//!   - [`case`]: cases, tasks, tokens and history events: the state that is stored.
//!   - [`form`]: validation of form data and materials.
//!   - [`files`]: uploaded materials: size, format and content checks, media types.
//!   - [`guide`]: the public service guide of a procedure, in the reader's language.
//! - [`rules`]: how a case moves.
//!   - [`flow`]: routing, pure over a copy of a case.
//!   - [`script`]: the sandboxed Rhai engine, the loader and runtime calls of hooks.
//! - [`time`]: time limits.
//!   - [`clock`]: injectable time.
//!   - [`calendar`]: working days, holidays, make-up days, office hours.
//!   - [`limits`]: warning levels and supervision thresholds of time limits.
//!   - [`stops`]: supplement requests, the applicant's answer, suspensions (the clock stops).
//!   - [`supervision`]: timers firing supervision and overdue cards; answering cards.
//! - [`engine`]: the facade the server calls: the engine's state, reads, commits, and its
//!   actions by what they act on.
//!   - [`submit`]: receiving applications (cases, bundles, with files).
//!   - [`tasks`]: the worklist, who may act on a task, the task actions.
//!   - [`takeback`]: 撤回, taking back a step just completed.
//!   - [`offers`]: what one staff member may do on a case now.
//!   - [`rating`]: ratings (好差评) of decided cases and the follow-up a low one opens.
//!   - [`search`]: the search index entry of a case and the staff's case search.
//!   - [`reload`]: loading the scripts folder at start and on every change, atomically.
//!   - [`migrate`]: moving open cases from one procedure version to another.
//! - [`delivery`]: telling people, and work done outside.
//!   - [`notice`]: domain events, notice rules and templates, the outbox record.
//!   - [`outbox`]: notices of a case, the delivery queue, retries, the staff inbox.
//!   - [`external`]: external tasks: fetch-and-lock with a lease, complete, fail, incidents.
//! - [`security`]: who may do what, and the record of what was done.
//!   - [`access`]: roles, case visibility, delegations: who may see and do what.
//!   - [`tokens`]: API tokens, the first administrator token, applicant tokens.
//!   - [`sessions`]: staff passwords (argon2id) and browser sign-in sessions.
//!   - [`audit`]: the hash-chained audit log and its verification.
//! - [`stats`]: statistics: each case's contribution, the office's sums, reports.
//! - [`store`]: the storage boundary, its embedded (sled) and PostgreSQL backends.
//! - [`plugin`]: the plugin API: script modules, channels, subscribers, step handlers.
//! - [`error`]: the engine's errors and their stable codes.

pub mod delivery;
pub mod engine;
pub mod error;
pub mod model;
pub mod plugin;
pub mod rules;
pub mod security;
pub mod stats;
pub mod store;
pub mod time;

pub use delivery::{external, notice, outbox};
pub use engine::{migrate, offers, rating, reload, search, submit, takeback, tasks};
pub use model::{case, files, form, guide, office, procedure};
pub use rules::{flow, script};
pub use security::{access, audit, sessions, tokens};
pub use time::{calendar, clock, limits, stops, supervision};

pub use engine::{Actor, Engine};
pub use error::{Error, Result};
