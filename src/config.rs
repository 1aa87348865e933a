//! Server configuration: defaults, overridden by a TOML file, overridden by environment
//! variables and command-line flags (clap merges the last two).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A PostgreSQL address as configured. Its `Debug` leaves the password out, so that a
/// configuration can be logged whole.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct StoreAddress(pub String);

impl std::fmt::Debug for StoreAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&guichet_core::store::without_password(&self.0))
    }
}

impl From<String> for StoreAddress {
    fn from(url: String) -> Self {
        StoreAddress(url)
    }
}

impl From<&str> for StoreAddress {
    fn from(url: &str) -> Self {
        StoreAddress(url.to_string())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folder of Rhai scripts describing the office.
    pub scripts: PathBuf,
    /// The node's data folder: the embedded store (unless `store` names another), the
    /// administrator token file, backups' default place.
    pub data: PathBuf,
    /// Where cases are kept: absent for the embedded store in `<data>/store`, or a
    /// PostgreSQL address (`postgres://user:password@host:5432/guichet`) that several
    /// nodes share (docs/deployment.md).
    pub store: Option<StoreAddress>,
    /// Connections to PostgreSQL each node keeps at most.
    pub store_connections: u32,
    /// How long a node holds the timers and notices it took from PostgreSQL: if it dies,
    /// another node takes them over after this many seconds.
    pub store_lease_secs: u64,
    /// With `?sslmode=require` in `store`: a CA (PEM) trusted for the database's
    /// certificate besides the public ones (an office's own CA).
    pub store_ca_file: Option<PathBuf>,
    /// Threads that run engine calls (0: chosen from the store). On the embedded store a
    /// call uses the CPU all along, and two per core keep the cores busy; on PostgreSQL a
    /// call waits on the database most of its time, and a node needs more calls under way
    /// to keep both busy (and commits waiting together go in one call).
    pub engine_threads: usize,
    /// Address to listen on.
    pub listen: String,
    /// sled page cache, in MiB.
    pub cache_mb: u64,
    /// Checkpoint the store once this many MiB were written since the last one (0: never).
    /// A start after a crash replays what was written since the last checkpoint.
    pub checkpoint_mb: u64,
    /// ...and only after this many seconds without a write; store calls wait meanwhile.
    pub checkpoint_idle_secs: u64,
    /// `fsync` (default): a write is on the disk before its client is answered, and
    /// survives a power cut; `flush`: handed to the operating system, survives a crash of
    /// the server but not of the machine (faster on disks whose syncs are slow).
    pub durability: guichet_core::store::Durability,
    /// Serve HTTPS: the certificate chain (PEM, the server's certificate first) and its
    /// private key (PEM). For a small office without a reverse proxy.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Largest accepted request body, in KiB.
    pub max_body_kb: usize,
    /// Largest accepted upload (a `multipart/form-data` body: an application with its
    /// files), in MiB. Each material also has its own limit (`max_mb`, default 10).
    pub max_upload_mb: usize,
    /// Reload the scripts when they change.
    pub watch: bool,
    /// Quiet time after a change before reloading, in milliseconds.
    pub reload_debounce_ms: u64,
    /// Interval of the backstop rescan of the scripts folder, in seconds.
    pub rescan_secs: u64,
    /// Delivery of notices.
    pub outbox: OutboxConfig,
    /// Protection against slow and greedy clients.
    pub limits: LimitsConfig,
    /// Each plugin's own table, `[plugins.<name>]`; a plugin is enabled by its table.
    pub plugins: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Wait after a notice's first failed delivery, in milliseconds; doubled per failure.
    pub first_retry_ms: u64,
    /// Longest wait between attempts, in milliseconds.
    pub max_retry_ms: u64,
    /// Attempts before a notice fails for good.
    pub max_attempts: u32,
    /// Longest a channel may take to deliver one notice, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            first_retry_ms: 5_000,
            max_retry_ms: 3_600_000,
            max_attempts: 12,
            timeout_ms: 30_000,
        }
    }
}

impl OutboxConfig {
    pub fn policy(&self) -> guichet_core::outbox::RetryPolicy {
        guichet_core::outbox::RetryPolicy {
            first_delay: chrono::Duration::milliseconds(self.first_retry_ms.max(1) as i64),
            max_delay: chrono::Duration::milliseconds(self.max_retry_ms.max(1) as i64),
            max_attempts: self.max_attempts.max(1),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Time a client has to send a request's headers, and the longest a kept-alive
    /// connection may sit idle between requests.
    pub header_timeout_ms: u64,
    /// Time a request may take in all, body upload included (answer 408). A request whose
    /// engine call has started is answered with what that call did, however long it takes.
    pub request_timeout_ms: u64,
    /// Time the scripts of one engine call (hooks, conditions, automatic steps) may run
    /// in all; past it the call fails with `script_error` and changes nothing.
    pub script_ms: u64,
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections one client address may hold open at once; more are closed at once.
    pub connections_per_client: usize,
    /// Requests one client address may have in progress at once; more get 429.
    pub requests_per_client: usize,
    /// Deepest nesting of arrays and objects accepted in a JSON body.
    pub max_json_depth: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            script_ms: 1_000,
            max_connections: 2048,
            connections_per_client: 256,
            requests_per_client: 128,
            max_json_depth: 32,
        }
    }
}

/// Most engine threads a node starts: past a few per core they only add context switches.
pub const MAX_ENGINE_THREADS: usize = 256;

