//! The plugin API: the one narrow trait, [`Plugin`], through which native extensions reach
//! the engine, and the [`Registrar`] a plugin fills in when the server starts.
//!
//! A plugin may add
//! - Rhai modules that scripts call as `name::function(...)`;
//! - notification [`Channel`]s (e-mail, SMS gateways, webhooks) that deliver [`Notice`]s;
//! - event [`Subscriber`]s that receive domain [`Event`]s;
//! - [`StepHandler`]s that run automatic steps naming a topic, like an external worker
//!   living inside the server.
//!
//! Everything a plugin is handed is delivered through the durable outbox or the
//! fetch-and-lock protocol of external tasks, so a plugin that is slow, down or crashing
//! never blocks or fails a transition. [`API_VERSION`] changes when this module changes
//! incompatibly; the server refuses a plugin built for another version.

use std::collections::BTreeMap;
use std::sync::Arc;

pub use futures_util::future::BoxFuture;
/// The Rhai crate the engine runs, for plugins that build script modules.
pub use rhai;

use crate::case::Data;
pub use crate::notice::{Event, Notice, EVENT_KINDS};

/// Version of this API. A plugin states the version it was written for.
pub const API_VERSION: u32 = 1;

/// A native extension, registered explicitly by the server (behind a Cargo feature).
pub trait Plugin: Send + Sync {
    /// Short name; also the key of the plugin's table in the server config
    /// (`[plugins.<name>]`).
    fn name(&self) -> &str;
    /// The [`API_VERSION`] the plugin was written for.
    fn api_version(&self) -> u32 {
        API_VERSION
    }
    /// Adds the plugin's functions, channels, subscribers and step handlers.
    fn register(&self, registrar: &mut Registrar) -> Result<(), PluginError>;
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin's section of the server config is wrong; the server does not start.
    #[error("plugin {plugin}: configuration: {message}")]
    Config { plugin: String, message: String },
    #[error("plugin {plugin}: {message}")]
    Other { plugin: String, message: String },
}

/// Why a delivery did not happen. A transient failure is retried with back-off; a
/// permanent one ends the notice as failed with the reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

/// What a channel knows after handing a notice over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Handed to the next hop (an SMTP relay accepted it).
    Sent,
    /// The receiver confirmed it (a webhook answered 2xx).
    Delivered,
}

/// A way to reach people: `email`, `sms`, `webhook`... Scripts name channels in their
/// notice rules; the server delivers each queued notice through the channel of that name.
pub trait Channel: Send + Sync {
    fn name(&self) -> &str;
    /// Delivers one notice. Called at least once per notice: the receiver deduplicates by
    /// `notice.id`, which the channel must pass on (Message-ID, a header).
    fn deliver<'a>(&'a self, notice: &'a Notice)
        -> BoxFuture<'a, Result<Delivered, DeliveryError>>;
}

/// Receives domain events, at least once each, in commit order per case.
pub trait Subscriber: Send + Sync {
    fn name(&self) -> &str;
    /// Event kinds wanted (`case.decided`, ...); empty means all.
    fn events(&self) -> Vec<String> {
        Vec::new()
    }
    /// `id` is the same on every retry of this delivery: deduplicate by it.
    fn on_event<'a>(
        &'a self,
        id: &'a str,
        event: &'a Event,
    ) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// A job handed to a [`StepHandler`]: an automatic step's task, locked for the handler.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Job {
    pub task: String,
    pub topic: String,
    pub case: u64,
    pub case_number: String,
    pub procedure: String,
    pub step: String,
    pub data: Data,
    pub applicant: crate::case::Applicant,
    /// Attempts left after this one fails.
    pub retries: u32,
}

/// What a job ended with.
#[derive(Debug, Clone, Default)]
pub struct JobResult {
    /// The outcome of the step (`approve` if not given).
    pub outcome: Option<String>,
    /// Merged into the case data.
    pub data: Data,
}

/// Runs automatic steps of one topic inside the server.
pub trait StepHandler: Send + Sync {
    fn handle<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<JobResult, String>>;
}

/// What the plugins registered, handed to the engine (script modules, subscribers) and to
/// the server (channels, step handlers).
#[derive(Default, Clone)]
pub struct Registrar {
    pub(crate) modules: Vec<(String, rhai::Shared<rhai::Module>)>,
    pub(crate) channels: BTreeMap<String, Arc<dyn Channel>>,
    pub(crate) subscribers: Vec<Arc<dyn Subscriber>>,
    pub(crate) handlers: BTreeMap<String, Arc<dyn StepHandler>>,
    /// The plugin whose `register` is running, for error messages.
    current: String,
    problems: Vec<String>,
}

