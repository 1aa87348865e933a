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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scripts: PathBuf::from("scripts"),
            data: PathBuf::from("data"),
            listen: "127.0.0.1:8080".into(),
            cache_mb: 256,
            max_body_kb: 1024,
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
