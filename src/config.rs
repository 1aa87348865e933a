//! Server configuration: defaults, overridden by a TOML file, overridden by environment
//! variables and command-line flags (clap merges the last two).

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folder of Rhai scripts describing the office.
    pub scripts: PathBuf,
    /// Folder of the embedded store.
    pub data: PathBuf,
    /// Address to listen on.
    pub listen: String,
    /// sled page cache, in MiB.
    pub cache_mb: u64,
    /// Largest accepted request body, in KiB.
    pub max_body_kb: usize,
    /// Reload the scripts when they change.
    pub watch: bool,
    /// Quiet time after a change before reloading, in milliseconds.
    pub reload_debounce_ms: u64,
    /// Interval of the backstop rescan of the scripts folder, in seconds.
    pub rescan_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scripts: PathBuf::from("scripts"),
            data: PathBuf::from("data"),
            listen: "127.0.0.1:8080".into(),
            cache_mb: 256,
            max_body_kb: 1024,
            watch: true,
            reload_debounce_ms: 150,
            rescan_secs: 30,
        }
    }
}

impl Config {
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }
}
