//! The Guichet server: HTTP API over the engine, and the pieces the `guichet` binary uses.
//!
//! # Layout
//! - [`api`]: routes, extractors, wire shapes.
//! - [`error`]: the JSON error every route returns.
//! - [`config`]: configuration file and defaults.
//! - [`http`]: the accept loop: header and idle timeouts, connection limits.
//! - [`server`]: opening the engine on a data folder and serving until shutdown.
//! - [`pool`]: the engine threads every request's engine call runs on; group commit.
//! - [`watch`]: hot reload of the scripts folder.
//! - [`maintenance`]: the store's upkeep (checkpoints when the office is quiet).
//! - [`scheduler`]: fires deadline timers (supervision cards, escalations).
//! - [`outbox`]: delivers queued notices through the plugins' channels, with retries.
//! - [`workers`]: runs plugins' step handlers on external tasks of their topics.
//! - [`plugins`]: the plugins compiled in, enabled by the config.
//! - [`demo`]: a simulated year of the example office, for newcomers and the statistics.

pub mod api;
pub mod background;
pub mod config;
pub mod demo;
pub mod error;
pub mod http;
pub mod init;
pub mod maintenance;
pub mod outbox;
pub mod plugins;
pub mod pool;
pub mod scheduler;
pub mod server;
pub mod telemetry;
pub mod watch;
pub mod web;
pub mod workers;
