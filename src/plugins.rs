//! The native plugins this server is built with. Each is a crate under `plugins/` behind a
//! Cargo feature of the same name, and is enabled by its table in the config
//! (`[plugins.<name>]`), which the plugin validates when the server starts: a wrong table
//! stops the server with the plugin's message instead of failing later.

use anyhow::{bail, Context};
use guichet_core::plugin::Plugin;

use crate::config::Config;

/// The plugins compiled into this binary.
pub const BUILT_IN: &[&str] = &[
    #[cfg(feature = "email")]
    "email",
    #[cfg(feature = "webhook")]
    "webhook",
];

/// Builds the plugins the config enables, in name order.
pub fn from_config(config: &Config) -> anyhow::Result<Vec<Box<dyn Plugin>>> {
    let mut out: Vec<Box<dyn Plugin>> = Vec::new();
    for (name, table) in &config.plugins {
        let value =
            serde_json::to_value(table).with_context(|| format!("config [plugins.{name}]"))?;
        // Unused when the binary is built without any plugin feature.
        let _ = &value;
        let plugin: Box<dyn Plugin> = match name.as_str() {
            #[cfg(feature = "email")]
            "email" => Box::new(guichet_email::Email::from_config(&value)?),
            #[cfg(feature = "webhook")]
            "webhook" => Box::new(guichet_webhook::Webhooks::from_config(&value)?),
            other => bail!(
                "config [plugins.{other}]: no such plugin in this build (built with: {})",
                if BUILT_IN.is_empty() {
                    "none".to_string()
                } else {
                    BUILT_IN.join(", ")
                }
            ),
        };
        out.push(plugin);
    }
    Ok(out)
}
