//! The Guichet server: HTTP API over the engine, and the pieces the `guichet` binary uses.
//!
//! # Layout
//! - [`api`]: routes, extractors, wire shapes.
//! - [`error`]: the JSON error every route returns.
//! - [`config`]: configuration file and defaults.
//! - [`server`]: opening the engine on a data folder and serving until shutdown.
//! - [`watch`]: hot reload of the scripts folder.
//! - [`scheduler`]: fires deadline timers (supervision cards, escalations).

pub mod api;
pub mod config;
pub mod error;
pub mod scheduler;
pub mod server;
pub mod watch;
