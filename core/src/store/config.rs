//! Which backend a server runs on, from its configuration.

use std::path::PathBuf;
use std::sync::Arc;

use super::{SledStore, Store};
use crate::error::Result;

/// The store a server opens.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// The embedded store: sled in a folder of the machine, one process per folder.
    Embedded {
        path: PathBuf,
        /// sled's page cache, in bytes.
        cache_bytes: u64,
        /// A checkpoint runs once this much was written (0: never) ...
        checkpoint_bytes: u64,
        /// ... and nothing was written for this long.
        checkpoint_idle: std::time::Duration,
        /// How far a flush carries acknowledged writes.
        durability: super::Durability,
    },
    /// PostgreSQL, shared by every node of the office (built with the `postgres`
    /// feature).
    Postgres {
        /// `postgres://user:password@host:port/database`.
        url: String,
        /// The pool's size.
        connections: u32,
        /// How long a node holds the timers and notices it took.
        lease: std::time::Duration,
        /// PEM certificates trusted for TLS to the database besides Mozilla's roots.
        ca_file: Option<PathBuf>,
    },
}

/// Opens the configured backend.
pub fn open(config: &StoreConfig) -> Result<Arc<dyn Store>> {
    match config {
        StoreConfig::Embedded {
            path,
            cache_bytes,
            checkpoint_bytes,
            checkpoint_idle,
            durability,
        } => {
            let store = SledStore::open(path, *cache_bytes)?
                .with_checkpoints(*checkpoint_bytes, *checkpoint_idle)
                .with_durability(*durability);
            Ok(Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        StoreConfig::Postgres {
            url,
            connections,
            lease,
            ca_file,
        } => Ok(Arc::new(
            super::postgres::PgStore::open(url, *connections, ca_file.as_deref())?
                .with_lease(*lease),
        )),
        #[cfg(not(feature = "postgres"))]
        StoreConfig::Postgres { .. } => Err(crate::error::Error::Validation(
            "this Guichet was built without the `postgres` feature".into(),
        )),
    }
}