impl Config {
    /// The engine threads to start: `engine_threads`, or two per core on the embedded
    /// store (more only added context switches and allocator heaps) and sixteen per core
    /// on PostgreSQL, where more commits waiting at once go to the database in fewer calls,
    /// leaving two of the store's connections to maintenance (both measured,
    /// `docs/performance.md`). Calls that may run scripts take all threads but one, so
    /// reads are answered while the others run slow hooks. Refuses a number the node
    /// cannot serve: more threads than connections to PostgreSQL (the others would wait
    /// for one and time out), or more than [`MAX_ENGINE_THREADS`].
    pub fn engine_threads(&self) -> anyhow::Result<usize> {
        let connections = self.store_connections as usize;
        if self.engine_threads > 0 {
            anyhow::ensure!(
                self.engine_threads <= MAX_ENGINE_THREADS,
                "engine_threads = {} is more than {MAX_ENGINE_THREADS}",
                self.engine_threads
            );
            anyhow::ensure!(
                self.store.is_none() || self.engine_threads <= connections,
                "engine_threads = {} is more than store_connections = {connections}: each \
                 engine call under way holds a connection to PostgreSQL",
                self.engine_threads
            );
            return Ok(self.engine_threads);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(match self.store {
            None => cores * 2,
            Some(_) => (cores * 16).min(connections.saturating_sub(2)),
        }
        .clamp(2, MAX_ENGINE_THREADS))
    }

    /// The store this configuration names: PostgreSQL if `store` gives its address, else
    /// the embedded store in `<data>/store`.
    pub fn store(&self) -> guichet_core::store::StoreConfig {
        if let Some(url) = &self.store {
            return guichet_core::store::StoreConfig::Postgres {
                url: url.0.clone(),
                connections: self.store_connections,
                lease: std::time::Duration::from_secs(self.store_lease_secs.max(1)),
                ca_file: self.store_ca_file.clone(),
            };
        }
        guichet_core::store::StoreConfig::Embedded {
            path: self.data.join("store"),
            cache_bytes: self.cache_mb * 1024 * 1024,
            checkpoint_bytes: self.checkpoint_mb << 20,
            checkpoint_idle: std::time::Duration::from_secs(self.checkpoint_idle_secs),
            durability: self.durability,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scripts: PathBuf::from("scripts"),
            data: PathBuf::from("data"),
            store: None,
            store_connections: 32,
            store_lease_secs: 60,
            store_ca_file: None,
            engine_threads: 0,
            listen: "127.0.0.1:8080".into(),
            cache_mb: 256,
            checkpoint_mb: 256,
            checkpoint_idle_secs: 10,
            durability: Default::default(),
            tls_cert: None,
            tls_key: None,
            max_body_kb: 1024,
            max_upload_mb: 50,
            watch: true,
            reload_debounce_ms: 150,
            rescan_secs: 30,
            outbox: OutboxConfig::default(),
            limits: LimitsConfig::default(),
            plugins: Default::default(),
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

#[cfg(test)]
mod tests {
    /// The configuration `deploy/` ships is one the server accepts, as it says.
    #[test]
    fn the_deployment_config_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/guichet.toml");
        let c = super::Config::from_file(&path).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.data, std::path::PathBuf::from("/var/lib/guichet"));
        assert_eq!(c.durability, guichet_core::store::Durability::Fsync);
        let flush: super::Config = toml::from_str("durability = \"flush\"").unwrap();
        assert_eq!(flush.durability, guichet_core::store::Durability::Flush);
        assert!(toml::from_str::<super::Config>("durability = \"maybe\"").is_err());
    }

    #[test]
    fn a_configuration_logged_whole_leaves_the_database_password_out() {
        let c: super::Config =
            toml::from_str("store = \"postgres://guichet:s3cret@db:5432/guichet\"").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://guichet:***@db:5432/guichet"),
            "{shown}"
        );
        // What the store opens with keeps it.
        match c.store() {
            guichet_core::store::StoreConfig::Postgres { url, .. } => {
                assert!(url.contains("s3cret"))
            }
            _ => panic!("not the PostgreSQL store"),
        }
    }

    /// A node on PostgreSQL runs more calls at once than one on the embedded store, never
    /// more than its connections allow; a number set in the file wins.
    #[test]
    fn engine_threads_follow_the_store() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let embedded = super::Config::default();
        assert_eq!(
            embedded.engine_threads().unwrap(),
            (cores * 2).clamp(2, 256)
        );
        let pg: super::Config = toml::from_str("store = \"postgres://db/guichet\"").unwrap();
        assert_eq!(pg.engine_threads().unwrap(), (cores * 16).clamp(2, 30));
        let few: super::Config =
            toml::from_str("store = \"postgres://db/g\"\nstore_connections = 4").unwrap();
        assert_eq!(few.engine_threads().unwrap(), 2);
        let set: super::Config = toml::from_str("engine_threads = 3").unwrap();
        assert_eq!(set.engine_threads().unwrap(), 3);
        // A number the node cannot serve stops the start with a reason.
        let greedy: super::Config =
            toml::from_str("store = \"postgres://db/g\"\nengine_threads = 40").unwrap();
        let e = greedy.engine_threads().unwrap_err().to_string();
        assert!(e.contains("store_connections = 32"), "{e}");
        let huge: super::Config = toml::from_str("engine_threads = 100000").unwrap();
        assert!(huge.engine_threads().is_err());
    }
}