impl Registrar {
    pub fn new() -> Registrar {
        Registrar::default()
    }

    /// Registers every plugin in order; a name registered twice or a plugin for another API
    /// version is an error naming the plugin.
    pub fn with(plugins: &[Box<dyn Plugin>]) -> Result<Registrar, PluginError> {
        let mut r = Registrar::new();
        for p in plugins {
            if p.api_version() != API_VERSION {
                return Err(PluginError::Other {
                    plugin: p.name().into(),
                    message: format!(
                        "written for plugin API {}, this server has {API_VERSION}",
                        p.api_version()
                    ),
                });
            }
            r.current = p.name().to_string();
            p.register(&mut r)?;
            if let Some(problem) = r.problems.first() {
                return Err(PluginError::Other {
                    plugin: p.name().into(),
                    message: problem.clone(),
                });
            }
        }
        Ok(r)
    }

    /// Makes `module` callable from scripts as `name::function(...)`.
    pub fn script_module(&mut self, name: &str, module: rhai::Module) {
        if self.modules.iter().any(|(n, _)| n == name) {
            self.problems
                .push(format!("script module '{name}' is registered twice"));
        }
        self.modules.push((name.to_string(), module.into()));
    }

    pub fn channel(&mut self, channel: Arc<dyn Channel>) {
        let name = channel.name().to_string();
        if [crate::notice::INBOX, crate::notice::SUBSCRIBER].contains(&name.as_str()) {
            self.problems
                .push(format!("channel name '{name}' is reserved"));
        } else if self.channels.contains_key(&name) {
            self.problems
                .push(format!("channel '{name}' is registered twice"));
        }
        self.channels.insert(name, channel);
    }

    pub fn subscriber(&mut self, subscriber: Arc<dyn Subscriber>) {
        if self
            .subscribers
            .iter()
            .any(|s| s.name() == subscriber.name())
        {
            self.problems.push(format!(
                "subscriber '{}' is registered twice",
                subscriber.name()
            ));
        }
        self.subscribers.push(subscriber);
    }

    /// Runs automatic steps whose `topic` is `topic` in-process.
    pub fn step_handler(&mut self, topic: &str, handler: Arc<dyn StepHandler>) {
        if self.handlers.contains_key(topic) {
            self.problems
                .push(format!("a handler for topic '{topic}' is registered twice"));
        }
        self.handlers.insert(topic.to_string(), handler);
    }

    pub fn modules(&self) -> &crate::script::Modules {
        &self.modules
    }

    pub fn channels(&self) -> &BTreeMap<String, Arc<dyn Channel>> {
        &self.channels
    }

    pub fn subscribers(&self) -> &[Arc<dyn Subscriber>] {
        &self.subscribers
    }

    pub fn handlers(&self) -> &BTreeMap<String, Arc<dyn StepHandler>> {
        &self.handlers
    }

    pub fn find_subscriber(&self, name: &str) -> Option<&Arc<dyn Subscriber>> {
        self.subscribers.iter().find(|s| s.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);

    impl Channel for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn deliver<'a>(&'a self, _: &'a Notice) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
            Box::pin(async { Ok(Delivered::Sent) })
        }
    }

    struct Registers(Vec<&'static str>);

    impl Plugin for Registers {
        fn name(&self) -> &str {
            "test"
        }
        fn register(&self, r: &mut Registrar) -> Result<(), PluginError> {
            for n in &self.0 {
                r.channel(Arc::new(Named(n)));
            }
            Ok(())
        }
    }

    #[test]
    fn reserved_and_twice_registered_channel_names_are_refused() {
        for names in [vec!["inbox"], vec!["subscriber"], vec!["sms", "sms"]] {
            let plugins: Vec<Box<dyn Plugin>> = vec![Box::new(Registers(names.clone()))];
            let err = Registrar::with(&plugins).err().map(|e| e.to_string());
            assert!(
                err.is_some_and(|e| e.starts_with("plugin test:")),
                "{names:?}"
            );
        }
        let plugins: Vec<Box<dyn Plugin>> = vec![Box::new(Registers(vec!["sms", "email"]))];
        let r = Registrar::with(&plugins).expect("distinct names register");
        assert_eq!(r.channels().keys().collect::<Vec<_>>(), ["email", "sms"]);
    }
}
