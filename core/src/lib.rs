//! Guichet's engine: procedures scripted in Rhai, cases moved through them, state kept in
//! a durable store. No HTTP here: the server crate is the only one that speaks the wire.
//!
//! # Layout
//! - [`office`]: departments, groups, staff and the [`office::RuleSet`] loaded from scripts.
//! - [`procedure`]: procedure declarations and their static validation.
//! - [`script`]: the sandboxed Rhai engine, the loader and runtime calls of hooks.
//! - [`case`]: cases, tasks, tokens and history events: the state that is stored.
//! - [`form`]: validation of form data and materials.
//! - [`files`]: uploaded materials: size, format and content checks, media types.
//! - [`guide`]: the public service guide of a procedure, in the reader's language.
//! - [`flow`]: routing, pure over a copy of a case.
//! - [`store`]: the [`store::Store`] trait and its sled implementation.
//! - [`engine`]: the facade the server calls: the engine's state, reads, commits.
//! - [`submit`]: receiving applications (cases, bundles, with files).
//! - [`tasks`]: the worklist, who may act on a task, the task actions.
//! - [`tokens`]: API tokens, the first administrator token, applicant tokens.
//! - [`rating`]: ratings (好差评) of decided cases and the follow-up a low one opens.
//! - [`search`]: the search index entry of a case and the staff's case search.
//! - [`reload`]: loading the scripts folder at start and on every change, atomically.
//! - [`migrate`]: moving open cases from one procedure version to another.
//! - [`clock`]: injectable time.
//! - [`calendar`]: working days, holidays, make-up days, office hours.
//! - [`limits`]: warning levels and supervision thresholds of time limits.
//! - [`stops`]: supplement requests, the applicant's answer, suspensions (the clock stops).
//! - [`supervision`]: timers firing supervision and overdue cards; answering cards.
//! - [`notice`]: domain events, notice rules and templates, the outbox record.
//! - [`outbox`]: notices of a case, the delivery queue, retries, the staff inbox.
//! - [`external`]: external tasks: fetch-and-lock with a lease, complete, fail, incidents.
//! - [`plugin`]: the plugin API: script modules, channels, subscribers, step handlers.
//! - [`audit`]: the hash-chained audit log and its verification.
//! - [`access`]: roles, case visibility, delegations: who may see and do what.
//! - [`sessions`]: staff passwords (argon2id) and browser sign-in sessions.
//! - [`stats`]: statistics: each case's contribution, the office's sums, reports.

pub mod access;
pub mod audit;
pub mod calendar;
pub mod case;
pub mod clock;
pub mod engine;
pub mod error;
pub mod external;
pub mod files;
pub mod flow;
pub mod form;
pub mod guide;
pub mod limits;
pub mod migrate;
pub mod notice;
pub mod offers;
pub mod office;
pub mod outbox;
pub mod plugin;
pub mod procedure;
pub mod rating;
pub mod reload;
pub mod script;
pub mod search;
pub mod sessions;
pub mod stats;
pub mod stops;
pub mod store;
pub mod submit;
pub mod supervision;
pub mod takeback;
pub mod tasks;
pub mod tokens;

pub use engine::{Actor, Engine};
pub use error::{Error, Result};
